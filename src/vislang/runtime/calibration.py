"""What int8 is calibrated on: the user's images if given, else scenes of the generated shapes
world, made ready by a model's own public preprocessing and tokenizer.

Built only when an int8 export is actually made (a cached engine never needs them). The seeds
and counts are part of the export's identity: changing them changes what a quantised engine
computes, so they stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vislang.images import ImageSource, load_image

CLIP_SCENES, CLIP_SEED = 128, 7_000_001
BLIP_SCENES, BLIP_SEED = 64, 7_000_002


def clip_inputs(model, images: Sequence[ImageSource] | None = None,
                count: int = CLIP_SCENES) -> dict[str, list[np.ndarray]]:
    """Per tower, ``[1, ...]`` arrays: pixels from ``model.preprocess``, and token ids from
    ``model.tokenize`` as the text tower runs them (``tower_tokens``): the scenes' captions,
    and a prompt around the first 32 of them."""
    from vislang.datasets.shapes import generate_scenes

    scenes = generate_scenes(count, seed=CLIP_SEED)
    pixels = [_pixels(model, image) for image in list(images or [s.image for s in scenes])[:count]]
    texts = [s.caption for s in scenes] + [f"a photo of {s.caption}." for s in scenes[:32]]
    tokens = [model.tower_tokens(model.tokenize([t], truncate=True)).numpy() for t in texts]
    return {"image": pixels, "text": tokens}


def blip_pixels(model, images: Sequence[ImageSource] | None = None,
                count: int = BLIP_SCENES) -> list[np.ndarray]:
    """``[1, 3, S, S]`` pixel arrays from ``model.preprocess``, for BLIP's vision encoder."""
    from vislang.datasets.shapes import generate_scenes

    images = images or [s.image for s in generate_scenes(count, seed=BLIP_SEED)]
    return [_pixels(model, image) for image in list(images)[:count]]


def _pixels(model, image: ImageSource) -> np.ndarray:
    return model.preprocess(load_image(image, min_side=model.transform.min_side)).numpy()[None]
