"""The two towers of a CLIP/SigLIP checkpoint as stand-alone modules, for export.

Exported engines run one graph per tower with a dynamic batch (and, for text, a dynamic
length), so the image side can be batched for throughput while a query runs alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch


class ImageTower(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not is_clip(self.hf_model):
            return self.hf_model.get_image_features(pixel_values=pixel_values).pooler_output
        vision = self.hf_model.vision_model
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        cls = torch.zeros_like(hidden[:, 0, 0], dtype=torch.long)  # the class token, per item
        pooled = encode_pooled(vision.encoder.layers, hidden, cls)
        return self.hf_model.visual_projection(vision.post_layernorm(pooled))


class TextTower(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not is_clip(self.hf_model):
            return self.hf_model.get_text_features(input_ids=input_ids).pooler_output
        text = self.hf_model.text_model
        hidden = text.embeddings(input_ids=input_ids)
        # transformers' pooling rule: the highest id for old configs (eos 2), else the first end
        # token (the pad token may be the end token too).
        ids = input_ids.to(torch.int)
        legacy = text.eos_token_id == 2
        eos = ids.argmax(-1) if legacy else (ids == text.eos_token_id).int().argmax(-1)
        pooled = encode_pooled(text.encoder.layers, hidden, eos.long(), causal=True)
        return self.hf_model.text_projection(text.final_layer_norm(pooled))


def is_clip(hf_model) -> bool:
    return hf_model.config.model_type == "clip"


def encode_pooled(layers, hidden: torch.Tensor, pooled_at: torch.Tensor,
                  causal: bool = False) -> torch.Tensor:
    """A CLIP encoder's output at one position per item (``pooled_at``, [B]): [B, D].

    Only that position's output is pooled, so the last layer computes the others' keys and
    values but not their queries, attention outputs or MLP: the same numbers as the full
    encoder, with about a twelfth less work (most of one layer in twelve).
    """
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    later, mask = None, None  # later[i, j]: position j comes after i
    if causal:
        later = positions[None, :] > positions[:, None]
        mask = torch.zeros(later.shape, dtype=hidden.dtype, device=hidden.device)
        mask = mask.masked_fill(later, torch.finfo(hidden.dtype).min)[None, None]  # additive
    for layer in layers[:-1]:
        hidden = layer(hidden, mask)
    last = layers[-1]
    attention = last.self_attn
    batch, _, width = hidden.shape
    rows = torch.arange(batch, device=hidden.device)
    normed = last.layer_norm1(hidden)

    def heads(states: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, heads, T, head_dim]
        return states.view(batch, states.shape[1], -1, attention.head_dim).transpose(1, 2)

    query = heads(attention.q_proj(normed[rows, pooled_at][:, None]))
    scores = query @ heads(attention.k_proj(normed)).transpose(-1, -2) * attention.scale
    if later is not None:  # the pooled position sees itself and what comes before it
        scores = scores.masked_fill(later[pooled_at][:, None, None, :],
                                    torch.finfo(scores.dtype).min)
    mixed = (scores.softmax(-1) @ heads(attention.v_proj(normed))).transpose(1, 2)
    state = hidden[rows, pooled_at] + attention.out_proj(mixed.reshape(batch, width))
    return state + last.mlp(last.layer_norm2(state))


def example_inputs(config) -> dict[str, torch.Tensor]:
    """Inputs to trace each tower with: two items, so batch is not mistaken for a constant."""
    side = config.vision_config.image_size
    text = config.text_config
    ids = torch.full((2, 8), 320, dtype=torch.long)
    # End tokens in place, at different positions: CLIP pools where the end token is.
    eos = text.eos_token_id if text.eos_token_id not in (None, 2) else text.vocab_size - 1
    ids[:, 0] = text.bos_token_id if text.bos_token_id is not None else 0
    ids[0, 5], ids[1, 7] = eos, eos
    return {"image": torch.zeros(2, 3, side, side), "text": ids}


TOWERS = ("image", "text")


def tower(hf_model, name: str) -> torch.nn.Module:
    return (ImageTower if name == "image" else TextTower)(hf_model).eval()


@contextlib.contextmanager
def quiet_export():
    """Tracing warns about every Python branch in transformers' code, and NNCF draws progress
    bars (on stdout, where they would corrupt a command's --json): none of it is actionable
    for a user exporting a supported model."""
    loggers = [logging.getLogger(), logging.getLogger("nncf")]  # ORT's quantiser logs to root
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
