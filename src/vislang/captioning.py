"""Captions and answers from BLIP: our own generation loop over the model's three graphs.

The vision encoder runs once per batch of images; the text decoder then runs one token at a
time with a KV cache. Greedy and beam search follow transformers' ``generate`` step for step
(the same scores, the same length penalty and stopping rule), so both give the same tokens --
the tests check that. Only the engine's ``encode_images`` / ``encode_question`` / ``decode`` /
``reorder`` are called, so a faster engine can replace the torch one.

    >>> import vislang
    >>> vislang.caption(["beach.jpg"], prompt="a picture of")
    ['a picture of a beach with palm trees']
    >>> vislang.ask("beach.jpg", "how many trees are there?")
    '3'

A question or prompt longer than the model's text window (``BlipModel.text_window``: 512
tokens for Salesforce's BLIPs) is cut to fit, with a ``TextTruncatedWarning``; the answer or
caption is then about the part that fitted.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from PIL import Image

from vislang.errors import ImageLoadError, InputError
from vislang.images import load_image
from vislang.models.blip import CAPTION, VQA, BlipModel, load_blip
from vislang.parallel import prepared_batches
from vislang.settings import settings

if TYPE_CHECKING:
    from vislang.search import Index

# The defaults when VISLANG_CAPTION_MODEL / VISLANG_VQA_MODEL are unset; what runs is
# settings().caption_model / settings().vqa_model.
DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-base"
ImageInput = str | os.PathLike | bytes | Image.Image


@dataclass(frozen=True)
class CaptionedBatch:
    """One batch from ``caption_batches``: its readable items and their captions."""

    items: list  # the items that were captioned, in input order
    captions: list[str]  # one per item
    failed: list[tuple[object, ImageLoadError]]  # (item, why) for each that could not be read


@dataclass
class CaptionSummary:
    """What ``caption_index`` did."""

    captioned: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"captioned": self.captioned,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "seconds": round(self.seconds, 3)}


class TextTruncatedWarning(UserWarning):
    """A question or caption prompt was longer than the model's text window and was cut."""


def caption(images: ImageInput | Iterable[ImageInput], model: str | BlipModel | None = None,
            prompt: str | None = None, beams: int = 1, max_tokens: int = 20,
            batch_size: int = 8) -> list[str]:
    """One caption per image. ``prompt`` (e.g. ``"a picture of"``) starts every caption, as in
    BLIP's own examples, and is part of the returned text."""
    blip = _model(model, settings().caption_model)
    images = [images] if isinstance(images, (str, os.PathLike, bytes, Image.Image)) else list(images)
    out: list[str] = []
    for batch in caption_batches(images, blip, prompt, beams, max_tokens, batch_size):
        if batch.failed:
            raise batch.failed[0][1]
        out += batch.captions
    return out


def caption_batches(items: Iterable, blip: BlipModel, prompt: str | None = None, beams: int = 1,
                    max_tokens: int = 20, batch_size: int = 8,
                    source: Callable[[object], ImageInput] | None = None,
                    progress: bool = False) -> Iterator[CaptionedBatch]:
    """Caption ``items`` a batch at a time, yielding each batch's readable items, their
    captions and the failures, so a caller can keep (store, commit) one batch before the next
    runs. An unreadable image is a failure, never an exception.

    ``source(item)`` is the image an item stands for (default: the item itself), e.g.
    ``lambda item: item[1]`` for ``(content hash, path)`` items. Decoding runs in worker
    threads, overlapped with the model.
    """
    blip.require(CAPTION)
    check_settings(beams, max_tokens)
    image_of = source or (lambda item: item)
    for batch in prepared_batches(items, lambda item: blip.preprocess(
            load_for(blip, image_of(item))), batch_size, label="captioning", progress=progress):
        captions = caption_pixels(blip, torch.stack(batch.values), prompt, beams,
                                  max_tokens) if batch.values else []
        yield CaptionedBatch(batch.items, captions, batch.failed)


def caption_index(index: Index, blip: BlipModel, prompt: str | None = None, beams: int = 1,
                  max_tokens: int = 20, progress: bool = False,
                  batch_size: int = 8) -> CaptionSummary:
    """Caption every content of a search index that has no caption by ``blip`` (a loaded BLIP
    captioning model) yet, a batch per commit: a killed run keeps what it finished."""
    blip.require(CAPTION)
    started = time.perf_counter()
    summary = CaptionSummary()
    with index.writing():
        todo = index.store.hashes_to_caption(blip.model_key)  # (content hash, a path of it)
        for batch in caption_batches(todo, blip, prompt, beams, max_tokens, batch_size,
                                     source=lambda item: item[1], progress=progress):
            index.store.put_captions(
                blip.model_key, [(h, text) for (h, _), text in zip(batch.items, batch.captions)],
                [(h, error.reason) for (h, _), error in batch.failed])
            summary.captioned += len(batch.items)
            summary.skipped += [(path, error.reason) for (_, path), error in batch.failed]
    summary.seconds = time.perf_counter() - started
    return summary


def caption_pixels(blip: BlipModel, pixel_values: torch.Tensor, prompt: str | None = None,
                   beams: int = 1, max_tokens: int = 20) -> list[str]:
    """Captions of a preprocessed batch ``float32[N, 3, H, W]``."""
    ids = caption_ids(blip, pixel_values, prompt, beams, max_tokens)
    return [t.strip() for t in blip.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def ask(image: ImageInput, question: str, model: str | BlipModel | None = None, beams: int = 1,
        max_tokens: int = 10) -> str:
    """The answer to ``question`` about ``image``."""
    blip = _model(model, settings().vqa_model)
    blip.require(VQA)
    check_settings(beams, max_tokens)
    if not question or not question.strip():
        raise InputError("the question is empty; ask something about the image")
    pixels = blip.preprocess(load_for(blip, image))[None]
    ids = answer_ids(blip, pixels, [question], beams, max_tokens)
    return blip.tokenizer.decode(ids[0], skip_special_tokens=True).strip()


# -- token level: what the tests compare with transformers' generate ----------------------------
def caption_ids(blip: BlipModel, pixel_values: torch.Tensor, prompt: str | None = None,
                beams: int = 1, max_tokens: int = 20) -> list[list[int]]:
    """Token ids per image: ``[DEC]``, the prompt's tokens, the caption, ``[SEP]`` if reached."""
    _check_window(blip, max_tokens)
    engine = blip.engine
    with torch.inference_mode():
        image_embeds = engine.encode_images(pixel_values)
        n = image_embeds.shape[0]
        if prompt:
            ids = _prompt_ids(blip, prompt, max_tokens).repeat(n, 1)
        else:
            ids = torch.full((n, 1), blip.bos_token_id, dtype=torch.long)
        return _generate(blip, ids, image_embeds, beams, max_tokens)


def answer_ids(blip: BlipModel, pixel_values: torch.Tensor, questions: Sequence[str],
               beams: int = 1, max_tokens: int = 10) -> list[list[int]]:
    """Answer token ids per (image, question): ``[DEC]``, the answer, ``[SEP]`` if reached."""
    _check_window(blip, max_tokens)
    engine = blip.engine
    with torch.inference_mode():
        image_embeds = engine.encode_images(pixel_values)
        tokens = _question_tokens(blip, list(questions))
        question_embeds = engine.encode_question(tokens["input_ids"], tokens["attention_mask"],
                                                 image_embeds)
        # transformers' BLIP lets the answer attend to every question position, padding too
        ids = torch.full((question_embeds.shape[0], 1), blip.bos_token_id, dtype=torch.long)
        return _generate(blip, ids, question_embeds, beams, max_tokens)


def _check_window(blip: BlipModel, max_tokens: int) -> None:
    if max_tokens > blip.text_window:
        raise InputError(f"max_tokens (--max-tokens) {max_tokens} is more than "
                         f"{blip.checkpoint.name} can generate: its text window is "
                         f"{blip.text_window} tokens; ask for at most that many")


def _prompt_ids(blip: BlipModel, prompt: str, max_tokens: int) -> torch.Tensor:
    """``[DEC]`` and the prompt's tokens, ``long[1, L]``, cut to leave the caption room."""
    ids = blip.tokenizer(prompt, return_tensors="pt")["input_ids"][:, :-1]  # drop [SEP]
    ids[:, 0] = blip.bos_token_id
    # the decoder's positions hold [DEC], the prompt and all but the last new token
    room = blip.text_window - max_tokens + 1
    if ids.shape[1] > room:
        _warn_cut(blip, "prompt", ids.shape[1], room,
                  f", with room kept for the {max_tokens} tokens of the caption")
    return ids[:, :room]


def _question_tokens(blip: BlipModel, questions: list[str]):
    """The questions' ids and attention mask, each cut to the text encoder's window (past it,
    its position table runs out: a size mismatch in torch, a shape error in OpenVINO)."""
    window = blip.text_window
    for ids in blip.tokenizer(questions)["input_ids"]:
        if len(ids) > window:
            _warn_cut(blip, "question", len(ids), window)
    return blip.tokenizer(questions, padding=True, truncation=True, max_length=window,
                          return_tensors="pt")


def _warn_cut(blip: BlipModel, what: str, length: int, kept: int, detail: str = "") -> None:
    warnings.warn(f"the {what} is {length} tokens, more than fit the text window of "
                  f"{blip.checkpoint.name} ({blip.text_window} tokens{detail}); only its first "
                  f"{kept} were used", TextTruncatedWarning, stacklevel=4)


# -- the loop ----------------------------------------------------------------------------------
def _generate(blip: BlipModel, prompt: torch.Tensor, context: torch.Tensor, beams: int,
              max_tokens: int) -> list[list[int]]:
    if beams == 1:
        return _greedy(blip, prompt, context, max_tokens)
    gen = blip.generation_config
    # transformers 5 leaves unset fields None and then applies its defaults (1.0, False)
    length_penalty = 1.0 if gen.length_penalty is None else float(gen.length_penalty)
    early_stopping = False if gen.early_stopping is None else gen.early_stopping
    return _beam_search(blip, prompt, context, beams, max_tokens, length_penalty, early_stopping)


def _greedy(blip: BlipModel, ids: torch.Tensor, context: torch.Tensor,
            max_tokens: int) -> list[list[int]]:
    engine, eos, pad = blip.engine, blip.eos_token_id, blip.pad_token_id
    prompt_len = ids.shape[1]
    running = torch.ones(ids.shape[0], dtype=torch.bool)
    logits, past = engine.decode(ids, context)
    for step in range(max_tokens):
        next_ids = torch.where(running, logits.argmax(dim=-1), pad)
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        running &= next_ids != eos
        if not running.any() or step == max_tokens - 1:
            break
        logits, past = engine.decode(next_ids[:, None], context, past)
    return [_cut(row, prompt_len, eos) for row in ids.tolist()]


def _beam_search(blip: BlipModel, prompt: torch.Tensor, context: torch.Tensor, k: int,
                 max_tokens: int, length_penalty: float,
                 early_stopping: bool | str) -> list[list[int]]:
    """Beam search as transformers 5 runs it: 2k candidates per step, finished hypotheses
    scored ``sum log p / generated_length ** length_penalty``, its early-stop heuristic."""
    engine, eos, pad = blip.engine, blip.eos_token_id, blip.pad_token_id
    n, prompt_len = prompt.shape
    max_len = prompt_len + max_tokens
    context = context.repeat_interleave(k, dim=0)
    running = torch.full((n, k, max_len), pad, dtype=torch.long)
    running[:, :, :prompt_len] = prompt[:, None, :]
    finished = running.clone()
    running_scores = torch.zeros(n, k)
    running_scores[:, 1:] = -1e9
    finished_scores = torch.full((n, k), -1e9)
    is_finished = torch.zeros(n, k, dtype=torch.bool)
    may_improve = torch.ones(n, 1, dtype=torch.bool)
    top_k_mask = torch.arange(2 * k) < k
    offsets = torch.arange(n)[:, None] * k
    cur_len = prompt_len
    flat = running[:, :, :cur_len].reshape(n * k, cur_len)
    logits, past = engine.decode(flat, context)
    while True:
        log_probs = torch.log_softmax(logits, dim=-1).view(n, k, -1)
        vocab = log_probs.shape[-1]
        log_probs = (log_probs + running_scores[:, :, None]).reshape(n, -1)
        top_scores, top_index = torch.topk(log_probs, 2 * k)
        source_beam = top_index // vocab
        top_seqs = _gather(running, source_beam)
        top_seqs[:, :, cur_len] = top_index % vocab
        source_row = source_beam + offsets  # row of the flat (n*k) cache each came from
        hits = (top_seqs[:, :, cur_len] == eos) | (cur_len + 1 >= max_len)
        # the k best candidates that are still open carry on
        open_scores = top_scores + hits.float() * -1e9
        keep = torch.topk(open_scores, k)[1]
        running = _gather(top_seqs, keep)
        running_scores = _gather(open_scores, keep)
        cache_rows = _gather(source_row, keep).reshape(-1)
        # candidates among the top k that just finished compete with the finished ones
        done_now = hits & top_k_mask[None, :]
        done_scores = top_scores / ((cur_len + 1 - prompt_len) ** length_penalty)
        full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        done_scores = done_scores + full.float() * -1e9 + (~may_improve).float() * -1e9
        done_scores = done_scores + (~done_now).float() * -1e9
        merged_scores = torch.cat([finished_scores, done_scores], dim=1)
        best = torch.topk(merged_scores, k)[1]
        finished = _gather(torch.cat([finished, top_seqs], dim=1), best)
        finished_scores = _gather(merged_scores, best)
        is_finished = _gather(torch.cat([is_finished, done_now], dim=1), best)
        cur_len += 1
        # can an open beam still beat the worst finished one?
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_len - prompt_len
        else:
            best_length = cur_len - prompt_len
        best_open = running_scores[:, :1] / (best_length ** length_penalty)
        worst_done = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], -1e9)
        may_improve = may_improve & (best_open > worst_done).any(dim=-1, keepdim=True)
        if not (may_improve.any() and not (is_finished.all() and early_stopping is True)
                and not hits.all()):
            break
        past = engine.reorder(past, cache_rows)
        step_ids = running[:, :, cur_len - 1].reshape(n * k, 1)
        logits, past = engine.decode(step_ids, context, past)
    return [_cut(row, prompt_len, eos) for row in finished[:, 0, :].tolist()]


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor[b, index[b, j], ...]`` for every batch row ``b``."""
    index = index.view(*index.shape, *([1] * (tensor.dim() - 2))).expand(
        *index.shape, *tensor.shape[2:])
    return torch.gather(tensor, 1, index)


def _cut(row: list[int], prompt_len: int, eos: int) -> list[int]:
    """The sequence up to and including the first end token after the prompt."""
    for i in range(prompt_len, len(row)):
        if row[i] == eos:
            return row[: i + 1]
    return row


def _model(model: str | BlipModel | None, default: str) -> BlipModel:
    if isinstance(model, BlipModel):
        return model
    return load_blip(model or default)


def load_for(blip: BlipModel, source: ImageInput) -> Image.Image:
    """An image decoded for this model (JPEGs at reduced scale when it needs fewer pixels)."""
    return load_image(source, min_side=blip.transform.min_side)


def check_settings(beams: int, max_tokens: int) -> None:
    if beams < 1:
        raise InputError(f"beams must be at least 1, not {beams}")
    if max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1, not {max_tokens}")
