"""The reference BLIP engine: the checkpoint's torch modules, with the decoder written out step
by step (``blip_decoder.py``: the per-step cost is the weights, not the bookkeeping).

The generation loop in ``vislang.captioning`` only calls ``encode_images``, ``encode_question``,
``decode`` and ``reorder`` (``protocols.BlipEngine``), so the exported engines (OpenVINO,
ONNX Runtime) can replace this one; they are checked against it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from vislang.runtime.blip_decoder import BlipDecoder, DecoderCache
from vislang.runtime.torch_engine import DTYPES


class TorchBlipEngine:
    """The three BLIP graphs on the checkpoint's torch modules, in fp32 (the reference) or with
    the weights cast to bf16 / fp16; logits always come back float32."""

    name = "torch"

    def __init__(self, weights: Callable[[], torch.nn.Module], precision: str = "fp32",
                 device: str = "cpu"):
        self._weights = weights
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.device = torch.device(device)

    @functools.cached_property
    def hf_model(self) -> torch.nn.Module:
        with torch.inference_mode(False):  # first use may be inside inference_mode
            return self._weights().to(self.device, dtype=self.dtype)

    def prepare(self) -> None:
        _ = self.decoder  # loads the weights, packs the decoder's

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``float32[N, 3, H, W]`` -> patch embeddings ``[N, P, D]``."""
        pixel_values = pixel_values.to(self.device, dtype=self.dtype)
        return self.hf_model.vision_model(pixel_values=pixel_values)[0]

    def encode_question(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        image_embeds: torch.Tensor) -> torch.Tensor:
        """Question tokens cross-attending to the image -> ``[N, T, D]`` (VQA checkpoints)."""
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        return self.hf_model.text_encoder(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
            encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
            return_dict=False)[0]

    @functools.cached_property
    def decoder(self) -> BlipDecoder:
        return BlipDecoder(self.hf_model.text_decoder, self.dtype)

    def decode(self, input_ids: torch.Tensor, context: torch.Tensor,
               past: DecoderCache | None = None) -> tuple[torch.Tensor, DecoderCache]:
        """One decoder step -> (next-token logits ``float32[N, V]``, the new KV cache).

        Without ``past`` it reads the whole ``input_ids`` (the prompt) and ``context`` (what it
        cross-attends to: image or question embeddings); with it, only the new last column.
        """
        logits, cache = self.decoder.step(input_ids.to(self.device), context, past)
        return logits.cpu(), cache

    @staticmethod
    def reorder(past: DecoderCache, index: torch.Tensor) -> DecoderCache:
        """Keep the cache rows ``index`` (in that order): beam search's reshuffle."""
        return past.reorder(index.to(past.keys[0].device))
