"""``vislang.tokenize`` keeps OpenAI's ``clip.tokenize`` contract, on real text."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import vislang
from vislang.errors import TokenizeError

REAL_TEXT = [
    "a photo of a cat",
    "A Photo Of A CAT!!!",
    "Hello, world... it's a \u201cquoted\u201d phrase -- isn't it?",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe",
    "\ufb01ne ligatures and \uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48",
    "\u6771\u4eac\u306e\u591c\u666f \ud55c\uad6d\uc5b4 \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "emoji \U0001f436\U0001f3d6\ufe0f and #hashtags @mentions 100% $5.99",
    "html &amp; entities &lt;b&gt; &#39;x&#39;",
    "  tabs\tand\n\nnewlines   everywhere  ",
    "numbers 1234567 and 3.14159, dates 2024-01-31",
    "",
]


@pytest.fixture(scope="module")
def openai_reference():
    """OpenAI's SimpleTokenizer as open_clip ships it (installed without its dependencies)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("open_clip_torch is not installed (the README's test command installs it)")
    folder = Path(spec.submodule_search_locations[0])
    # Load the one file: the package's __init__ imports torchvision, which we do not depend on.
    module_spec = importlib.util.spec_from_file_location("openai_tokenizer", folder / "tokenizer.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer(str(folder / "bpe_simple_vocab_16e6.txt.gz"))


def test_shape_framing_and_zero_padding():
    tokens = vislang.tokenize(["a diagram", "a dog", "a cat"])
    assert tokens.shape == (3, 77) and tokens.dtype == torch.long
    assert (tokens[:, 0] == 49406).all()
    for row in tokens:
        end = int((row == 49407).nonzero()[0])
        assert (row[end + 1 :] == 0).all() and (row[1:end] != 0).all()
    assert vislang.tokenize("a dog").shape == (1, 77)


@pytest.mark.parametrize("text", REAL_TEXT)
def test_same_ids_as_openai(openai_reference, text):
    ids = openai_reference.encode(text)
    expected = torch.zeros(77, dtype=torch.long)
    expected[: len(ids) + 2] = torch.tensor([49406, *ids, 49407])
    assert torch.equal(vislang.tokenize(text)[0], expected)


def test_very_long_text_raises_unless_truncated(openai_reference):
    text = " ".join(["a very long caption about a sunny beach with dogs"] * 20)
    with pytest.raises(TokenizeError, match="too long for context length 77"):
        vislang.tokenize(["short", text])
    row = vislang.tokenize(text, truncate=True)[0]
    assert row[0] == 49406 and row[-1] == 49407 and (row != 0).all()
    assert torch.equal(row[1:76], torch.tensor(openai_reference.encode(text)[:75]))


def test_context_length_is_respected():
    assert vislang.tokenize("a cat", context_length=16).shape == (1, 16)
    with pytest.raises(TokenizeError):
        vislang.tokenize("one two three four five", context_length=5)


def test_checkpoint_tokenizer_agrees_with_clip_tokenize(clip_model):
    assert torch.equal(clip_model.tokenize(REAL_TEXT), vislang.tokenize(REAL_TEXT))


def test_transformers_tokenizer_agrees_on_plain_text(tiny_clip_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_clip_dir)
    for text in ["a photo of a cat", "two blue squares, one red circle!"]:
        ids = hf(text)["input_ids"]
        assert vislang.tokenize(text)[0, : len(ids)].tolist() == ids
