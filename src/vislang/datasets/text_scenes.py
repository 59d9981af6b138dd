"""Text scenes: seeded pictures with known words drawn in real fonts, for measuring OCR.

Each scene records what was drawn where (the text, its four corners in image pixels, its size
and angle), so a reader's output can be scored: character error rate against the text, IoU
against the box. The fonts are the DejaVu TTFs that matplotlib (a core dependency) ships, so no
system font package is needed and every machine draws with the same glyphs.

Scene ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])`` alone. Glyph
rasterisation goes through FreeType, whose anti-aliasing may differ by a grey level between
Pillow builds: the scenes are reproducible for measuring, not byte-identical like shapes.

Text height is the font size in pixels (the em square: a 24 px font has capitals about 17 px
tall and a line from ascender to descender about 23 px).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vislang.datasets.shapes import generate_scene

GENERATOR_VERSION = "text-scenes-1"

FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
              "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf")
BACKGROUNDS = ("plain", "gradient", "photo", "shapes")

# Everyday words of the kind found on signs, labels and posters; sentences are drawn from them.
WORDS = (
    "open closed exit entrance sale today only fresh coffee bread market station north south "
    "east west street avenue road park garden museum library school hotel hospital pharmacy "
    "bakery kitchen office police parking ticket platform gate floor room welcome please thank "
    "you push pull stop slow danger caution keep out private public water fire emergency "
    "information city center airport harbour bridge river mountain lake forest beach summer "
    "winter spring autumn monday friday sunday morning evening night price total free new "
    "special offer discount quality service delivery order menu lunch dinner breakfast tea "
    "juice apple orange lemon cheese pizza pasta salad soup chicken green blue red yellow black "
    "white small large happy birthday holiday festival concert theatre cinema gallery music "
    "dance world house home family friends photo camera travel journey adventure vision "
    "language model image search reading"
).split()

_PANEL_COLOURS = ((250, 250, 245), (30, 30, 35), (200, 30, 40), (20, 70, 150), (250, 210, 40),
                  (30, 120, 60))


@dataclass(frozen=True)
class DrawnText:
    """One line of text as drawn: ``box`` holds the corners of its ink box, clockwise from the
    top-left of the text as written (after rotation, in image pixels)."""

    text: str
    box: tuple[tuple[float, float], ...]
    height: int  # font size in pixels
    angle: float  # degrees, counter-clockwise; 180 is upside down
    font: str

    def bounds(self) -> tuple[float, float, float, float]:
        """The axis-aligned box around the corners: x0, y0, x1, y1."""
        xs, ys = zip(*self.box)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass
class TextScene:
    index: int
    image: Image.Image  # RGB
    texts: list[DrawnText]
    background: str


@functools.cache
def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def random_text(rng: np.random.Generator) -> str:
    """A word, a phrase, a short sentence or a number-bearing label."""
    kind = int(rng.integers(4))
    words = [str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 5)))]
    if kind == 0:
        return words[0].capitalize()
    if kind == 1:
        return " ".join(words).upper()
    if kind == 2:
        return " ".join(words).capitalize() + "."
    return f"{words[0].capitalize()} {int(rng.integers(1, 1000))}"


def generate_text_scene(
    seed: int,
    index: int = 0,
    *,
    size: tuple[int, int] = (800, 600),
    n_texts: int | None = None,
    text_height: int | tuple[int, int] = (24, 64),
    angle: float | tuple[float, float] = (-5.0, 5.0),
    background: str | None = None,
    texts: list[str] | None = None,
) -> TextScene:
    """One scene of ``size`` (width, height) with ``n_texts`` lines (None: 1..3; 0: no text).

    ``text_height`` and ``angle``: a value, or a (low, high) range drawn from per line.
    ``background``: one of BACKGROUNDS, None for a random one. ``texts``: the lines to draw
    (default: random words). Lines that find no free place are left out of the scene.
    """
    rng = np.random.default_rng([seed, index])
    kind = background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if kind not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, not {kind!r}")
    image = Image.fromarray(_background(rng, kind, size, seed, index))
    if texts is None:
        count = int(rng.integers(1, 4)) if n_texts is None else n_texts
        texts = [random_text(rng) for _ in range(count)]
    drawn: list[DrawnText] = []
    taken: list[tuple[float, float, float, float]] = []
    for text in texts:
        item = _place_text(rng, image, text, _value(rng, text_height, int),
                           _value(rng, angle, float), taken)
        if item is not None:
            drawn.append(item)
    return TextScene(index, image, drawn, kind)


def generate_text_scenes(n: int, seed: int, *, start: int = 0, **options) -> list[TextScene]:
    """Scenes ``start .. start+n-1`` of ``seed`` (options as generate_text_scene)."""
    return [generate_text_scene(seed, i, **options) for i in range(start, start + n)]


def photo_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """uint8[H, W, 3] looking like an out-of-focus photo: smooth colour blobs at a few scales
    plus sensor grain. Upsampling small random grids keeps it cheap at 1600x1200."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.float32)
    base = rng.uniform(60, 200, 3).astype(np.float32)
    for cells, amplitude in ((3, 70.0), (9, 40.0), (30, 18.0)):
        grid = rng.uniform(-1, 1, (max(2, cells * height // width), cells, 3))
        layer = Image.fromarray(((grid + 1) * 127.5).astype(np.uint8)).resize(
            size, Image.Resampling.BICUBIC)
        pixels += (np.asarray(layer, np.float32) / 127.5 - 1) * amplitude
    pixels += base + rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _background(rng, kind: str, size: tuple[int, int], seed: int, index: int) -> np.ndarray:
    width, height = size
    if kind == "photo":
        return photo_background(rng, size)
    if kind == "shapes":  # a shapes-world scene, drawn large and cut to size
        scene = generate_scene(seed, index, image_size=max(size), background="textured")
        return np.asarray(scene.image)[:height, :width].copy()
    tone = rng.uniform(0, 255, 3)
    if kind == "plain":
        return np.broadcast_to(tone, (height, width, 3)).astype(np.uint8)
    other = rng.uniform(0, 255, 3)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    return np.broadcast_to(tone + (other - tone) * ramp, (height, width, 3)).astype(np.uint8)


def _value(rng: np.random.Generator, spec, kind):
    if isinstance(spec, tuple):
        low, high = spec
        return kind(rng.integers(low, high + 1)) if kind is int else float(rng.uniform(low, high))
    return kind(spec)


def _place_text(rng, image: Image.Image, text: str, height: int, angle: float,
                taken: list) -> DrawnText | None:
    font_name = FONT_FILES[int(rng.integers(len(FONT_FILES)))]
    mask, ink = _render(text, _font(font_name, height))
    margin = height // 2  # room for a sign panel around the ink
    rotated = mask.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    width, tall = rotated.size
    for _ in range(50):
        x = int(rng.integers(0, max(1, image.width - width)))
        y = int(rng.integers(0, max(1, image.height - tall)))
        spot = (x - margin, y - margin, x + width + margin, y + tall + margin)
        if width <= image.width and tall <= image.height and not any(
                _overlap(spot, other) for other in taken):
            break
    else:
        return None
    taken.append(spot)
    corners = _rotated_corners(ink, mask.size, angle, rotated.size, (x, y))
    colour = _text_colour(rng, image, (x, y, x + width, y + tall), corners, margin)
    image.paste(Image.new("RGB", rotated.size, colour), (x, y), rotated)
    return DrawnText(text, corners, height, angle, font_name)


def _render(text: str, font: ImageFont.FreeTypeFont) -> tuple[Image.Image, tuple]:
    """The text as an L mask with padding, and its ink box (x0, y0, x1, y1) in the mask."""
    left, top, right, bottom = font.getbbox(text)
    pad = font.size // 4
    mask = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(mask).text((pad - left, pad - top), text, font=font, fill=255)
    ys, xs = np.nonzero(np.asarray(mask) > 64)
    return mask, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def _rotated_corners(ink, mask_size, angle, rotated_size, offset) -> tuple:
    """Where the ink box's corners land after PIL's rotate(angle, expand=True) and the paste:
    PIL turns counter-clockwise about the centre, then recentres on the grown canvas."""
    x0, y0, x1, y1 = ink
    cx, cy = mask_size[0] / 2, mask_size[1] / 2
    nx, ny = rotated_size[0] / 2, rotated_size[1] / 2
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = []
    for px, py in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)):
        dx, dy = px - cx, py - cy
        # y grows downwards, so counter-clockwise on screen is this sign pattern
        rx, ry = dx * cos + dy * sin, -dx * sin + dy * cos
        x, y = float(rx + nx + offset[0]), float(ry + ny + offset[1])
        corners.append((round(x, 1), round(y, 1)))
    return tuple(corners)


def _text_colour(rng, image: Image.Image, spot, corners, margin) -> tuple[int, int, int]:
    """Half the lines sit on a sign panel; the text colour always contrasts with what is
    under it, as on real signs (the test is reading, not finding camouflaged text)."""
    if rng.random() < 0.5:
        panel = _PANEL_COLOURS[int(rng.integers(len(_PANEL_COLOURS)))]
        xs, ys = zip(*corners)
        box = (min(xs) - margin // 2, min(ys) - margin // 2, max(xs) + margin // 2,
               max(ys) + margin // 2)
        ImageDraw.Draw(image).rounded_rectangle(box, radius=margin // 3, fill=panel)
        under = np.array(panel, np.float32)
    else:
        under = np.asarray(image.crop(spot), np.float32).reshape(-1, 3).mean(0)
    light = under @ np.array([0.299, 0.587, 0.114]) > 128
    hue = rng.uniform(0, 60, 3)
    return tuple(int(v) for v in (hue if light else 255 - hue))


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
