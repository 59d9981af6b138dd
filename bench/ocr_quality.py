"""OCR quality on scenes the project renders itself: character error rate per condition.

Text in DejaVu fonts (matplotlib's) at known places, sizes and angles (vislang.datasets.
text_scenes), read by vislang's batch reader (vislang.textread). Per condition: CER (character
edits / drawn characters, white space runs counted as one space; a line read where nothing was
drawn counts all its characters), the share of lines read exactly, and the mean IoU of the
detected box with the drawn one. No-text conditions report lines read where there is none.
``--baseline`` also scores RapidOCR's own default call on the same scenes.

    .venv/bin/python bench/ocr_quality.py              # ~5 min on 2 loaded cores
    .venv/bin/python bench/ocr_quality.py -n 8 --json  # quick
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np

from vislang.datasets.text_scenes import generate_text_scene
from vislang.textread import TextReader
from vislang.textread.scoring import Score, iou, score_scene

SEED = 18
# name: generate_text_scene options. Target: CER <= 5% at text height >= 24 px.
CONDITIONS = {
    "plain, 24-64 px, +-5 deg": dict(background="plain"),
    "gradient, 24-64 px, +-5 deg": dict(background="gradient"),
    "photo-like, 24-64 px, +-5 deg": dict(background="photo"),
    "shapes scene, 24-64 px, +-5 deg": dict(background="shapes"),
    "rotated 10-30 deg, 24-64 px": dict(angle=(10.0, 30.0)),
    "rotated -30..-10 deg, 24-64 px": dict(angle=(-30.0, -10.0)),
    "upside down (180 +-3 deg), 24-64 px": dict(angle=(177.0, 183.0)),
    "1600x1200 photo-like, 24-40 px": dict(size=(1600, 1200), background="photo",
                                           text_height=(24, 40)),
    "large, 64-120 px": dict(text_height=(64, 120)),
    "small, 14-23 px (under the target)": dict(text_height=(14, 23)),
}
NO_TEXT = {
    "no text: photo-like 1600x1200": dict(size=(1600, 1200), background="photo", n_texts=0),
    "no text: shapes scene": dict(background="shapes", n_texts=0),
}


def rapidocr_reader():
    from rapidocr import RapidOCR

    from vislang.textread.results import OcrLine

    engine = RapidOCR(params={"Global.log_level": "error"})

    def read(image):
        out = engine(np.asarray(image)[:, :, ::-1].copy())
        if out.boxes is None or out.txts is None:
            return []
        return [OcrLine(t, float(s), tuple(map(tuple, b.tolist())))
                for t, s, b in zip(out.txts, out.scores, out.boxes)]
    return read


def run(n: int, which: str) -> dict:
    reader = TextReader()
    if which == "vislang":
        def read_all(images):
            return [r.lines for r in reader.read(images)]
    else:
        one = rapidocr_reader()

        def read_all(images):
            return [one(i) for i in images]
    rows = {}
    for offset, (name, options) in enumerate({**CONDITIONS, **NO_TEXT}.items()):
        scenes = [generate_text_scene(SEED, 1000 * offset + i, **options) for i in range(n)]
        start = time.perf_counter()
        found = read_all([s.image for s in scenes])
        seconds = time.perf_counter() - start
        total, ious = Score(), []
        for scene, lines in zip(scenes, found):
            total.add(score_scene(scene.texts, lines))
            for d in scene.texts:  # best overlap of each drawn text with a read line
                ious.append(max((iou(d.box, line.box) for line in lines), default=0.0))
        rows[name] = {"images": n, "texts": total.texts, "chars": total.chars,
                      "cer": round(total.cer, 4), "exact": total.exact,
                      "mean_iou": round(float(np.mean(ious)), 3) if ious else None,
                      "false_lines": sum(len(f) for f in found) if name in NO_TEXT else None,
                      "seconds": round(seconds, 1)}
    return rows


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        lscpu = ""
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"cpu": fields.get("Model name", platform.processor()).strip(),
            "cpus": fields.get("CPU(s)", "?").strip(),
            "flags": [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                  "amx_tile") if f in flags]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=25, help="scenes per condition")
    parser.add_argument("--baseline", action="store_true", help="also score RapidOCR's call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {"machine": machine(), "n": args.n, "vislang": run(args.n, "vislang")}
    if args.baseline:
        report["rapidocr"] = run(args.n, "rapidocr")
    if args.json:
        print(json.dumps(report, indent=2))
        return
    m = report["machine"]
    print(f"# {m['cpu']} ({m['cpus']} CPUs; {' '.join(m['flags'])}), {args.n} scenes each")
    for who in ("vislang", "rapidocr"):
        if who not in report:
            continue
        print(f"\n{who}:\n{'condition':40} {'texts':>5} {'CER':>7} {'exact':>6} {'IoU':>5} "
              f"{'s':>6}")
        for name, row in report[who].items():
            if row["false_lines"] is not None:
                print(f"{name:40} {'':>5} {row['false_lines']:>4} lines read in "
                      f"{row['images']} images {row['seconds']:>6}")
                continue
            print(f"{name:40} {row['texts']:>5} {row['cer']:>7.2%} "
                  f"{row['exact'] / max(1, row['texts']):>6.0%} {row['mean_iou']:>5} "
                  f"{row['seconds']:>6}")


if __name__ == "__main__":
    sys.exit(main())
