"""Text search recall@1: a query naming a word printed in exactly one image among 500.

The collection (vislang.datasets.text_scenes, 480x360, text 28-48 px, random backgrounds):
one scene per distinct vocabulary word of 4+ letters that shares no stem with another
(128), each printing its word in capitals and no other scene printing it; the rest are
distractors, half printing only numbers and codes ("No. 381", "12:45"), half no text at all. It is indexed as a user would, with
``shapes-clip`` (which cannot read, so the read words alone decide) and ``--ocr``; then each
word is searched as a query (``Index.search(text=word, k=1)``). Recall@1 is the share whose
first result is the image that prints the word; each miss is listed with why (the reader did
not find the word in that image, or another image outranked it).

    .venv/bin/python bench/ocr_search.py               # 500 images, ~5-10 min on 2 cores
    .venv/bin/python bench/ocr_search.py --images 200  # quicker
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from scale import cpu  # the CPU line every bench prints (lscpu's model and flags)
from vislang import ocr
from vislang.datasets.text_scenes import WORDS, generate_text_scene
from vislang.search import Index
from vislang.textread.index import ocr_index

SEED = 5005
SIZE = (480, 360)
TEXT_HEIGHT = (28, 48)


def query_words() -> list[str]:
    """Vocabulary words of 4+ letters that share no stem with another: search stems words
    (Porter), so "park" also finds "PARKING", and would not be printed in exactly one image."""
    words = [w for w in dict.fromkeys(WORDS) if len(w) >= 4]
    return [w for w in words if not any(o != w and (o.startswith(w) or w.startswith(o))
                                        for o in words)]


def code(rng: np.random.Generator) -> str:
    """A line of digits and punctuation: text that names no query word."""
    n = int(rng.integers(1, 10_000))
    return [f"No. {n}", f"{n % 24:02d}:{n % 60:02d}", f"{n / 100:.2f}", f"#{n}",
            f"{n}-{n % 97}"][int(rng.integers(5))]


def write_collection(root: Path, images: int) -> dict[str, Path]:
    """The scenes under ``root``; returns word -> the one image printing it."""
    root.mkdir(parents=True)
    words = query_words()[:images]
    rng = np.random.default_rng(SEED)
    where = {}
    for i in range(images):
        if i < len(words):
            texts = [words[i].upper()]
        elif i % 2:
            texts = [code(rng) for _ in range(int(rng.integers(1, 3)))]
        else:
            texts = []
        scene = generate_text_scene(SEED, i, size=SIZE, texts=texts, text_height=TEXT_HEIGHT)
        path = root / f"scene-{i:04d}.jpg"
        scene.image.save(path, quality=92)
        if i < len(words):
            where[words[i]] = path
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vislang-bench-ocr-search-") as tmp:
        where = write_collection(Path(tmp, "photos"), args.images)
        started = time.perf_counter()
        with Index.open(Path(tmp, "idx"), model="shapes-clip") as index:
            index.update([Path(tmp, "photos")])
            summary = ocr_index(index, progress=not args.json)
            indexed_s = time.perf_counter() - started
            misses = []
            for word, path in where.items():
                top = index.search(text=word, k=1)
                if not top or top[0].path != str(path):
                    misses.append({"word": word, "first": top[0].path if top else None,
                                   "read_in_its_image": [line.text for line in ocr(path).lines]})
    recall = 1 - len(misses) / len(where)
    report = {"machine": cpu(), "images": args.images, "queries": len(where),
              "recall_at_1": round(recall, 4), "misses": misses,
              "index_with_ocr_seconds": round(indexed_s, 1), "images_with_text": summary.with_text}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"# {report['machine']}")
    print(f"{args.images} images, {len(where)} query words each printed in exactly one; "
          f"indexed with --ocr in {indexed_s:.0f} s ({summary.with_text} images with text read)")
    print(f"recall@1 {recall:.1%} ({len(where) - len(misses)}/{len(where)})")
    for miss in misses:
        print(f"  miss: {miss['word']!r}: first was {miss['first']}; its own image reads "
              f"{miss['read_in_its_image']}")


if __name__ == "__main__":
    main()
