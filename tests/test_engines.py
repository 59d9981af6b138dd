"""Every engine and precision against the torch fp32 reference; choices, errors, the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vislang
from conftest import run_cli
from vislang.datasets.shapes import CLASS_NAMES, generate_scenes
from vislang.errors import InputError
from vislang.metrics import text_to_image_recall
from vislang.runtime import choose, installed, supported_precisions
from vislang.runtime.cache import list_entries
from vislang.zeroshot import Classifier

TEXTS = ["a red circle", "two blue squares and a yellow triangle", "a dog on a beach at sunset"]
CONFIGS = [(b, p) for b in ("torch", "openvino", "onnx") if installed(b)
           for p in supported_precisions(b) if p != "int8"]


def _images(n: int = 6):
    return [s.image for s in generate_scenes(n, seed=515)]


@pytest.fixture(scope="module")
def reference(tiny_clip_dir):
    model = vislang.load(str(tiny_clip_dir))
    return model.embed_images(_images()), model.embed_texts(TEXTS)


@pytest.mark.parametrize("backend, precision", CONFIGS, ids=lambda x: str(x))
def test_engine_matches_torch_fp32(tiny_clip_dir, reference, backend, precision):
    model = vislang.load(str(tiny_clip_dir), backend=backend, precision=precision)
    assert model.backend == f"{backend}/{precision}"
    images, texts = model.embed_images(_images()), model.embed_texts(TEXTS)
    bound = 0.9999 if precision == "fp32" else 0.999
    assert (images * reference[0]).sum(axis=1).min() >= bound
    assert (texts * reference[1]).sum(axis=1).min() >= bound


@pytest.mark.parametrize("eos_token_id", [49407, 2], ids=["eos-49407", "legacy-eos-2"])
def test_exported_towers_equal_transformers(tiny_clip_dir, eos_token_id):
    """The graphs every exported engine is made from skip the last layer's work on positions
    that are not pooled; the features must still be transformers' own, wherever the end token
    is and whatever follows it (padding with the end token, or other ids)."""
    import torch
    from transformers import CLIPModel

    from vislang.runtime.towers import tower

    hf = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    hf.config.text_config.eos_token_id = hf.text_model.eos_token_id = eos_token_id
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 49000, (4, 12), generator=generator)
    ids[:, 0] = 49406
    for row, end in enumerate((3, 11, 6, 1)):  # end token at different places ...
        ids[row, end] = 49407  # with eos 2, pooling takes the highest id: this one too
    ids[0, 4:] = 49407  # ... padded with it, or followed by other words
    pixels = torch.randn(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        expected_text = hf.get_text_features(input_ids=ids).pooler_output
        expected_image = hf.get_image_features(pixel_values=pixels).pooler_output
        assert torch.allclose(tower(hf, "text")(ids), expected_text, atol=1e-5)
        assert torch.allclose(tower(hf, "image")(pixels), expected_image, atol=1e-5)


@pytest.mark.skipif(not installed("openvino"), reason="needs the openvino extra")
def test_siglip_runs_on_openvino(tiny_siglip_dir):
    ref = vislang.load(str(tiny_siglip_dir))
    fast = vislang.load(str(tiny_siglip_dir), backend="openvino", precision="fp32")
    assert (fast.embed_images(_images()) * ref.embed_images(_images())).sum(1).min() >= 0.9999
    assert (fast.embed_texts(TEXTS) * ref.embed_texts(TEXTS)).sum(1).min() >= 0.9999


@pytest.mark.skipif(not installed("openvino"), reason="needs the openvino extra")
def test_latency_and_throughput_modes_agree(tiny_clip_dir):
    images = _images(24)  # enough for the batch to be split over parallel requests
    bulk = vislang.load(str(tiny_clip_dir), backend="openvino", precision="fp32")
    single = vislang.load(str(tiny_clip_dir), backend="openvino", precision="fp32",
                          mode="latency")
    assert np.allclose(bulk.embed_images(images, batch_size=24),
                       single.embed_images(images, batch_size=1), atol=1e-5)


@pytest.fixture(scope="module")
def shapes_eval():
    singles = generate_scenes(200, seed=616161, n_objects=1)
    pairs = generate_scenes(200, seed=626262, n_objects=2)
    return singles, pairs


def _quality(model, shapes_eval) -> tuple[float, float]:
    singles, pairs = shapes_eval
    predictions = Classifier(model, list(CLASS_NAMES)).predict([s.image for s in singles], 1)
    truth = [f"{s.objects[0].colour} {s.objects[0].shape}" for s in singles]
    accuracy = float(np.mean([p[0].label == t for p, t in zip(predictions, truth)]))
    captions = [s.caption for s in pairs]
    queries = list(dict.fromkeys(captions))
    recall = text_to_image_recall(model.embed_images([s.image for s in pairs]), captions,
                                  model.embed_texts(queries), queries)
    return accuracy, recall["recall@5"]


@pytest.mark.parametrize("backend", [b for b in ("openvino", "onnx") if installed(b)])
def test_int8_keeps_shapes_clip_answers(backend, shapes_eval):
    fp32 = _quality(vislang.load("shapes-clip"), shapes_eval)
    int8 = _quality(vislang.load("shapes-clip", backend=backend, precision="int8"), shapes_eval)
    assert int8[0] >= fp32[0] - 0.01  # zero-shot accuracy within 1 point
    assert int8[1] >= fp32[1] - 0.02  # retrieval recall@5 within 2 points


@pytest.mark.skipif(not installed("onnx"), reason="needs the onnx extra")
def test_second_load_reuses_the_export(tiny_clip_dir):
    vislang.load(str(tiny_clip_dir), backend="onnx", precision="fp32")
    before = {e.path: [f.stat().st_mtime_ns for f in sorted(e.path.iterdir())]
              for e in list_entries()}
    vislang.load(str(tiny_clip_dir), backend="onnx", precision="fp32")
    after = {e.path: [f.stat().st_mtime_ns for f in sorted(e.path.iterdir())]
             for e in list_entries()}
    assert before == after


@pytest.mark.parametrize("backend, precision, message", [
    ("onnx", "bf16", "onnx cannot run bf16 on this CPU"),
    ("torch", "int8", "torch cannot run int8"),
    ("tensorrt", "fp32", "unknown backend 'tensorrt'"),
    ("torch", "fp8", "unknown precision 'fp8'"),
])
def test_impossible_choices_say_what_works(backend, precision, message):
    with pytest.raises(InputError, match=message):
        choose(backend, precision)


def test_missing_backend_names_the_extra(monkeypatch):
    monkeypatch.setattr("vislang.runtime.installed", lambda b: b == "torch")
    with pytest.raises(InputError, match=r"pip install 'vislang\[openvino\]'"):
        choose("openvino", "fp32")
    assert choose("auto", "auto").backend == "torch"


def test_info_and_export_and_cache_commands(tmp_path):
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    auto = json.loads(result.stdout)["auto"]
    assert auto["backend"] in ("torch", "openvino", "onnx") and auto["reason"]
    if not installed("onnx"):
        pytest.skip("needs the onnx extra")
    result = run_cli("export", "shapes-clip", "--backend", "onnx", "-o", tmp_path / "x", "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    import onnxruntime as ort

    session = ort.InferenceSession(files["image"], providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"pixel_values": np.zeros((3, 3, 64, 64), np.float32)})
    assert out.shape == (3, 64)  # dynamic batch dimension
    listed = run_cli("cache", "list", "--json")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list)
    bad = run_cli("export", "shapes-clip", "--backend", "onnx", "--precision", "bf16")
    assert bad.returncode == 2 and "onnx cannot run bf16" in bad.stderr
    # ... and says where bf16 does run, or why nowhere on this CPU
    way = ("--backend openvino" if "bf16" in supported_precisions("openvino")
           else "no engine runs bf16 on this")
    assert way in bad.stderr


def test_openvino_compiled_cache_is_kept_apart_per_precision_hint():
    """OpenVINO names a compiled blob without INFERENCE_PRECISION_HINT; an int8 ViT-B/16 tower
    compiled under f32 and then loaded under bf16 from one folder crashed the process (seen on
    an AMX CPU with OpenVINO 2026.4). Each hint must get its own folder."""
    from vislang.runtime.cache import openvino_config

    folders = {openvino_config(hint, "LATENCY")["CACHE_DIR"] for hint in ("f32", "bf16", "f16")}
    assert len(folders) == 3
    assert openvino_config("bf16", "LATENCY")["CACHE_DIR"] == \
        openvino_config("bf16", "THROUGHPUT")["CACHE_DIR"]  # streams are set at load, not baked in
