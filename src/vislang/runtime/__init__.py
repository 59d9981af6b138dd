"""Engines that run a model's towers: torch (the reference), OpenVINO, ONNX Runtime.

All share one protocol -- ``encode_images(pixels) -> [N, D]`` and ``encode_texts(ids) -> [N, D]``
-- so capabilities never know which one runs. ``choose`` turns "auto" into the best engine and
precision this machine has, and refuses impossible combinations with a message that says what
to install or which precision works instead.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from vislang.errors import InputError

BACKENDS = ("torch", "openvino", "onnx")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
EXTRAS = {"openvino": "pip install 'vislang[openvino]'", "onnx": "pip install 'vislang[onnx]'"}
MODES = ("throughput", "latency")


@dataclass(frozen=True)
class EngineChoice:
    backend: str
    precision: str
    reason: str


def installed(backend: str) -> bool:
    module = {"torch": "torch", "openvino": "openvino", "onnx": "onnxruntime"}[backend]
    return importlib.util.find_spec(module) is not None


def cpu_has_bf16() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_has_amx() -> bool:
    return torch.cpu._is_amx_tile_supported()


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

    caps = openvino_capabilities()
    return tuple(p for p, cap in (("int8", "INT8"), ("bf16", "BF16"), ("fp16", "FP16"),
                                  ("fp32", "FP32")) if cap in caps)


def choose(backend: str = "auto", precision: str = "auto", device: str = "cpu") -> EngineChoice:
    """Resolve "auto" and check the combination; raise InputError naming the way out."""
    if backend not in ("auto", *BACKENDS):
        raise InputError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if precision not in ("auto", *PRECISIONS):
        raise InputError(f"unknown precision {precision!r}; choose auto, {', '.join(PRECISIONS)}")
    if backend == "auto":
        backend, reason = _auto_backend(device)
    else:
        reason = "asked for"
        if not installed(backend):
            raise InputError(f"the {backend} backend is not installed; {EXTRAS[backend]}")
        if device.startswith("cuda") and backend == "openvino":
            raise InputError("the openvino backend runs on the CPU here; use --backend torch "
                             "or onnx on CUDA")
    supported = supported_precisions(backend, device)
    if precision == "auto":
        precision, why = _auto_precision(supported, device)
        reason = f"{reason}; {why}"
    elif precision not in supported:
        where = "CUDA" if device.startswith("cuda") else "this CPU"
        raise InputError(f"{backend} cannot run {precision} on {where}; it can run: "
                         f"{', '.join(supported)}" + _elsewhere(precision, device))
    return EngineChoice(backend, precision, reason)


def _auto_backend(device: str) -> tuple[str, str]:
    if device.startswith("cuda"):
        return "torch", "CUDA: torch runs fp16 on the GPU directly"
    if installed("openvino"):
        return "openvino", ("OpenVINO is installed: the fastest CPU engine in bench/encode.py "
                            "and bench/blip.py")
    return "torch", f"OpenVINO is not installed ({EXTRAS['openvino']} for a faster CPU engine)"


def _auto_precision(supported: tuple[str, ...], device: str) -> tuple[str, str]:
    # int8 changes answers slightly and needs calibration: never an automatic choice. On a CPU,
    # bf16 pays only with AMX matrix units: with AVX512-BF16 alone bench/encode.py measured it
    # slower than fp32 in every engine (docs/benchmarks.md).
    if device.startswith("cuda"):
        preferred, why = ("fp16", "bf16"), "half precision on the GPU"
    elif cpu_has_amx():
        preferred, why = ("bf16",), "bf16 on this CPU's AMX matrix units"
    else:
        preferred, why = (), "fp32: no AMX on this CPU, where bf16 measured slower"
    chosen = next((p for p in preferred if p in supported), "fp32")
    return chosen, why if chosen != "fp32" or not preferred else "fp32"


def _elsewhere(precision: str, device: str) -> str:
    others = [b for b in BACKENDS if b != "torch" and precision in
              supported_precisions(b, device)] if precision != "fp32" else []
    return f" (for {precision} use --backend {others[0]})" if others else ""


def create_engine(weights, config, model_key: str, choice: EngineChoice, device: str = "cpu",
                  mode: str = "throughput", calibration=None):
    """The engine for ``choice``. ``weights()`` returns the transformers model; exported
    engines call it only when an export is missing, so a cached engine starts without it."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose throughput or latency")
    if choice.backend == "torch":
        from vislang.runtime.torch_engine import TorchEngine

        return TorchEngine(weights(), device, choice.precision)
    if choice.backend == "openvino":
        from vislang.runtime.openvino_engine import OpenVINOEngine

        return OpenVINOEngine(weights, config, model_key, choice.precision, mode, calibration)
    from vislang.runtime.onnx_engine import OnnxEngine

    return OnnxEngine(weights, config, model_key, choice.precision, mode, device)
