"""ONNX Runtime engine for BLIP: the same four graphs as the OpenVINO engine, as ONNX files.

ONNX Runtime has no state between runs, so the caches travel as inputs and outputs: a step
takes every cache and gives back the self-attention ones grown by a token. The context's keys
and values go in unchanged on every step; ONNX Runtime reads numpy inputs in place, so that
costs no copy. Precisions: fp32, and int8 (weights quantised dynamically, as for CLIP's towers).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vislang.runtime import cache
from vislang.runtime.blip_graphs import ExportedBlipEngine, graph_names, graph_specs
from vislang.runtime.onnx_engine import open_session, write_onnx
from vislang.runtime.towers import as_array


@dataclass(frozen=True)
class OnnxCache:
    """Every cache by its graph input name (``past.<kind>.<layer>``), and the row order of the
    next step (see ``openvino_blip.StatefulCache``)."""

    arrays: dict[str, np.ndarray]
    rows: np.ndarray


class OnnxBlipEngine(ExportedBlipEngine):
    """``encode_images``, ``encode_question``, ``decode`` and ``reorder`` on ONNX Runtime
    sessions (the interface of ``vislang.runtime.protocols.BlipEngine``)."""

    name = "onnx"

    def _load(self, graph: str):
        return open_session(export_onnx_blip(lambda: self.hf_model, self.model_key, self.task,
                                             self.precision, names=[graph])[graph])

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._graph(graph)
        outputs = session.run(None, feeds)
        return dict(zip((o.name for o in session.get_outputs()), outputs))

    def decode(self, input_ids: torch.Tensor, context: torch.Tensor,
               past: OnnxCache | None = None) -> tuple[torch.Tensor, OnnxCache]:
        ids = as_array(input_ids, np.int64)
        if past is None:
            out = self._run("decoder", {"input_ids": ids,
                                        "context": as_array(context, np.float32)})
            arrays = {}
        else:
            out = self._run("decoder_with_past",
                            {"input_ids": ids, "beam_idx": past.rows, **past.arrays})
            arrays = dict(past.arrays)  # the context's caches, unchanged
        arrays |= {name.replace("present.", "past.", 1): array for name, array in out.items()
                   if name.startswith("present.")}
        return torch.from_numpy(out["logits"]), OnnxCache(arrays, np.arange(len(ids)))

    @staticmethod
    def reorder(past: OnnxCache, index: torch.Tensor) -> OnnxCache:
        return OnnxCache(past.arrays, past.rows[index.cpu().numpy()])


class _SelfCachesOut(torch.nn.Module):
    """The step graph giving back only what changes: logits and the self-attention caches."""

    def __init__(self, graph: torch.nn.Module, keep: int):
        super().__init__()
        self.graph, self.keep = graph, keep

    def forward(self, *inputs: torch.Tensor):
        return self.graph(*inputs)[:self.keep]


def export_onnx_blip(weights: Callable[[], torch.nn.Module], model_key: str, task: str,
                     precision: str, out_dir: Path | None = None,
                     names: Sequence[str] | None = None) -> dict[str, Path]:
    """ONNX files (``vision.onnx``, ``question.onnx`` for VQA, ``decoder.onnx``,
    ``decoder_with_past.onnx``), from the cache when already exported (see ``export_blip``)."""
    specs = functools.cache(lambda: graph_specs(weights(), task))  # traced once for all

    def write(name: str, path: Path) -> None:
        module, example, inputs, shapes, outputs = specs()[name]
        if name == "decoder_with_past":
            outputs = [o for o in outputs if not o.startswith("present.context_")]
            module = _SelfCachesOut(module, len(outputs))
        axes = {n: {i: f"{n}.{i}" for i, size in enumerate(shape) if size == -1}
                for n, shape in zip(inputs, shapes)}
        write_onnx(module, example, path, inputs, outputs, axes, precision)

    return cache.export_files(model_key, names or graph_names(task), "onnx", precision,
                              ".onnx", write, out_dir, prefix="blip-")
