"""What bounds an image tower on this CPU: the fp32 and int8 matrix-product peaks, measured.

A ViT's time is almost all matrix products of one shape: ``[tokens x width] @ [width x 4*width]``
and the like. This times the largest of ViT-B/32's at batch 32 (1,600 x 768 @ 768 x 3,072) as
a single operator, in each library the engines use, back to back:

- fp32: ``torch.matmul`` (what transformers runs) and ONNX Runtime's ``MatMul``;
- int8: ONNX Runtime's ``DynamicQuantizeMatMul`` (what ``--backend onnx --precision int8``
  runs: int8 weights, activations quantised on each call).

Then, from bench/encode.py's baseline throughput given on the command line, how fast the
baseline's arithmetic already runs and the most any int8 engine could give over it if every
operation ran at the int8 peak (a ceiling: attention, norms and activations cost extra).

    .venv/bin/python bench/peaks.py                          # ~30 s
    .venv/bin/python bench/peaks.py --baseline-images-per-s 10.8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import machine_facts  # noqa: E402

M, K, N = 32 * 50, 768, 3072  # ViT-B/32 at batch 32: 50 tokens an image, MLP's first product
# ViT-B/32's image tower, multiply-adds counted twice: 12 layers of (4 attention projections +
# 2 MLP products) on 50 tokens, attention itself, and the patch embedding; vislang's exported
# tower computes only the class token in the last layer (runtime/towers.py).
GOPS_PER_IMAGE = 8.8
GOPS_PER_IMAGE_PRUNED = 8.2
REPEATS = 20


def ort_session(kind: str, weights: np.ndarray):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if kind == "fp32":
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        inits = [numpy_helper.from_array(weights, "w")]
    else:
        scale = float(np.abs(weights).max() / 127)
        inits = [numpy_helper.from_array(np.round(weights / scale).astype(np.int8), "w"),
                 numpy_helper.from_array(np.array(scale, np.float32), "scale"),
                 numpy_helper.from_array(np.array(0, np.int8), "zero")]
        node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "scale", "zero"], ["y"],
                                domain="com.microsoft")
    graph = helper.make_graph(
        [node], "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def gops(fn) -> float:
    """Billions of multiply-adds x 2 per second: the median of REPEATS calls after 3."""
    for _ in range(3):
        fn()
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return 2 * M * K * N / statistics.median(seconds) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-images-per-s", type=float, metavar="R",
                        help="bench/encode.py's transformers fp32 batch-32 images/s, ViT-B/32")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    fp32_ort, int8_ort = ort_session("fp32", w), ort_session("int8", w)
    peaks = {"torch fp32": [], "onnxruntime fp32": [], "onnxruntime int8": []}
    for _ in range(2):  # alternated, so drift on a shared machine hits all alike
        peaks["torch fp32"].append(gops(lambda: torch.matmul(xt, wt)))
        peaks["onnxruntime fp32"].append(gops(lambda: fp32_ort.run(None, {"x": x})))
        peaks["onnxruntime int8"].append(gops(lambda: int8_ort.run(None, {"x": x})))
    m = machine_facts()
    print(f"cpu: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, "
          f"isa: {' '.join(m['isa']) or '-'}; torch {m['torch']}, onnxruntime {m['onnxruntime']}")
    print(f"one {M}x{K} @ {K}x{N} product (ViT-B/32's MLP at batch 32), best of 2 rounds:")
    best = {name: max(values) for name, values in peaks.items()}
    for name, value in best.items():
        print(f"  {name:<18} {value:6.0f} GOPS  (rounds: "
              f"{', '.join(f'{v:.0f}' for v in peaks[name])})")
    print(f"  int8 / fp32 (onnxruntime): {best['onnxruntime int8'] / best['onnxruntime fp32']:.2f}x")
    if args.baseline_images_per_s:
        base = args.baseline_images_per_s * GOPS_PER_IMAGE
        ceiling = best["onnxruntime int8"] / GOPS_PER_IMAGE_PRUNED / args.baseline_images_per_s
        print(f"baseline: {args.baseline_images_per_s:g} images/s x {GOPS_PER_IMAGE} GOP = "
              f"{base:.0f} GOPS, {base / best['torch fp32']:.0%} of torch's own fp32 peak here")
        print(f"ceiling for an int8 engine, every operation at the int8 peak: "
              f"{best['onnxruntime int8'] / GOPS_PER_IMAGE_PRUNED:.1f} images/s = "
              f"{ceiling:.2f}x the baseline")


if __name__ == "__main__":
    main()
