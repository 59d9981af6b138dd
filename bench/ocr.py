"""OCR speed when indexing photos: vislang's batch reader vs. RapidOCR's own call per image.

N photo-sized JPEGs (1600x1200: photo-like backgrounds and shapes scenes), ``--text-share`` of
them with text drawn on (vislang.datasets.text_scenes); the rest hold none, like most photos.
Both paths run the same ONNX models (the ones the rapidocr wheel ships) on the same files, in
alternating chunks so drifting machine load hits both alike:

- baseline: ``RapidOCR()(path)`` per image, RapidOCR's defaults;
- vislang: ``TextReader().read(paths)``: probe detection at low resolution, full detection
  only where a candidate reads as text, lines of a batch recognised together, decode in threads.

Prints both times, the ratio, where vislang's time goes, whether both read the same text on
the text images (agreement), and the lines each reads on the no-text images.

    .venv/bin/python bench/ocr.py            # N=1000: ~25 min on 2 cores
    .venv/bin/python bench/ocr.py -n 150     # a loaded machine's share
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ocr_quality import machine  # noqa: E402

from vislang.datasets.text_scenes import generate_text_scene  # noqa: E402

SEED = 1800
SIZE = (1600, 1200)


def make_images(folder: Path, n: int, text_share: float) -> tuple[list[Path], set[int]]:
    """Every 1/text_share-th image carries text, so any prefix holds the same share."""
    step = max(1, round(1 / text_share)) if text_share else n + 1
    paths, with_text = [], set()
    for i in range(n):
        has_text = i % step == step // 2
        background = "photo" if i % 2 else "shapes"
        scene = generate_text_scene(SEED, i, size=SIZE, background=background,
                                    n_texts=None if has_text else 0)
        path = folder / f"img{i:05d}.jpg"
        scene.image.save(path, quality=90)
        paths.append(path)
        if has_text:
            with_text.add(i)
    return paths, with_text


def profiled(reader) -> dict:
    """Wrap the reader's stages to add up their seconds (decode runs in worker threads, so
    its total overlaps the others')."""
    spent: dict = defaultdict(float)

    def timed(name, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
        return run
    det = reader.detect
    det.probe, det.full = timed("detect: probe", det.probe), timed("detect: full", det.full)
    reader.recognize = timed("classify + recognise lines", reader.recognize)
    reader._load = timed("decode + scale (worker threads)", reader._load)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="images")
    parser.add_argument("--text-share", type=float, default=0.1)
    parser.add_argument("--chunks", type=int, default=4, help="alternations")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rapidocr import RapidOCR

    from vislang.textread import TextReader

    with tempfile.TemporaryDirectory(prefix="vislang-ocr-bench-") as tmp:
        start = time.perf_counter()
        paths, with_text = make_images(Path(tmp), args.n, args.text_share)
        print(f"made {len(paths)} images ({len(with_text)} with text) in "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
        engine = RapidOCR(params={"Global.log_level": "error"})
        reader = TextReader()
        warm = [paths[min(with_text, default=0)], paths[-1]]  # sessions made, shapes seen
        for p in warm:
            engine(p)
        reader.read(warm)
        spent = profiled(reader)
        times = {"rapidocr": 0.0, "vislang": 0.0}
        base_out, ours_out = {}, {}
        size = -(-len(paths) // args.chunks)
        for k in range(args.chunks):
            chunk = list(range(k * size, min(len(paths), (k + 1) * size)))
            order = ("rapidocr", "vislang") if k % 2 == 0 else ("vislang", "rapidocr")
            for who in order:
                start = time.perf_counter()
                if who == "rapidocr":
                    for i in chunk:
                        out = engine(paths[i])
                        base_out[i] = list(out.txts) if out.txts else []
                else:
                    results = reader.read([paths[i] for i in chunk], args.batch_size)
                    ours_out.update((i, [ln.text for ln in r.lines])
                                    for i, r in zip(chunk, results))
                times[who] += time.perf_counter() - start
            print(f"chunk {k + 1}/{args.chunks}: rapidocr {times['rapidocr']:.0f} s, vislang "
                  f"{times['vislang']:.0f} s so far", file=sys.stderr)
    texts = sorted(with_text)
    same_images = sum(base_out[i] == ours_out[i] for i in texts)
    base_lines = sum(len(base_out[i]) for i in texts)
    found = sum(sum(t in ours_out[i] for t in base_out[i]) for i in texts)
    blank = [i for i in range(len(paths)) if i not in with_text]
    report = {
        "machine": machine(), "n": len(paths), "with_text": len(texts),
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "ms_per_image": {k: round(1000 * v / len(paths), 1) for k, v in times.items()},
        "speedup": round(times["rapidocr"] / times["vislang"], 2),
        "vislang_stages_s": {k: round(v, 1) for k, v in spent.items()},
        "agreement": {"text_images_identical": f"{same_images}/{len(texts)}",
                      "rapidocr_lines_read_alike": f"{found}/{base_lines}"},
        "lines_on_no_text_images": {"rapidocr": sum(len(base_out[i]) for i in blank),
                                    "vislang": sum(len(ours_out[i]) for i in blank)},
        "differences": [{"image": i, "rapidocr": base_out[i], "vislang": ours_out[i]}
                        for i in texts if base_out[i] != ours_out[i]][:10],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"# {m['cpu']} ({m['cpus']} CPUs; {' '.join(m['flags'])})")
    print(f"{report['n']} images 1600x1200, {report['with_text']} with text")
    for who in ("rapidocr", "vislang"):
        print(f"{who:9} {report['seconds'][who]:8.1f} s  {report['ms_per_image'][who]:7.1f} "
              f"ms/image")
    print(f"speedup   {report['speedup']:.2f}x")
    print("vislang stages:", ", ".join(f"{k} {v} s" for k, v in
                                       report["vislang_stages_s"].items()))
    a = report["agreement"]
    print(f"agreement: text images read identically {a['text_images_identical']}, "
          f"RapidOCR's lines read alike {a['rapidocr_lines_read_alike']}")
    print(f"lines read on no-text images: {report['lines_on_no_text_images']}")
    for d in report["differences"]:
        print(f"  differs on image {d['image']}: rapidocr {d['rapidocr']} vislang {d['vislang']}")


if __name__ == "__main__":
    main()
