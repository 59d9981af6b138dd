"""A BLIP checkpoint as the seed notebook's stand-alone graphs, for export, and what the engines
that run them (OpenVINO, ONNX Runtime) share.

- ``vision``: ``pixel_values [N, 3, S, S] -> image_embeds [N, P, D]``;
- ``question`` (VQA only): ``input_ids, attention_mask, image_embeds -> [N, T, D]``;
- ``decoder`` (no past): the prompt ``ids [N, T]`` and ``context [N, C, D]`` -> the next
  token's logits, plus every KV cache: self-attention keys/values of the prompt and the
  context's cross-attention keys/values;
- ``decoder_with_past``: the newest token ``ids [N, 1]`` and ``beam_idx [N]`` (which cache row
  each row continues: beam search's reshuffle, ``arange(N)`` otherwise) -> logits, and the caches
  grown by one token.

Both decoder graphs trace ``BlipDecoder`` (the written-out decoder the torch engine runs), so
every engine computes the same arithmetic. Cache tensors are named ``past.<kind>.<layer>`` going
in and ``present.<kind>.<layer>`` coming out; the OpenVINO export turns each such pair into a
variable that stays inside the compiled model between steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from vislang.runtime.blip_decoder import BlipDecoder, DecoderCache
from vislang.runtime.towers import as_array

CACHE_KINDS = ("key", "value", "context_key", "context_value")


class VisionGraph(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.vision_model = hf_model.vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values)[0]


class QuestionGraph(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.text_encoder = hf_model.text_encoder

    def forward(self, input_ids, attention_mask, image_embeds) -> torch.Tensor:
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                 encoder_hidden_states=image_embeds,
                                 encoder_attention_mask=image_mask, return_dict=False)[0]


class DecoderGraph(torch.nn.Module):
    """The prompt step: no past, every cache out."""

    def __init__(self, decoder: BlipDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, ids: torch.Tensor, context: torch.Tensor):
        logits, cache = self.decoder.step(ids, context)
        return (logits, *cache.keys, *cache.values, *cache.context_keys, *cache.context_values)


class DecoderWithPastGraph(torch.nn.Module):
    """A later step: the caches in (self-attention rows picked by ``beam_idx``), grown out."""

    def __init__(self, decoder: BlipDecoder):
        super().__init__()
        self.decoder = decoder
        self.layers = len(decoder.layers)

    def forward(self, ids: torch.Tensor, beam_idx: torch.Tensor, *caches: torch.Tensor):
        n = self.layers
        keys = [k.index_select(0, beam_idx) for k in caches[:n]]
        values = [v.index_select(0, beam_idx) for v in caches[n:2 * n]]
        past = DecoderCache(keys, values, list(caches[2 * n:3 * n]), list(caches[3 * n:]))
        logits, cache = self.decoder.step(ids, None, past)
        return (logits, *cache.keys, *cache.values, *cache.context_keys, *cache.context_values)


def graph_names(task: str) -> tuple[str, ...]:
    return ("vision", "question", "decoder", "decoder_with_past") if task == "vqa" else \
        ("vision", "decoder", "decoder_with_past")


def cache_names(layers: int, side: str) -> list[str]:
    """``past.key.0, ..., past.context_value.<layers-1>`` (side "past" or "present")."""
    return [f"{side}.{kind}.{i}" for kind in CACHE_KINDS for i in range(layers)]


def decoder_of(hf_model) -> BlipDecoder:
    """The written-out fp32 decoder to trace (export lowers precision afterwards)."""
    return BlipDecoder(hf_model.text_decoder, torch.float32)


def graph_specs(hf_model, task: str) -> dict[str, tuple[torch.nn.Module, tuple, list, list, list]]:
    """Per graph: (module, example inputs, input names, input shapes with -1 where dynamic,
    output names). Examples hold two rows, so batch is never mistaken for a constant."""
    vision = hf_model.config.vision_config
    side, patches = vision.image_size, (vision.image_size // vision.patch_size) ** 2 + 1
    decoder = decoder_of(hf_model)
    attention = decoder.layers[0].self_attention
    heads, size, n = attention.heads, attention.head_size, len(decoder.layers)
    context_width = decoder.layers[0].cross_attention.key_value.weight.shape[1]
    keys_shape, values_shape = [-1, heads, size, -1], [-1, heads, -1, size]
    cache_shapes = [keys_shape] * n + [values_shape] * n + [keys_shape] * n + [values_shape] * n
    ids = torch.full((2, 3), 5, dtype=torch.long)
    context = torch.randn(2, 7, context_width)

    def cache(length: int) -> list[torch.Tensor]:
        return ([torch.randn(2, heads, size, length) for _ in range(n)]
                + [torch.randn(2, heads, length, size) for _ in range(n)])

    specs = {
        "vision": (VisionGraph(hf_model), (torch.zeros(2, 3, side, side),), ["pixel_values"],
                   [[-1, 3, side, side]], ["image_embeds"]),
        "decoder": (DecoderGraph(decoder), (ids, context), ["input_ids", "context"],
                    [[-1, -1], [-1, -1, context_width]],
                    ["logits", *cache_names(n, "present")]),
        "decoder_with_past": (
            DecoderWithPastGraph(decoder),
            (ids[:, :1], torch.arange(2), *cache(3), *cache(7)),
            ["input_ids", "beam_idx", *cache_names(n, "past")],
            [[-1, 1], [-1], *cache_shapes], ["logits", *cache_names(n, "present")]),
    }
    if task == "vqa":
        embeds = torch.randn(2, patches, vision.hidden_size)
        specs["question"] = (QuestionGraph(hf_model), (ids, torch.ones_like(ids), embeds),
                             ["input_ids", "attention_mask", "image_embeds"],
                             [[-1, -1], [-1, -1], [-1, -1, vision.hidden_size]],
                             ["question_embeds"])
    return specs


class ExportedBlipEngine:
    """What the OpenVINO and ONNX Runtime BLIP engines share: graphs made ready on first use,
    the encoders, and the fp32 weights (loaded only to export).
    Subclasses give ``_load(graph)`` and ``_run(graph, feeds) -> {output name: array}``, and
    ``decode`` / ``reorder`` with their own kind of cache."""

    def __init__(self, weights: Callable[[], torch.nn.Module], model_key: str, task: str,
                 precision: str):
        self._weights = weights
        self.model_key, self.task, self.precision = model_key, task, precision
        self.graphs: dict[str, object] = {}

    @functools.cached_property
    def hf_model(self) -> torch.nn.Module:
        return self._weights()

    def _graph(self, name: str):
        if name not in self.graphs:
            self.graphs[name] = self._load(name)
        return self.graphs[name]

    def prepare(self) -> None:
        for name in graph_names(self.task):
            self._graph(name)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self._run("vision", {"pixel_values": as_array(pixel_values, np.float32)})
        return torch.from_numpy(out["image_embeds"])

    def encode_question(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        image_embeds: torch.Tensor) -> torch.Tensor:
        out = self._run("question", {"input_ids": as_array(input_ids, np.int64),
                                     "attention_mask": as_array(attention_mask, np.int64),
                                     "image_embeds": as_array(image_embeds, np.float32)})
        return torch.from_numpy(out["question_embeds"])

