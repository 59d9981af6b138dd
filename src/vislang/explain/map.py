"""``SaliencyMap``: the result every saliency method returns, and how it leaves the process.

The map stays a plain float32 array in the input image's own pixels (H x W), so a caller can
threshold it, compare methods, or save it with numpy; drawing is a view on it, not part of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class SaliencyMap:
    """Where in ``image`` the query matches: larger values match better.

    ``array`` is float32 with the image's height and width. For ``crops`` and ``dense`` the
    sign means something (above / below the whole image's similarity to the query); for
    ``relevance`` the values are non-negative relevance scores.
    """

    array: np.ndarray
    image: Image.Image
    query: str
    method: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array, dtype=np.float32)
        if self.array.shape != (self.image.height, self.image.width):
            raise ValueError(f"map shape {self.array.shape} is not the image's "
                             f"{(self.image.height, self.image.width)}")

    @property
    def argmax(self) -> tuple[int, int]:
        """(x, y) of the best-matching pixel: the map's pointing answer."""
        y, x = np.unravel_index(int(np.argmax(self.array)), self.array.shape)
        return int(x), int(y)

    def stats(self) -> dict:
        """min, max and argmax as plain numbers, for JSON and logs."""
        x, y = self.argmax
        return {"min": float(self.array.min()), "max": float(self.array.max()),
                "argmax": {"x": x, "y": y}}

    def overlay(self, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
        """The image with the map drawn over it (jet colours, centred at 0), same size."""
        from vislang.explain.render import overlay

        return overlay(self.image, self.array, alpha=alpha, cmap=cmap)

    def save(self, path: str | os.PathLike, dpi: int = 150) -> Path:
        """Write ``.npy`` (the raw array) or a figure (``.png`` etc.) as the seed notebook drew
        it: the overlay at alpha 0.5, a colour bar and the query as the title."""
        path = Path(path)
        if path.suffix.lower() == ".npy":
            np.save(path, self.array)
        else:
            from vislang.explain.render import save_figure

            save_figure(path, self.image, self.array, f'Query: "{self.query}"', dpi=dpi)
        return path
