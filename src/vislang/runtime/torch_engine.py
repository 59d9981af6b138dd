"""The reference engine: the checkpoint's towers run by PyTorch.

Every engine has the same two methods; other engines (OpenVINO, ONNX Runtime) are checked
against this one. Inputs and outputs are torch tensors so that gradients can flow through the
torch engine in fp32 (training, relevance saliency); the features are the *projected*,
unnormalised embeddings, as OpenAI's ``encode_image`` / ``encode_text`` return them. Lower
precisions cast the weights (bf16 on CPUs with bf16 units, fp16 on CUDA); outputs stay float32.
"""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine:
    name = "torch"

    def __init__(self, hf_model: torch.nn.Module, device: str | torch.device = "cpu",
                 precision: str = "fp32"):
        self.precision = precision
        self.model = hf_model.to(device, dtype=DTYPES[precision]).eval()
        self.device = torch.device(device)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixel_values = pixel_values.to(self.device, dtype=self.model.dtype)
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output.float()

    def encode_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        out = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return out.pooler_output.float()
