"""SigLIP 2's NaFlex inputs as one tensor per image, so they batch like any CLIP's pixels.

SigLIP 2's image processor does not make a fixed-size picture: it resizes each image, keeping
its aspect ratio, to at most ``max_num_patches`` patches of ``patch_size`` pixels, flattens the
patches, pads them to ``max_num_patches`` rows and says which rows are real
(``pixel_attention_mask``) and the grid they came from (``spatial_shapes``). vislang's pipeline
(``preprocess``, ``torch.stack``, ``encode_image``) moves one tensor per image, so the three are
packed into one ``float32[max_num_patches + 1, 3 * patch_size**2]``:

- rows ``0 .. max_num_patches - 1``: the patches, zero-padded, as transformers lays them out;
- the last row: the grid ``(rows, columns)`` in its first two entries, zeros after.

The mask is not stored: the real patches are the first ``rows * columns``. ``PackedSiglip2``
takes such a batch in ``get_image_features`` and unpacks it; given transformers' own three
inputs it behaves as ``Siglip2Model``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class NaFlexTransform:
    """PIL image -> packed NaFlex tensor, equal to ``Siglip2ImageProcessor`` (PIL backend)."""

    patch_size: int
    max_num_patches: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.Resampling.BILINEAR
    rescale_factor: float = 1 / 255

    @classmethod
    def from_processor(cls, processor) -> "NaFlexTransform":
        return cls(
            patch_size=int(processor.patch_size),
            max_num_patches=int(processor.max_num_patches),
            mean=tuple(processor.image_mean) if processor.do_normalize else (0.0, 0.0, 0.0),
            std=tuple(processor.image_std) if processor.do_normalize else (1.0, 1.0, 1.0),
            resample=int(processor.resample),
            rescale_factor=processor.rescale_factor if processor.do_rescale else 1.0,
        )

    @property
    def min_side(self) -> int:
        """Pixels a square image needs on each side to fill the patch budget."""
        return self.patch_size * math.isqrt(self.max_num_patches)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize: transformers' binary search for the largest
        scale whose patch grid fits ``max_num_patches``."""
        p, budget = self.patch_size, self.max_num_patches

        def scaled(scale: float, size: int) -> int:
            return int(max(p, math.ceil(size * scale / p) * p))

        low, high, eps = 1e-6, 100.0, 1e-5
        while high - low >= eps:
            scale = (low + high) / 2
            if (scaled(scale, height) / p) * (scaled(scale, width) / p) <= budget:
                low = scale
            else:
                high = scale
        return scaled(low, width), scaled(low, height)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB") if image.mode != "RGB" else image
        size = self.resized_size(*image.size)
        if size != image.size:
            image = image.resize(size, resample=self.resample)
        pixels = np.asarray(image, dtype=np.float32) * np.float32(self.rescale_factor)
        pixels = (pixels - np.float32(self.mean)) / np.float32(self.std)  # [H, W, 3]
        p = self.patch_size
        rows, cols = pixels.shape[0] // p, pixels.shape[1] // p
        # [H, W, C] -> [rows, p, cols, p, C] -> [rows, cols, p, p, C]: transformers' order
        patches = pixels.reshape(rows, p, cols, p, 3).transpose(0, 2, 1, 3, 4)
        packed = np.zeros((self.max_num_patches + 1, p * p * 3), np.float32)
        packed[: rows * cols] = patches.reshape(rows * cols, -1)
        packed[-1, :2] = rows, cols
        return torch.from_numpy(packed)


def unpack(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, N + 1, D]`` packed -> (pixel_values ``[B, N, D]``, pixel_attention_mask ``[B, N]``,
    spatial_shapes ``[B, 2]``), as ``Siglip2ImageProcessor`` returns them."""
    pixel_values = packed[:, :-1]
    spatial_shapes = packed[:, -1, :2].float().round().long()
    count = spatial_shapes.prod(-1)
    positions = torch.arange(pixel_values.shape[1], device=packed.device)
    mask = (positions[None] < count[:, None]).long()
    return pixel_values, mask, spatial_shapes


def pack(pixel_values: torch.Tensor, spatial_shapes: torch.Tensor) -> torch.Tensor:
    """The inverse of ``unpack`` (the mask follows from the shapes)."""
    grid = torch.zeros(pixel_values.shape[0], 1, pixel_values.shape[2], dtype=pixel_values.dtype)
    grid[:, 0, :2] = spatial_shapes.to(pixel_values.dtype)
    return torch.cat([pixel_values, grid], dim=1)


@functools.cache
def packed_siglip2_class():
    """``Siglip2Model`` whose ``get_image_features`` also takes a packed batch (built on first
    use: importing transformers' model code is slow)."""
    from transformers import Siglip2Model

    class PackedSiglip2(Siglip2Model):
        def get_image_features(self, pixel_values=None, pixel_attention_mask=None,
                               spatial_shapes=None, **kwargs):
            if pixel_attention_mask is None and spatial_shapes is None:
                pixel_values, pixel_attention_mask, spatial_shapes = unpack(pixel_values)
            return super().get_image_features(pixel_values=pixel_values,
                                              pixel_attention_mask=pixel_attention_mask,
                                              spatial_shapes=spatial_shapes, **kwargs)

    return PackedSiglip2
