"""The CPU's class and the VISLANG_CPU cap: what auto picks, what is refused, and how it reads.

Every machine can take the AVX2 path: capped to avx2, an AMX machine must refuse bf16 with the
same clear error as an AMD EPYC does, and auto must pick what it picks there.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from vislang.errors import InputError
from vislang.runtime import choose, installed, supported_precisions
from vislang.runtime.cpu import _detected, cpu_class, cpu_has_amx, cpu_has_bf16, describe


@pytest.fixture
def avx2(monkeypatch):
    monkeypatch.setenv("VISLANG_CPU", "avx2")


def test_avx2_cap_hides_bf16_and_amx_everywhere(avx2):
    assert cpu_class() == "avx2" and not cpu_has_bf16() and not cpu_has_amx()
    assert supported_precisions("torch") == ("fp32",)
    for backend in ("openvino", "onnx"):
        if installed(backend):
            assert set(supported_precisions(backend)) == {"int8", "fp32"}
    with pytest.raises(InputError, match="no engine runs bf16 on this AVX2 CPU"):
        choose("torch", "bf16")
    assert choose("auto", "auto").precision in ("fp32", "int8")
    assert "capped by VISLANG_CPU" in describe() or _detected() == "avx2"


def test_a_cap_never_raises_the_class(monkeypatch):
    monkeypatch.setenv("VISLANG_CPU", "amx")
    assert cpu_class() == _detected()
    monkeypatch.setenv("VISLANG_CPU", "other")
    assert cpu_class() == "other" and supported_precisions("torch") == ("fp32",)


def test_a_misspelt_cap_is_a_clear_error():
    out = run_cli("info", env={"VISLANG_CPU": "avx3"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: VISLANG_CPU='avx3' is not a CPU class; use one of amx, avx512, avx2, other "
        "(or leave it unset to detect)"]


def test_info_names_the_class_and_what_auto_picks_there():
    capped = run_cli("info", env={"VISLANG_CPU": "avx2"})
    assert capped.returncode == 0, capped.stderr
    assert "class AVX2 (no bf16 units" in capped.stdout
    report = json.loads(run_cli("info", "--json", env={"VISLANG_CPU": "avx2"}).stdout)
    assert report["cpu_class"] == "avx2" and not report["cpu_bf16"] and not report["cpu_amx"]
    assert "bf16" not in report["backends"]["torch"]["precisions"]
    auto = choose("auto", "auto")  # this process is not capped: the machine's own answer
    assert report["auto"]["precision"] != "bf16"
    native = json.loads(run_cli("info", "--json").stdout)
    assert native["cpu_class"] == cpu_class()
    assert (native["auto"]["backend"], native["auto"]["precision"]) == (auto.backend,
                                                                         auto.precision)


def test_auto_on_cuda_is_half_precision_whichever_engine_is_named():
    """(Only the choice: no GPU is needed to resolve it.)"""
    auto = choose("auto", "auto", "cuda:0")
    assert (auto.backend, auto.precision) == ("torch", "fp16")
    if installed("onnx"):
        assert choose("onnx", "auto", "cuda").precision == "fp16"
    with pytest.raises(InputError, match="OpenVINO does not run on CUDA devices"):
        choose("openvino", "auto", "cuda")
