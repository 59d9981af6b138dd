"""Language-visual saliency: the seed notebook's loop vs ``vislang.saliency``, one run.

On one 800x600 image, query "a red circle", n_iters=300, min crop 50, a real-size CLIP with
random weights (built offline as in bench/encode.py; compute does not depend on the weights):

- seed: the notebook's first loop, verbatim in substance -- for every crop,
  ``CLIPProcessor(text=[query], images=[crop])`` then ``CLIPModel(**inputs)`` in eager fp32:
  one crop per call, and the text re-encoded every iteration, as the notebook's first version does.
- ours: ``vislang.saliency(model, image, query, "crops", seed=0)`` on the model loaded with
  ``backend="auto", precision="auto"`` (what the CLI uses): text once, crops cut from one
  decoded image, batches of 32 through the engine. Also on torch fp32, with the same crops:
  its map is the reference the fast engine's map is correlated with.
- dense and relevance: one call each (median of 3), against one torch fp32 forward pass of
  the image tower on one 224x224 image.

    .venv/bin/python bench/saliency.py                  # ViT-B/32, a few minutes on 2 cores
    .venv/bin/python bench/saliency.py --arch vit-b-16  # the issue's architecture
    .venv/bin/python bench/saliency.py --arch tiny      # seconds: checks the script only
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
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import ARCHS, machine_facts, quiet, write_checkpoint  # noqa: E402

import vislang  # noqa: E402
from vislang.datasets.shapes import generate_scene  # noqa: E402

QUERY = "a red circle"
WIDTH, HEIGHT = 800, 600
N_ITERS, MIN_CROP, SEED = 300, 50, 0
TARGET_VS_SEED = 10.0
TARGET_VS_ASYNC = 2.0
MIN_CORRELATION = 0.99
TARGET_DENSE_PASSES = 3.0
# (row name, backend, precision): what the CLI picks by default, and the fastest opt-in.
ENGINES = [("auto", "auto", "auto"), ("int8", "openvino", "int8")]


def test_image() -> Image.Image:
    """A shapes scene scaled to 600 px on an 800x600 canvas: objects to find, not noise."""
    scene = generate_scene(11, 0, image_size=HEIGHT, n_objects=3)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (236, 236, 236))
    canvas.paste(scene.image, ((WIDTH - HEIGHT) // 2, 0))
    return canvas


def seed_loop(checkpoint: Path, image: Image.Image, progress) -> tuple[np.ndarray, float]:
    """The notebook's loop (np.random seeded first, so it draws the same crops as ours)."""
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = CLIPProcessor.from_pretrained(checkpoint)

    def cosine_similarity(one, other):
        return one @ other.T / (np.linalg.norm(one) * np.linalg.norm(other))

    start = time.perf_counter()
    im_tensor = np.array(image)
    x_dim, y_dim = image.size
    np.random.seed(SEED)
    inputs = processor(text=[QUERY], images=[im_tensor], return_tensors="pt")
    with torch.no_grad():
        results = model(**inputs)
    initial_similarity = cosine_similarity(results.text_embeds, results.image_embeds).item()
    saliency_map = np.zeros((y_dim, x_dim))
    for i in range(N_ITERS):
        crop_size = np.random.randint(MIN_CROP, min(y_dim, x_dim))
        x = np.random.randint(x_dim - crop_size + 1)
        y = np.random.randint(y_dim - crop_size + 1)
        im_crop = im_tensor[y: y + crop_size, x: x + crop_size, ...]
        inputs = processor(text=[QUERY], images=[im_crop], return_tensors="pt")
        with torch.no_grad():
            results = model(**inputs)
        similarity = (cosine_similarity(results.text_embeds, results.image_embeds).item()
                      - initial_similarity)
        saliency_map[y: y + crop_size, x: x + crop_size] += similarity
        if (i + 1) % 50 == 0:
            progress(f"seed loop {i + 1}/{N_ITERS}")
    return saliency_map, time.perf_counter() - start


def seed_async(checkpoint: Path, image: Image.Image, progress) -> tuple[np.ndarray, float]:
    """The notebook's optimised form: the image tower as an OpenVINO model compiled with the
    THROUGHPUT hint (OpenVINO's default precision, bf16 on AMX CPUs), one crop per request
    through an AsyncInferQueue, the processor per crop. Conversion is not timed."""
    import openvino as ov
    from transformers import CLIPModel, CLIPProcessor

    from vislang.runtime.towers import quiet_export

    model = CLIPModel.from_pretrained(checkpoint).eval()
    processor = CLIPProcessor.from_pretrained(checkpoint)
    side = model.config.vision_config.image_size
    # The notebook's graph: the model's image_embeds, for a static [1, 3, 224, 224] input.
    with torch.no_grad(), quiet_export():
        graph = ov.convert_model(SeedImageGraph(model), example_input=torch.zeros(1, 3, side, side),
                                 input=[ov.PartialShape([1, 3, side, side])])
    image_model = ov.Core().compile_model(graph, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})

    def cosine_similarity(one, other):
        return one @ other.T / (np.linalg.norm(one) * np.linalg.norm(other))

    start = time.perf_counter()
    im_tensor = np.array(image)
    x_dim, y_dim = image.size
    np.random.seed(SEED)
    inputs = processor(text=[QUERY], images=[im_tensor], return_tensors="pt")
    with torch.no_grad():
        text_embeds = model.get_text_features(input_ids=inputs["input_ids"]).pooler_output.numpy()
    image_embeds = image_model(inputs["pixel_values"].numpy())[0]
    initial_similarity = cosine_similarity(text_embeds, image_embeds).item()
    saliency_map = np.zeros((y_dim, x_dim))

    def completion_callback(request, data) -> None:
        similarity = (cosine_similarity(text_embeds, request.get_output_tensor(0).data).item()
                      - initial_similarity)
        x, y, size = data
        saliency_map[y: y + size, x: x + size] += similarity

    queue = ov.AsyncInferQueue(image_model)
    queue.set_callback(completion_callback)
    for _ in range(N_ITERS):
        crop_size = np.random.randint(MIN_CROP, min(y_dim, x_dim))
        x = np.random.randint(x_dim - crop_size + 1)
        y = np.random.randint(y_dim - crop_size + 1)
        im_crop = im_tensor[y: y + crop_size, x: x + crop_size, ...]
        pixel_values = processor(images=[im_crop], return_tensors="np")["pixel_values"]
        queue.start_async(pixel_values, (x, y, crop_size))
    queue.wait_all()
    progress("seed async loop done")
    return saliency_map, time.perf_counter() - start


class SeedImageGraph(torch.nn.Module):
    """What the notebook converts: the whole model's ``image_embeds`` (transformers' full
    encoder; vislang's own towers skip unpooled work in the last layer)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixel_values).pooler_output


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vislang-bench-saliency-"))
    os.environ["VISLANG_CACHE"] = str(work / "cache")  # exports land in scratch, not the user's
    log = (lambda m: print(f"  .. {m}", file=sys.stderr, flush=True))
    try:
        checkpoint = write_checkpoint(work / "model", args.arch)
        image = test_image()
        result = {"machine": machine_facts(), "arch": args.arch, "image": [WIDTH, HEIGHT],
                  "query": QUERY, "n_iters": N_ITERS, "min_crop": MIN_CROP, "seed": SEED}

        log("seed loop (transformers, one crop per call, text every call) ...")
        seed_map, result["seed_s"] = seed_loop(checkpoint, image, log)

        log("seed's OpenVINO AsyncInferQueue form (conversion not timed) ...")
        async_map, result["seed_async_s"] = seed_async(checkpoint, image, log)

        log("ours, torch fp32 ...")
        ref_model = vislang.load(str(checkpoint))
        vislang.saliency(ref_model, image, QUERY, "crops", n_iters=8, min_crop=MIN_CROP, seed=1)
        ref, result["ours_fp32_s"] = timed(vislang.saliency, ref_model, image, QUERY, "crops",
                                           n_iters=N_ITERS, min_crop=MIN_CROP, seed=SEED)
        for name, backend, precision in ENGINES:
            log(f"ours, {name} engine (first load exports, calibrates, compiles; not timed) ...")
            model, result[f"{name}_load_s"] = timed(vislang.load, str(checkpoint),
                                                    backend=backend, precision=precision)
            result[f"{name}_engine"] = model.backend
            vislang.saliency(model, image, QUERY, "crops", n_iters=8, min_crop=MIN_CROP, seed=1)
            fast, result[f"ours_{name}_s"] = timed(vislang.saliency, model, image, QUERY,
                                                   "crops", n_iters=N_ITERS, min_crop=MIN_CROP,
                                                   seed=SEED)
            result[f"corr_{name}_vs_fp32"] = correlation(fast.array, ref.array)
            # The map sums (score - s0) over each pixel's crops, so one error in s0 moves every
            # pixel by that error times its coverage; the crops' own scores are compared too.
            result[f"corr_{name}_crop_scores"] = correlation(fast.info["values"],
                                                             ref.info["values"])
            result[f"x_{name}_vs_seed"] = result["seed_s"] / result[f"ours_{name}_s"]
            result[f"x_{name}_vs_seed_async"] = result["seed_async_s"] / result[f"ours_{name}_s"]
        result["corr_fp32_vs_seed"] = correlation(ref.array, seed_map)
        result["max_abs_fp32_vs_seed"] = float(np.abs(ref.array - seed_map).max())

        log("dense, relevance and one encoder pass (torch fp32) ...")
        pixel = torch.randn(1, 3, *ref_model.transform.output_size)
        with torch.inference_mode():
            ref_model.encode_image(pixel)
        result["encoder_pass_s"] = median_time(lambda: _encode(ref_model, pixel), args.repeats)
        result["dense_s"] = median_time(
            lambda: vislang.saliency(ref_model, image, QUERY, "dense"), args.repeats)
        result["relevance_s"] = median_time(
            lambda: vislang.saliency(ref_model, image, QUERY, "relevance"), args.repeats)
        result["x_fp32_vs_seed"] = result["seed_s"] / result["ours_fp32_s"]
        result["corr_seed_async_vs_seed"] = correlation(async_map, seed_map)
        result["dense_passes"] = result["dense_s"] / result["encoder_pass_s"]
        result["relevance_passes"] = result["relevance_s"] / result["encoder_pass_s"]
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _encode(model, pixel):
    with torch.inference_mode():
        return model.encode_image(pixel)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"\ncpu: {m['cpu']}, {m['cores']} cores, torch threads: {m['torch_threads']}, "
          f"isa: {' '.join(m['isa']) or '-'}")
    print(f"python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
          f"openvino {m['openvino']}, onnxruntime {m['onnxruntime']}, numpy {m['numpy']}")
    print(f"{r['arch']} (random weights), {r['image'][0]}x{r['image'][1]} image, "
          f"query {r['query']!r}, n_iters {r['n_iters']}, min crop {r['min_crop']}, "
          f"seed {r['seed']}\n")
    print(f"{'path':<52}{'seconds':>9}{'x seed':>8}")
    print(f"{'seed loop (transformers fp32, 1 crop/call, text/call)':<52}{r['seed_s']:>9.2f}"
          f"{1:>8.2f}")
    print(f"{'seed async (OpenVINO THROUGHPUT, 1 crop/request)':<52}{r['seed_async_s']:>9.2f}"
          f"{r['seed_s'] / r['seed_async_s']:>8.2f}")
    print(f"{'ours crops, torch/fp32, batch 32':<52}{r['ours_fp32_s']:>9.2f}"
          f"{r['x_fp32_vs_seed']:>8.2f}")
    for name, _, _ in ENGINES:
        label = f"ours crops, {r[name + '_engine']} ({name}), batch 32"
        print(f"{label:<52}{r[f'ours_{name}_s']:>9.2f}{r[f'x_{name}_vs_seed']:>8.2f}")
    print(f"{'ours dense (torch/fp32)':<52}{r['dense_s']:>9.3f}")
    print(f"{'ours relevance (torch/fp32)':<52}{r['relevance_s']:>9.3f}")
    print(f"{'one image-tower pass, 224 px (torch/fp32)':<52}{r['encoder_pass_s']:>9.3f}")
    print(f"\nmaps: the seed's async form vs its loop: correlation "
          f"{r['corr_seed_async_vs_seed']:.5f} (OpenVINO's default precision)")
    print(f"maps: ours fp32 vs seed loop: correlation {r['corr_fp32_vs_seed']:.6f}, "
          f"max abs diff {r['max_abs_fp32_vs_seed']:.2e} (same crops)")
    for name, _, _ in ENGINES:
        print(f"maps: {r[name + '_engine']} vs fp32: correlation {r[f'corr_{name}_vs_fp32']:.5f}"
              f" (the crops' scores: {r[f'corr_{name}_crop_scores']:.5f}); first load "
              f"{r[name + '_load_s']:.1f} s, not counted")
    print(f"dense = {r['dense_passes']:.2f} encoder passes, relevance = "
          f"{r['relevance_passes']:.2f}")
    fastest = min((name for name, _, _ in ENGINES), key=lambda name: r[f"ours_{name}_s"])
    ok = lambda b: "met" if b else "NOT met"  # noqa: E731
    print(f"targets, on the fastest engine ({r[fastest + '_engine']}): crops >= "
          f"{TARGET_VS_SEED:g}x the seed loop: {r[f'x_{fastest}_vs_seed']:.2f}x, "
          f"{ok(r[f'x_{fastest}_vs_seed'] >= TARGET_VS_SEED)}; >= {TARGET_VS_ASYNC:g}x the "
          f"seed's async form: {r[f'x_{fastest}_vs_seed_async']:.2f}x, "
          f"{ok(r[f'x_{fastest}_vs_seed_async'] >= TARGET_VS_ASYNC)}; correlation >= "
          f"{MIN_CORRELATION}: {ok(r[f'corr_{fastest}_vs_fp32'] >= MIN_CORRELATION)}; dense "
          f"within {TARGET_DENSE_PASSES:g} encoder passes: "
          f"{ok(r['dense_passes'] <= TARGET_DENSE_PASSES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=list(ARCHS), default="vit-b-32")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of dense/relevance")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    quiet()
    torch.manual_seed(0)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    sys.stdout.flush()
    os._exit(0)  # skip tearing down compiled OpenVINO models (see bench/encode.py)


if __name__ == "__main__":
    main()
