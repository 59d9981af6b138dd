"""BLIP's text decoder one step at a time, written out: the arithmetic of transformers'
``BlipTextLMHeadModel`` with the KV cache kept as plain tensors.

Why not call the transformers module: a generation step at batch 1 multiplies one token's
vector by ~140 M weights, and the module's per-step bookkeeping (cache objects, masks, dtype
casts) cost more than that multiplication (bench/blip.py). Written out, a step is the matrix
products and little else, and the weights can be packed once for the CPU's matrix units: a
bf16 weight given to oneDNN unpacked is re-laid-out on every call, which made bf16 steps no
faster than fp32.

Our generation loop never pads (every row's mask is all ones; finished rows emit padding
tokens that nothing reads), so the only mask is the causal one inside a multi-token prompt.
Tests check that fp32 steps give the same tokens as transformers' ``generate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class PackedLinear:
    """``F.linear`` with the weight laid out once for oneDNN when that pays (bf16 on a CPU).
    Several linears of one input can be fused into one (their outputs concatenated)."""

    def __init__(self, linears: torch.nn.Linear | list[torch.nn.Linear], dtype: torch.dtype):
        linears = linears if isinstance(linears, list) else [linears]
        self.weight = torch.cat([m.weight.detach() for m in linears]).to(dtype)
        self.bias = torch.cat([m.bias.detach() for m in linears]).to(dtype)
        self.packed = None
        if dtype == torch.bfloat16 and self.weight.device.type == "cpu" and _can_pack():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def _can_pack() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn,
                                                            "_reorder_linear_weight")


class LayerNorm:
    def __init__(self, norm: torch.nn.LayerNorm, dtype: torch.dtype):
        self.shape, self.eps = norm.normalized_shape, norm.eps
        self.weight = norm.weight.detach().to(dtype)
        self.bias = norm.bias.detach().to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, self.weight, self.bias, self.eps)


class _Weights:
    """A linear layer's weights times ``factor``, in the shape PackedLinear reads."""

    def __init__(self, linear: torch.nn.Linear, factor: float):
        self.weight = linear.weight.detach() * factor
        self.bias = linear.bias.detach() * factor


class Attention:
    """One BlipTextAttention: projections, scaled dot product, output dense + residual norm.
    Keys are kept transposed (``[N, H, d, T]``), the layout the score product reads, so a
    step never copies the context's keys (577 of them for a 384-px image) to transpose them."""

    def __init__(self, attention, dtype: torch.dtype, fuse_qkv: bool):
        inner = attention.self
        self.heads = inner.num_attention_heads
        self.head_size = inner.attention_head_size
        self.width = self.heads * self.head_size
        # 1/sqrt(d) is folded into the query weights: one scaling of the weights at load
        # instead of one of the scores per step (577 of them per head with an image context)
        query = _Weights(inner.query, 1 / math.sqrt(self.head_size))
        self.query = PackedLinear(query, dtype)
        self.key_value = PackedLinear([inner.key, inner.value], dtype)
        # self-attention reads q, k and v from the same input: one product instead of three
        self.qkv = PackedLinear([query, inner.key, inner.value], dtype) if fuse_qkv else None
        self.dense = PackedLinear(attention.output.dense, dtype)
        self.norm = LayerNorm(attention.output.LayerNorm, dtype)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, H*d] -> [N, H, T, d]``"""
        return x.view(*x.shape[:-1], self.heads, self.head_size).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transposed keys ``[N, H, d, T]`` and values ``[N, H, T, d]`` of ``x``."""
        keys, values = self.key_value(x).split(self.width, dim=-1)
        return self.split(keys).transpose(-1, -2).contiguous(), self.split(values)

    def queries_keys_values(self, x: torch.Tensor):
        query, keys, values = self.qkv(x).split(self.width, dim=-1)
        return self.split(query), self.split(keys).transpose(-1, -2), self.split(values)

    def attend(self, x: torch.Tensor, query: torch.Tensor, keys_t: torch.Tensor,
               values: torch.Tensor, causal: bool) -> torch.Tensor:
        scores = torch.matmul(query, keys_t)  # the query carries the 1/sqrt(d)
        if causal:  # a prompt of several tokens: position i sees positions <= i
            t, s = scores.shape[-2:]
            hidden = torch.ones(t, s, dtype=torch.bool).triu(s - t + 1)
            scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min)
        context = torch.matmul(torch.softmax(scores, dim=-1), values)
        context = context.transpose(1, 2).reshape(*x.shape[:-1], -1)
        return self.norm(self.dense(context) + x)

    def __call__(self, x: torch.Tensor, keys_t: torch.Tensor, values: torch.Tensor
                 ) -> torch.Tensor:
        """Cross-attention to precomputed keys and values."""
        return self.attend(x, self.split(self.query(x)), keys_t, values, causal=False)


class Layer:
    def __init__(self, layer, dtype: torch.dtype):
        self.self_attention = Attention(layer.attention, dtype, fuse_qkv=True)
        self.cross_attention = Attention(layer.crossattention, dtype, fuse_qkv=False)
        self.intermediate = PackedLinear(layer.intermediate.dense, dtype)
        self.activation = layer.intermediate.intermediate_act_fn  # gelu in every BLIP
        self.output = PackedLinear(layer.output.dense, dtype)
        self.norm = LayerNorm(layer.output.LayerNorm, dtype)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.output(self.activation(self.intermediate(x))) + x)


@dataclass
class DecoderCache:
    """Per layer: self-attention keys/values so far, and the context's keys/values (keys
    ``[N, H, d, T]``, values ``[N, H, T, d]``). Rows are sequences (beams)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    context_keys: list[torch.Tensor]
    context_values: list[torch.Tensor]

    @property
    def length(self) -> int:
        return self.keys[0].shape[-1]

    def reorder(self, rows: torch.Tensor) -> "DecoderCache":
        """Keep rows ``rows`` (beam search). Beams move only within their own image, whose
        context rows are all equal, so the context's keys/values need no reshuffle."""
        return DecoderCache([k.index_select(0, rows) for k in self.keys],
                            [v.index_select(0, rows) for v in self.values],
                            self.context_keys, self.context_values)


class BlipDecoder:
    """``step(ids, context, cache) -> (logits float32 [N, V], cache)`` for a BLIP text decoder
    (``BlipTextLMHeadModel``), weights copied in ``dtype``."""

    def __init__(self, text_decoder, dtype: torch.dtype = torch.float32):
        self.dtype = dtype
        model = text_decoder.bert
        self.word_embeddings = model.embeddings.word_embeddings.weight.detach().to(dtype)
        self.position_embeddings = model.embeddings.position_embeddings.weight.detach().to(dtype)
        self.embedding_norm = LayerNorm(model.embeddings.LayerNorm, dtype)
        self.layers = [Layer(layer, dtype) for layer in model.encoder.layer]
        head = text_decoder.cls.predictions
        self.transform = PackedLinear(head.transform.dense, dtype)
        self.activation = head.transform.transform_act_fn
        self.transform_norm = LayerNorm(head.transform.LayerNorm, dtype)
        self.vocabulary = PackedLinear(head.decoder, dtype)

    def step(self, ids: torch.Tensor, context: torch.Tensor,
             cache: DecoderCache | None = None) -> tuple[torch.Tensor, DecoderCache]:
        """Read ``ids [N, T]`` (the whole prompt when ``cache`` is None, else the newest
        token) cross-attending to ``context [N, C, D]``; the next token's logits."""
        start = 0 if cache is None else cache.length
        positions = torch.arange(start, start + ids.shape[1])
        x = self.word_embeddings[ids] + self.position_embeddings[positions]
        x = self.embedding_norm(x)
        grow = cache is not None
        if not grow:
            context = context.to(self.dtype)
            pairs = [layer.cross_attention.keys_values(context) for layer in self.layers]
            cache = DecoderCache([], [], [k for k, _ in pairs], [v for _, v in pairs])
        keys, values = [], []
        for i, layer in enumerate(self.layers):
            attention = layer.self_attention
            query, k, v = attention.queries_keys_values(x)
            if grow:
                k = torch.cat([cache.keys[i], k], dim=-1)
                v = torch.cat([cache.values[i], v], dim=2)
            keys.append(k)
            values.append(v)
            x = attention.attend(x, query, k, v, causal=ids.shape[1] > 1)
            x = layer.cross_attention(x, cache.context_keys[i], cache.context_values[i])
            x = layer.feed_forward(x)
        last = x[:, -1, :]
        logits = self.vocabulary(self.transform_norm(self.activation(self.transform(last))))
        return logits.float(), DecoderCache(keys, values, cache.context_keys,
                                            cache.context_values)
