"""OpenCLIP checkpoints in their own layout, checked against OpenCLIP's own model code.

The reference is open_clip's ``model.py`` / ``transformer.py`` from the installed
open_clip_torch (installed without its dependencies): the files are loaded as submodules of a
private package name, without running the package's ``__init__`` (it imports torchvision, which
vislang does not depend on). Only ``utils.py`` is patched: its one torchvision import serves
batch-norm freezing, which no ViT uses.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vislang
from vislang.errors import ModelNotFoundError, UnsupportedModelError
from vislang.runtime import installed

TEXTS = ["a red circle", "two blue squares on a striped background", "a dog!", ""]
HASH = "0123456789abcdef0123456789abcdef01234567"

# (a) ViT-B/32's layout (patch 32, class token, OpenAI text tower) at tiny width, QuickGELU
VIT_B32_LIKE = dict(
    model_cfg=dict(
        embed_dim=16, quick_gelu=True,
        vision_cfg=dict(image_size=64, layers=2, width=128, patch_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
    ),
    preprocess_cfg=dict(mean=[0.48145466, 0.4578275, 0.40821073],
                        std=[0.26862954, 0.26130258, 0.27577711]),
)
# (b) exact GELU, other widths, depths, head width and MLP ratio, a short context, the text
# tower under "text." (CustomTextCLIP), and squash resizing with its own mean and std
GELU_CUSTOM_TEXT = dict(
    model_cfg=dict(
        embed_dim=24, custom_text=True,
        vision_cfg=dict(image_size=48, layers=3, width=96, head_width=32, patch_size=16,
                        mlp_ratio=2.0),
        text_cfg=dict(context_length=32, vocab_size=49408, width=48, heads=4, layers=3,
                      mlp_ratio=2.0),
    ),
    preprocess_cfg=dict(mean=[0.5, 0.5, 0.5], std=[0.25, 0.3, 0.35], resize_mode="squash",
                        interpolation="bilinear"),
)


@pytest.fixture(scope="module")
def open_clip_model():
    """open_clip's ``model`` module, loaded from its files (see the module docstring)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch is not installed (the README's test command installs it)")
    folder = Path(spec.submodule_search_locations[0])
    package = "_open_clip_reference"
    if f"{package}.model" in sys.modules:
        return sys.modules[f"{package}.model"]
    root = types.ModuleType(package)
    root.__path__ = [str(folder)]  # submodules come from open_clip's folder; __init__ never runs
    sys.modules[package] = root
    utils = types.ModuleType(f"{package}.utils")
    source = (folder / "utils.py").read_text().replace(
        "from torchvision.ops.misc import FrozenBatchNorm2d", "FrozenBatchNorm2d = None")
    exec(compile(source, str(folder / "utils.py"), "exec"), utils.__dict__)
    sys.modules[utils.__name__] = utils
    return importlib.import_module(f"{package}.model")


def _reference(open_clip_model, layout: dict, seed: int):
    """An OpenCLIP model of ``layout`` with every weight random (LayerNorms included)."""
    cfg = dict(layout["model_cfg"])
    cls = open_clip_model.CustomTextCLIP if cfg.pop("custom_text", False) else open_clip_model.CLIP
    torch.manual_seed(seed)
    model = cls(**cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if "ln" in name else 0.05))
    return model


def _save(model, layout: dict, directory: Path, bin_weights: bool = False) -> Path:
    """OpenCLIP's hub layout, as open_clip's push_to_hf_hub writes it."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps(layout, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if bin_weights:
        torch.save(state, directory / "open_clip_pytorch_model.bin")
    else:
        save_file(state, str(directory / "open_clip_model.safetensors"))
    return directory


def _images(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (97, 41), (33, 120), (300, 200)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes[:n]]


@pytest.fixture(scope="module", params=["vit-b32-like", "gelu-custom-text"])
def pair(request, open_clip_model, tmp_path_factory):
    layout = VIT_B32_LIKE if request.param == "vit-b32-like" else GELU_CUSTOM_TEXT
    reference = _reference(open_clip_model, layout, seed=len(request.param))
    directory = _save(reference, layout, tmp_path_factory.mktemp(request.param))
    return reference, vislang.load(str(directory)), directory, layout


def _inputs(model):
    pixels = torch.stack([model.preprocess(i) for i in _images()])
    return pixels, model.tokenize(TEXTS)


def test_features_equal_open_clips(pair):
    reference, model, _, layout = pair
    pixels, tokens = _inputs(model)
    with torch.no_grad():
        ours_img, ours_txt = model.encode_image(pixels), model.encode_text(tokens)
        ref_img, ref_txt = reference.encode_image(pixels), reference.encode_text(tokens)
    assert ours_img.shape == ref_img.shape == (4, layout["model_cfg"]["embed_dim"])
    assert ours_txt.shape == ref_txt.shape == (len(TEXTS), layout["model_cfg"]["embed_dim"])
    assert (ours_img - ref_img).abs().max() <= 1e-5
    assert (ours_txt - ref_txt).abs().max() <= 1e-5
    assert abs(model.logit_scale - float(reference.logit_scale.detach().exp())) <= 1e-5


def test_config_tokenizer_and_preprocessing_follow_the_checkpoint(pair):
    _, model, directory, layout = pair
    cfg, pre = layout["model_cfg"], layout["preprocess_cfg"]
    assert model.kind == "clip" and model.embed_dim == cfg["embed_dim"]
    assert model.context_length == cfg["text_cfg"]["context_length"]
    act = model.config.vision_config.hidden_act
    assert act == ("quick_gelu" if cfg.get("quick_gelu") else "gelu")
    assert model.config.text_config.hidden_act == act
    side = cfg["vision_cfg"]["image_size"]
    assert model.preprocess(_images(2)[1]).shape == (3, side, side)
    assert model.transform.mean == tuple(pre["mean"]) and model.transform.std == tuple(pre["std"])
    squash = pre.get("resize_mode") == "squash"
    assert model.transform.resize_to == ((side, side) if squash else None)
    assert model.transform.crop == (None if squash else (side, side))
    assert torch.equal(model.tokenize(TEXTS[:2])[:, :8],
                       vislang.tokenize(TEXTS[:2], context_length=model.context_length)[:, :8])
    assert model.model_key.startswith(str(directory.resolve()) + "@")


def test_pytorch_bin_weights_load_too(open_clip_model, tmp_path):
    reference = _reference(open_clip_model, VIT_B32_LIKE, seed=7)
    model = vislang.load(str(_save(reference, VIT_B32_LIKE, tmp_path / "bin", bin_weights=True)))
    pixels, tokens = _inputs(model)
    with torch.no_grad():
        assert (model.encode_image(pixels) - reference.encode_image(pixels)).abs().max() <= 1e-5
        assert (model.encode_text(tokens) - reference.encode_text(tokens)).abs().max() <= 1e-5


@pytest.mark.skipif(not installed("onnx"), reason="needs the onnx extra")
def test_the_mapped_model_runs_on_onnx_runtime(pair):
    _, model, directory, _ = pair
    onnx = vislang.load(str(directory), backend="onnx", precision="fp32")
    assert onnx.backend == "onnx/fp32" and onnx.model_key == model.model_key
    pixels, tokens = _inputs(model)
    with torch.no_grad():
        assert np.abs(np.asarray(onnx.encode_image(pixels))
                      - model.encode_image(pixels).numpy()).max() <= 1e-4
        assert np.abs(np.asarray(onnx.encode_text(tokens))
                      - model.encode_text(tokens).numpy()).max() <= 1e-4


@pytest.mark.parametrize("change, message", [
    (dict(vision_cfg=dict(timm_model_name="convnext_base", image_size=64)), "timm image tower"),
    (dict(vision_cfg=dict(layers=[1, 1, 1, 1], width=64, image_size=64)), "ResNet image tower"),
    (dict(vision_cfg=dict(image_size=64, layers=2, width=128, patch_size=32,
                          attentional_pool=True)), "attentional pooling"),
    (dict(vision_cfg=dict(image_size=64, layers=2, width=128, patch_size=32,
                          ls_init_value=1e-5)), "layer scale in the image tower"),
    (dict(multimodal_cfg=dict(width=64)), "CoCa text decoder"),
])
def test_an_unsupported_architecture_is_one_clear_line(tmp_path, change, message):
    layout = json.loads(json.dumps(VIT_B32_LIKE))
    layout["model_cfg"].update(change)
    (tmp_path / "open_clip_config.json").write_text(json.dumps(layout))
    with pytest.raises(UnsupportedModelError, match=message) as info:
        vislang.load(str(tmp_path))
    text = str(info.value)
    assert "\n" not in text and "OpenCLIP checkpoint" in text and "ViT image towers" in text


@pytest.fixture(scope="module")
def b32_dir(open_clip_model, tmp_path_factory) -> Path:
    reference = _reference(open_clip_model, VIT_B32_LIKE, seed=5)
    return _save(reference, VIT_B32_LIKE, tmp_path_factory.mktemp("b32"))


def test_a_weight_that_does_not_fit_is_named(b32_dir, tmp_path):
    copy = shutil.copytree(b32_dir, tmp_path / "misfit")
    wrong = json.loads(json.dumps(VIT_B32_LIKE))
    wrong["model_cfg"]["vision_cfg"]["patch_size"] = 16  # the weights were made for 32
    (copy / "open_clip_config.json").write_text(json.dumps(wrong))
    with pytest.raises(UnsupportedModelError, match=r"'visual\.conv1\.weight' has shape "
                                                    r"\(128, 3, 32, 32\)"):
        vislang.load(str(copy)).encode_image(torch.zeros(1, 3, 64, 64))


def test_a_weight_with_no_place_in_clip_is_named(tmp_path, open_clip_model):
    reference = _reference(open_clip_model, VIT_B32_LIKE, seed=3)
    directory = _save(reference, VIT_B32_LIKE, tmp_path / "extra")
    from safetensors.torch import load_file, save_file

    state = load_file(str(directory / "open_clip_model.safetensors"))
    state["visual.attn_pool.query"] = torch.zeros(4, 8)
    save_file(state, str(directory / "open_clip_model.safetensors"))
    with pytest.raises(UnsupportedModelError, match=r"'visual\.attn_pool\.query' has no place"):
        vislang.load(str(directory)).hf_model


def test_an_unknown_open_clip_name_lists_close_names():
    with pytest.raises(ModelNotFoundError) as info:
        vislang.load("open_clip:ViT-B-32/laion2b_s34b_b97k")
    assert "did you mean open_clip:ViT-B-32/laion2b_s34b_b79k" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="known: open_clip:ViT-B-32/laion2b_s34b_b79k"):
        vislang.load("open_clip:nothing-like-it")


def test_open_clip_and_hf_hub_names_load_from_the_hub_cache(b32_dir, tmp_path):
    """``open_clip:ARCH/TAG`` and ``hf-hub:org/repo`` resolve to the hub id, offline."""
    repo_id = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(b32_dir, repo / "snapshots" / HASH)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HASH)
    code = ("import vislang, torch\n"
            "a = vislang.load('open_clip:ViT-B-32/laion2b_s34b_b79k')\n"
            f"b = vislang.load('hf-hub:{repo_id}')\n"
            "x = torch.zeros(1, 3, 64, 64)\n"
            "print(a.model_key, b.model_key, bool((a.encode_image(x) == b.encode_image(x)).all()))\n")
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**clean, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"{repo_id}@{HASH}", f"{repo_id}@{HASH}", "True"]


def test_an_hf_hub_name_not_on_disk_names_the_repo():
    with pytest.raises(ModelNotFoundError, match="'hf-hub:nobody/no-such-openclip' "
                                                 r"\(nobody/no-such-openclip\) is not on disk"):
        vislang.load("hf-hub:nobody/no-such-openclip")
