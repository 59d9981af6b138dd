"""What runs a model: torch (the reference), OpenVINO or ONNX Runtime, for both families.

One place answers it. ``choose`` (CLIP/SigLIP) and ``choose_blip`` turn an ``EngineSpec``'s
"auto" into the best engine and precision this machine has, and refuse impossible combinations
with a message that says what to install or which precision works instead; ``create_engine``
and ``create_blip_engine`` make the engine; ``export`` writes a loaded model's graphs.

Every engine of a family has one interface (``protocols.ClipEngine``: ``encode_images`` and
``encode_texts``; ``protocols.BlipEngine``), so capabilities never know which one runs. The
runtime knows models only through their public attributes (``family``, ``model_key``,
``config``, ``preprocess``, ``tokenize``): it imports nothing from ``vislang.models``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vislang.errors import InputError
from vislang.runtime.cpu import LABELS, capped, cpu_class, cpu_has_bf16
from vislang.runtime.devices import (  # noqa: F401  (the device rule, re-exported)
    check_device_name,
    is_openvino_device,
    openvino_name,
    resolve_device,
    why_device,
)
from vislang.settings import logger

if TYPE_CHECKING:  # torch and numpy load with the first engine, not with `vislang --help`
    import numpy as np
    import torch

    from vislang.images import ImageSource
    from vislang.runtime.protocols import BlipEngine, ClipEngine

BACKENDS = ("torch", "openvino", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
EXTRAS = {"openvino": "pip install 'vislang[openvino]'", "onnx": "pip install 'vislang[onnx]'"}
MODES = ("throughput", "latency")
log = logger("runtime")


@dataclass(frozen=True)
class EngineSpec:
    """What a caller asks to run a model on: built once at a front door (a CLI command, the
    server, ``load``) and passed whole to where the engine is made.

    The defaults are one rule: everything that does a job (every command, the server,
    ``Index``, ``caption``/``ask``) runs ``auto``, the fastest engine measured on this machine;
    ``vislang.load`` alone defaults to ``REFERENCE``, as the CLIP API it copies does: exact
    features that carry gradients.
    """

    backend: str = "auto"  # auto, torch, openvino, onnx
    precision: str = "auto"  # auto, fp32, bf16, fp16, int8
    mode: str = "throughput"  # throughput (bulk work) or latency (one query at a time)
    device: str = "auto"  # auto (cuda when torch sees one, else cpu), cpu, cuda, cuda:N, or
    # an OpenVINO device (CPU, GPU, GPU.N, NPU, AUTO): runtime/devices.py

    def __post_init__(self):
        check_device_name(self.device)
        if self.backend not in ("auto", *BACKENDS):
            raise InputError(f"unknown backend {self.backend!r}; choose auto, "
                             f"{', '.join(BACKENDS)}")
        if self.precision not in ("auto", *PRECISIONS):
            raise InputError(f"unknown precision {self.precision!r}; choose auto, "
                             f"{', '.join(PRECISIONS)}")
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose throughput or latency")


REFERENCE = EngineSpec("torch", "fp32", device="cpu")


@dataclass(frozen=True)
class EngineChoice:
    backend: str
    precision: str
    reason: str
    device: str = "cpu"  # the spec's device with "auto" resolved: what the engine runs on


def installed(backend: str) -> bool:
    module = {"torch": "torch", "openvino": "openvino", "onnx": "onnxruntime"}[backend]
    return importlib.util.find_spec(module) is not None


def supported_precisions(backend: str, device: str = "cpu") -> tuple[str, ...]:
    """What ``backend`` can run here, best first."""
    cuda = device.startswith("cuda")
    if backend == "torch":
        return ("fp16", "bf16", "fp32") if cuda else (("bf16", "fp32") if cpu_has_bf16()
                                                      else ("fp32",))
    if not installed(backend):
        return ()
    if backend == "onnx":
        return ("fp16", "fp32") if cuda else ("int8", "fp32")
    from vislang.runtime.openvino_engine import openvino_capabilities

    # AUTO starts every model on the CPU while a GPU compiles: the CPU's precisions bind it.
    target = openvino_name(device).split(":")[0].replace("AUTO", "CPU")
    caps = set(openvino_capabilities(target))
    if target == "CPU":
        if not cpu_has_bf16():
            caps.discard("BF16")
        if capped():  # FP16 on a CPU needs AMX-FP16 or AVX512-FP16: hidden with them
            caps.discard("FP16")
    return tuple(p for p, cap in (("int8", "INT8"), ("bf16", "BF16"), ("fp16", "FP16"),
                                  ("fp32", "FP32")) if cap in caps)


# What "auto" runs, by CPU class (or CUDA), best first: the fastest engine x precision that
# bench/encode.py and bench/blip.py measured on such a machine (docs/benchmarks.md keeps a table
# per class), among those that need no calibration and keep features within bf16's distance
# of fp32 (min cosine >= 0.999). OpenVINO's int8 is calibrated (NNCF) and never automatic;
# ONNX Runtime's is dynamic (int8 weights, activations scaled on each call) and may be. Rows
# whose engine is not installed are passed over.
AUTO: dict[str, tuple[tuple[str, str], ...]] = {
    "cuda": (("torch", "fp16"), ("torch", "bf16"), ("onnx", "fp16")),
    # An OpenVINO GPU or NPU: half precision is what their kernels are built for (unmeasured
    # here: no session has had one).
    "openvino-accelerator": (("openvino", "fp16"),),
    # AMX: OpenVINO bf16 ~5x transformers fp32 on ViT-B/32; its int8 is faster still (~7.5x)
    # but calibrated.
    "amx": (("openvino", "bf16"), ("torch", "bf16")),
    # AVX-512 without AMX: bf16 (AVX512-BF16 alone) measured slower than fp32 on an Intel VM
    # (3.3x faster on AMD Zen 4). ONNX Runtime's int8 is ~2-4x faster on both, but on Zen 4
    # (VNNI) its saliency maps correlate only 0.91 with fp32's (0.999 on AVX2): not auto yet.
    "avx512": (("openvino", "fp32"), ("torch", "fp32")),
    # AVX2 (AMD EPYC): ONNX Runtime's int8 ~2.5x on ViT-B/32, OpenVINO fp32 ~1.3x, its int8
    # ~1.4-1.7x: without VNNI or AMX, only ONNX Runtime's int8 kernels pay.
    "avx2": (("onnx", "int8"), ("openvino", "fp32"), ("torch", "fp32")),
    "other": (("onnx", "int8"), ("openvino", "fp32"), ("torch", "fp32")),
}


def choose(backend: str = "auto", precision: str = "auto", device: str = "cpu") -> EngineChoice:
    """Resolve "auto" (backend, precision and device) and check the combination; raise
    InputError naming the way out. An explicit "cuda" is planned for, not looked for (that is
    ``resolve_device``'s job at a front door)."""
    check_device_name(device)
    if device == "auto":
        device = resolve_device(device)
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if precision not in ("auto", *PRECISIONS):
        raise InputError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    if backend != "auto":
        if not installed(backend):
            raise InputError(f"the {backend} backend is not installed; {EXTRAS[backend]}")
        if device.startswith("cuda") and backend == "openvino":
            raise InputError("OpenVINO does not run on CUDA devices; use --backend torch or "
                             "onnx on CUDA, or an OpenVINO device (GPU, AUTO) for openvino")
        if is_openvino_device(device) and backend != "openvino":
            raise InputError(f"{device} is an OpenVINO device: use it with --backend openvino "
                             "(or auto); torch and onnx take cpu, cuda or cuda:N")
    if is_openvino_device(device):
        backend = "openvino"
    if backend == "auto" or precision == "auto":
        backend, precision, reason = _auto(backend, precision, device)
    else:
        reason = "asked for"
    supported = supported_precisions(backend, device)
    if precision not in supported:
        where = ("CUDA" if device.startswith("cuda") else f"OpenVINO {device}"
                 if is_openvino_device(device) else "this CPU")
        raise InputError(f"{backend} cannot run {precision} on {where}; it can run: "
                         f"{', '.join(supported)}" + _elsewhere(precision, device))
    return EngineChoice(backend, precision, reason, device)


def _auto(backend: str, precision: str, device: str) -> tuple[str, str, str]:
    """The first row of AUTO that fits what was fixed and runs here; else fp32 on the backend
    asked for, or the first installed backend that runs the precision asked for."""
    where, rows = _auto_rows(device)
    missing = []
    for b, p in rows:
        if backend not in ("auto", b) or precision not in ("auto", p):
            continue
        if not installed(b):
            missing.append(f"{EXTRAS[b]} for {b}/{p}")
            continue
        if p in supported_precisions(b, device):
            fastest = "the fastest" if not missing else "the fastest installed"
            hint = f" ({'; '.join(missing)})" if missing else ""
            return b, p, f"{fastest} engine measured on an {where}, docs/benchmarks.md{hint}"
    if backend != "auto":
        return backend, "fp32", f"{backend} runs fp32 wherever it runs"
    order = [*dict.fromkeys([b for b, _ in rows] + list(BACKENDS))]
    fits = [b for b in order if installed(b) and precision in supported_precisions(b, device)]
    chosen = (fits or [b for b in order if installed(b)])[0]
    return chosen, precision, f"the first installed engine that runs {precision} on an {where}"


def _auto_rows(device: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Where ``device`` is, in words, and its rows of AUTO."""
    if device.startswith("cuda"):
        return "CUDA", AUTO["cuda"]
    if openvino_name(device).startswith(("GPU", "NPU")):
        return f"OpenVINO {device}", AUTO["openvino-accelerator"]
    return f"{LABELS[cpu_class()]} CPU", AUTO[cpu_class()]


def _elsewhere(precision: str, device: str) -> str:
    """Where ``precision`` does run: another engine, or nowhere on this CPU, and why."""
    if precision == "fp32":
        return ""
    others = [b for b in BACKENDS if b != "torch" and precision in
              supported_precisions(b, device)]
    if others:
        return f" (for {precision} use --backend {others[0]})"
    if precision == "bf16" and not device.startswith("cuda") and not cpu_has_bf16():
        return f" (no engine runs bf16 on this {LABELS[cpu_class()]} CPU: it has no bf16 units)"
    return ""


def choose_spec(spec: EngineSpec) -> EngineChoice:
    """``choose`` for a whole spec."""
    return choose(spec.backend, spec.precision, spec.device)


def create_engine(weights: Callable[[], torch.nn.Module], config, model_key: str,
                  choice: EngineChoice, spec: EngineSpec = REFERENCE,
                  calibration: Callable[[], dict[str, list[np.ndarray]]] | None = None
                  ) -> ClipEngine:
    """The engine for a CLIP/SigLIP checkpoint, as ``choice`` (from ``choose_spec(spec)``)
    says (its device has "auto" resolved); ``spec`` gives the mode. ``weights()`` returns the transformers model;
    exported engines call it only when an export is missing, so a cached engine starts
    without it. ``calibration()`` gives int8's inputs (``calibration.clip_inputs``) and is
    called only when an int8 export is made."""
    _log_choice(model_key, choice)
    if choice.backend == "torch":
        from vislang.runtime.torch_engine import TorchEngine

        return TorchEngine(weights(), choice.device, choice.precision)
    if choice.backend == "openvino":
        from vislang.runtime.openvino_engine import OpenVINOEngine

        return OpenVINOEngine(weights, config, model_key, choice.precision, spec.mode,
                              calibration, device=openvino_name(choice.device))
    from vislang.runtime.onnx_engine import OnnxEngine

    return OnnxEngine(weights, config, model_key, choice.precision, choice.device)


# -- BLIP --------------------------------------------------------------------------------------
# What BLIP's exported graphs run in, per backend.
BLIP_PRECISIONS = {"openvino": ("fp32", "bf16", "int8"), "onnx": ("fp32", "int8")}


def choose_blip(spec: EngineSpec) -> EngineChoice:
    """torch (any device), OpenVINO or ONNX Runtime (CPU); "auto" follows CLIP's rule."""
    device = resolve_device(spec.device) if spec.device == "auto" else spec.device
    if spec.backend in BLIP_PRECISIONS and device.startswith("cuda"):
        raise InputError(f"BLIP runs on CUDA with the torch backend, not {spec.backend}")
    # What BLIP's graphs can be is checked before what this CPU can run: "not fp16" is the
    # answer on every machine, whatever the CPU's class.
    _check_blip_precision(spec.backend, spec.precision)
    choice = choose(spec.backend, spec.precision, device)
    _check_blip_precision(choice.backend, choice.precision)
    return choice


def _check_blip_precision(backend: str, precision: str) -> None:
    allowed = BLIP_PRECISIONS.get(backend)
    if allowed and precision != "auto" and precision not in allowed:
        runs_it = [b for b, graphs in BLIP_PRECISIONS.items()
                   if precision in graphs and precision in supported_precisions(b)]
        way = f" (for {precision} use --backend {runs_it[0]})" if runs_it else ""
        raise InputError(f"BLIP on {backend} runs in {', '.join(allowed)}, not {precision}{way}")


def create_blip_engine(weights: Callable[[], torch.nn.Module], model_key: str, task: str,
                       choice: EngineChoice, spec: EngineSpec = REFERENCE,
                       calibration: Callable[[], list[np.ndarray]] | None = None
                       ) -> BlipEngine:
    """The engine for a BLIP checkpoint (``task`` "caption" or "vqa"), as ``choice`` (from
    ``choose_blip(spec)``) says; ``calibration()`` gives the vision encoder's int8 inputs
    (``calibration.blip_pixels``), called only when an int8 export is made."""
    _log_choice(model_key, choice)
    if choice.backend == "openvino":
        from vislang.runtime.openvino_blip import OpenVINOBlipEngine

        return OpenVINOBlipEngine(weights, model_key, task, choice.precision, calibration,
                                  device=openvino_name(choice.device))
    if choice.backend == "onnx":
        from vislang.runtime.onnx_blip import OnnxBlipEngine

        return OnnxBlipEngine(weights, model_key, task, choice.precision)
    from vislang.runtime.torch_blip import TorchBlipEngine

    return TorchBlipEngine(weights, choice.precision, choice.device)


def _log_choice(model_key: str, choice: EngineChoice) -> None:
    log.info("%s runs on %s/%s: %s", model_key, choice.backend, choice.precision, choice.reason)


# -- explicit exports --------------------------------------------------------------------------
EXPORT_BACKENDS = ("openvino", "onnx")


def check_export(backend: str, precision: str, family: str = "clip") -> EngineChoice:
    """Refuse an export this machine (or the model family) cannot run, with the way out."""
    if backend == "torch":
        raise InputError("torch needs no export: it runs the checkpoint itself; export writes "
                         "openvino or onnx graphs")
    if backend not in EXPORT_BACKENDS:
        raise InputError(f"unknown backend {backend!r} for export; choose openvino or onnx")
    spec = EngineSpec(backend, precision, device="cpu")
    return choose_blip(spec) if family == "blip" else choose_spec(spec)


def export(model, backend: str, precision: str, out_dir: str | os.PathLike,
           calibration: Sequence[ImageSource] | None = None) -> dict[str, Path]:
    """Write a loaded model's graphs to ``out_dir`` with a dynamic batch dimension, always
    anew: a ClipModel's image and text towers, a BlipModel's vision encoder, question encoder
    (VQA) and decoder without and with past. ``calibration`` images tune int8 (default:
    generated shapes scenes). The model's weights are read as loaded: load it with the
    reference engine (``REFERENCE``). Returns each graph's file."""
    check_export(backend, precision, model.family)
    write = _export_blip if model.family == "blip" else _export_clip
    return write(model, backend, precision, Path(out_dir), calibration)


def _export_clip(model, backend: str, precision: str, out_dir: Path, images) -> dict[str, Path]:
    from vislang.runtime.calibration import clip_inputs

    if backend == "onnx":  # dynamic int8: no calibration
        from vislang.runtime.onnx_engine import export_towers

        return export_towers(lambda: model.hf_model, model.config, model.model_key, precision,
                             out_dir=out_dir)
    from vislang.runtime.openvino_engine import export_towers

    return export_towers(lambda: model.hf_model, model.config, model.model_key, precision,
                         functools.partial(clip_inputs, model, images), out_dir)


def _export_blip(model, backend: str, precision: str, out_dir: Path, images) -> dict[str, Path]:
    from vislang.runtime.calibration import blip_pixels

    if backend == "onnx":
        from vislang.runtime.onnx_blip import export_onnx_blip

        return export_onnx_blip(lambda: model.hf_model, model.model_key, model.task, precision,
                                out_dir)
    from vislang.runtime.openvino_blip import export_blip

    return export_blip(lambda: model.hf_model, model.model_key, model.task, precision,
                       functools.partial(blip_pixels, model, images), out_dir)
