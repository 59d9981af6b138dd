"""OpenVINO engine: each tower converted to IR once, compiled for the CPU (or GPU) at a precision.

The seed notebooks' recipe made a product: split the towers, convert with ``ov.convert_model``,
store weights compressed to FP16, quantise to int8 with NNCF post-training quantisation on a
calibration set, and keep the CPU busy with an ``AsyncInferQueue`` under the THROUGHPUT hint.
``INFERENCE_PRECISION_HINT`` is always set: on CPUs with bf16 units OpenVINO would otherwise
silently run in bf16 even when fp32 was asked for.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from vislang.runtime import cache
from vislang.runtime.cpu import cpu_has_amx
from vislang.runtime.towers import (TOWERS, ExportedClipEngine, example_inputs, quiet_export,
                                    quiet_nncf, tower)

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def inference_hint(precision: str, int8_under_f32: bool = False) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for a graph at ``precision``. An int8 graph runs what
    is left unquantised (attention, norms, activations) in bf16 on AMX: 8-20% faster than f32
    for CLIP's towers (ViT-B/32 and B/16, bench/encode.py), slower without AMX. Some graphs
    (``int8_under_f32``) are faster under f32 even there, where OpenVINO multiplies int8 by int8
    directly instead of converting around the products (BLIP's, bench/blip.py)."""
    if precision == "int8":
        return "bf16" if cpu_has_amx() and not int8_under_f32 else "f32"
    return PRECISION_HINTS[precision]


@functools.cache  # the hardware and the install do not change while a process runs
def openvino_capabilities(device: str = "CPU") -> frozenset[str]:
    import openvino as ov

    return frozenset(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))


class OpenVINOEngine(ExportedClipEngine):
    name = "openvino"

    def __init__(self, weights: Callable, config, model_key: str, precision: str,
                 mode: str = "throughput",
                 calibration: Callable[[], dict[str, Iterable[np.ndarray]]] | None = None,
                 device: str = "CPU"):
        super().__init__(lambda names: export_towers(weights, config, model_key, precision,
                                                     calibration, names=names), precision)
        self.mode, self.device = mode, device
        self.requests: dict[str, int] = {}

    def _open(self, tower: str, path: Path):
        import openvino as ov

        config = cache.openvino_config(inference_hint(self.precision),
                                       "THROUGHPUT" if self.mode == "throughput" else "LATENCY")
        compiled = ov.Core().compile_model(str(path), self.device, config)
        self.requests[tower] = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        return compiled

    def _run(self, tower: str, array: np.ndarray) -> np.ndarray:
        compiled = self._tower(tower)
        jobs = self.requests[tower]
        if self.mode == "latency" or jobs <= 1 or len(array) < 2 * jobs:
            return compiled(array)[0]
        return self._run_async(compiled, array, jobs)

    @staticmethod
    def _run_async(compiled, array: np.ndarray, jobs: int) -> np.ndarray:
        """Split the batch over ``jobs`` parallel requests, as the THROUGHPUT hint expects."""
        import openvino as ov

        chunks = np.array_split(array, jobs)
        results: list[np.ndarray | None] = [None] * len(chunks)

        def done(request, index):
            results[index] = request.get_output_tensor(0).data.astype(np.float32).copy()

        queue = ov.AsyncInferQueue(compiled, jobs)
        queue.set_callback(done)
        for index, chunk in enumerate(chunks):
            queue.start_async({0: chunk}, userdata=index)
        queue.wait_all()
        return np.concatenate(results)


def export_towers(weights: Callable, config, model_key: str, precision: str,
                  calibration: Callable[[], dict[str, Iterable[np.ndarray]]] | None = None,
                  out_dir: Path | None = None, names: Sequence[str] = TOWERS) -> dict[str, Path]:
    """IR files (``image.xml``, ``text.xml``), from the cache when already exported;
    ``weights()`` gives the transformers model, and is called only when one must be made."""
    data = functools.cache(calibration) if calibration else None  # one calibration set for both

    def write(name: str, path: Path) -> None:
        import openvino as ov

        example = example_inputs(config)[name]
        shape = [-1, *example.shape[1:]] if name == "image" else [-1, -1]
        with torch.no_grad(), quiet_export():
            graph = ov.convert_model(tower(weights(), name), example_input=example,
                                     input=[ov.PartialShape(shape)])
            if precision == "int8":
                graph = quantize_int8(graph, data()[name])
        save_ir(graph, path, precision)

    return cache.export_files(model_key, names, "openvino", precision, ".xml", write, out_dir)


def save_ir(graph, path: Path, precision: str) -> None:
    """Write ``graph`` as ``path`` (.xml + .bin), weights in FP16 below fp32 precision."""
    import openvino as ov

    # Write under a temporary name, .xml last: a killed export never looks finished, and two
    # processes exporting at once (both on a first use) never write into one file.
    staging = path.with_suffix(f".{os.getpid()}.partial.xml")
    ov.save_model(graph, str(staging), compress_to_fp16=precision in ("bf16", "fp16"))
    staging.with_suffix(".bin").rename(path.with_suffix(".bin"))
    staging.rename(path)


def quantize_int8(graph, samples: Iterable[np.ndarray]):
    """NNCF post-training int8 quantisation, with transformer-aware patterns."""
    import nncf

    samples = list(samples)
    with quiet_nncf():
        return nncf.quantize(graph, nncf.Dataset(samples),
                             model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples),
                             fast_bias_correction=True)
