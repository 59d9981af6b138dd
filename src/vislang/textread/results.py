"""What reading an image gives: its lines of text, each with a confidence and a box."""

from __future__ import annotations

from dataclasses import dataclass, field

Point = tuple[float, float]


@dataclass(frozen=True)
class OcrLine:
    """One line of text. ``box``: its four corners in the original image's pixels, clockwise
    from the top-left one as the image stands (a slanted line has a slanted box; for a line
    read upside down the first corner is still the top-left on screen)."""

    text: str
    confidence: float  # the recogniser's mean character probability, 0..1
    box: tuple[Point, Point, Point, Point]

    def bounds(self) -> tuple[float, float, float, float]:
        """The axis-aligned box around the corners: x0, y0, x1, y1."""
        xs, ys = zip(*self.box)
        return min(xs), min(ys), max(xs), max(ys)

    def as_dict(self) -> dict:
        return {"text": self.text, "confidence": round(self.confidence, 4),
                "box": [[round(x, 1), round(y, 1)] for x, y in self.box]}


@dataclass(frozen=True)
class OcrResult:
    """The text found in one image, lines in reading order (top to bottom, left to right).

    An image without text has no lines; an image that could not be read has none either and
    says why in ``skipped``.
    """

    source: str  # the path, or "<bytes>" / "<PIL image>"
    lines: list[OcrLine] = field(default_factory=list)
    skipped: str | None = None
    size: tuple[int, int] | None = None  # width, height of the image as read

    @property
    def text(self) -> str:
        """All lines, one per line of the string."""
        return "\n".join(line.text for line in self.lines)

    def as_dict(self) -> dict:
        record = {"path": self.source, "lines": [line.as_dict() for line in self.lines]}
        if self.size:
            record["width"], record["height"] = self.size
        if self.skipped:
            record["skipped"] = self.skipped
        return record
