"""Which device a model runs on: one rule for every front door's ``--device``.

Two families of names, because two kinds of runtime address devices differently:

- torch and ONNX Runtime: ``auto`` (CUDA when torch sees one, else the CPU), ``cpu``, ``cuda``,
  ``cuda:N``.
- OpenVINO, as its own API and the seed notebooks name devices (``core.available_devices``
  plus ``AUTO``): ``CPU``, ``GPU``, ``GPU.N``, ``NPU``, ``AUTO``. Such a name implies the
  OpenVINO backend. ``cpu`` with ``--backend openvino`` is OpenVINO's ``CPU``.

A name is checked (spelling) without importing anything heavy, so ``--device bogus`` fails
before torch loads; whether the device exists here is ``resolve_device``'s question.
"""

from __future__ import annotations

import functools
import importlib.util
import re

from vislang.errors import InputError

OPENVINO_NAME = re.compile(r"(CPU|GPU(\.\d+)?|NPU(\.\d+)?|AUTO(:[A-Z0-9.,]+)?)$")


def is_openvino_device(device: str) -> bool:
    """``device`` is an OpenVINO device name (upper case, as OpenVINO writes them)."""
    return bool(OPENVINO_NAME.match(device))


def openvino_name(device: str) -> str:
    """The name OpenVINO compiles for: its own names as they are; anything else is the CPU."""
    return device if is_openvino_device(device) else "CPU"


def check_device_name(device: str) -> None:
    """Refuse a device that is none of auto, cpu, cuda, cuda:N or an OpenVINO name."""
    index = device[5:] if device.startswith("cuda:") else "0"
    if device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and index.isdigit()):
        return
    if is_openvino_device(device):
        return
    raise InputError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N (torch, "
                     "onnx), or an OpenVINO device: CPU, GPU, GPU.N, NPU, AUTO")


def resolve_device(device: str = "auto") -> str:
    """The one rule for a device: "auto" is "cuda" when torch sees a CUDA device, else "cpu";
    "cuda" / "cuda:N" must exist here, and so must an OpenVINO device (an InputError says
    which ones do)."""
    check_device_name(device)
    if device == "cpu":
        return device
    if is_openvino_device(device):
        return _existing_openvino_device(device)
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda" if count else "cpu"
    if not count:
        raise InputError(f"no CUDA device: torch sees none; use --device cpu (asked for "
                         f"{device})")
    index = int(device[5:]) if device.startswith("cuda:") else 0
    if index >= count:
        raise InputError(f"no CUDA device {index}: torch sees {count} (cuda:0"
                         + (f" to cuda:{count - 1}" if count > 1 else "") + ")")
    return device


def _existing_openvino_device(device: str) -> str:
    if importlib.util.find_spec("openvino") is None:
        raise InputError(f"{device} is an OpenVINO device and OpenVINO is not installed; "
                         "pip install 'vislang[openvino]'")
    if device.startswith("AUTO"):  # OpenVINO's own chooser: it picks among what it sees
        return device
    seen = openvino_devices()
    if device not in seen and not (device in ("GPU", "NPU") and f"{device}.0" in seen):
        raise InputError(f"OpenVINO sees no {device} device here; it sees: "
                         f"{', '.join([*seen, 'AUTO'])}")
    return device


@functools.cache  # the hardware does not change while a process runs
def openvino_devices() -> tuple[str, ...]:
    """OpenVINO's devices here, e.g. ("CPU", "GPU")."""
    import openvino as ov

    return tuple(ov.Core().available_devices)


def why_device(device: str) -> str:
    """Why "auto" resolves to ``device``, for `vislang info`."""
    if device == "cpu":
        return "torch sees no CUDA device"
    import torch

    return f"torch sees {torch.cuda.device_count()} CUDA device(s): {torch.cuda.get_device_name(0)}"
