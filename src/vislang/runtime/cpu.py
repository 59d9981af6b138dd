"""What this CPU can do, by class, and one switch to make vislang believe it can do less.

Engines' speed depends on the CPU's class far more than on its model: AMX matrix units run
bf16 and int8 several times faster than AVX-512, which is itself ahead of AVX2 (most AMD
machines and older Intel ones). ``cpu_class`` names the class; the precision and engine rules
in ``vislang.runtime`` read it, never the raw flags.

``VISLANG_CPU=avx2`` (or ``avx512``) caps the class vislang detects, hiding bf16 and AMX (and,
for ``avx2``, AVX-512): one test run on an AMX machine then takes every path an AVX2-only
machine takes. It changes vislang's choices only; ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN: torch
and OpenVINO) would also keep the libraries' own kernels off those units, but on an AVX-512
VNNI CPU it breaks OpenVINO's int8 layers, so CI caps vislang's choices alone.
"""

from __future__ import annotations

import functools
import os

import torch

from vislang.errors import InputError

CLASSES = ("amx", "avx512", "avx2", "other")  # best first
LABELS = {"amx": "AMX", "avx512": "AVX-512", "avx2": "AVX2", "other": "no AVX2"}
CAP_VARIABLE = "VISLANG_CPU"


@functools.cache
def _detected() -> str:
    if torch.cpu._is_amx_tile_supported():
        return "amx"
    if torch.cpu._is_avx512_supported():
        return "avx512"
    return "avx2" if torch.cpu._is_avx2_supported() else "other"


def _cap() -> str | None:
    cap = os.environ.get(CAP_VARIABLE, "").strip().lower() or None
    if cap is not None and cap not in CLASSES:
        raise InputError(f"{CAP_VARIABLE}={cap!r} is not a CPU class; use one of "
                         f"{', '.join(CLASSES)} (or leave it unset to detect)")
    return cap


def cpu_class() -> str:
    """"amx", "avx512", "avx2" or "other": the detected class, lowered by VISLANG_CPU."""
    detected, cap = _detected(), _cap()
    if cap is None:
        return detected
    return max(detected, cap, key=CLASSES.index)  # a cap never raises the class


def capped() -> bool:
    return cpu_class() != _detected()


def cpu_has_amx() -> bool:
    return cpu_class() == "amx"


def cpu_has_bf16() -> bool:
    """bf16 arithmetic in hardware: AMX, or AVX-512 with its BF16 extension (Zen 4, Cooper
    Lake). Without it every engine emulates bf16, slower than fp32."""
    if cpu_class() == "amx":
        return True
    return cpu_class() == "avx512" and torch.cpu._is_avx512_bf16_supported()


def describe() -> str:
    """One line for `vislang info` and the demo, e.g. "AVX2 (no bf16 units)"."""
    label = LABELS[cpu_class()]
    units = "bf16 and int8 matrix units" if cpu_has_amx() else (
        "bf16 units" if cpu_has_bf16() else "no bf16 units")
    hidden = f"; capped by {CAP_VARIABLE}, detected {LABELS[_detected()]}" if capped() else ""
    return f"{label} ({units}{hidden})"
