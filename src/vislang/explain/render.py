"""Drawing a saliency map: the overlay image and the seed notebook's figure.

matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``: no global figure state,
no GUI backend chosen on import, safe from worker threads and a web server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def norm_for(array: np.ndarray):
    """Diverging normalisation centred at 0 (the seed's ``TwoSlopeNorm``) when the map has
    both signs; a plain min..max scale when it has one sign only (TwoSlopeNorm needs both)."""
    from matplotlib import colors

    low, high = float(array.min()), float(array.max())
    if low < 0 < high:
        return colors.TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high)
    if low == high:
        high = low + 1e-12
    return colors.Normalize(vmin=low, vmax=high)


def overlay(image: Image.Image, array: np.ndarray, alpha: float = 0.5,
            cmap: str = "jet") -> Image.Image:
    """Blend the colour-mapped ``array`` over ``image``: what imshow(alpha=0.5) shows."""
    from matplotlib import colormaps

    colours = colormaps[cmap](norm_for(array)(array))[..., :3]
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    mixed = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.clip(mixed * 255.0 + 0.5, 0, 255).astype(np.uint8))


def save_figure(path: Path, image: Image.Image, array: np.ndarray, title: str,
                dpi: int = 150, cmap: str = "jet") -> None:
    """The seed's ``plot_saliency_map`` with a colour bar, written to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.imshow(np.asarray(image.convert("RGB")))
    shown = axes.imshow(array, norm=norm_for(array), cmap=cmap, alpha=0.5)
    figure.colorbar(shown, ax=axes, location="bottom")
    axes.set_title(title)
    axes.axis("off")
    figure.savefig(path, bbox_inches="tight")
