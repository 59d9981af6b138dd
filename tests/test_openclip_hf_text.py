"""OpenCLIP checkpoints with a Hugging Face text tower (XLM-R, NLLB), checked against OpenCLIP's
own ``CustomTextCLIP`` + ``HFTextEncoder`` built from the same random weights.

The reference is built as OpenCLIP builds it from a config (``hf_model_pretrained=False``):
``AutoConfig.from_pretrained(hf_model_name)`` on a local folder holding a tiny ``config.json``,
then ``AutoModel.from_config``; nothing is downloaded. Its tokenizer is OpenCLIP's
``HFTokenizer`` over a tiny BPE vocabulary trained offline in XLM-R's special-token layout.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vislang
from vislang.errors import ModelNotFoundError, UnsupportedModelError
from vislang.models.registry import known_multilingual
from vislang.models.tiny import MULTILINGUAL_SENTENCES, small_tokenizer
from vislang.runtime import installed

from test_openclip import _images, _reference, _save, open_clip_model  # noqa: F401 (fixture)

# Several scripts; extra whitespace and an HTML entity, which OpenCLIP's cleaning removes.
TEXTS = ["a photo of a dog on the beach", "фотография кошки", "  海滩上的狗的照片 ",
         "صورة قطة", "Ein   Foto &amp; einer Katze", ""]

# The text towers, as the config.json a hub repo of that architecture holds (tiny sizes).
TOWERS = {
    # xlm-roberta-base-ViT-B-32's text side: mean over tokens, MLP projection
    "xlmr-mean-mlp": (dict(model_type="xlm-roberta", hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=80, type_vocab_size=1),
                      dict(hf_pooler_type="mean_pooler", hf_proj_type="mlp")),
    # nllb-clip-base's text side: NLLB's (M2M-100) encoder, first token, one linear map
    "nllb-cls-linear": (dict(model_type="m2m_100", d_model=32, encoder_layers=2,
                             decoder_layers=1, encoder_attention_heads=2,
                             decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                             max_position_embeddings=80),
                        dict(hf_pooler_type="cls_pooler", hf_proj_type="linear")),
}


def _text_tower(folder: Path, kind: str) -> Path:
    """A folder with the tower's config.json and tokenizer, as ``hf_model_name`` names one."""
    from transformers import AutoConfig

    tokenizer = small_tokenizer(MULTILINGUAL_SENTENCES, xlmr=True)
    arch = dict(TOWERS[kind][0])
    config = AutoConfig.for_model(arch.pop("model_type"), vocab_size=len(tokenizer),
                                  bos_token_id=0, pad_token_id=1, eos_token_id=2, **arch)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _layout(text_dir: Path, kind: str, **text) -> dict:
    return dict(
        model_cfg=dict(
            embed_dim=16, custom_text=True,
            vision_cfg=dict(image_size=64, layers=2, width=64, patch_size=32),
            text_cfg=dict(hf_model_name=str(text_dir), hf_tokenizer_name=str(text_dir),
                          hf_model_pretrained=False, **TOWERS[kind][1], **text),
        ),
        preprocess_cfg={},
    )


@pytest.fixture(scope="module", params=list(TOWERS))
def pair(request, open_clip_model, tmp_path_factory):  # noqa: F811 (the imported fixture)
    kind = request.param
    text_dir = _text_tower(tmp_path_factory.mktemp(f"{kind}-tower"), kind)
    layout = _layout(text_dir, kind)
    reference = _reference(open_clip_model, layout, seed=11)
    directory = _save(reference, layout, tmp_path_factory.mktemp(kind))
    return reference, vislang.load(str(directory)), directory, text_dir


@pytest.fixture(scope="module")
def open_clip_tokenizer(open_clip_model):  # noqa: F811
    """OpenCLIP's ``HFTokenizer`` class, from the same privately loaded package."""
    package = open_clip_model.__name__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.tokenizer").HFTokenizer


def test_tokens_and_features_equal_open_clips(pair, open_clip_tokenizer):
    reference, model, _, text_dir = pair
    tokens = open_clip_tokenizer(str(text_dir), context_length=77)(TEXTS)
    assert torch.equal(model.tokenize(TEXTS), tokens)  # cleaning, framing and padding to 77
    pixels = torch.stack([model.preprocess(i) for i in _images()])
    with torch.no_grad():
        ours_txt, ref_txt = model.encode_text(tokens), reference.encode_text(tokens)
        ours_img, ref_img = model.encode_image(pixels), reference.encode_image(pixels)
    assert ours_txt.shape == ref_txt.shape == (len(TEXTS), 16)
    assert (ours_txt - ref_txt).abs().max() <= 1e-5
    assert (ours_img - ref_img).abs().max() <= 1e-5
    assert abs(model.logit_scale - float(reference.logit_scale.detach().exp())) <= 1e-5
    assert model.kind == "openclip-hf" and model.embed_dim == 16 and model.context_length == 77


def test_a_multilingual_query_embeds_and_searches(pair, tmp_path):
    _, model, _, _ = pair
    assert model.multilingual and model.script_note(["猫の写真", "собака"]) is None
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(_images()):
        image.save(photos / f"{i}.png")
    with vislang.Index.open(tmp_path / "index", model) as index:
        index.add([photos])
        hits = index.search(text="фотография собаки на пляже", k=4)
    assert len(hits) == 4 and len({h.path for h in hits}) == 4
    # The ranking is the model's: the query's cosine with each image, best first.
    query = model.embed_texts(["фотография собаки на пляже"])[0]
    images = model.embed_images([photos / f"{i}.png" for i in range(4)])
    expected = [str(photos / f"{i}.png") for i in np.argsort(-(images @ query))]
    assert [str(Path(h.path)) for h in hits] == expected


@pytest.fixture(scope="module")
def xlmr(open_clip_model, tmp_path_factory) -> Path:  # noqa: F811
    """The XLM-R checkpoint alone (exports take a while: one tower kind is enough for them)."""
    text_dir = _text_tower(tmp_path_factory.mktemp("xlmr-tower"), "xlmr-mean-mlp")
    layout = _layout(text_dir, "xlmr-mean-mlp")
    reference = _reference(open_clip_model, layout, seed=12)
    return _save(reference, layout, tmp_path_factory.mktemp("xlmr"))


@pytest.mark.parametrize("backend", [b for b in ("onnx", "openvino") if installed(b)])
def test_exported_engines_run_the_text_tower(xlmr, backend):
    """The tower exports with the engines' one-input signature (the mask made inside)."""
    directory = xlmr
    model = vislang.load(str(directory))
    fast = vislang.load(str(directory), backend=backend, precision="fp32")
    texts = fast.embed_texts(TEXTS[:4])
    assert (texts * model.embed_texts(TEXTS[:4])).sum(1).min() >= 0.9999
    images = fast.embed_images(_images())
    assert (images * model.embed_images(_images())).sum(1).min() >= 0.9999


def test_the_tokenizer_comes_from_the_checkpoint_folder_first(pair, tmp_path):
    """OpenCLIP's hub repos carry the tokenizer beside the weights: no tower folder needed
    for it, and a well-known tower's config needs none either (checked by its error)."""
    _, model, directory, text_dir = pair
    layout = json.loads((directory / "open_clip_config.json").read_text())
    layout["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "nobody/no-such-tokenizer"
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in directory.iterdir():
        (copy / file.name).symlink_to(file)
    (copy / "open_clip_config.json").unlink()
    (copy / "open_clip_config.json").write_text(json.dumps(layout))
    model.tokenizer.save_pretrained(copy)
    again = vislang.load(str(copy))
    assert torch.equal(again.tokenize(TEXTS), model.tokenize(TEXTS))


def test_a_tower_not_on_disk_is_one_clear_line(tmp_path):
    layout = _layout(Path("nobody/no-such-tower"), "xlmr-mean-mlp")
    (tmp_path / "open_clip_config.json").write_text(json.dumps(layout))
    with pytest.raises(ModelNotFoundError) as info:
        vislang.load(str(tmp_path))
    text = str(info.value)
    assert "\n" not in text and "'nobody/no-such-tower' has no config.json on disk" in text
    assert "hf download nobody/no-such-tower" in text


def test_a_known_tower_needs_only_its_tokenizer(tmp_path):
    """xlm-roberta-base's config is vislang's table; its tokenizer must be on disk."""
    layout = _layout(Path("xlm-roberta-base"), "xlmr-mean-mlp")
    (tmp_path / "open_clip_config.json").write_text(json.dumps(layout))
    with pytest.raises(ModelNotFoundError, match="the tokenizer 'xlm-roberta-base' is not on "
                                                 "disk.*hf download xlm-roberta-base"):
        vislang.load(str(tmp_path))


@pytest.mark.parametrize("change, message", [
    (dict(hf_pooler_type="max_pooler"), "text pooling 'max_pooler'"),
    (dict(hf_proj_type="attn"), "a text projection 'attn'"),
    (dict(tokenizer_mode="clips"), "non-default tokenizer settings"),
])
def test_an_unmapped_text_setting_is_one_clear_line(pair, tmp_path, change, message):
    _, _, directory, text_dir = pair
    layout = json.loads((directory / "open_clip_config.json").read_text())
    layout["model_cfg"]["text_cfg"].update(change)
    (tmp_path / "open_clip_config.json").write_text(json.dumps(layout))
    with pytest.raises(UnsupportedModelError, match=message) as info:
        vislang.load(str(tmp_path))
    assert "\n" not in str(info.value) and "OpenCLIP checkpoint" in str(info.value)


def test_the_pretrained_xlmr_names_are_multilingual():
    name = "open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"
    assert vislang.available_models().count(name) == 1 and known_multilingual(name) is True
    assert known_multilingual("open_clip:nllb-clip-base/v1") is True
    assert known_multilingual("open_clip:ViT-B-32/laion2b_s34b_b79k") is False
