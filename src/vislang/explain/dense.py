"""Dense saliency: the query against every patch token, in one forward pass.

CLIP is trained to align only the pooled CLS token with text, but the patch tokens of the last
layer live in the same residual stream; the tower's post-layernorm and visual projection bring
them into the joint space (MaskCLIP, Zhou et al. 2022; CLIP Surgery, Li et al. 2023). The last
layer's self-attention mixes global context into every token, which blurs the map; MaskCLIP's
remedy (``values=True``) uses that layer's value embeddings instead: each token keeps its own
content, passed through the value and output projections.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vislang.explain.grid import grid_pixels, to_image, vision_tower


def dense_map(model, image: Image.Image, query: np.ndarray,
              values: bool = True) -> tuple[np.ndarray, dict]:
    """float32 [H, W]: cosine(query, patch) - cosine(query, whole image), upsampled."""
    clip = vision_tower(model)
    vision = clip.vision_model
    pixels, grid = grid_pixels(model, image)
    weight = next(clip.parameters())  # inputs go where the weights are: CPU or a GPU
    with torch.inference_mode():
        out = vision(pixel_values=pixels.to(weight.device, weight.dtype),
                     interpolate_pos_encoding=True,
                     output_hidden_states=True)
        if values:
            last = vision.encoder.layers[-1]
            attention = last.self_attn
            tokens = attention.out_proj(attention.v_proj(last.layer_norm1(out.hidden_states[-2])))
        else:
            tokens = out.last_hidden_state
        patches = clip.visual_projection(vision.post_layernorm(tokens[0, 1:])).float()
        pooled = clip.visual_projection(out.pooler_output).float()[0]
    q = torch.from_numpy(np.asarray(query, dtype=np.float32)).to(weight.device)
    patch_sim = (patches / patches.norm(dim=-1, keepdim=True)) @ q
    s0 = float(pooled @ q / pooled.norm())
    array = to_image(patch_sim - s0, grid, image.height, image.width)
    return array, {"s0": s0, "grid": list(grid), "values": values}
