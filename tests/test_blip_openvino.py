"""BLIP on OpenVINO (and ONNX Runtime): the seed notebook's graphs exported once, a stateful
decoder, and clear errors for what BLIP cannot run. (Token equality with transformers' generate, fp32, greedy and
beam: tests/test_blip.py; right captions and answers in bf16 and int8: test_shapes_blip.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vislang
from conftest import run_cli
from test_blip import _tiny_blip
from vislang.errors import InputError
from vislang.models.blip import load_blip
from vislang.runtime import choose, installed, supported_precisions

pytestmark = pytest.mark.skipif(not installed("openvino"), reason="needs the openvino extra")


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory):
    return _tiny_blip(tmp_path_factory.mktemp("blip") / "vqa", "vqa", seed=1)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    from PIL import Image

    return [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for _ in range(3)]


def test_graphs_are_exported_once_and_the_decoder_keeps_its_cache(vqa_dir, images, tmp_path):
    import openvino as ov

    from vislang.runtime.openvino_blip import export_blip

    blip = load_blip(str(vqa_dir), "openvino", "fp32")
    answers = [vislang.ask(i, "how many circles?", blip) for i in images]

    loads = []

    def weights():
        loads.append(1)
        return blip.engine.hf_model

    # the engine cache already holds what the first ask exported: no weights, no writes
    first = export_blip(weights, blip.model_key, "vqa", "fp32")
    assert sorted(first) == ["decoder", "decoder_with_past", "question", "vision"]
    stamps = {p: p.stat().st_mtime_ns for p in first.values()}
    again = export_blip(weights, blip.model_key, "vqa", "fp32")
    assert again == first and not loads
    assert {p: p.stat().st_mtime_ns for p in again.values()} == stamps
    # an explicit export to a folder always writes, with what was asked for now
    written = export_blip(weights, blip.model_key, "vqa", "fp32", out_dir=tmp_path)
    assert all(p.parent == tmp_path for p in written.values()) and len(loads) == 1

    step = ov.Core().read_model(str(first["decoder_with_past"]))
    # every cache is a variable inside the model: a step takes the token and the beam order
    assert {i.get_any_name() for i in step.inputs} == {"input_ids", "beam_idx"}
    assert [o.get_any_name() for o in step.outputs] == ["logits"]
    assert len(step.get_sinks()) == 4 * blip.config.text_config.num_hidden_layers

    fresh = load_blip(str(vqa_dir), "openvino", "fp32")  # from the cache, same answers
    assert [vislang.ask(i, "how many circles?", fresh) for i in images] == answers
    # ... without loading the torch weights: greedy decoding runs from the graphs alone, and
    # beam search reads its settings from the config
    vislang.ask(images[0], "how many circles?", fresh, beams=3)
    assert "hf_model" not in fresh.engine.__dict__
    # prepare() (what the CLI runs under its "first use exports" note) readies every graph
    # (in the lower precision this CPU has, if any: a fresh set of graphs)
    prepared = load_blip(str(vqa_dir), "openvino", _lower_precision())
    prepared.prepare()
    assert sorted(prepared.engine.graphs) == sorted(first)


def _lower_precision() -> str:
    return "bf16" if "bf16" in supported_precisions("openvino") else "int8"


def test_steps_continue_the_rows_beam_search_picks(vqa_dir, images):
    """``reorder`` on the stateful cache equals reordering the torch cache."""
    torch_blip = load_blip(str(vqa_dir), "torch", "fp32")
    ov_blip = load_blip(str(vqa_dir), "openvino", "fp32")
    pixels = torch.stack([torch_blip.preprocess(i) for i in images])
    results = []
    for blip in (torch_blip, ov_blip):
        engine = blip.engine
        with torch.inference_mode():
            context = engine.encode_images(pixels)
            logits, past = engine.decode(torch.tensor([[blip.bos_token_id]] * 3), context)
            past = engine.reorder(past, torch.tensor([2, 2, 0]))
            logits, past = engine.decode(torch.tensor([[7], [8], [9]]), context, past)
            past = engine.reorder(past, torch.tensor([1, 0, 0]))
            logits, _ = engine.decode(torch.tensor([[10], [11], [12]]), context, past)
        results.append(logits)
    torch.testing.assert_close(results[1], results[0], atol=1e-4, rtol=1e-4)


def test_cli_export_writes_the_blip_graphs(vqa_dir, tmp_path):
    calibration = tmp_path / "mine"
    calibration.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image

    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(
            calibration / f"{i}.png")
    out = run_cli("export", vqa_dir, "--backend", "openvino", "--precision", "int8",
                  "--calibration", calibration, "-o", tmp_path / "ir", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["precision"] == "int8"
    assert sorted(report["files"]) == ["decoder", "decoder_with_past", "question", "vision"]
    for path in report["files"].values():
        assert path.endswith(".xml") and (tmp_path / "ir" / path.split("/")[-1]).is_file()

    out = run_cli("export", vqa_dir, "--backend", "onnx", "-o", tmp_path / "onnx", "--json")
    assert out.returncode == 0, out.stderr
    assert sorted(Path(p).name for p in json.loads(out.stdout)["files"].values()) == [
        "decoder.onnx", "decoder_with_past.onnx", "question.onnx", "vision.onnx"]


def test_what_blip_cannot_run_is_a_clear_error(vqa_dir):
    with pytest.raises(InputError, match="BLIP on openvino runs in fp32, bf16, int8, not fp16"):
        load_blip(str(vqa_dir), "openvino", "fp16")
    with pytest.raises(InputError, match="torch cannot run int8.*--backend openvino"):
        load_blip(str(vqa_dir), "torch", "int8")
    with pytest.raises(InputError, match="BLIP on onnx runs in fp32, int8, not bf16") as refused:
        load_blip(str(vqa_dir), "onnx", "bf16")
    if "bf16" in supported_precisions("openvino"):
        assert "(for bf16 use --backend openvino)" in str(refused.value)
    with pytest.raises(InputError, match="BLIP runs on CUDA with the torch backend"):
        load_blip(str(vqa_dir), "openvino", device="cuda")
    auto = load_blip(str(vqa_dir))
    assert auto.engine_choice == choose("auto", "auto")  # the one rule CLIP follows too


def test_a_first_int8_run_keeps_json_output_clean(tmp_path):
    """NNCF draws progress bars on stdout while it quantises; --json must still be JSON."""
    from vislang.datasets.shapes import generate_scene

    scene = generate_scene(4242, 0)
    path = tmp_path / "scene.png"
    scene.image.save(path)
    out = run_cli("caption", path, "--model", "shapes-blip-caption", "--backend", "openvino",
                  "--precision", "int8", "--json", env={"VISLANG_CACHE": str(tmp_path / "cache")},
                  timeout=600)  # a hang guard: calibrating takes minutes on a loaded machine
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert row["caption"] == scene.caption


def test_int8_calibrated_on_other_images_is_another_export(vqa_dir, tmp_path):
    from PIL import Image

    from vislang.runtime.cache import list_entries

    rng = np.random.default_rng(5)
    sets = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        paths = [folder / f"{i}.png" for i in range(3)]
        for path in paths:
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        sets.append(paths)

    def vision_exports() -> set[str]:
        return {e.model for e in list_entries() if e.tower == "blip-vision"
                and e.precision == "int8" and e.model.startswith(str(vqa_dir))}

    before = vision_exports()  # (other tests may have calibrated on generated scenes)
    for calibration in (sets[0], sets[1], sets[0]):
        load_blip(str(vqa_dir), "openvino", "int8", calibration=calibration).prepare()
    # two calibration sets, two exports; the third load found the first one's
    assert len(vision_exports() - before) == 2
