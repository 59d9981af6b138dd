"""Bulk image embedding: vislang's ``embed_images`` against the transformers-docs baseline.

Both paths embed the same JPEG files with the same weights and batch size, in the same run, and
must agree to 1e-4, so the ratio compares equal work. The weights are random (no network): the
speed of a ViT-B/32 does not depend on what its weights are.

    .venv/bin/python bench/embed.py                 # ViT-B/32, 128 images, a few minutes on 2 cores
    .venv/bin/python bench/embed.py --arch tiny     # seconds: checks the script, not the speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

import vislang
from vislang.images import load_image

# Photo-like sizes, landscape and portrait mixed, so the resize takes both branches.
PHOTO_SIZES = [(640, 480), (480, 640)]
WARMUP_IMAGES = 8
TOLERANCE = 1e-4


# -- setup ---------------------------------------------------------------------------------
def write_checkpoint(directory: Path, arch: str) -> Path:
    """A CLIP in save_pretrained layout, with processor and tokenizer, loadable offline."""
    if arch == "tiny":
        from vislang.models.tiny import tiny_clip

        return tiny_clip(directory)
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from vislang.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).save_pretrained(directory)  # defaults are ViT-B/32's shapes
    CLIPImageProcessorPil(size={"shortest_edge": 224},
                          crop_size={"height": 224, "width": 224}).save_pretrained(directory)
    clip_tokenizer().save_pretrained(directory)
    return directory


def write_jpegs(directory: Path, count: int, seed: int = 0) -> list[str]:
    """JPEGs whose decode cost is like a photo's: smooth gradients plus fine noise.

    Pure noise would be unrealistically expensive to decode and flat colour unrealistically
    cheap; a gradient with moderate noise lands between, as camera pictures do.
    """
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1)
        base = base * rng.uniform(100, 255, size=3) + rng.uniform(0, 60, size=3)
        noise = rng.normal(0, 25, size=base.shape)
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        path = directory / f"img_{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


# -- the two paths -------------------------------------------------------------------------
def baseline_embed(hf_model, processor, paths: list[str], batch_size: int) -> np.ndarray:
    """What the transformers docs show: open, process and encode one batch after another."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[start:start + batch_size]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            features = hf_model.get_image_features(pixel_values=pixels).pooler_output
            chunks.append((features / features.norm(dim=-1, keepdim=True)).numpy())
    return np.concatenate(chunks)


def ours_embed(model, paths: list[str], batch_size: int) -> np.ndarray:
    return model.embed_images(paths, batch_size=batch_size)


# -- measurements --------------------------------------------------------------------------
def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def preprocess_seconds(model, processor, paths: list[str], batch_size: int) -> dict[str, float]:
    """Decode + preprocess only, single-threaded both ways: where the two paths differ.

    Ours runs per image (that is how its worker threads call it); the baseline's processor runs
    per batch, as in baseline_embed.
    """
    def ours():
        for p in paths:
            model.preprocess(load_image(p))

    def baseline():
        for start in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[start:start + batch_size]]
            processor(images=images, return_tensors="pt")

    return {"baseline": timed(baseline)[1], "ours": timed(ours)[1]}


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="vislang-bench-") as tmp:
        return measure(Path(tmp), args)


def measure(work: Path, args) -> dict:
    from transformers import AutoImageProcessor, CLIPModel

    checkpoint = write_checkpoint(work / "model", args.arch)
    (work / "images").mkdir()
    paths = write_jpegs(work / "images", args.images)

    # The baseline loads its own copy the way a user would; ours goes through vislang.load.
    model = vislang.load(str(checkpoint))
    hf_model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint, backend="pil")

    # Warm-up: first calls pay for lazy imports, allocator growth and oneDNN kernel selection.
    warm = paths[:WARMUP_IMAGES]
    baseline_embed(hf_model, processor, warm, args.batch_size)
    ours_embed(model, warm, args.batch_size)

    # Alternate the two so that drift on a shared machine hits both alike.
    times = {"baseline": [], "ours": []}
    for _ in range(args.repeats):
        base_out, seconds = timed(baseline_embed, hf_model, processor, paths, args.batch_size)
        times["baseline"].append(seconds)
        ours_out, seconds = timed(ours_embed, model, paths, args.batch_size)
        times["ours"].append(seconds)

    max_abs_diff = float(np.abs(base_out - ours_out).max())
    prep = preprocess_seconds(model, processor, paths, args.batch_size)
    rate = {k: args.images / statistics.median(v) for k, v in times.items()}
    return {
        "machine": machine_facts(),
        "arch": args.arch,
        "images": args.images,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "seconds": times,
        "images_per_s": rate,
        "ratio_ours_over_baseline": rate["ours"] / rate["baseline"],
        # Each repeat's ratio on its own: if these scatter, the machine was noisy.
        "pair_ratios": [b / o for b, o in zip(times["baseline"], times["ours"])],
        "preprocess_ms_per_image": {k: 1000 * v / args.images for k, v in prep.items()},
        "max_abs_diff": max_abs_diff,
        "agree": max_abs_diff < TOLERANCE,
    }


def machine_facts() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pillow": Image.__version__,
        "numpy": np.__version__,
    }


# -- output --------------------------------------------------------------------------------
def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"cpu: {m['cpu']}, {m['cores']} cores, torch threads: {m['torch_threads']}")
    print(f"python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
          f"pillow {m['pillow']}, numpy {m['numpy']}")
    print(f"arch {r['arch']}, {r['images']} JPEGs (640x480/480x640), batch {r['batch_size']}, "
          f"median of {r['repeats']}\n")
    rate, prep = r["images_per_s"], r["preprocess_ms_per_image"]
    print(f"{'path':<10}{'images/s':>10}{'preprocess ms/img':>20}  runs (s)")
    for key in ("baseline", "ours"):
        runs = " ".join(f"{s:.2f}" for s in r["seconds"][key])
        print(f"{key:<10}{rate[key]:>10.1f}{prep[key]:>20.2f}  {runs}")
    pairs = " ".join(f"{x:.2f}" for x in r["pair_ratios"])
    print(f"\nratio ours/baseline: {r['ratio_ours_over_baseline']:.2f}x (per repeat: {pairs})")
    verdict = "agree" if r["agree"] else f"DISAGREE (tolerance {TOLERANCE:g})"
    print(f"max abs diff of embeddings: {r['max_abs_diff']:.2e} ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["vit-b-32", "tiny"], default="vit-b-32")
    parser.add_argument("--images", type=int, default=128, metavar="N")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B")
    parser.add_argument("--repeats", type=int, default=3, metavar="R")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()  # keep the report the only output
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    if not result["agree"]:
        raise SystemExit(1)  # a speed claim about different numbers is no claim


if __name__ == "__main__":
    main()
