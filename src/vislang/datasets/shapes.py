"""Shapes world: a seeded generator of synthetic scenes for training and testing tiny
vision-language models (CLIP, BLIP) offline.

A scene is a small RGB picture of a few coloured shapes on a light background, with a caption
and question/answer pairs computed from the objects it contains.

Determinism: scene ``i`` of seed ``s`` is drawn from ``numpy.random.default_rng([s, i])`` alone,
so it does not depend on how many scenes were generated before it; drawing uses integer pixel
coordinates and PIL's non-antialiased primitives (no fonts), so a seed gives byte-identical
pixels on every machine. Change ``GENERATOR_VERSION`` whenever the output for a seed changes.

Conventions:

- captions list the objects grouped by (colour, shape) in canonical order: the order of
  ``SHAPES``, then the order of ``COLOURS``, e.g. "two red circles, a blue square and a green
  triangle"; counts are words;
- question text uses American "color"; answers are single lowercase words; the vocabulary
  itself (names here, QA kinds, JSON keys) spells it "colour".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw

GENERATOR_VERSION = "shapes-1"

SHAPES = ("circle", "square", "triangle")
# Saturated colours, each with a channel <= 60, so they never coincide with a background pixel
# (every background channel stays >= 170): a pixel's colour alone tells object from background.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 40),
}
SIZES = ("small", "large")
# Side of an object's (square) box as a percentage range of the image side. Even "small" is a
# quarter of the side, so a triangle is still a triangle at 64 px.
SIZE_RANGES = {"small": (25, 32), "large": (36, 45)}

BACKGROUNDS = ("plain", "gradient", "noise", "stripes", "checker")
TEXTURED = BACKGROUNDS[1:]
# Light, low-saturation tones (greys, beige, pastels): no confusion with the object colours.
BACKGROUND_TONES = (
    (236, 236, 236),
    (245, 240, 224),
    (224, 234, 244),
    (232, 244, 232),
    (246, 232, 238),
)
TEXTURE_DEPTH = 20  # the second tone of a texture is this much darker: visible, low contrast
NOISE_AMPLITUDE = 12

GAP = 2  # minimum free pixels between two objects, so they never touch
BORDER = 1  # minimum free pixels between an object and the image edge
MIN_IMAGE_SIZE = 24
MAX_RANDOM_OBJECTS = 3  # n_objects=None draws 1..3
_LAYOUT_ATTEMPTS = 200
_PLACEMENT_TRIES = 50

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CLASS_NAMES = [f"{colour} {shape}" for shape in SHAPES for colour in COLOURS]
QA_KINDS = ("colour", "count", "presence", "position", "shape")
IMAGE_FORMATS = ("png", "jpg")

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str  # "small" or "large"
    box: Box  # x0, y0, x1, y1 in pixels; x1 and y1 exclusive
    center: tuple[int, int]  # integer centre of the box

    @property
    def rgb(self) -> tuple[int, int, int]:
        return COLOURS[self.colour]


@dataclass(frozen=True)
class QA:
    question: str
    answer: str  # one lowercase word
    kind: str  # one of QA_KINDS


@dataclass
class Scene:
    index: int
    image: Image.Image  # RGB, image_size x image_size
    objects: list[ShapeObject]
    caption: str
    qa: list[QA]
    background: str  # one of BACKGROUNDS


def class_name(obj: ShapeObject) -> str:
    """The zero-shot class of a one-object scene, e.g. "red circle"."""
    return f"{obj.colour} {obj.shape}"


def class_folder(name: str) -> str:
    """ImageFolder directory for a class name; the folder reader turns '_' back into ' '."""
    return name.replace(" ", "_")


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


# --- scenes ------------------------------------------------------------------------------


def generate_scene(
    rng_or_seed: int | np.random.Generator,
    index: int = 0,
    *,
    image_size: int = 64,
    n_objects: int | None = None,
    background: str | None = None,
) -> Scene:
    """One scene. With an integer seed the scene is drawn from ``default_rng([seed, index])``.

    ``background``: None (plain half the time, else a random texture), "textured" (a random
    texture), or one of ``BACKGROUNDS``.
    """
    rng = _scene_rng(rng_or_seed, index)
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    if n_objects is not None and n_objects < 1:
        raise ValueError(f"n_objects must be at least 1, got {n_objects}")
    kind = _pick_background(rng, background)
    n = int(rng.integers(1, MAX_RANDOM_OBJECTS + 1)) if n_objects is None else n_objects
    objects = [_make_object(rng, size, box) for size, box in _layout(rng, n, image_size)]
    image = Image.fromarray(_background(rng, kind, image_size))
    draw = ImageDraw.Draw(image)
    for obj in objects:
        _draw(draw, obj)
    qa = questions_for(objects, rng, image_size)
    return Scene(index, image, objects, caption_for(objects), qa, kind)


def iter_scenes(n: int, seed: int, *, start: int = 0, **options) -> Iterator[Scene]:
    """Scenes ``start .. start+n-1`` of ``seed``, one at a time (options as generate_scene)."""
    for index in range(start, start + n):
        yield generate_scene(seed, index, **options)


def generate_scenes(
    n: int,
    seed: int,
    *,
    image_size: int = 64,
    n_objects: int | None = None,
    background: str | None = None,
    start: int = 0,
) -> list[Scene]:
    """Scenes ``start .. start+n-1`` of ``seed``; scene i is the same for any n."""
    options = dict(image_size=image_size, n_objects=n_objects, background=background)
    return list(iter_scenes(n, seed, start=start, **options))


def _scene_rng(rng_or_seed, index: int) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool):
        if rng_or_seed < 0 or index < 0:
            raise ValueError(f"seed and index must be >= 0, got {rng_or_seed} and {index}")
        return np.random.default_rng([int(rng_or_seed), int(index)])
    raise TypeError(f"expected an int seed or numpy Generator, got {type(rng_or_seed).__name__}")


def _pick(rng: np.random.Generator, options):
    # Index with a drawn integer instead of rng.choice, which would hand back numpy scalars.
    return options[int(rng.integers(len(options)))]


def _pick_background(rng: np.random.Generator, background: str | None) -> str:
    if background is None:
        # Half plain, half textured, so both kinds are well represented.
        return "plain" if rng.integers(2) == 0 else _pick(rng, TEXTURED)
    if background == "textured":
        return _pick(rng, TEXTURED)
    if background not in BACKGROUNDS:
        expected = f"None, 'textured' or one of {BACKGROUNDS}"
        raise ValueError(f"background must be {expected}, got {background!r}")
    return background


# --- layout and drawing ------------------------------------------------------------------


def _layout(rng: np.random.Generator, n: int, image_size: int) -> list[tuple[str, Box]]:
    """Sizes and non-overlapping boxes for n objects, by rejection sampling."""
    for attempt in range(_LAYOUT_ATTEMPTS):
        # Crowded scenes that keep failing get all-small objects rather than an error.
        shrink = attempt >= _LAYOUT_ATTEMPTS // 2
        sizes = ["small" if shrink else _pick(rng, SIZES) for _ in range(n)]
        boxes: list[Box] = []
        for size in sizes:
            box = _place(rng, size, boxes, image_size)
            if box is None:
                break
            boxes.append(box)
        else:
            return list(zip(sizes, boxes))
    raise ValueError(f"cannot fit {n} objects into a {image_size}px image")


def _place(rng: np.random.Generator, size: str, boxes: list[Box], image_size: int) -> Box | None:
    low, high = SIZE_RANGES[size]
    side = int(rng.integers(image_size * low // 100, image_size * high // 100 + 1))
    for _ in range(_PLACEMENT_TRIES):
        x0 = int(rng.integers(BORDER, image_size - BORDER - side + 1))
        y0 = int(rng.integers(BORDER, image_size - BORDER - side + 1))
        box = (x0, y0, x0 + side, y0 + side)
        if all(_apart(box, other) for other in boxes):
            return box
    return None


def _apart(a: Box, b: Box) -> bool:
    """At least GAP free pixels between the boxes, horizontally or vertically."""
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]


def _make_object(rng: np.random.Generator, size: str, box: Box) -> ShapeObject:
    shape, colour = _pick(rng, SHAPES), _pick(rng, tuple(COLOURS))
    center = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    return ShapeObject(shape, colour, size, box, center)


def _background(rng: np.random.Generator, kind: str, image_size: int) -> np.ndarray:
    """uint8[H, W, 3]; all integer arithmetic so every platform gets the same bytes."""
    tone = np.array(_pick(rng, BACKGROUND_TONES), dtype=np.int32)
    dark = tone - TEXTURE_DEPTH
    ys, xs = np.mgrid[0:image_size, 0:image_size]
    if kind == "plain":
        pixels = np.broadcast_to(tone, (image_size, image_size, 3))
    elif kind == "gradient":
        ramp = xs if rng.integers(2) == 0 else ys
        pixels = tone - (TEXTURE_DEPTH * ramp[..., None]) // (image_size - 1)
    elif kind == "noise":
        grain = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, (image_size, image_size, 1))
        pixels = tone + grain  # grey grain: the same offset on all three channels
    elif kind == "stripes":
        period = int(rng.integers(6, 11))
        coord = _pick(rng, (xs, ys, xs + ys))  # vertical, horizontal or diagonal
        pixels = np.where((coord % period < period // 2)[..., None], dark, tone)
    else:  # checker
        cell = int(rng.integers(5, 10))
        pixels = np.where((((xs // cell) + (ys // cell)) % 2 == 1)[..., None], dark, tone)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _draw(draw: ImageDraw.ImageDraw, obj: ShapeObject) -> None:
    x0, y0, x1, y1 = obj.box
    right, bottom = x1 - 1, y1 - 1  # PIL's shapes include their far edge; our boxes exclude it
    if obj.shape == "circle":
        draw.ellipse((x0, y0, right, bottom), fill=obj.rgb)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, right, bottom), fill=obj.rgb)
    else:  # upright isosceles triangle filling the box
        draw.polygon([(x0, bottom), (right, bottom), ((x0 + right) // 2, y0)], fill=obj.rgb)


# --- language ----------------------------------------------------------------------------


def _canonical(shape: str, colour: str) -> tuple[int, int]:
    return SHAPES.index(shape), list(COLOURS).index(colour)


def caption_for(objects: Iterable[ShapeObject]) -> str:
    """E.g. "two red circles, a blue square and a green triangle" (order: shape, then colour)."""
    counts = Counter((obj.shape, obj.colour) for obj in objects)
    if not counts:
        raise ValueError("a caption needs at least one object")
    groups = sorted(counts, key=lambda key: _canonical(*key))
    phrases = [_phrase(counts[shape, colour], shape, colour) for shape, colour in groups]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


_COUNT_WORDS = {w: i for i, w in enumerate(NUMBER_WORDS)} | {"a": 1, "an": 1}


def objects_named(caption: str) -> Counter:
    """Colour+shape mentions with their counts: "two red circles and a blue square" ->
    {(red, circle): 2, (blue, square): 1}. Unparseable text gives an entry that never matches."""
    words = re.findall(r"[a-z]+", caption.lower())
    named: Counter = Counter()
    i = 0
    while i < len(words):
        if words[i] in ("and",):
            i += 1
            continue
        if (i + 2 < len(words) and words[i] in _COUNT_WORDS and words[i + 1] in COLOURS
                and words[i + 2].rstrip("s") in SHAPES):
            named[words[i + 1], words[i + 2].rstrip("s")] += _COUNT_WORDS[words[i]]
            i += 3
        else:
            named["?", words[i]] += 1
            i += 1
    return named


def _phrase(count: int, shape: str, colour: str) -> str:
    return f"a {colour} {shape}" if count == 1 else f"{number_word(count)} {colour} {shape}s"


def questions_for(
    objects: list[ShapeObject], rng: np.random.Generator, image_size: int
) -> list[QA]:
    """Question/answer pairs, in this order: colour, shape, count, presence, position.

    The rng only picks which combination the two presence questions ask about.
    """
    return [
        *_colour_questions(objects),
        *_shape_questions(objects),
        *_count_questions(objects),
        *_presence_questions(objects, rng),
        *_position_questions(objects, image_size),
    ]


def _colour_questions(objects: list[ShapeObject]) -> list[QA]:
    # Only for a shape that occurs once: "the circle" must name one object.
    shapes = Counter(obj.shape for obj in objects)
    return [
        QA(f"what color is the {obj.shape}?", obj.colour, "colour")
        for shape in SHAPES
        for obj in objects
        if obj.shape == shape and shapes[shape] == 1
    ]


def _shape_questions(objects: list[ShapeObject]) -> list[QA]:
    colours = Counter(obj.colour for obj in objects)
    return [
        QA(f"what shape is the {obj.colour} object?", obj.shape, "shape")
        for colour in COLOURS
        for obj in objects
        if obj.colour == colour and colours[colour] == 1
    ]


def _count_questions(objects: list[ShapeObject]) -> list[QA]:
    # Every shape is asked about, so absent shapes give "zero" answers.
    shapes = Counter(obj.shape for obj in objects)
    return [
        QA(f"how many {shape}s are there?", number_word(shapes[shape]), "count")
        for shape in SHAPES
    ]


def _presence_questions(objects: list[ShapeObject], rng: np.random.Generator) -> list[QA]:
    # One "yes" and one "no" per scene keeps the answers exactly balanced.
    combos = [(shape, colour) for shape in SHAPES for colour in COLOURS]
    present = {(obj.shape, obj.colour) for obj in objects}
    yes = [combo for combo in combos if combo in present]
    no = [combo for combo in combos if combo not in present]
    qa = []
    for choices, answer in ((yes, "yes"), (no, "no")):
        if choices:
            shape, colour = _pick(rng, choices)
            qa.append(QA(f"is there a {colour} {shape}?", answer, "presence"))
    return qa


def _position_questions(objects: list[ShapeObject], image_size: int) -> list[QA]:
    """Sides of the image for objects wholly in one half; relations for separated pairs.

    Only objects that "the <colour> <shape>" names uniquely are asked about, and only where the
    answer is unambiguous (boxes entirely on one side), so every answer can be read off boxes.
    """
    names = Counter((obj.shape, obj.colour) for obj in objects)
    unique = sorted(
        (obj for obj in objects if names[obj.shape, obj.colour] == 1),
        key=lambda obj: _canonical(obj.shape, obj.colour),
    )
    half = image_size // 2
    qa = []
    for obj in unique:
        x0, y0, x1, y1 = obj.box
        if x1 <= half or x0 >= image_size - half:
            side = "left" if x1 <= half else "right"
            qa.append(QA(f"which side is the {class_name(obj)} on?", side, "position"))
        if y1 <= half or y0 >= image_size - half:
            side = "top" if y1 <= half else "bottom"
            qa.append(QA(f"is the {class_name(obj)} at the top or the bottom?", side, "position"))
    for i, a in enumerate(unique):
        for b in unique[i + 1 :]:
            for relation, near, far in (("left of", 0, 2), ("above", 1, 3)):
                if a.box[far] <= b.box[near] or b.box[far] <= a.box[near]:
                    question = f"is the {class_name(a)} {relation} the {class_name(b)}?"
                    answer = "yes" if a.box[far] <= b.box[near] else "no"
                    qa.append(QA(question, answer, "position"))
    return qa


# --- writing to disk ---------------------------------------------------------------------


def scene_record(scene: Scene, image_path: str) -> dict:
    """The pairs.jsonl line for a scene whose image was saved at ``image_path``."""
    return {
        "image": image_path,
        "caption": scene.caption,
        "objects": [
            {"shape": obj.shape, "colour": obj.colour, "size": obj.size, "box": list(obj.box)}
            for obj in scene.objects
        ],
        "qa": [{"question": qa.question, "answer": qa.answer, "kind": qa.kind} for qa in scene.qa],
        "background": scene.background,
    }


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int,
    *,
    image_size: int = 64,
    n_objects: int | None = None,
    background: str | None = None,
    fmt: str = "png",
) -> Path:
    """Write n scenes of ``seed`` under ``out_dir`` and return it.

    Layout: ``images/00000.png ...``; ``pairs.jsonl`` (one scene a line, image paths relative
    to the folder); ``classes/<colour>_<shape>/00000.png`` with a copy of each one-object
    scene (an ImageFolder for zero-shot evaluation; multi-object scenes are left out of it);
    ``meta.json``. PNG keeps exact colours; "jpg" is smaller but blurs them.
    """
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"fmt must be one of {IMAGE_FORMATS}, got {fmt!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    options = dict(image_size=image_size, n_objects=n_objects, background=background)
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as pairs:
        for scene in iter_scenes(n, seed, **options):
            name = f"{scene.index:05d}.{fmt}"
            _save(scene.image, out / "images" / name)
            pairs.write(json.dumps(scene_record(scene, f"images/{name}")) + "\n")
            if len(scene.objects) == 1:
                folder = out / "classes" / class_folder(class_name(scene.objects[0]))
                folder.mkdir(parents=True, exist_ok=True)
                _save(scene.image, folder / name)  # a copy, not a link: portable everywhere
    meta = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "image_size": image_size,
        "n_objects": n_objects,
        "background": background,
        "format": fmt,
        "classes": CLASS_NAMES,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def _save(image: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        image.save(path, quality=95)
    else:
        image.save(path)
