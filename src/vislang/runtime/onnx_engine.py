"""ONNX Runtime engine: each tower exported to ONNX once, run by an ``InferenceSession``.

Precisions: fp32 everywhere; int8 by dynamic quantisation of the weights (CPU); fp16 on CUDA.
ONNX Runtime has no bf16 CPU kernels, so bf16 is refused with a pointer to the engines that
have them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vislang.runtime import cache
from vislang.runtime.towers import example_inputs, quiet_export, towers

INPUT_NAMES = {"image": "pixel_values", "text": "input_ids"}
DYNAMIC_AXES = {"image": {"pixel_values": {0: "batch"}},
                "text": {"input_ids": {0: "batch", 1: "length"}}}


class OnnxEngine:
    name = "onnx"

    def __init__(self, hf_model, model_key: str, precision: str, mode: str = "throughput",
                 device: str = "cpu"):
        import onnxruntime as ort

        self.precision = precision
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Throughput: one session uses every core; latency: the same, but never oversubscribe.
        options.intra_op_num_threads = os.cpu_count() or 1
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda")
                     else ["CPUExecutionProvider"])
        self.sessions = {t: ort.InferenceSession(str(p), options, providers=providers)
                         for t, p in export_towers(hf_model, model_key, precision).items()}

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # fp16 graphs keep float32 inputs and outputs (keep_io_types): callers see no difference.
        return self._run("image", pixel_values.detach().cpu().numpy().astype(np.float32))

    def encode_texts(self, input_ids: torch.Tensor, attention_mask=None) -> torch.Tensor:
        return self._run("text", input_ids.detach().cpu().numpy().astype(np.int64))

    def _run(self, tower: str, array: np.ndarray) -> torch.Tensor:
        (out,) = self.sessions[tower].run(None, {INPUT_NAMES[tower]: array})
        return torch.from_numpy(out.astype(np.float32))


def export_towers(hf_model, model_key: str, precision: str,
                  out_dir: Path | None = None) -> dict[str, Path]:
    """ONNX files (``image.onnx``, ``text.onnx``), from the cache when already exported."""
    paths = {}
    inputs = example_inputs(hf_model)
    for tower, module in towers(hf_model).items():
        folder = Path(out_dir or cache.entry_dir(model_key, tower, "onnx", precision))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{tower}.onnx"
        if not path.is_file():
            # Build under temporary names and rename last: a killed export never looks finished.
            fp32_path = folder / f"{tower}.fp32.partial.onnx"
            final_tmp = folder / f"{tower}.partial.onnx"
            with torch.no_grad(), quiet_export():
                torch.onnx.export(module, (inputs[tower],), str(fp32_path), dynamo=False,
                                  input_names=[INPUT_NAMES[tower]], output_names=["embeds"],
                                  dynamic_axes=DYNAMIC_AXES[tower], opset_version=17)
            if precision == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                with quiet_export():
                    quantize_dynamic(str(fp32_path), str(final_tmp), weight_type=QuantType.QInt8)
                fp32_path.unlink()
            elif precision == "fp16":
                _to_fp16(fp32_path, final_tmp)
                fp32_path.unlink()
            else:
                fp32_path.rename(final_tmp)
            final_tmp.rename(path)
        paths[tower] = path
    return paths


def _to_fp16(source: Path, dest: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(dest))
