"""Language-visual saliency: where in an image does a phrase (or a second image) match?

    >>> m = vislang.saliency(model, "street.jpg", "a red car", method="dense")
    >>> m.array.shape, m.argmax          # float32 [H, W] of the input image; (x, y)
    >>> m.save("car.png")                # the overlay with a colour bar, as the seed drew it

Three methods, from slow-but-model-agnostic to one pass:

- ``crops``: the seed notebook's random crops, exact under a seed, batched (any engine,
  CLIP or SigLIP); options ``normalize`` (divide by crop coverage), ``sampler="stratified"``
  and ``contrast`` (subtract the empty text's similarity, see ``query.py``).
- ``dense``: per-patch similarity in the joint space, MaskCLIP style (one forward pass).
- ``relevance``: Chefer et al.'s gradient-weighted attention relevance (one forward and
  one backward pass; torch weights).
"""

from __future__ import annotations

import numpy as np

from vislang.errors import InputError
from vislang.explain.map import SaliencyMap
from vislang.explain.query import Query, describe, query_vector
from vislang.images import ImageSource, load_image

METHODS = ("crops", "dense", "relevance")

__all__ = ["METHODS", "SaliencyMap", "saliency"]


def saliency(model, image: ImageSource, query: Query, method: str = "crops", *,
             n_iters: int = 300, min_crop: int = 50, seed: int | None = None,
             normalize: bool = False, sampler: str = "random", batch_size: int = 32,
             contrast: bool | None = None, values: bool = True, start_layer: int = 0,
             progress: bool = False) -> SaliencyMap:
    """A ``SaliencyMap`` of ``image`` for ``query`` (text ``str``; or an image as a path
    object, bytes or PIL image) under ``model`` (a ``ClipModel``).

    crops: ``n_iters``, ``min_crop``, ``seed``, ``normalize``, ``sampler``, ``batch_size``,
    ``progress`` (a bar on stderr); the map's ``info`` holds ``s0``, the ``crops`` (x, y, size
    rows) and each crop's score minus s0 (``info["values"]``). dense: ``values`` (MaskCLIP's
    value-embedding trick).
    relevance: ``start_layer``. ``contrast``: score cos(region, query) - cos(region, "")
    (CLIP Surgery); default on for dense and relevance, off for crops (the seed's numbers).
    """
    if method not in METHODS:
        raise InputError(f"unknown saliency method {method!r}; choose {', '.join(METHODS)}")
    picture = load_image(image)
    if contrast is None:
        contrast = method != "crops"
    vector = query_vector(model, query, contrast)
    if method == "crops":
        from vislang.explain.crops import crop_map, model_scorer

        array, info = crop_map(np.asarray(picture), model_scorer(model, vector),
                               n_iters=n_iters, min_crop=min_crop, seed=seed, sampler=sampler,
                               normalize=normalize, batch_size=batch_size, progress=progress)
        info = {"s0": info["s0"], "crops": info["crops"], "values": info["values"],
                "n_iters": n_iters, "min_crop": min_crop, "seed": seed,
                "sampler": sampler, "normalize": normalize, "contrast": contrast}
    elif method == "dense":
        from vislang.explain.dense import dense_map

        array, info = dense_map(model, picture, vector, values=values)
        info["contrast"] = contrast
    else:
        from vislang.explain.relevance import relevance_map

        array, info = relevance_map(model, picture, vector, start_layer=start_layer)
        info["contrast"] = contrast
    return SaliencyMap(array, picture, describe(query), method, info)
