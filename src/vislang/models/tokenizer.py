"""CLIP's byte-pair tokenizer with OpenAI's ``clip.tokenize`` contract.

The vocabulary ships inside vislang (``assets/bpe_simple_vocab_16e6.txt.gz``, the file OpenAI's
CLIP and open_clip ship), so tokenizing needs no checkpoint and no network. The BPE itself runs
in Hugging Face ``tokenizers`` (Rust); the text cleaning and the framing are OpenAI's:

- text is cleaned as OpenAI does (ftfy, HTML unescape, whitespace collapse, lower case) -- the
  transformers tokenizer skips ftfy, so curly quotes or ligatures would tokenize differently;
- every row is ``<start> tokens... <end>`` then zero padding, ``context_length`` wide;
- text longer than that raises, unless ``truncate=True`` (then the last kept token is ``<end>``).
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from importlib import resources

import ftfy
import regex
import torch

from vislang.errors import TokenizeError

SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
CONTEXT_LENGTH = 77
# OpenAI keeps the first 48,894 merges of the file (49152 - 256 bytes - 2 special tokens).
_N_MERGES = 49152 - 256 - 2
_WHITESPACE = regex.compile(r"\s+")


def clean_text(text: str) -> str:
    """OpenAI CLIP's text normalisation: what the released checkpoints were trained on."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the BPE alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merge list of OpenAI's CLIP, built from the shipped BPE file."""
    path = resources.files("vislang") / "assets" / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += [SOT_TOKEN, EOT_TOKEN]
    return {token: i for i, token in enumerate(tokens)}, merges


@lru_cache(maxsize=1)
def clip_tokenizer():
    """A transformers ``CLIPTokenizer`` over the shipped vocabulary (built once per process)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges)


def frame(
    token_ids: list[list[int]],
    texts: list[str],
    *,
    sot: int,
    eot: int,
    context_length: int,
    truncate: bool,
) -> torch.Tensor:
    """Lay BPE ids out as ``[sot, ids..., eot, 0, 0, ...]`` rows, OpenAI style."""
    result = torch.zeros(len(token_ids), context_length, dtype=torch.long)
    for row, (ids, text) in enumerate(zip(token_ids, texts)):
        ids = [sot, *ids, eot]
        if len(ids) > context_length:
            if not truncate:
                shown = text if len(text) <= 60 else text[:57] + "..."
                raise TokenizeError(
                    f"text is too long for context length {context_length} "
                    f"({len(ids)} tokens): {shown!r}; shorten it or pass truncate=True"
                )
            ids = ids[:context_length]
            ids[-1] = eot
        result[row, : len(ids)] = torch.tensor(ids)
    return result


def tokenize(
    texts: str | list[str], context_length: int = CONTEXT_LENGTH, truncate: bool = False
) -> torch.Tensor:
    """Tokenize text for CLIP exactly like OpenAI's ``clip.tokenize``.

    Returns a ``torch.long`` tensor of shape ``[len(texts), context_length]``.
    """
    if isinstance(texts, str):
        texts = [texts]
    tok = clip_tokenizer()
    cleaned = [clean_text(t) for t in texts]
    ids = tok(cleaned, add_special_tokens=False)["input_ids"] if cleaned else []
    return frame(
        ids,
        texts,
        sot=tok.bos_token_id,
        eot=tok.eos_token_id,
        context_length=context_length,
        truncate=truncate,
    )


# -- scripts ------------------------------------------------------------------------------------
# One short phrase per non-Latin script ("a dog on the beach" / "a photo of a cat"): a tokenizer
# that reads them without unknown tokens, in no more tokens than characters, covers the script.
SCRIPT_SAMPLES = {
    "Cyrillic": "фотография кошки",
    "Greek": "φωτογραφία μιας γάτας",
    "CJK": "海滩上的狗的照片",
    "Hangul": "고양이 사진",
    "Arabic": "صورة قطة",
}
_SCRIPT_NAMES = {"CJK": "CJK", "HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "Hangul"}


def scripts_in(text: str) -> set[str]:
    """The non-Latin scripts of the letters in ``text`` (``{"Cyrillic", "CJK"}``); digits,
    punctuation and Latin letters (accented ones too) count for none."""
    import unicodedata

    found = set()
    for char in text:
        if char < "\u0250" or not unicodedata.category(char).startswith("L"):
            continue
        first = unicodedata.name(char, "LATIN").split()[0]
        if first not in ("LATIN", "FULLWIDTH", "HALFWIDTH", "MODIFIER"):
            found.add(_SCRIPT_NAMES.get(first, first.title()))
    return found


def covered_scripts(tokenizer) -> set[str]:
    """The scripts of ``SCRIPT_SAMPLES`` this tokenizer reads: no unknown token, and no more
    tokens than characters (a byte-level vocabulary that spells a script byte by byte does
    not read it). OpenAI's CLIP vocabulary is English-only whatever the count says."""
    if len(tokenizer) == len(clip_tokenizer()) and "CLIP" in type(tokenizer).__name__:
        return set()
    unk = tokenizer.unk_token_id
    covered = set()
    for script, sample in SCRIPT_SAMPLES.items():
        ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
        if unk not in ids and len(ids) <= len(sample.replace(" ", "")):
            covered.add(script)
    return covered
