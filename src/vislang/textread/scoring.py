"""Scoring a reader against text whose place is known: character error rate and box overlap.

Used by bench/ocr_quality.py and the tests with the scenes of vislang.datasets.text_scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Box = Sequence[tuple[float, float]]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of characters."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def normalise(text: str) -> str:
    """Runs of white space as one space: how far apart words are drawn is not text."""
    return " ".join(text.split())


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two quadrilaterals (corner lists)."""
    from shapely.geometry import Polygon

    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union else 0.0


@dataclass
class Score:
    errors: int = 0  # character edits, plus every character of lines matching no drawn text
    chars: int = 0  # characters of the drawn text
    texts: int = 0
    exact: int = 0  # drawn texts read exactly (after normalise)

    @property
    def cer(self) -> float:
        return self.errors / self.chars if self.chars else 0.0

    def add(self, other: Score) -> None:
        self.errors += other.errors
        self.chars += other.chars
        self.texts += other.texts
        self.exact += other.exact


def score_scene(drawn, lines) -> Score:
    """Match each read line to the drawn text whose box holds the line's centre, join the
    lines of one text in reading direction, and count edits against the drawn text. A line
    matching nothing counts all its characters as errors (text read where there is none)."""
    from shapely.geometry import Point, Polygon

    score = Score()
    areas = [Polygon(d.box).buffer(d.height * 0.5) for d in drawn]
    matched: list[list] = [[] for _ in drawn]
    for line in lines:
        cx = sum(x for x, _ in line.box) / 4
        cy = sum(y for _, y in line.box) / 4
        hit = next((i for i, area in enumerate(areas) if area.contains(Point(cx, cy))), None)
        if hit is None:
            score.errors += len(normalise(line.text))
        else:
            matched[hit].append((cx, cy, line.text))
    for d, found in zip(drawn, matched):
        dx, dy = _direction(d.box)
        found.sort(key=lambda f: f[0] * dx + f[1] * dy)
        truth, read = normalise(d.text), normalise(" ".join(f[2] for f in found))
        score.errors += edit_distance(truth, read)
        score.chars += len(truth)
        score.texts += 1
        score.exact += truth == read
    return score


def _direction(box: Box) -> tuple[float, float]:
    """Unit vector along the text's baseline, from its first corner to its second."""
    (x0, y0), (x1, y1) = box[0], box[1]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    return (x1 - x0) / length, (y1 - y0) / length
