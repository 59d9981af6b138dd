"""What every engine of a family offers, whichever backend runs it: the models and the
capabilities call these methods only, so an engine can be swapped without them knowing.

Inputs and outputs are torch tensors (float32 features and logits, whatever the precision
inside), so that gradients flow through the torch engine in fp32.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class ClipEngine(Protocol):
    """A CLIP/SigLIP checkpoint's two towers: projected, unnormalised features ``[N, D]``."""

    name: str  # torch, openvino, onnx
    precision: str

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def encode_texts(self, input_ids: torch.Tensor) -> torch.Tensor: ...


class BlipEngine(Protocol):
    """A BLIP checkpoint's graphs: the vision encoder, the question encoder (VQA) and the text
    decoder one step at a time. ``past`` is the engine's own kind of KV cache, opaque to the
    generation loop, which only passes it back to ``decode`` and ``reorder``."""

    name: str
    precision: str
    hf_model: torch.nn.Module  # the transformers model, loaded on first use

    def prepare(self) -> None:
        """Do now what the first call would: load the weights, or export and compile."""

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def encode_question(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        image_embeds: torch.Tensor) -> torch.Tensor: ...

    def decode(self, input_ids: torch.Tensor, context: torch.Tensor,
               past: Any | None = None) -> tuple[torch.Tensor, Any]: ...

    def reorder(self, past: Any, index: torch.Tensor) -> Any: ...
