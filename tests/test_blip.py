"""BLIP captions and answers: our generation loop gives transformers' generate tokens."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

WORDS = ("a picture of photo the is there what how many color red green blue yellow circle "
         "square triangle one two three yes no on in with and big small left right top bottom "
         "cat dog").split()


def _tiny_blip(path: Path, task: str, seed: int = 0) -> Path:
    """A 2-layer random BLIP with a small WordPiece vocabulary, saved like a real checkpoint.

    The weights are drawn wider than BLIP's default init so that outputs depend on the image,
    and the end token is made likely enough that some sequences finish early.
    """
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration,
                              BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor)

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "?", ".", ",",
             *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"], *"abcdefghijklmnopqrstuvwxyz"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(str(path / "vocab.txt"), bos_token="[DEC]",
                            additional_special_tokens=["[ENC]"])
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, encoder_hidden_size=32,
                         max_position_embeddings=64, initializer_range=0.2,
                         bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8,
                           initializer_range=0.2),
        projection_dim=16,
    )
    cls = BlipForConditionalGeneration if task == "caption" else BlipForQuestionAnswering
    model = cls(config).eval()
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[tok.sep_token_id] += 2.0
    model.save_pretrained(path)
    BlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tok).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def caption_dir(tmp_path_factory) -> Path:
    return _tiny_blip(tmp_path_factory.mktemp("blip") / "caption", "caption")


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory) -> Path:
    return _tiny_blip(tmp_path_factory.mktemp("blip") / "vqa", "vqa", seed=0)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50 - 3 * i, 3), dtype=np.uint8))
            for i in range(5)]


@pytest.fixture(scope="module")
def image_files(images, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("blip-images")
    paths = [folder / f"img{i}.png" for i in range(len(images))]
    for image, path in zip(images, paths):
        image.save(path)
    return paths


def _processor(path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


def _reference(sequences: torch.Tensor, prompt_len: int, eos: int) -> list[list[int]]:
    from vislang.captioning import _cut

    return [_cut(row, prompt_len, eos) for row in sequences.tolist()]


def test_preprocessing_equals_the_blip_image_processor(caption_dir, images):
    from vislang.models.blip import load_blip

    blip = load_blip(str(caption_dir), precision="fp32")
    ours = torch.stack([blip.preprocess(i) for i in images])
    theirs = _processor(caption_dir)(images=images, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape == (len(images), 3, 32, 32)
    assert (ours - theirs).abs().max() <= 1e-4


BACKENDS = ["torch"] + [pytest.param(b, marks=pytest.mark.skipif(
    importlib.util.find_spec(module) is None, reason=f"needs the {b} extra"))
    for b, module in (("openvino", "openvino"), ("onnx", "onnxruntime"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("prompt", [None, "a picture of"])
def test_caption_tokens_equal_transformers_generate(caption_dir, images, beams, prompt,
                                                    backend):
    """Our loop on each engine in fp32 (OpenVINO and ONNX Runtime: the exported graphs)."""
    from vislang.captioning import caption_ids
    from vislang.models.blip import load_blip

    blip = load_blip(str(caption_dir), backend, "fp32")
    pixels = torch.stack([blip.preprocess(i) for i in images])
    ours = caption_ids(blip, pixels, prompt, beams=beams, max_tokens=12)
    kwargs, prompt_len = {}, 1
    if prompt:
        text = _processor(caption_dir)(text=[prompt] * len(images), return_tensors="pt")
        kwargs = dict(input_ids=text["input_ids"], attention_mask=text["attention_mask"])
        prompt_len = text["input_ids"].shape[1] - 1
    with torch.inference_mode():
        theirs = blip.hf_model.generate(pixel_values=pixels, num_beams=beams, max_new_tokens=12,
                                        **kwargs)
    assert ours == _reference(theirs, prompt_len, blip.eos_token_id)
    assert len({tuple(x) for x in ours}) > 1  # the images matter


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beams", [1, 3])
def test_answer_tokens_equal_transformers_generate(vqa_dir, images, beams, backend):
    from vislang.captioning import answer_ids
    from vislang.models.blip import load_blip

    blip = load_blip(str(vqa_dir), backend, "fp32")
    pixels = torch.stack([blip.preprocess(i) for i in images])
    question = "what color is the circle?"
    ours = answer_ids(blip, pixels, [question] * len(images), beams=beams, max_tokens=10)
    text = _processor(vqa_dir)(text=[question] * len(images), return_tensors="pt")
    with torch.inference_mode():
        theirs = blip.hf_model.generate(input_ids=text["input_ids"],
                                        attention_mask=text["attention_mask"],
                                        pixel_values=pixels, num_beams=beams, max_new_tokens=10)
    assert ours == _reference(theirs, 1, blip.eos_token_id)
    assert len({tuple(x) for x in ours}) > 1


def test_some_sequences_end_early(caption_dir, vqa_dir, images):
    """The comparisons above cover the end token, not only the length limit."""
    from vislang.captioning import answer_ids, caption_ids
    from vislang.models.blip import load_blip

    cap, vqa = load_blip(str(caption_dir), precision="fp32"), load_blip(str(vqa_dir), precision="fp32")
    pixels = torch.stack([cap.preprocess(i) for i in images])
    ended = [ids[-1] == cap.eos_token_id for b in (1, 3)
             for ids in caption_ids(cap, pixels, None, b, 12)]
    ended += [ids[-1] == vqa.eos_token_id for b in (1, 3)
              for ids in answer_ids(vqa, pixels, ["how many?"] * len(images), b, 10)]
    assert any(ended) and not all(ended)


def test_public_api_caption_and_ask(caption_dir, vqa_dir, image_files, images):
    import vislang
    from vislang.captioning import answer_ids, caption_ids
    from vislang.models.blip import load_blip

    blip = load_blip(str(caption_dir), precision="fp32")
    texts = vislang.caption(image_files, blip, prompt="a picture of", batch_size=2)
    assert len(texts) == len(image_files) and all(t.startswith("a picture of") for t in texts)
    pixels = torch.stack([blip.preprocess(i) for i in images])
    expected = blip.tokenizer.batch_decode(caption_ids(blip, pixels, "a picture of", 1, 20),
                                           skip_special_tokens=True)
    assert texts == [t.strip() for t in expected]
    assert vislang.caption(image_files[0], blip, beams=2) == vislang.caption([image_files[0]], blip, beams=2)

    vqa = load_blip(str(vqa_dir), precision="fp32")
    answer = vislang.ask(image_files[1], "how many circles?", vqa, beams=3)
    ids = answer_ids(vqa, pixels[1:2], ["how many circles?"], 3, 10)
    assert answer == vqa.tokenizer.decode(ids[0], skip_special_tokens=True).strip()


def test_wrong_kind_of_checkpoint_is_a_clear_error(caption_dir, vqa_dir, image_files,
                                                   tiny_clip_dir):
    import vislang
    from vislang.models.blip import load_blip

    with pytest.raises(vislang.UnsupportedModelError, match="'clip' checkpoint.*BLIP"):
        load_blip(str(tiny_clip_dir))
    with pytest.raises(vislang.UnsupportedModelError, match="question-answering.*vislang ask"):
        vislang.caption(image_files[:1], str(vqa_dir))
    with pytest.raises(vislang.UnsupportedModelError, match="captioning.*vislang caption"):
        vislang.ask(image_files[0], "what?", str(caption_dir))
    with pytest.raises(vislang.ModelNotFoundError, match="does not exist"):
        load_blip("./no/such/blip")


def test_missing_hub_model_fails_fast_offline(tmp_path):
    """Fast means no network attempt at all when offline is set (seconds are not asserted: a
    loaded machine makes any wall-clock bound a flake)."""
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    code = (
        "import vislang\n"
        "try:\n"
        "    vislang.ask(b'', 'what?', 'blip-vqa')\n"
        "except vislang.ModelNotFoundError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**clean, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
                              "HF_ENDPOINT": "http://192.0.2.1"},  # unroutable: never tried
                         timeout=60)
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert "'blip-vqa' (Salesforce/blip-vqa-base)" in message
    assert "HF_HUB_OFFLINE is set" in message  # it said so instead of trying the hub
    assert "network" in message and "save_pretrained" in message


def test_cli_caption_and_ask_json(caption_dir, vqa_dir, image_files):
    from conftest import run_cli

    out = run_cli("caption", *image_files[:3], "--model", caption_dir, "--prompt",
                  "a picture of", "--beams", "2", "--max-tokens", "8", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in image_files[:3]]
    assert all(r["caption"].startswith("a picture of") for r in rows)

    out = run_cli("ask", image_files[0], "how many circles?", "--model", vqa_dir, "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["path"] == str(image_files[0]) and row["question"] == "how many circles?"
    assert isinstance(row["answer"], str)

    out = run_cli("ask", image_files[0], "how many circles?", "--model", vqa_dir)
    assert out.returncode == 0 and out.stdout.strip() == row["answer"]


def test_cli_errors_are_one_line(image_files, tmp_path):
    from conftest import run_cli

    out = run_cli("caption", image_files[0], env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 3 and "HF_HUB_OFFLINE is set" in out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "Salesforce/blip-image-captioning-base" in out.stderr

    out = run_cli("ask", tmp_path / "missing.png", "what?")
    assert out.returncode == 2 and "no such file" in out.stderr

    out = run_cli("caption", image_files[0], "--beams", "0")
    assert out.returncode == 2 and out.stderr == "error: beams must be at least 1, not 0\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_question_is_cut_to_the_text_window_with_a_warning(vqa_dir, image_files, backend):
    """Past the window the position table runs out: every engine crashed, each its own way."""
    import vislang
    from vislang.captioning import TextTruncatedWarning
    from vislang.models.blip import load_blip

    vqa = load_blip(str(vqa_dir), backend, "fp32")
    assert vqa.text_window == 64
    with pytest.warns(TextTruncatedWarning, match="question is 127 tokens.*first 64 were used"):
        answer = vislang.ask(image_files[0], "is there a red circle " * 25, vqa)
    # [CLS], the first 62 words, [SEP]: the same answer as to those words alone
    assert answer == vislang.ask(image_files[0], "is there a red circle " * 12 + "is there", vqa)


def test_long_prompt_is_cut_and_max_tokens_past_the_window_refused(caption_dir, vqa_dir, image_files):
    import vislang
    from vislang.captioning import TextTruncatedWarning
    from vislang.errors import InputError
    from vislang.models.blip import load_blip

    blip = load_blip(str(caption_dir), "torch", "fp32")
    # [DEC] and 90 words; the window of 64 keeps 9 positions for a 10-token caption
    with pytest.warns(TextTruncatedWarning, match="prompt is 91 tokens.*first 55 were used"):
        (text,) = vislang.caption(image_files[:1], blip, prompt="a picture of " * 30,
                                  beams=2, max_tokens=10)
    assert text.startswith("a picture of a picture of")
    with pytest.raises(InputError, match="text window is 64 tokens"):
        vislang.ask(image_files[0], "what?", str(vqa_dir), beams=3, max_tokens=65)
