"""Small CLIP and SigLIP architectures, written as checkpoints in save_pretrained layout.

Tests, the offline demo and ``vislang train --config NAME`` start from these. They load through
the same ``vislang.load(path)`` as a real checkpoint. All use OpenAI's real BPE vocabulary, so
``vislang.tokenize`` output works with them as with any CLIP.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vislang.errors import InputError
from vislang.models.tokenizer import clip_tokenizer

CLIP_VOCAB_SIZE = 49408

# name -> (text tower, vision tower, projection dim). Plain data, like a config file.
CLIP_CONFIGS: dict[str, dict] = {
    # For tests: a few hundred kilobytes of layers (the 49408-token embedding dominates).
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16,
    ),
    # The shipped shapes-clip: 64-pixel images as an 8x8 grid of patches.
    "small": dict(
        text=dict(hidden_size=96, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
        vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, image_size=64, patch_size=8),
        projection_dim=64,
    ),
}


def tiny_clip(path: Path, *, config: str = "tiny", image_size: int | None = None,
              seed: int = 0) -> Path:
    """Write a randomly initialised CLIP of the named size, with tokenizer and processor."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    if config not in CLIP_CONFIGS:
        raise InputError(f"unknown model config {config!r}; choose one of: {', '.join(CLIP_CONFIGS)}")
    spec = CLIP_CONFIGS[config]
    vision = {**spec["vision"], **({"image_size": image_size} if image_size else {})}
    torch.manual_seed(seed)
    hf_config = CLIPConfig(
        text_config=dict(vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=77,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=1, **spec["text"]),
        vision_config=vision,
        projection_dim=spec["projection_dim"],
    )
    CLIPModel(hf_config).save_pretrained(path)
    clip_tokenizer().save_pretrained(path)
    side = vision["image_size"]
    CLIPImageProcessorPil(size={"shortest_edge": side},
                          crop_size={"height": side, "width": side}).save_pretrained(path)
    return Path(path)


def tiny_siglip(path: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer SigLIP: fixed-size resize, no crop, [-1, 1] pixels, padded fixed-length text."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=image_size, patch_size=8),
    )
    SiglipModel(config).save_pretrained(path)
    clip_tokenizer().save_pretrained(path)
    SiglipImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return Path(path)
