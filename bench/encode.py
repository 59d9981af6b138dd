"""Engines and precisions: every backend x precision against transformers eager fp32.

For each architecture (real-size ViT-B/32 and ViT-B/16 CLIPs, random weights, built offline) the
baseline is what the transformers docs show -- ``CLIPModel.get_image_features`` /
``get_text_features`` in eager fp32 under ``torch.inference_mode()`` -- at batch 1 (latency) and
batch 32 (throughput). Then every engine x precision this machine supports goes through
``vislang.load(dir, backend=..., precision=..., mode=...)``:

- ``mode="throughput"``: images/s and texts/s at batch 32 (``encode_image`` / ``encode_text``);
- ``mode="latency"``: one image, and one 16-token text query, at a time.

With ``--openclip`` the checkpoint is OpenCLIP's own layout (``open_clip_config.json`` + weights,
open_clip's ``ViT-B-32.json`` / ``ViT-B-16.json`` config, open_clip's random initialisation),
loaded through vislang's mapping like a downloaded one; the baseline is then what an open_clip
user runs: open_clip's own ``CLIP.encode_image`` / ``encode_text`` in eager fp32 (its texts are
the 77 tokens ``open_clip.tokenize`` pads to; its model code is read from the installed
open_clip_torch file by file, as tests/test_openclip.py does, since its package import needs
torchvision).

Each config's calls alternate with the baseline's (baseline, ours, baseline, ours, ...) so drift
on a shared machine hits both alike; ratios are the medians of those paired runs. The first
load of each config (export, int8 calibration, compilation) is timed on its own and kept out of
the speed numbers. Correctness: the cosine similarity of each config's features to the torch
fp32 features of the same inputs, the minimum over the batch.

    .venv/bin/python bench/encode.py                  # ViT-B/32 + ViT-B/16: 20-30 min on 2 cores
    .venv/bin/python bench/encode.py --arch tiny      # seconds: checks the script, not the speed
    .venv/bin/python bench/encode.py --skip onnx/int8 openvino/int8 --json
    .venv/bin/python bench/encode.py --openclip --arch vit-b-32   # a mapped OpenCLIP ViT-B/32
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import vislang  # noqa: E402
from vislang import runtime  # noqa: E402

ARCHS = {"vit-b-32": 32, "vit-b-16": 16, "tiny": None}  # name -> vision patch size
# name -> open_clip's model config (a file of its model_configs/, or a tiny one inline)
OPENCLIP_CONFIGS = {"vit-b-32": "ViT-B-32.json", "vit-b-16": "ViT-B-16.json",
                    "tiny": dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=2, width=64,
                                                               patch_size=8),
                                 text_cfg=dict(context_length=77, vocab_size=49408, width=32,
                                               heads=2, layers=2))}
BATCH = 32
TEXT_TOKENS = 16  # start + 14 words + end
QUERY = "a photo of a red cube to the left of a large blue sphere"  # exactly 16 tokens
# Words that are one BPE token each, for a batch of 16-token texts.
WORDS = ("a photo of the red blue green small large cube sphere cone on left right next to "
         "dog cat car tree house man woman with and in near two three big old new white black "
         "table room street park water sky picture image").split()
WARMUP_CALLS = 2
# Idle time between alternated calls: ONNX Runtime's and OpenMP's worker threads spin for a
# while after a call, and on 2 cores that spinning would slow whichever engine runs next.
PAUSE_S = 0.1
TARGET_IMAGE_THROUGHPUT = 8.0  # best images/s over the batch-32 baseline, ViT-B/32
TARGET_TEXT_LATENCY = 5.0  # baseline batch-1 text latency over ours
FP32_MIN_COSINE = 0.9999  # fp32 engines must give the reference's numbers
NOTE_COSINE = 0.999  # lower precisions below this are flagged in the table


def quiet() -> None:
    """Keep the report the only output: no tracing warnings, progress bars or INFO logs."""
    warnings.filterwarnings("ignore")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("nncf", "onnxruntime", "openvino"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    except ImportError:
        pass


# -- setup ---------------------------------------------------------------------------------
def write_checkpoint(directory: Path, arch: str) -> Path:
    """A CLIP in save_pretrained layout, with processor and tokenizer, loadable offline."""
    if arch == "tiny":
        from vislang.models.tiny import tiny_clip

        return tiny_clip(directory)
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from vislang.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    config = CLIPConfig()  # defaults are ViT-B/32's shapes
    config.vision_config.patch_size = ARCHS[arch]
    CLIPModel(config).save_pretrained(directory)
    CLIPImageProcessorPil(size={"shortest_edge": 224},
                          crop_size={"height": 224, "width": 224}).save_pretrained(directory)
    clip_tokenizer().save_pretrained(directory)
    return directory


def open_clip_module():
    """open_clip's ``model`` module, loaded from its files without the package ``__init__``
    (which imports torchvision); its one torchvision import serves batch-norm freezing only."""
    import importlib
    import importlib.util
    import types

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--openclip needs open_clip_torch installed "
                         "(pip install --no-deps open_clip_torch)")
    folder = Path(spec.submodule_search_locations[0])
    package = "_open_clip_bench"
    root = types.ModuleType(package)
    root.__path__ = [str(folder)]
    sys.modules[package] = root
    utils = types.ModuleType(f"{package}.utils")
    source = (folder / "utils.py").read_text().replace(
        "from torchvision.ops.misc import FrozenBatchNorm2d", "FrozenBatchNorm2d = None")
    exec(compile(source, str(folder / "utils.py"), "exec"), utils.__dict__)
    sys.modules[utils.__name__] = utils
    return importlib.import_module(f"{package}.model")


def write_openclip_checkpoint(directory: Path, arch: str) -> Path:
    """OpenCLIP's hub layout: ``open_clip_config.json`` and ``open_clip_model.safetensors``
    of open_clip's own model, randomly initialised as open_clip initialises it."""
    from safetensors.torch import save_file

    module = open_clip_module()
    cfg = OPENCLIP_CONFIGS[arch]
    if isinstance(cfg, str):
        cfg = json.loads((Path(module.__file__).parent / "model_configs" / cfg).read_text())
    torch.manual_seed(0)
    model = module.CLIP(**cfg)
    directory.mkdir(parents=True)
    (directory / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(directory / "open_clip_model.safetensors"))
    return directory


def load_openclip_baseline(directory: Path):
    """open_clip's model from the checkpoint, eager fp32: what an open_clip user runs."""
    from safetensors.torch import load_file

    cfg = json.loads((directory / "open_clip_config.json").read_text())["model_cfg"]
    model = open_clip_module().CLIP(**cfg)
    model.load_state_dict(load_file(str(directory / "open_clip_model.safetensors")))
    return model.eval()


def vision_shape(checkpoint: Path) -> tuple[int, int]:
    """(image size, patch size) of either layout."""
    config = checkpoint / "open_clip_config.json"
    if config.is_file():
        vision = json.loads(config.read_text())["model_cfg"]["vision_cfg"]
        return vision["image_size"], vision["patch_size"]
    from transformers import CLIPConfig

    vision = CLIPConfig.from_pretrained(checkpoint).vision_config
    return vision.image_size, vision.patch_size


def sixteen_token_texts(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` texts of 14 one-token words each, tokenized as ``model.tokenize`` does."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=TEXT_TOKENS - 2)) for _ in range(count)]
    return checked_tokens(vislang.tokenize(texts))


def checked_tokens(tokens: torch.Tensor) -> torch.Tensor:
    lengths = (tokens != 0).sum(dim=1)
    if not bool((lengths == TEXT_TOKENS).all()):
        raise SystemExit(f"texts are not {TEXT_TOKENS} tokens long: {lengths.tolist()}")
    return tokens


def configs(skip: set[str]) -> list[tuple[str, str]]:
    return [(b, p) for b in runtime.BACKENDS for p in runtime.supported_precisions(b)
            if f"{b}/{p}" not in skip]


# -- measurements --------------------------------------------------------------------------
def clock(fn, *args):
    start = time.perf_counter()
    with torch.inference_mode():
        out = fn(*args)
    return out, time.perf_counter() - start


def warm(fn, *args) -> None:
    for _ in range(WARMUP_CALLS):
        clock(fn, *args)


def alternate(baseline, ours, args_, calls: int):
    """Baseline, ours, baseline, ours, ...: seconds per call for each, and ours' last output."""
    base_s, ours_s, out = [], [], None
    for _ in range(calls):
        time.sleep(PAUSE_S)
        base_s.append(clock(baseline, *args_)[1])
        time.sleep(PAUSE_S)
        out, seconds = clock(ours, *args_)
        ours_s.append(seconds)
    return base_s, ours_s, out


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).min())


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def run(args) -> dict:
    result = {"machine": machine_facts(), "batch": BATCH, "text_tokens": TEXT_TOKENS,
              "batches": args.batches, "latency_calls": args.latency_calls,
              "auto": None, "archs": {}}
    work = Path(tempfile.mkdtemp(prefix="vislang-bench-encode-"))
    # Exports and compiled blobs go to a scratch cache: none of it lands in the user's cache,
    # and every config pays its real first-load cost. Workers inherit the variable.
    os.environ["VISLANG_CACHE"] = str(work / "cache")
    try:
        choice = runtime.choose("auto", "auto")
        result["auto"] = {"backend": choice.backend, "precision": choice.precision,
                          "reason": choice.reason}
        for arch in args.arch:
            result["archs"][arch] = measure_arch(work / arch, arch, args)
    finally:
        if args.keep_cache:
            print(f"(kept checkpoints and exported engines in {work})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def measure_arch(work: Path, arch: str, args) -> dict:
    """The checkpoint and inputs here; each config in a fresh worker process.

    A process per config means no engine's threads, caches or memory outlive it to slow the
    next one, and no engine is torn down mid-run: a worker leaves with ``os._exit``.
    """
    log = progress_log(args)
    work.mkdir(parents=True)
    checkpoint = (write_openclip_checkpoint(work / "model", arch) if args.openclip
                  else write_checkpoint(work / "model", arch))
    generator = torch.Generator().manual_seed(0)
    image_size, patch_size = vision_shape(checkpoint)
    inputs = {"pixels": torch.randn(BATCH, 3, image_size, image_size, generator=generator),
              "query": checked_tokens(vislang.tokenize([QUERY])),
              "texts": sixteen_token_texts(BATCH)}
    torch.save(inputs, work / "inputs.pt")

    rows, failures = [], []
    base_runs = {"image_b32": [], "text_b32": [], "image_b1": [], "text_b1": []}
    for backend, precision in configs(set(args.skip)):
        name = f"{backend}/{precision}"
        log(f"[{arch}] {name} ...")
        spec = {"checkpoint": str(checkpoint), "inputs": str(work / "inputs.pt"),
                "backend": backend, "precision": precision, "batches": args.batches,
                "latency_calls": args.latency_calls, "openclip": args.openclip,
                "out": str(work / f"{backend}-{precision}.json")}
        started = time.perf_counter()
        try:
            # The worker's stdout is only NNCF's calibration progress bars; errors go to stderr.
            subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                           check=True, timeout=args.worker_timeout, stdout=subprocess.DEVNULL)
            row = json.loads(Path(spec["out"]).read_text())
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            log(f"[{arch}] {name}: FAILED ({error})")
            failures.append({"config": name, "error": str(error)})
            continue
        row["worker_s"] = time.perf_counter() - started
        for key in base_runs:
            base_runs[key] += row[f"{key}_base_s"]
        log(f"[{arch}] {name}: {row['images_per_s']:.1f} images/s "
            f"({row['x_image_b32']:.2f}x), text {row['text_latency_ms']:.2f} ms "
            f"({row['x_text_latency']:.2f}x lower), first load {row['first_load_s']:.1f} s, "
            f"{row['worker_s']:.0f} s in all")
        rows.append(row)

    base = {"images_per_s": BATCH / med(base_runs["image_b32"]) if rows else None,
            "texts_per_s": BATCH / med(base_runs["text_b32"]) if rows else None,
            "image_latency_ms": 1000 * med(base_runs["image_b1"]) if rows else None,
            "text_latency_ms": 1000 * med(base_runs["text_b1"]) if rows else None,
            "runs": base_runs}
    return {"checkpoint": {"patch_size": patch_size, "image_size": image_size,
                           "layout": "openclip" if args.openclip else "transformers"},
            "baseline": base, "configs": rows, "failures": failures,
            "summary": summarise(rows, base)}


def worker(spec: dict) -> None:
    """One engine x precision against the baseline, in this process; writes spec["out"]."""
    quiet()
    backend, precision = spec["backend"], spec["precision"]
    # Import the engine's library before any clock runs: load times are export and compile.
    __import__({"torch": "torch", "openvino": "openvino", "onnx": "onnxruntime"}[backend])
    if precision == "int8" and backend == "openvino":
        __import__("nncf")
    quiet()  # again: the imports above may have set up their own loggers
    inputs = torch.load(spec["inputs"])
    pixels, query, texts = inputs["pixels"], inputs["query"], inputs["texts"]
    pixel1 = pixels[:1].clone()
    if spec.get("openclip"):
        base_image, base_text = openclip_baseline(Path(spec["checkpoint"]))
    else:
        base_image, base_text = transformers_baseline(Path(spec["checkpoint"]))

    reference = {"image": clock(base_image, pixels)[0], "image1": clock(base_image, pixel1)[0],
                 "text": clock(base_text, texts)[0], "query": clock(base_text, query)[0]}
    for fn, x in ((base_image, pixels), (base_image, pixel1), (base_text, texts),
                  (base_text, query)):
        warm(fn, x)

    row = {"config": f"{backend}/{precision}"}
    load = (spec["checkpoint"], "cpu", backend, precision)

    def load_and_first_calls(mode: str):
        """Exported engines export and compile each tower on its first call: count it here."""
        model = vislang.load(*load, mode)
        model.encode_image(pixel1)
        model.encode_text(query)
        return model

    model, row["first_load_s"] = clock(load_and_first_calls, "throughput")
    assert torch.equal(model.tokenize([QUERY]), query), "model.tokenize differs"
    warm(model.encode_image, pixels)
    warm(model.encode_text, texts)
    b, o, image_out = alternate(base_image, model.encode_image, (pixels,), spec["batches"])
    row["image_b32_s"], row["image_b32_base_s"] = o, b
    b, o, text_out = alternate(base_text, model.encode_text, (texts,), spec["batches"])
    row["text_b32_s"], row["text_b32_base_s"] = o, b

    latency_model, row["second_load_s"] = clock(load_and_first_calls, "latency")
    warm(latency_model.encode_image, pixel1)
    warm(latency_model.encode_text, query)
    calls = spec["latency_calls"]
    b, o, image1_out = alternate(base_image, latency_model.encode_image, (pixel1,), calls)
    row["image_b1_s"], row["image_b1_base_s"] = o, b
    b, o, query_out = alternate(base_text, latency_model.encode_text, (query,), calls)
    row["text_b1_s"], row["text_b1_base_s"] = o, b

    row["images_per_s"] = BATCH / med(row["image_b32_s"])
    row["texts_per_s"] = BATCH / med(row["text_b32_s"])
    row["image_latency_ms"] = 1000 * med(row["image_b1_s"])
    row["text_latency_ms"] = 1000 * med(row["text_b1_s"])
    # Ratios against the baseline calls interleaved with this config's own.
    row["x_image_b32"] = med(row["image_b32_base_s"]) / med(row["image_b32_s"])
    row["x_text_b32"] = med(row["text_b32_base_s"]) / med(row["text_b32_s"])
    row["x_image_latency"] = med(row["image_b1_base_s"]) / med(row["image_b1_s"])
    row["x_text_latency"] = med(row["text_b1_base_s"]) / med(row["text_b1_s"])
    row["cosine_image"] = min(min_cosine(image_out, reference["image"]),
                              min_cosine(image1_out, reference["image1"]))
    row["cosine_text"] = min(min_cosine(text_out, reference["text"]),
                             min_cosine(query_out, reference["query"]))
    Path(spec["out"]).write_text(json.dumps(row))


def transformers_baseline(checkpoint: Path):
    """transformers' CLIPModel in eager fp32, as its docs show: (image fn, text fn)."""
    from transformers import CLIPModel

    baseline = CLIPModel.from_pretrained(checkpoint).eval()

    def base_image(x):
        return baseline.get_image_features(pixel_values=x).pooler_output

    def base_text(ids):  # what a user passes for one text: its 16 tokens, no padding
        return baseline.get_text_features(input_ids=ids[:, :TEXT_TOKENS]).pooler_output

    return base_image, base_text


def openclip_baseline(checkpoint: Path):
    """open_clip's CLIP in eager fp32: (image fn, text fn). Its text tower adds all 77
    position embeddings, so it takes the 77 tokens open_clip.tokenize makes, padding too."""
    baseline = load_openclip_baseline(checkpoint)
    return baseline.encode_image, baseline.encode_text


def summarise(rows: list[dict], base: dict) -> dict:
    """The best config for each target, by the paired ratio (house style) and, because the
    baseline itself drifts between workers on a shared machine, also against the median of
    every baseline call of the run ("pooled")."""
    if not rows:
        return {}
    for row in rows:
        row["x_image_b32_pooled"] = row["images_per_s"] / base["images_per_s"]
        row["x_text_latency_pooled"] = base["text_latency_ms"] / row["text_latency_ms"]
        row["x_image_latency_pooled"] = base["image_latency_ms"] / row["image_latency_ms"]

    def best(key: str) -> dict:
        row = max(rows, key=lambda r: r[key])
        pooled = max(rows, key=lambda r: r[f"{key}_pooled"])
        return {"config": row["config"], "ratio": row[key],
                "pooled_config": pooled["config"], "pooled_ratio": pooled[f"{key}_pooled"]}

    return {"best_image_throughput": best("x_image_b32"),
            "best_text_latency": best("x_text_latency"),
            "best_image_latency": best("x_image_latency")}


def progress_log(args):
    def log(message: str) -> None:
        if not args.json:
            print(f"  .. {message}", flush=True)
        else:
            print(f"  .. {message}", file=sys.stderr, flush=True)
    return log


def machine_facts() -> dict:
    cpu_line, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu_line:
                cpu_line = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    versions = {}
    for name in ("torch", "transformers", "openvino", "nncf", "onnxruntime", "onnx", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpu": cpu_line or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                            "avx512_fp16")
                if f" {f}" in flags],
        "python": platform.python_version(),
        **versions,
    }


# -- output --------------------------------------------------------------------------------
def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"\ncpu: {m['cpu']}, {m['cores']} cores, torch threads: {m['torch_threads']}, "
          f"isa: {' '.join(m['isa']) or '-'}")
    print(f"python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
          f"openvino {m['openvino']}, nncf {m['nncf']}, onnxruntime {m['onnxruntime']}, "
          f"onnx {m['onnx']}, numpy {m['numpy']}")
    print(f"batch {r['batch']} for throughput (median of {r['batches']} batches), one item for "
          f"latency (median of {r['latency_calls']} calls), texts of {r['text_tokens']} tokens")
    for arch, a in r["archs"].items():
        print_arch(arch, a)
    print_summary(r)


def print_arch(arch: str, a: dict) -> None:
    base = a["baseline"]
    for failure in a["failures"]:
        print(f"\n{arch} {failure['config']}: FAILED ({failure['error']})")
    if not a["configs"]:
        return
    layout = a["checkpoint"].get("layout", "transformers")
    baseline = "open_clip" if layout == "openclip" else "hf"
    print(f"\n== {arch} (patch {a['checkpoint']['patch_size']}, "
          f"{a['checkpoint']['image_size']} px, random weights, {layout} layout; baseline: "
          f"{'open_clip' if layout == 'openclip' else 'transformers'} eager fp32) ==")
    head = (f"{'config':<16}{'images/s':>9}{'x b32':>7}{'img ms':>9}{'x lower':>8}"
            f"{'texts/s':>9}{'txt ms':>8}{'x lower':>8}{'cos img':>9}{'cos txt':>9}"
            f"{'load s':>8}{'2nd s':>7}")
    print(head)
    print(f"{baseline + ' fp32 b32':<16}{base['images_per_s']:>9.1f}{1:>7.2f}{'':>9}{'':>8}"
          f"{base['texts_per_s']:>9.1f}")
    print(f"{baseline + ' fp32 b1':<16}{'':>9}{'':>7}{base['image_latency_ms']:>9.1f}{1:>8.2f}"
          f"{'':>9}{base['text_latency_ms']:>8.2f}{1:>8.2f}")
    for row in a["configs"]:
        flag = lambda c: f"{c:.5f}" + ("!" if c < NOTE_COSINE else " ")  # noqa: E731
        print(f"{row['config']:<16}{row['images_per_s']:>9.1f}{row['x_image_b32']:>7.2f}"
              f"{row['image_latency_ms']:>9.1f}{row['x_image_latency']:>8.2f}"
              f"{row['texts_per_s']:>9.1f}{row['text_latency_ms']:>8.2f}"
              f"{row['x_text_latency']:>8.2f}{flag(row['cosine_image']):>9}"
              f"{flag(row['cosine_text']):>9}{row['first_load_s']:>8.1f}"
              f"{row['second_load_s']:>7.1f}")
    print("x b32: images/s over the batch-32 baseline; x lower: baseline batch-1 latency over "
          "ours (ratios of the paired, interleaved runs); cos: min cosine vs torch fp32 "
          f"(! below {NOTE_COSINE}); load s: first load (export, calibration, compile), "
          "2nd s: the latency-mode load after it")


def verdict(best: dict, target: float) -> str:
    if best["ratio"] >= target and best["pooled_ratio"] >= target:
        return "met"
    if best["ratio"] >= target:
        return "met on the paired ratio only"
    return "NOT met"


def describe(best: dict) -> str:
    return (f"{best['ratio']:.2f}x paired ({best['config']}), {best['pooled_ratio']:.2f}x against "
            f"the run's median baseline ({best['pooled_config']})")


def print_summary(r: dict) -> None:
    print()
    for arch, a in r["archs"].items():
        s = a["summary"]
        if not s:
            continue
        tp, lat = s["best_image_throughput"], s["best_text_latency"]
        target = (f"; target >= {TARGET_IMAGE_THROUGHPUT:g}x: "
                  f"{verdict(tp, TARGET_IMAGE_THROUGHPUT)}") if arch == "vit-b-32" else ""
        print(f"{arch}: best image throughput over the batch-32 baseline: {describe(tp)}{target}")
        print(f"{arch}: best single-query text latency, times lower than the batch-1 baseline: "
              f"{describe(lat)}; target >= {TARGET_TEXT_LATENCY:g}x: "
              f"{verdict(lat, TARGET_TEXT_LATENCY)}")
        print(f"{arch}: best single-image latency, times lower: "
              f"{describe(s['best_image_latency'])}")
    auto = r["auto"]
    print(f"auto: vislang.runtime.choose('auto', 'auto') -> {auto['backend']}/{auto['precision']}"
          f" ({auto['reason']})")
    for arch, a in r["archs"].items():
        rows = {row["config"]: row for row in a["configs"]}
        picked = rows.get(f"{auto['backend']}/{auto['precision']}")
        if picked and a["summary"]:
            tp, lat = a["summary"]["best_image_throughput"], a["summary"]["best_text_latency"]
            print(f"{arch}: auto's config gives {picked['x_image_b32']:.2f}x throughput "
                  f"(best {tp['config']} {tp['ratio']:.2f}x) and {picked['x_text_latency']:.2f}x "
                  f"lower text latency (best {lat['config']} {lat['ratio']:.2f}x)")


def fp32_disagreements(r: dict) -> list[str]:
    return [f"{arch} {row['config']}: cosine {min(row['cosine_image'], row['cosine_text']):.6f}"
            for arch, a in r["archs"].items() for row in a["configs"]
            if row["config"].endswith("/fp32")
            and min(row["cosine_image"], row["cosine_text"]) < FP32_MIN_COSINE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", choices=list(ARCHS), default=["vit-b-32", "vit-b-16"])
    parser.add_argument("--batches", type=int, default=3, metavar="N",
                        help="timed batches of 32 per config (after 2 warm-up calls)")
    parser.add_argument("--latency-calls", type=int, default=10, metavar="N",
                        help="timed single-item calls per config (after 2 warm-up calls)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="BACKEND/PRECISION",
                        help="configs to leave out, e.g. onnx/int8 openvino/int8")
    parser.add_argument("--keep-cache", action="store_true",
                        help="keep the scratch checkpoints and exported engines (path printed)")
    parser.add_argument("--worker-timeout", type=float, default=1800, metavar="S",
                        help="seconds before one config's worker process is given up on")
    parser.add_argument("--openclip", action="store_true",
                        help="checkpoints in OpenCLIP's layout, mapped by vislang; baseline: "
                             "open_clip's own model")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        try:
            worker(json.loads(args.worker))
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
        # Leave without tearing the engines down: destroying a compiled OpenVINO model can
        # wait forever on a thread that wants the GIL (seen with openvino 2026.4).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    known = {f"{b}/{p}" for b in runtime.BACKENDS for p in runtime.PRECISIONS}
    if unknown := set(args.skip) - known:
        parser.error(f"unknown config(s) to skip: {', '.join(sorted(unknown))}")
    quiet()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    if bad := fp32_disagreements(result):
        print("fp32 engines disagree with the torch reference: " + "; ".join(bad))
        raise SystemExit(1)  # a speed claim about different numbers is no claim
    if any(a["failures"] for a in result["archs"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
