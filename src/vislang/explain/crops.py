"""The seed notebook's random-crops saliency, exact and fast.

s0 = similarity(query, whole image); for each crop, similarity(query, crop) - s0 is added to
every pixel of the crop. Exactness: the crops are drawn with ``RandomState(seed).randint`` in
the seed's order (size, x, y), so ``np.random.seed(seed)`` + the seed's loop picks the same
crops. Speed: the query is encoded once, crops are cut from one decoded image and scored in
batches, and the map is built from the values at the end with summed-area tables instead of
n_iters slice additions.

The scorer is injectable -- ``score(list of uint8 HxWx3 arrays) -> similarities`` -- so the
algorithm is tested against the seed with an analytic stand-in for CLIP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from vislang.errors import InputError
from vislang.parallel import ordered_map
from vislang.progress import progress_bar

Scorer = Callable[[Sequence[np.ndarray]], np.ndarray]
SAMPLERS = ("random", "stratified")


def random_crops(height: int, width: int, n: int, min_crop: int,
                 seed: int | None = None) -> np.ndarray:
    """``int[n, 3]`` rows of (x, y, size), drawn exactly as the seed's
    ``get_random_crop_params``: size uniform in [min_crop, min(H, W)), then x, then y."""
    check_crop_size(height, width, min_crop)
    rng = np.random.RandomState(seed)
    rows = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        size = rng.randint(min_crop, min(height, width))
        rows[i] = rng.randint(width - size + 1), rng.randint(height - size + 1), size
    return rows


def stratified_crops(height: int, width: int, n: int, min_crop: int,
                     seed: int | None = None) -> np.ndarray:
    """Like ``random_crops``, but positions are jittered over a k x k grid of cells (k =
    ceil(sqrt(n))), each cell used at most once: no clumps and no gaps, so fewer crops give
    an even map."""
    check_crop_size(height, width, min_crop)
    rng = np.random.RandomState(seed)
    sizes = rng.randint(min_crop, min(height, width), size=n)
    k = math.ceil(math.sqrt(n))
    cells = rng.permutation(k * k)[:n]
    u = (cells % k + rng.random_sample(n)) / k  # fraction of the free span, per axis
    v = (cells // k + rng.random_sample(n)) / k
    xs = np.floor(u * (width - sizes + 1)).astype(np.int64)
    ys = np.floor(v * (height - sizes + 1)).astype(np.int64)
    return np.stack([xs, ys, sizes], axis=1)


def check_crop_size(height: int, width: int, min_crop: int) -> None:
    if min_crop < 1 or min_crop >= min(height, width):
        raise InputError(f"--min-crop must be between 1 and {min(height, width) - 1} for a "
                         f"{width}x{height} image, got {min_crop}")


def accumulate(height: int, width: int, crops: np.ndarray,
               values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of values, number of crops) at each pixel, float64 [H, W].

    Each crop adds its value at four corners of a difference table; two cumulative sums
    turn that into the per-pixel sums, O(n + H*W) instead of O(n * crop area).
    """
    def paint(weights: np.ndarray) -> np.ndarray:
        table = np.zeros((height + 1, width + 1), dtype=np.float64)
        x, y, s = crops[:, 0], crops[:, 1], crops[:, 2]
        np.add.at(table, (y, x), weights)
        np.add.at(table, (y, x + s), -weights)
        np.add.at(table, (y + s, x), -weights)
        np.add.at(table, (y + s, x + s), weights)
        return table.cumsum(axis=0).cumsum(axis=1)[:height, :width]

    return paint(np.asarray(values, dtype=np.float64)), paint(np.ones(len(crops)))


def crop_map(pixels: np.ndarray, score: Scorer, *, n_iters: int = 300, min_crop: int = 50,
             seed: int | None = None, sampler: str = "random", normalize: bool = False,
             batch_size: int = 32, progress: bool = False) -> tuple[np.ndarray, dict]:
    """The crops map of ``pixels`` (uint8 [H, W, 3]) under ``score``: float64 [H, W] and info.

    ``normalize``: divide each pixel's sum by how many crops covered it (pixels no crop
    touched get 0); the seed's plain sum grows towards the centre, which more crops cover.
    """
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; choose {' or '.join(SAMPLERS)}")
    if n_iters < 1:
        raise InputError(f"--n-iters must be at least 1, got {n_iters}")
    height, width = pixels.shape[:2]
    draw = random_crops if sampler == "random" else stratified_crops
    crops = draw(height, width, n_iters, min_crop, seed)
    s0 = float(np.asarray(score([pixels]), dtype=np.float64)[0])
    values = np.empty(n_iters, dtype=np.float64)
    with progress_bar(n_iters, "saliency crops", unit="crops", enabled=progress) as advance:
        for start in range(0, n_iters, batch_size):
            rows = crops[start:start + batch_size]
            batch = [pixels[y:y + s, x:x + s] for x, y, s in rows]
            values[start:start + len(rows)] = np.asarray(score(batch), dtype=np.float64) - s0
            advance(len(rows))
    total, coverage = accumulate(height, width, crops, values)
    if normalize:
        total = np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 0)
    return total, {"s0": s0, "crops": crops, "values": values}


def model_scorer(model, query: np.ndarray) -> Scorer:
    """Cosine similarity of each crop to the unit ``query``, through ``model``'s engine: the
    checkpoint's own preprocessing per crop (in worker threads), one engine call per batch."""
    query_t = torch.from_numpy(np.asarray(query, dtype=np.float32))

    def prepare(crop: np.ndarray) -> torch.Tensor:
        return model.preprocess(Image.fromarray(np.ascontiguousarray(crop)))

    def score(crops: Sequence[np.ndarray]) -> np.ndarray:
        batch = torch.stack(list(ordered_map(prepare, crops, ahead=len(crops))))
        with torch.inference_mode():
            features = model.encode_image(batch).float()
        features = features / features.norm(dim=-1, keepdim=True)
        return (features @ query_t).numpy()

    return score
