"""Tiny CLIP and SigLIP checkpoints in save_pretrained layout.

Tests, the offline demo and ``vislang train --config tiny`` start from these. They load through
the same ``vislang.load(path)`` as a real checkpoint; untrained, their weights are random.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vislang.models.tokenizer import clip_tokenizer

CLIP_VOCAB_SIZE = 49408


def tiny_clip(path: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer CLIP with OpenAI's real BPE vocabulary and processor settings."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                         eos_token_id=49407, bos_token_id=49406, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=image_size, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    clip_tokenizer().save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


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
    return path
