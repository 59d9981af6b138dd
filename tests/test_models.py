"""Loading checkpoints and the CLIP API, checked against transformers on the same weights."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import vislang
from vislang.errors import ImageLoadError, ModelNotFoundError, UnsupportedModelError

TEXTS = ["a red circle", "two blue squares on a striped background", "a dog!"]


def _images(n: int = 4) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (97, 41), (33, 120), (300, 200), (20, 12), (224, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for w, h in sizes[:n]]


def _hf(directory):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    return (AutoModel.from_pretrained(directory).eval(),
            AutoImageProcessor.from_pretrained(directory, backend="pil"),
            AutoTokenizer.from_pretrained(directory))


@pytest.fixture(scope="module", params=["clip", "siglip"])
def both(request, tiny_clip_dir, tiny_siglip_dir):
    directory = tiny_clip_dir if request.param == "clip" else tiny_siglip_dir
    return vislang.load(str(directory)), _hf(directory)


def test_load_directory_gives_model_with_identity(clip_model, tiny_clip_dir):
    assert isinstance(clip_model, vislang.ClipModel)
    assert clip_model.kind == "clip" and clip_model.embed_dim == 16
    assert clip_model.model_key.startswith(str(tiny_clip_dir.resolve()) + "@")
    assert vislang.load(str(tiny_clip_dir)).model_key == clip_model.model_key


def test_changed_weights_change_the_model_key(tiny_clip_dir, tmp_path):
    copy = shutil.copytree(tiny_clip_dir, tmp_path / "copy")
    before = vislang.load(str(copy)).model_key
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes, new mtime: may be new weights
    assert vislang.load(str(copy)).model_key != before


@pytest.mark.parametrize("index", range(6))
def test_preprocess_equals_the_checkpoints_processor(both, index):
    model, (_, processor, _) = both
    image = _images(6)[index]
    ours = model.preprocess(image)
    theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-4


def test_logits_equal_transformers(both):
    model, (hf, processor, tokenizer) = both
    images = _images(4)
    pixels = torch.stack([model.preprocess(i) for i in images])
    with torch.no_grad():
        ours_img, ours_txt = model(pixels, model.tokenize(TEXTS))
        if model.kind == "siglip":  # SigLIP's processor pads to max length and passes no mask
            enc = tokenizer(TEXTS, padding="max_length", max_length=model.context_length,
                            return_tensors="pt")
            enc.pop("attention_mask")
        else:
            enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
        theirs = hf(pixel_values=processor(images=images, return_tensors="pt")["pixel_values"],
                    **enc)
    assert ours_img.shape == (4, 3) and ours_txt.shape == (3, 4)
    assert torch.allclose(ours_img, theirs.logits_per_image, atol=1e-5)
    assert torch.allclose(ours_txt, theirs.logits_per_text, atol=1e-5)


def test_encode_image_and_text_equal_transformers_features(clip_model, tiny_clip_dir):
    hf, processor, tokenizer = _hf(tiny_clip_dir)
    images = _images(3)
    with torch.no_grad():
        ours = clip_model.encode_image(torch.stack([clip_model.preprocess(i) for i in images]))
        theirs = hf.get_image_features(
            pixel_values=processor(images=images, return_tensors="pt")["pixel_values"])
        assert torch.allclose(ours, theirs.pooler_output, atol=1e-5)
        ours = clip_model.encode_text(vislang.tokenize(TEXTS))
        theirs = hf.get_text_features(**tokenizer(TEXTS, padding=True, return_tensors="pt"))
        assert torch.allclose(ours, theirs.pooler_output, atol=1e-5)


def test_logits_are_scaled_cosine_similarity(clip_model):
    pixels = torch.stack([clip_model.preprocess(i) for i in _images(2)])
    tokens = clip_model.tokenize(TEXTS)
    with torch.no_grad():
        img = clip_model.encode_image(pixels)
        txt = clip_model.encode_text(tokens)
        cos = torch.nn.functional.cosine_similarity(img[:, None], txt[None], dim=-1)
        logits, _ = clip_model(pixels, tokens)
    assert torch.allclose(logits, clip_model.logit_scale * cos, atol=1e-5)


def test_embed_images_from_paths_bytes_and_pil_agree(clip_model, tmp_path):
    images = _images(5)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    from_paths = clip_model.embed_images(paths, batch_size=2)
    from_pil = clip_model.embed_images(images, batch_size=32)
    from_bytes = clip_model.embed_images([p.read_bytes() for p in paths], batch_size=3)
    assert from_paths.dtype == np.float32 and from_paths.shape == (5, 16)
    assert np.allclose(np.linalg.norm(from_paths, axis=1), 1, atol=1e-5)
    assert np.allclose(from_paths, from_pil, atol=1e-5)
    assert np.allclose(from_paths, from_bytes, atol=1e-5)
    with torch.no_grad():
        direct = clip_model.encode_image(torch.stack([clip_model.preprocess(i) for i in images]))
    direct = (direct / direct.norm(dim=-1, keepdim=True)).numpy()
    assert np.allclose(from_paths, direct, atol=1e-5)


def test_embed_texts_normalised_and_in_order(clip_model):
    vectors = clip_model.embed_texts(TEXTS, batch_size=2)
    assert vectors.shape == (3, 16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[1], clip_model.embed_texts([TEXTS[1]])[0], atol=1e-6)
    assert clip_model.embed_texts([]).shape == (0, 16)


def test_embed_images_names_the_bad_file(clip_model, tmp_path):
    good = tmp_path / "good.png"
    _images(1)[0].save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match="notes.jpg"):
        clip_model.embed_images([good, bad, good])


def test_non_clip_checkpoint_is_refused(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, image_size=16, patch_size=8)).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="'vit' checkpoint"):
        vislang.load(str(tmp_path))


def test_missing_directory_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        vislang.load(str(tmp_path / "nothing-here"))


def test_model_without_tokenizer_files_uses_clip_vocabulary(tiny_clip_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_clip_dir / name, bare / name)
    model = vislang.load(str(bare))
    assert torch.equal(model.tokenize(TEXTS), vislang.tokenize(TEXTS))
    assert model.preprocess(_images(1)[0]).shape == (3, 32, 32)


def test_pil_roundtrip_bytes_input_accepted(clip_model):
    buffer = io.BytesIO()
    _images(1)[0].save(buffer, format="JPEG")
    assert clip_model.embed_images([buffer.getvalue()]).shape == (1, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_device_gives_the_same_features(tiny_clip_dir):
    cpu, gpu = vislang.load(str(tiny_clip_dir)), vislang.load(str(tiny_clip_dir), device="cuda")
    images = _images(3)
    assert np.allclose(cpu.embed_images(images), gpu.embed_images(images), atol=1e-4)
    assert np.allclose(cpu.embed_texts(TEXTS), gpu.embed_texts(TEXTS), atol=1e-4)


def test_weights_first_loaded_in_inference_mode_still_train(tiny_clip_dir):
    """A lazily loaded model (exported engines load weights on first call) must not be made of
    inference tensors, or gradient methods (training, relevance saliency) break."""
    import torch

    import vislang

    model = vislang.load(str(tiny_clip_dir), backend="onnx")  # exported: weights load lazily
    with torch.inference_mode():
        weights = model.hf_model  # first touched here
    pixels = torch.zeros(1, 3, *model.transform.output_size, requires_grad=True)
    model.hf_model.get_image_features(pixel_values=pixels).pooler_output.sum().backward()
    assert not any(p.is_inference() for p in weights.parameters())
    assert pixels.grad is not None


def test_embed_readable_skips_the_bad_file_and_embeds_the_rest(clip_model, tmp_path):
    good = tmp_path / "good.png"
    _images(1)[0].save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    embedded = clip_model.embed_readable([good, bad, good], batch_size=2)
    assert embedded.kept == [0, 2]
    assert [(p, r.split(" ")[0]) for p, r in embedded.skipped] == [(str(bad), "not")]
    assert np.allclose(embedded.vectors, clip_model.embed_images([good, good]), atol=1e-6)
