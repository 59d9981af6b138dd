"""OpenVINO engine: each tower converted to IR once, compiled for the CPU (or GPU) at a precision.

The seed notebooks' recipe made a product: split the towers, convert with ``ov.convert_model``,
store weights compressed to FP16, quantise to int8 with NNCF post-training quantisation on a
calibration set, and keep the CPU busy with an ``AsyncInferQueue`` under the THROUGHPUT hint.
``INFERENCE_PRECISION_HINT`` is always set: on CPUs with bf16 units OpenVINO would otherwise
silently run in bf16 even when fp32 was asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from vislang.runtime import cache
from vislang.runtime.towers import example_inputs, quiet_export, towers

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def openvino_capabilities(device: str = "CPU") -> set[str]:
    import openvino as ov

    return set(ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES"))


class OpenVINOEngine:
    name = "openvino"

    def __init__(self, hf_model, model_key: str, precision: str, mode: str = "throughput",
                 calibration: Callable[[], dict[str, Iterable[np.ndarray]]] | None = None,
                 device: str = "CPU"):
        import openvino as ov

        self.precision, self.mode, self.device = precision, mode, device
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
                  "PERFORMANCE_HINT": "THROUGHPUT" if mode == "throughput" else "LATENCY",
                  "CACHE_DIR": str(cache.cache_root() / "openvino-compiled")}
        self.compiled = {}
        for tower, path in export_towers(hf_model, model_key, precision, calibration).items():
            self.compiled[tower] = core.compile_model(str(path), device, config)
        self.requests = {t: c.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
                         for t, c in self.compiled.items()}

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._run("image", pixel_values.detach().cpu().numpy().astype(np.float32))

    def encode_texts(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self._run("text", input_ids.detach().cpu().numpy().astype(np.int64))

    def _run(self, tower: str, array: np.ndarray) -> torch.Tensor:
        compiled = self.compiled[tower]
        jobs = self.requests[tower]
        if self.mode == "latency" or jobs <= 1 or len(array) < 2 * jobs:
            return torch.from_numpy(compiled(array)[0].astype(np.float32))
        return torch.from_numpy(self._run_async(compiled, array, jobs))

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


def export_towers(hf_model, model_key: str, precision: str,
                  calibration: Callable[[], dict[str, Iterable[np.ndarray]]] | None = None,
                  out_dir: Path | None = None) -> dict[str, Path]:
    """IR files (``image.xml``, ``text.xml``), from the cache when already exported."""
    import openvino as ov

    paths = {}
    inputs = example_inputs(hf_model)
    data = None
    for tower, module in towers(hf_model).items():
        folder = Path(out_dir or cache.entry_dir(model_key, tower, "openvino", precision))
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(folder) / f"{tower}.xml"
        if not path.is_file():
            shape = [-1, *inputs[tower].shape[1:]] if tower == "image" else [-1, -1]
            with torch.no_grad(), quiet_export():
                graph = ov.convert_model(module, example_input=inputs[tower],
                                         input=[ov.PartialShape(shape)])
                if precision == "int8":
                    data = data if data is not None else calibration()
                    graph = _quantize(graph, data[tower])
            # Write under a temporary name, .xml last: a killed export never looks finished.
            staging = path.with_suffix(".partial.xml")
            ov.save_model(graph, str(staging), compress_to_fp16=precision in ("bf16", "fp16"))
            staging.with_suffix(".bin").rename(path.with_suffix(".bin"))
            staging.rename(path)
        paths[tower] = path
    return paths


def _quantize(graph, samples: Iterable[np.ndarray]):
    """NNCF post-training int8 quantisation, with transformer-aware patterns."""
    import nncf

    samples = list(samples)
    return nncf.quantize(graph, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(samples), fast_bias_correction=True)
