"""The whole image as one patch grid, and a patch grid back to image pixels.

``dense`` and ``relevance`` read per-patch values off one forward pass. The checkpoint's own
preprocessing centre-crops, which would leave the sides of a wide photo unexplained, so here
the image keeps its aspect: the short side goes to the tower's input size, both sides are
rounded to whole patches, and the position embeddings are interpolated to that grid.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vislang.errors import UnsupportedModelError


def vision_tower(model):
    """The torch CLIP model behind ``model``; dense and relevance need a CLS-token ViT."""
    if model.kind != "clip":
        raise UnsupportedModelError(
            f"{model.model_key} is a {model.kind!r} model; the dense and relevance methods "
            "need a CLIP ViT with a CLS token; use method 'crops'")
    return model.hf_model


def grid_pixels(model, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
    """``float[1, 3, h, w]`` for the whole image and its patch grid (rows, cols)."""
    config = model.config.vision_config
    side, patch = config.image_size, config.patch_size
    t = model.transform
    scale = side / min(image.width, image.height)
    cols = max(1, round(image.width * scale / patch))
    rows = max(1, round(image.height * scale / patch))
    resized = image.convert("RGB").resize((cols * patch, rows * patch), resample=t.resample)
    pixels = np.asarray(resized, dtype=np.float32) * np.float32(t.rescale_factor)
    pixels = (pixels - np.float32(t.mean)) / np.float32(t.std)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None], (rows, cols)


def to_image(values: torch.Tensor, grid: tuple[int, int], height: int, width: int) -> np.ndarray:
    """Per-patch values ``[rows*cols]`` -> float32 [height, width], bilinear."""
    patches = values.detach().float().cpu().reshape(1, 1, *grid)
    full = torch.nn.functional.interpolate(patches, size=(height, width), mode="bilinear",
                                           align_corners=False)
    return full[0, 0].numpy()
