"""--device on every front door: one rule for "auto", a clear refusal of a CUDA device this
machine lacks, the CUDA row of AUTO, and out-of-memory batches halved instead of fatal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from vislang.errors import InputError
from vislang.runtime import AUTO, EngineSpec, choose, choose_spec, resolve_device

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def red_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "red.png"
    Image.new("RGB", (64, 64), "red").save(path)
    return path


def _pretend_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA device")
def test_device_cuda_without_one_is_a_one_line_error_exit_2(red_image):
    result = run_cli("classify", red_image, "--labels", "a,b", "--model", "shapes-clip",
                     "--device", "cuda")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device: torch sees none; use --device cpu" in lines[0]
    assert result.stdout == ""


def test_device_auto_runs_on_cpu_here(red_image):
    result = run_cli("classify", red_image, "--labels", "red square,blue circle", "--model",
                     "shapes-clip", "--backend", "torch", "--precision", "fp32", "--device",
                     "auto", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["path"] == str(red_image)


def test_an_unknown_device_is_refused_before_any_work(red_image):
    result = run_cli("classify", red_image, "--labels", "a,b", "--model", "shapes-clip",
                     "--device", "tpu")
    assert result.returncode == 2
    assert "unknown device 'tpu'" in result.stderr


def test_resolve_device_rules(monkeypatch):
    _pretend_gpus(monkeypatch, 0)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(InputError, match="no CUDA device: torch sees none; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="no CUDA device"):
        resolve_device("cuda:0")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("cuda:x")
    _pretend_gpus(monkeypatch, 2)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(InputError, match="no CUDA device 2: torch sees 2"):
        resolve_device("cuda:2")


def test_auto_device_picks_the_cuda_row_when_torch_sees_a_gpu(monkeypatch):
    """Planned only: nothing runs on the pretend GPU."""
    _pretend_gpus(monkeypatch, 1)
    choice = choose_spec(EngineSpec())  # device "auto"
    assert choice.device == "cuda"
    assert (choice.backend, choice.precision) == AUTO["cuda"][0]
    _pretend_gpus(monkeypatch, 0)
    choice = choose_spec(EngineSpec())
    cpu = choose("auto", "auto", "cpu")
    assert choice.device == "cpu" and (choice.backend, choice.precision) == (cpu.backend,
                                                                             cpu.precision)


def test_default_spec_device_is_auto_and_reference_stays_on_cpu():
    from vislang.runtime import REFERENCE

    assert EngineSpec().device == "auto" and REFERENCE.device == "cpu"
    with pytest.raises(InputError, match="unknown device"):
        EngineSpec(device="gpu")


def test_default_batch_follows_the_device(clip_model):
    assert clip_model.device == "cpu" and clip_model.default_batch == 32


def test_an_out_of_memory_batch_is_halved_and_retried(clip_model, monkeypatch, tmp_path):
    images = []
    for i in range(11):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 40), (i * 20, 255 - i * 20, 90)).save(path)
        images.append(path)
    expected = clip_model.embed_images(images, batch_size=8)
    real = clip_model.engine.encode_images
    sizes = []

    def small_gpu(pixels):
        sizes.append(len(pixels))
        if len(pixels) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(pixels)

    monkeypatch.setattr(clip_model.engine, "encode_images", small_gpu)
    monkeypatch.setattr(clip_model, "_oom_cap", None)
    got = clip_model.embed_images(images, batch_size=8)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) <= 2  # halved, then capped
    assert clip_model._oom_cap == 2


def test_one_image_out_of_memory_still_raises(clip_model, monkeypatch, tmp_path):
    path = tmp_path / "one.png"
    Image.new("RGB", (40, 40), "blue").save(path)

    def no_memory(pixels):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(clip_model.engine, "encode_images", no_memory)
    monkeypatch.setattr(clip_model, "_oom_cap", None)
    with pytest.raises(torch.OutOfMemoryError):
        clip_model.embed_images([path])


def test_info_json_says_what_auto_device_picks_and_why():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert report["auto_device"]["device"] == expected == report["auto"]["device"]
    if expected == "cpu":
        assert report["auto_device"]["reason"] == "torch sees no CUDA device"


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_device_cuda_embeds_like_the_cpu(red_image):
    cpu = run_cli("classify", red_image, "--labels", "red square,blue circle", "--model",
                  "shapes-clip", "--device", "cpu", "--backend", "torch", "--json")
    gpu = run_cli("classify", red_image, "--labels", "red square,blue circle", "--model",
                  "shapes-clip", "--device", "cuda", "--backend", "torch", "--json")
    assert gpu.returncode == 0, gpu.stderr
    assert json.loads(gpu.stdout)[0]["labels"][0] == json.loads(cpu.stdout)[0]["labels"][0]


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["dense", "relevance"])
def test_saliency_on_cuda_points_where_the_cpu_does(method):
    import vislang
    from vislang.datasets.shapes import generate_scene

    scene = generate_scene(3, n_objects=2)
    phrase = f"a {scene.objects[0].colour} {scene.objects[0].shape}"
    cpu = vislang.saliency(vislang.load("shapes-clip", device="cpu"), scene.image, phrase,
                           method=method)
    gpu = vislang.saliency(vislang.load("shapes-clip", device="cuda"), scene.image, phrase,
                           method=method)
    assert np.corrcoef(cpu.array.ravel(), gpu.array.ravel())[0, 1] > 0.99


# -- OpenVINO's own devices (CPU, GPU, NPU, AUTO), as the seed notebooks choose them ----------
try:
    import openvino
except ImportError:  # the extra is optional; CI installs it
    openvino = None
needs_openvino = pytest.mark.skipif(openvino is None, reason="the openvino extra is not installed")


@needs_openvino
def test_an_openvino_device_runs_on_openvino_and_agrees_with_the_cpu(red_image):
    reports = {}
    for device in ("cpu", "CPU", "AUTO"):
        result = run_cli("classify", red_image, "--labels", "red square,blue circle",
                         "--model", "shapes-clip", "--backend", "openvino" if device == "cpu"
                         else "auto", "--precision", "fp32", "--device", device, "--json")
        assert result.returncode == 0, result.stderr
        reports[device] = json.loads(result.stdout)[0]["predictions"]
    assert reports["CPU"] == reports["AUTO"] == reports["cpu"]
    assert reports["cpu"][0]["label"] == "red square"


@needs_openvino
def test_an_openvino_device_this_machine_lacks_names_those_it_has(red_image, monkeypatch):
    from vislang.runtime import devices

    devices.openvino_devices.cache_clear()
    monkeypatch.setattr(openvino.Core, "available_devices", property(lambda self: ["CPU"]))
    with pytest.raises(InputError, match=r"OpenVINO sees no GPU device here; it sees: CPU, AUTO"):
        resolve_device("GPU")
    devices.openvino_devices.cache_clear()


@needs_openvino
def test_an_openvino_device_with_another_backend_is_refused(red_image):
    result = run_cli("classify", red_image, "--labels", "a,b", "--model", "shapes-clip",
                     "--backend", "torch", "--device", "CPU")
    assert result.returncode == 2
    assert "CPU is an OpenVINO device: use it with --backend openvino" in result.stderr


@needs_openvino
def test_an_openvino_gpu_runs_openvino_in_half_precision(monkeypatch):
    from vislang.runtime import devices, openvino_engine

    monkeypatch.setattr(devices, "openvino_devices", lambda: ("CPU", "GPU.0", "GPU.1"))
    monkeypatch.setattr(openvino_engine, "openvino_capabilities",
                        lambda device="CPU": frozenset({"FP32", "FP16", "INT8"}))
    assert resolve_device("GPU.1") == "GPU.1"
    choice = choose("auto", "auto", "GPU.1")
    assert (choice.backend, choice.precision, choice.device) == ("openvino", "fp16", "GPU.1")
    assert "OpenVINO GPU.1" in choice.reason
    with pytest.raises(InputError, match="OpenVINO does not run on CUDA devices"):
        choose("openvino", "auto", "cuda")


@needs_openvino
def test_info_lists_openvino_devices():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    devices = [d["device"] for d in json.loads(result.stdout)["openvino_devices"]]
    assert "CPU" in devices
