"""SigLIP 2 (NaFlex images, sigmoid logits) through vislang.load, checked against transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vislang
from vislang.errors import UnsupportedModelError
from vislang.models import naflex

TEXTS = ["a photo of a dog", "фотография кошки", "海滩上的狗的照片"]
SIZES = [(64, 64), (97, 41), (33, 120), (300, 200), (20, 12), (224, 224)]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.fixture(scope="module")
def siglip2_dir(tmp_path_factory):
    from vislang.models.tiny import tiny_siglip2

    return tiny_siglip2(tmp_path_factory.mktemp("tiny-siglip2"))


@pytest.fixture(scope="module")
def pair(siglip2_dir):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    hf = (AutoModel.from_pretrained(siglip2_dir).eval(),
          AutoImageProcessor.from_pretrained(siglip2_dir, backend="pil"),
          AutoTokenizer.from_pretrained(siglip2_dir))
    return vislang.load(str(siglip2_dir)), hf


def _hf_text(model, tokenizer):
    # SigLIP 2 reads the last position of text padded to its fixed length, with no mask.
    return tokenizer(TEXTS, padding="max_length", max_length=model.context_length,
                     return_tensors="pt")["input_ids"]


def test_loads_as_siglip2_on_torch(pair):
    model, _ = pair
    assert model.kind == "siglip2" and model.embed_dim == 32 and model.backend == "torch/fp32"


def test_preprocess_packs_the_processors_naflex_inputs(pair):
    model, (_, processor, _) = pair
    images = _images()
    packed = torch.stack([model.preprocess(i) for i in images])
    theirs = processor(images=images, return_tensors="pt")
    pixels, mask, shapes = naflex.unpack(packed)
    assert (pixels - theirs["pixel_values"]).abs().max() <= 1e-4
    assert torch.equal(mask, theirs["pixel_attention_mask"].long())
    assert torch.equal(shapes, theirs["spatial_shapes"].long())
    assert torch.equal(naflex.pack(pixels, shapes), packed)


def test_features_and_logits_equal_transformers(pair):
    model, (hf, processor, tokenizer) = pair
    images = _images()
    inputs = processor(images=images, return_tensors="pt")
    ids = _hf_text(model, tokenizer)
    pixels = torch.stack([model.preprocess(i) for i in images])
    tokens = model.tokenize(TEXTS)
    assert torch.equal(tokens, ids)
    with torch.no_grad():
        image_diff = (model.encode_image(pixels)
                      - hf.get_image_features(**inputs).pooler_output).abs().max()
        text_diff = (model.encode_text(tokens)
                     - hf.get_text_features(input_ids=ids).pooler_output).abs().max()
        ours, ours_t = model(pixels, tokens)
        theirs = hf(input_ids=ids, **inputs)
    assert image_diff <= 1e-5 and text_diff <= 1e-5
    assert torch.allclose(ours, theirs.logits_per_image, atol=1e-5)
    assert torch.allclose(ours_t, theirs.logits_per_text, atol=1e-5)
    assert model.logit_bias == pytest.approx(float(hf.logit_bias.detach()))


def test_embed_images_from_files(pair, tmp_path):
    model, _ = pair
    paths = []
    for i, image in enumerate(_images()):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    rows = model.embed_images(paths, batch_size=4)
    assert rows.shape == (6, 32) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    assert model.embed_texts(TEXTS).shape == (3, 32)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backends_are_refused_clearly(siglip2_dir, backend):
    with pytest.raises(UnsupportedModelError, match="torch backend only"):
        vislang.load(str(siglip2_dir), backend=backend)


def test_auto_backend_runs_on_torch(siglip2_dir):
    from vislang.runtime import EngineSpec

    model = vislang.load(str(siglip2_dir), engine=EngineSpec("auto", "fp32"))
    assert model.backend == "torch/fp32"


def test_multilingual_by_its_tokenizer(pair):
    assert pair[0].multilingual and pair[0].script_note("фотография кошки") is None
