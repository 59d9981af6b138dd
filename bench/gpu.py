"""The CUDA path: vislang on one NVIDIA GPU against transformers on the same GPU.

Two parts, each timing our path and the baseline in the same run (under 5 minutes on one GPU):

- ``towers``: a real-size ViT-B/32 CLIP (random weights, built offline). Image features at batch
  256 and text features for 256 16-token texts, ``vislang.load(dir, device="cuda")`` (fp16 by
  default on CUDA) against ``CLIPModel.get_image_features`` / ``get_text_features`` in fp32 and
  in fp16 (``model.half()``), as the transformers docs write them. Every call starts from CPU
  tensors and ends with CPU features, for both, so host-device copies count alike. Calls
  alternate (fp32, fp16, ours, fp32, ...) and each figure is the median; the cosine of ours
  against the fp32 features says what fp16 costs in accuracy.
- ``embed``: ``vislang embed`` (the in-process pipeline: decode and preprocess in threads,
  overlapped with the GPU) on 20,000 generated 640x480 JPEGs, against the loop a user writes
  (PIL open, ``CLIPImageProcessor``, ``get_image_features`` in fp16, 256 at a time) on the
  first ``--baseline-images`` of them.

    .venv/bin/python bench/gpu.py                          # on a machine with an NVIDIA GPU
    .venv/bin/python bench/gpu.py --device cpu --arch tiny --images 200   # checks the script
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from encode import machine_facts, quiet, sixteen_token_texts, write_checkpoint  # noqa: E402

import vislang  # noqa: E402

BATCH = 256
IMAGE_SIZE = (640, 480)  # a phone photo scaled down: decoding is real work, as in a collection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to "
                        "check the script on a machine without a GPU")
    parser.add_argument("--arch", default="vit-b-32", choices=["vit-b-32", "tiny"])
    parser.add_argument("--calls", type=int, default=20, help="timed calls per tower config")
    parser.add_argument("--images", type=int, default=20_000, help="images vislang embed reads")
    parser.add_argument("--baseline-images", type=int, default=5_000,
                        help="images the transformers loop reads (it is the slow one)")
    parser.add_argument("--parts", nargs="+", default=["towers", "embed"],
                        choices=["towers", "embed"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA device and torch sees none (a CPU build of "
                         "torch, or no GPU): run it where there is one, or pass --device cpu "
                         "--arch tiny to check the script")
    quiet()
    work = Path(tempfile.mkdtemp(prefix="vislang-bench-gpu-"))
    os.environ["VISLANG_CACHE"] = str(work / "cache")
    try:
        checkpoint = write_checkpoint(work / "model", args.arch)
        result = {"machine": machine_facts() | gpu_facts(args.device), "arch": args.arch}
        if "towers" in args.parts:
            result["towers"] = towers(checkpoint, args)
        if "embed" in args.parts:
            result["embed"] = embed(checkpoint, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else report(result))


def gpu_facts(device: str) -> dict:
    if not device.startswith("cuda"):
        return {"gpu": "none (cpu run)"}
    props = torch.cuda.get_device_properties(torch.device(device))
    return {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda}


# -- towers ---------------------------------------------------------------------------------
def towers(checkpoint: Path, args) -> dict:
    from transformers import CLIPModel

    device = torch.device(args.device)
    fp32 = CLIPModel.from_pretrained(checkpoint).eval().to(device)
    fp16 = CLIPModel.from_pretrained(checkpoint).eval().half().to(device)
    ours = vislang.load(str(checkpoint), device=args.device)
    size = fp32.config.vision_config.image_size
    pixels = torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    tokens = sixteen_token_texts(BATCH)

    def hf_images(model, dtype):
        return lambda: model.get_image_features(
            pixel_values=pixels.to(device, dtype)).pooler_output.float().cpu()

    def hf_texts(model):
        return lambda: model.get_text_features(
            input_ids=tokens.to(device)).pooler_output.float().cpu()

    image_calls = {"transformers fp32": hf_images(fp32, torch.float32),
                   "transformers fp16": hf_images(fp16, torch.float16),
                   "vislang": lambda: ours.encode_image(pixels).float().cpu()}
    text_calls = {"transformers fp32": hf_texts(fp32), "transformers fp16": hf_texts(fp16),
                  "vislang": lambda: ours.encode_text(tokens).float().cpu()}
    out = {"batch": BATCH, "ours": f"{ours.backend} on {ours.device}"}
    for kind, calls in (("images", image_calls), ("texts", text_calls)):
        seconds, outputs = alternate(calls, args.calls, device)
        per_s = {name: BATCH / statistics.median(s) for name, s in seconds.items()}
        out[kind] = {"per_s": per_s,
                     "ratio_vs_fp32": per_s["vislang"] / per_s["transformers fp32"],
                     "ratio_vs_fp16": per_s["vislang"] / per_s["transformers fp16"],
                     "min_cosine_vs_fp32": min_cosine(outputs["vislang"],
                                                      outputs["transformers fp32"])}
    return out


def alternate(calls: dict, count: int, device: torch.device) -> tuple[dict, dict]:
    """Seconds per call for each of ``calls``, taken in turn ``count`` times after two warm-up
    rounds, and each one's last output."""
    seconds = {name: [] for name in calls}
    outputs = {}
    for round_ in range(count + 2):
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            with torch.inference_mode():
                outputs[name] = call()
            synchronize(device)
            if round_ >= 2:
                seconds[name].append(time.perf_counter() - start)
    return seconds, outputs


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).min())


# -- embed ----------------------------------------------------------------------------------
def embed(checkpoint: Path, work: Path, args) -> dict:
    from vislang.embed import pipeline

    folder = work / "images"
    generate(folder, args.images)
    paths = sorted(folder.glob("*.jpg"))
    model = vislang.load(str(checkpoint), device=args.device)
    model.prepare()
    start = time.perf_counter()
    summary = pipeline.embed([folder], work / "out", model, batch_size=BATCH)
    ours_s = time.perf_counter() - start
    if summary.embedded != len(paths):
        raise SystemExit(f"vislang embed wrote {summary.embedded} rows for {len(paths)} images")
    base_paths = paths[:args.baseline_images]
    base_s = transformers_loop(checkpoint, base_paths, torch.device(args.device))
    ours_per_s, base_per_s = len(paths) / ours_s, len(base_paths) / base_s
    return {"images": len(paths), "baseline_images": len(base_paths),
            "ours": f"{model.backend} on {model.device}",
            "vislang_embed_per_s": ours_per_s, "transformers_loop_per_s": base_per_s,
            "ratio": ours_per_s / base_per_s}


def transformers_loop(checkpoint: Path, paths: list[Path], device: torch.device) -> float:
    """Seconds for the loop the transformers docs suggest, in fp16, over ``paths``."""
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = CLIPModel.from_pretrained(checkpoint).eval().to(device, dtype)
    processor = CLIPImageProcessor.from_pretrained(checkpoint)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(paths), BATCH):
            images = [Image.open(p).convert("RGB") for p in paths[first:first + BATCH]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            model.get_image_features(pixel_values=pixels.to(device, dtype)).pooler_output.cpu()
    return time.perf_counter() - start


def generate(folder: Path, count: int) -> None:
    """``count`` photo-sized JPEGs of smooth colour fields and noise, on every core."""
    folder.mkdir(parents=True)
    chunks = [(folder, first, min(first + 500, count)) for first in range(0, count, 500)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_images, chunks))


def _write_images(chunk: tuple[Path, int, int]) -> None:
    from PIL import Image

    folder, first, last = chunk
    rng = np.random.default_rng(first)
    width, height = IMAGE_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for number in range(first, last):
        a, b, c = rng.uniform(0.002, 0.02, 3)
        base = np.stack([np.sin(xs * a + c), np.cos(ys * b), np.sin((xs + ys) * (a + b))], -1)
        pixels = (base * 90 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{number:06d}.jpg", quality=90)


# -- report ---------------------------------------------------------------------------------
def report(result: dict) -> str:
    m = result["machine"]
    lines = [f"gpu: {m['gpu']}  cpu: {m['cpu']} ({m['cores']} cores)  torch {m['torch']}",
             f"arch: {result['arch']}"]
    if "towers" in result:
        t = result["towers"]
        lines.append(f"towers, batch {t['batch']} (ours: {t['ours']})")
        for kind in ("images", "texts"):
            r = t[kind]
            figures = ", ".join(f"{name} {v:,.0f}/s" for name, v in r["per_s"].items())
            lines.append(f"  {kind}: {figures}; vislang / fp32 {r['ratio_vs_fp32']:.2f}x, "
                         f"/ fp16 {r['ratio_vs_fp16']:.2f}x, min cosine vs fp32 "
                         f"{r['min_cosine_vs_fp32']:.5f}")
    if "embed" in result:
        e = result["embed"]
        lines.append(f"vislang embed, {e['images']:,} JPEGs {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} "
                     f"(ours: {e['ours']}): {e['vislang_embed_per_s']:,.0f} images/s; "
                     f"transformers loop on {e['baseline_images']:,}: "
                     f"{e['transformers_loop_per_s']:,.0f} images/s; ratio {e['ratio']:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
