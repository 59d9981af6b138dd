"""Gradient-weighted attention relevance (Chefer, Gur & Wolf 2021, "Generic
Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers").

Relevance starts as the identity over tokens and, layer by layer, absorbs that layer's
attention weighted by the gradient of the score with respect to it (positive part, mean over
heads): R += mean_h(relu(grad * A)) @ R. The CLS row of R, without CLS itself, says how much
each patch contributed to the similarity. The score is cosine(image, query) with the query
fixed, so only the vision tower is differentiated.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from PIL import Image

from vislang.explain.grid import grid_pixels, to_image, vision_tower


def relevance_map(model, image: Image.Image, query: np.ndarray,
                  start_layer: int = 0) -> tuple[np.ndarray, dict]:
    """float32 [H, W] of non-negative relevance; ``start_layer`` skips the first layers
    (Chefer's CLIP notebook uses only the last one for ViT-B/32; the paper uses all)."""
    clip = vision_tower(model)
    vision = clip.vision_model
    pixels, grid = grid_pixels(model, image)
    weight = next(clip.parameters())  # inputs go where the weights are: CPU or a GPU
    q = torch.from_numpy(np.asarray(query, dtype=np.float32)).to(weight.device)
    with torch.inference_mode(False), torch.enable_grad(), _eager_attention(vision):
        out = vision(pixel_values=pixels.to(weight.device, weight.dtype),
                     interpolate_pos_encoding=True,
                     output_attentions=True)
        features = clip.visual_projection(out.pooler_output).float()[0]
        score = features @ q / features.norm()
        attentions = out.attentions[start_layer:]
        grads = torch.autograd.grad(score, attentions)
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens, device=weight.device)
    for attention, grad in zip(attentions, grads):
        cam = (grad.float() * attention.detach().float())[0].clamp(min=0).mean(dim=0)
        relevance = relevance + cam @ relevance
    array = to_image(relevance[0, 1:], grid, image.height, image.width)
    return array, {"score": float(score.detach()), "grid": list(grid),
                   "start_layer": start_layer}


@contextlib.contextmanager
def _eager_attention(vision):
    """Attention weights exist only in the eager implementation (SDPA fuses them away);
    switch for this pass and restore, so the engine sharing these weights stays fast."""
    config = vision.config
    before = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = before
