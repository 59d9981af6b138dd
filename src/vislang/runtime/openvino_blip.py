"""OpenVINO engine for BLIP: the seed notebook's graphs, exported once and compiled for the CPU.

The decoder step is *stateful*: every KV cache -- the self-attention keys/values so far and the
context's cross-attention keys/values -- lives inside the infer request as OpenVINO variables
(in the inference precision), so a step takes only the new token and the beam order, and gives
only the logits. An earlier stateless export passed the 577 image keys in on every step and was
slower than torch for that alone (docs/benchmarks.md).

Precisions: ``fp32``; ``bf16`` (IR weights in FP16, inference in bf16); ``int8``, where each
graph gets what measured fastest (bench/blip.py):

- the vision encoder is quantised by NNCF (weights and activations, calibrated on images);
- the decoders' weights are compressed to int8 (data-free, per output channel). A decoder step
  at batch 1 reads every weight for one token, so its time is weight traffic, which int8 halves;
  the steps run under the f32 hint, where OpenVINO quantises each token's activations on the fly
  and multiplies int8 by int8;
- the question encoder stays bf16: a few tokens, where int8 pays little.
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
from vislang.runtime.openvino_engine import inference_hint, quantize_int8, save_ir
from vislang.runtime.towers import as_array, quiet_export, quiet_nncf

COMPRESSED = ("decoder", "decoder_with_past")  # int8 weights only
CALIBRATED = ("vision",)  # int8 weights and activations
# Under the f32 hint OpenVINO multiplies int8 by int8 directly in these graphs; under bf16 it
# converts around the int8 products (measured: the vision encoder 3x slower, steps 25% slower).
INT8_UNDER_F32 = ("vision", "decoder_with_past")


@dataclass(frozen=True)
class StatefulCache:
    """The decoder's caches, held by ``request``; ``rows`` says which cache row each row of
    the next step continues (beam search reorders them; otherwise ``arange(N)``)."""

    request: object  # openvino.InferRequest
    rows: np.ndarray


class OpenVINOBlipEngine(ExportedBlipEngine):
    """``encode_images``, ``encode_question``, ``decode`` and ``reorder`` on compiled graphs,
    the interface of ``vislang.runtime.protocols.BlipEngine``; results are float32 tensors.
    One engine serves one caller at a time."""

    name = "openvino"

    def __init__(self, weights: Callable[[], torch.nn.Module], model_key: str, task: str,
                 precision: str, calibration: Callable[[], list[np.ndarray]] | None = None,
                 device: str = "CPU"):
        super().__init__(weights, model_key, task, precision)
        self._calibration = calibration
        self.device = device  # an OpenVINO device name: CPU, GPU, AUTO...

    def _load(self, graph: str):
        """A graph exported (first time only) and compiled."""
        import openvino as ov

        core = ov.Core()
        path = export_blip(lambda: self.hf_model, self.model_key, self.task, self.precision,
                           self._calibration, names=[graph])[graph]
        hint = inference_hint(self.precision, int8_under_f32=graph in INT8_UNDER_F32)
        model = core.read_model(str(path))
        if graph == "decoder" and hint == "bf16":
            model = _bf16_caches(model)
        return core.compile_model(model, self.device, cache.openvino_config(hint, "LATENCY"))

    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict:
        return self._graph(graph)(inputs)

    def decode(self, input_ids: torch.Tensor, context: torch.Tensor,
               past: StatefulCache | None = None) -> tuple[torch.Tensor, StatefulCache]:
        """One decoder step (see ``TorchBlipEngine.decode``). The first step runs the
        ``decoder`` graph and moves its caches into a fresh request of ``decoder_with_past``."""
        ids = as_array(input_ids, np.int64)
        if past is None:
            # The prompt's caches go straight from its request's outputs into the variables
            # (no copies in between: the context's keys and values are ~40 MB for an image).
            prompt = self._graph("decoder").create_infer_request()
            out = prompt.infer({"input_ids": ids, "context": as_array(context, np.float32)},
                               share_outputs=True)
            request = self._graph("decoder_with_past").create_infer_request()
            for state in request.query_state():
                state.state = prompt.get_tensor(_present(state.name))
        else:
            request = past.request
            out = request.infer({"input_ids": ids, "beam_idx": past.rows}, share_outputs=True)
        logits = out["logits"].copy()  # shared outputs: the next step overwrites them
        return torch.from_numpy(logits), StatefulCache(request, np.arange(len(ids)))

    @staticmethod
    def reorder(past: StatefulCache, index: torch.Tensor) -> StatefulCache:
        """Continue cache rows ``index`` on the next step (beam search's reshuffle)."""
        return StatefulCache(past.request, past.rows[index.cpu().numpy()])


def _bf16_caches(model):
    """The prompt graph hands its caches over in bf16, the precision the step graph keeps them
    in: half the bytes to move, and no conversion to f32 and back (~10 ms per image)."""
    import openvino as ov

    steps = ov.preprocess.PrePostProcessor(model)
    for output in model.outputs:
        if output.get_any_name().startswith("present."):
            steps.output(output.get_any_name()).tensor().set_element_type(ov.Type.bf16)
    return steps.build()


def _present(state_name: str) -> str:
    """The output that fills a variable: MakeStateful names it ``<input><output>``, here
    ``past.key.3present.key.3``."""
    return state_name[state_name.index("present."):]


def export_blip(weights: Callable[[], torch.nn.Module], model_key: str, task: str,
                precision: str, calibration: Callable[[], list[np.ndarray]] | None = None,
                out_dir: Path | None = None,
                names: Sequence[str] | None = None) -> dict[str, Path]:
    """IR files (``vision.xml``, ``question.xml`` for VQA, ``decoder.xml``,
    ``decoder_with_past.xml``), from the cache when already exported; ``weights()`` gives the
    fp32 transformers model and is called only when a graph must be made; ``calibration()``
    gives pixel arrays ``[1, 3, S, S]`` to quantise the vision encoder on (int8)."""
    specs = functools.cache(lambda: graph_specs(weights(), task))  # traced once for all

    def write(name: str, path: Path) -> None:
        graph = _convert(name, *specs()[name], precision)
        if precision == "int8" and name in CALIBRATED:
            with quiet_export():
                graph = quantize_int8(graph, calibration())
        save_ir(graph, path, precision)

    return cache.export_files(model_key, names or graph_names(task), "openvino", precision,
                              ".xml", write, out_dir, prefix="blip-")


def _convert(name: str, module, example, inputs: list[str], shapes: list, outputs: list[str],
             precision: str):
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    with torch.no_grad(), quiet_export():
        graph = ov.convert_model(module, example_input=example,
                                 input=[ov.PartialShape(s) for s in shapes])
        for port, tensor_name in [*zip(graph.inputs, inputs), *zip(graph.outputs, outputs)]:
            port.get_tensor().set_names({tensor_name})
        if name == "decoder_with_past":
            apply_make_stateful_transformation(
                graph, {n: n.replace("past.", "present.", 1) for n in inputs
                        if n.startswith("past.")})
        if precision == "int8" and name in COMPRESSED:
            import nncf

            with quiet_nncf():
                graph = nncf.compress_weights(graph)
    return graph
