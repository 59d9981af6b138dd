"""ONNX Runtime engine: each tower exported to ONNX once, run by an ``InferenceSession``.

Precisions: fp32 everywhere; int8 by dynamic quantisation of the weights (CPU); fp16 on CUDA.
ONNX Runtime has no bf16 CPU kernels, so bf16 is refused with a pointer to the engines that
have them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from vislang.runtime import cache
from vislang.runtime.towers import TOWERS, ExportedClipEngine, example_inputs, quiet_export, tower

INPUT_NAMES = {"image": "pixel_values", "text": "input_ids"}
DYNAMIC_AXES = {"image": {"pixel_values": {0: "batch"}},
                "text": {"input_ids": {0: "batch", 1: "length"}}}


class OnnxEngine(ExportedClipEngine):
    name = "onnx"

    def __init__(self, weights: Callable, config, model_key: str, precision: str,
                 device: str = "cpu"):
        super().__init__(lambda names: export_towers(weights, config, model_key, precision,
                                                     names=names), precision)
        self.device = device

    def _open(self, tower: str, path: Path):
        return open_session(path, self.device)

    def _run(self, tower: str, array: np.ndarray) -> np.ndarray:
        (out,) = self._tower(tower).run(None, {INPUT_NAMES[tower]: array})
        return out


def open_session(path: Path, device: str = "cpu"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One session uses every core, in throughput and latency mode alike.
    options.intra_op_num_threads = os.cpu_count() or 1
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"]
                 if device.startswith("cuda") else ["CPUExecutionProvider"])
    return ort.InferenceSession(str(path), options, providers=providers)


def export_towers(weights: Callable, config, model_key: str, precision: str,
                  out_dir: Path | None = None, names: Sequence[str] = TOWERS) -> dict[str, Path]:
    """ONNX files (``image.onnx``, ``text.onnx``), from the cache when already exported;
    ``weights()`` gives the transformers model, and is called only when one must be made."""

    def write(name: str, path: Path) -> None:
        write_onnx(tower(weights(), name), (example_inputs(config)[name],), path,
                   [INPUT_NAMES[name]], ["embeds"], DYNAMIC_AXES[name], precision)

    return cache.export_files(model_key, names, "onnx", precision, ".onnx", write, out_dir)


def write_onnx(module: torch.nn.Module, example: tuple, path: Path, input_names: list[str],
               output_names: list[str], dynamic_axes: dict, precision: str) -> None:
    """Export ``module`` to ``path`` at ``precision``: int8 weights by dynamic quantisation,
    fp16 with float32 inputs and outputs."""
    # Build under temporary names and rename last: a killed export never looks finished, and
    # two processes exporting at once (both on a first use) never write into one file.
    fp32_path = path.with_suffix(f".fp32.{os.getpid()}.partial.onnx")
    final_tmp = path.with_suffix(f".{os.getpid()}.partial.onnx")
    with torch.no_grad(), quiet_export():
        torch.onnx.export(module, example, str(fp32_path), dynamo=False,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17)
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Matrix products only: a ViT's patch embedding (a Conv, ~3% of its arithmetic) took
        # 15% of ViT-B/32's int8 time as ORT's ConvInteger on an AVX2 CPU; kept fp32, the tower
        # went from 2.2x to 2.5x transformers fp32 (docs/benchmarks.md, AVX2).
        with quiet_export():
            quantize_dynamic(str(fp32_path), str(final_tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"])
        fp32_path.unlink()
    elif precision == "fp16":
        _to_fp16(fp32_path, final_tmp)
        fp32_path.unlink()
    else:
        fp32_path.rename(final_tmp)
    final_tmp.rename(path)


def _to_fp16(source: Path, dest: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(dest))
