"""The two towers of a CLIP/SigLIP checkpoint as stand-alone modules, for export, and what the
engines that run them exported share.

Exported engines run one graph per tower with a dynamic batch (and, for text, a dynamic
length), so the image side can be batched for throughput while a query runs alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
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


def trim_padding(tokens: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """Drop the all-padding columns at the end of a padded token batch (CLIP pads with 0).

    CLIP's text tower is causal and reads the end token, and a masked tower (OpenCLIP's XLM-R)
    ignores padding, so the columns after the longest text cannot change any feature; cutting
    77 columns to ~12 makes short prompts several times cheaper to encode.
    """
    used = (tokens != pad).any(dim=0).nonzero()
    return tokens[:, : int(used[-1]) + 1] if len(used) else tokens[:, :1]


def as_array(tensor: torch.Tensor, dtype) -> np.ndarray:
    """A tensor as the contiguous float32 or int64 array an exported graph takes."""
    torch_type = torch.float32 if dtype == np.float32 else torch.int64
    return np.ascontiguousarray(tensor.detach().cpu().to(torch_type).numpy())


class ExportedClipEngine:
    """What the OpenVINO and ONNX Runtime CLIP engines share: each tower exported (first time
    only) and opened on its first use -- a text search never pays for the image tower, nor,
    once exported, for loading the weights -- and torch tensors in and out.
    Subclasses give ``_open(tower, path)`` and ``_run(tower, array) -> array``."""

    def __init__(self, export: Callable[[Sequence[str]], dict[str, Path]], precision: str):
        self._export = export  # tower names -> their files, exported if not cached
        self.precision = precision
        self.towers: dict[str, object] = {}

    def _tower(self, name: str):
        if name not in self.towers:
            self.towers[name] = self._open(name, self._export([name])[name])
        return self.towers[name]

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._encode("image", as_array(pixel_values, np.float32))

    def encode_texts(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self._encode("text", as_array(input_ids, np.int64))

    def _encode(self, tower: str, array: np.ndarray) -> torch.Tensor:
        # fp16 and int8 graphs keep float32 outputs, but a copy is what a caller may keep:
        # some runtimes hand out buffers they reuse on the next call.
        return torch.from_numpy(self._run(tower, array).astype(np.float32))


# -- keeping an export quiet, for this export alone -------------------------------------------
# Tracing warns about every Python branch in transformers' code, ONNX Runtime's quantiser logs
# advice on the root logger, and NNCF draws progress bars on stdout, where they would corrupt a
# command's --json: none of it is actionable for a user exporting a supported model. What is
# silenced is theirs only: a server thread printing or logging meanwhile is heard as before.
EXPORTING_LIBRARIES = r"(torch|transformers|onnx|onnxruntime|onnxscript|openvino|nncf)(\.|$)"
_lock = threading.Lock()
_active: dict[str, tuple[int, Callable[[], None]]] = {}


@contextlib.contextmanager
def _while_active(name: str, silence: Callable[[], Callable[[], None]]):
    """``silence()`` makes a process-wide change and returns its undo. Overlapping blocks (two
    threads exporting) share one change: made by the first, undone by the last, so one block
    never restores what another still needs, nor leaves its change behind."""
    with _lock:
        count, undo = _active.get(name, (0, None))
        _active[name] = (count + 1, undo if count else silence())
    try:
        yield
    finally:
        with _lock:
            count, undo = _active.pop(name)
            if count > 1:
                _active[name] = (count - 1, undo)
            else:
                undo()


def quiet_export():
    """Silence the libraries an export runs: their warnings, by category and module, and ONNX
    Runtime's quantiser's records (it logs on the root logger, whose level stays as it is)."""
    return _while_active("export", _silence_export)


def _silence_export() -> Callable[[], None]:
    warnings_kept = warnings.catch_warnings()
    warnings_kept.__enter__()
    warnings.filterwarnings("ignore", module=EXPORTING_LIBRARIES)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    # torch.onnx.export's notice about its TorchScript exporter names its caller (this package)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"vislang\.runtime\.")
    root = logging.getLogger()
    root.addFilter(_drop_onnxruntime_quantiser)

    def undo() -> None:
        root.removeFilter(_drop_onnxruntime_quantiser)
        warnings_kept.__exit__(None, None, None)

    return undo


def _drop_onnxruntime_quantiser(record: logging.LogRecord) -> bool:
    """False for a record of ``onnxruntime.quantization`` (logged on the root logger)."""
    return f"onnxruntime{os.sep}quantization{os.sep}" not in record.pathname


def quiet_nncf():
    """Silence NNCF (imported here, so that its logger is its own class before we touch it):
    its logger writes INFO lines to stdout and does not propagate, and its progress bars draw
    on rich's global console, which vislang's own output never uses (it has its own consoles).
    NNCF offers no switch for the bars."""
    import nncf  # noqa: F401

    return _while_active("nncf", _silence_nncf)


def _silence_nncf() -> Callable[[], None]:
    import rich

    from nncf.common.logging.logger import nncf_logger

    console = rich.get_console()
    level, quiet = nncf_logger.level, console.quiet
    nncf_logger.setLevel(logging.ERROR)
    console.quiet = True

    def undo() -> None:
        nncf_logger.setLevel(level)
        console.quiet = quiet

    return undo
