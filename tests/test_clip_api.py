"""OpenAI's ``clip`` API as vislang copies it: ``available_models()`` names, ``load`` defaults."""

from __future__ import annotations

import torch

import vislang
from vislang.models import clip as clip_module
from vislang.models.registry import BLIP_NAMES


def test_available_models_are_the_names_load_accepts():
    names = vislang.available_models()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert {"shapes-clip", "ViT-B/32", "ViT-L/14@336px"} <= set(names)
    assert "open_clip:ViT-B-32/laion2b_s34b_b79k" in names
    assert not set(names) & set(BLIP_NAMES)
    assert vislang.available_blip_models() == ["shapes-blip-caption", "shapes-blip-vqa",
                                               "blip-caption", "blip-vqa"]


def test_a_listed_name_loads():
    assert vislang.load(vislang.available_models()[0]).model_key.startswith("shapes-clip@")


def test_records_keep_the_details():
    records = vislang.model_records()
    assert [r.name for r in records] == vislang.available_models() + vislang.available_blip_models()
    assert all(r.family == ("blip" if r.name in BLIP_NAMES else "clip") for r in records)


def _spec_of_load(monkeypatch, cuda: bool, **kwargs):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(clip_module, "ClipModel", lambda *args: args)
    return clip_module.load("shapes-clip", **kwargs)[5]


def test_device_defaults_to_cuda_in_fp16_when_there_is_one(monkeypatch):
    spec = _spec_of_load(monkeypatch, cuda=True)
    assert (spec.backend, spec.precision, spec.device) == ("torch", "fp16", "cuda")
    spec = _spec_of_load(monkeypatch, cuda=True, precision="fp32")
    assert spec.precision == "fp32"


def test_cpu_stays_torch_fp32(monkeypatch, clip_model):
    spec = _spec_of_load(monkeypatch, cuda=False)
    assert (spec.backend, spec.precision, spec.device) == ("torch", "fp32", "cpu")
    assert clip_model.backend == "torch/fp32"
