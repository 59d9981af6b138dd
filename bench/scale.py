"""Ray vs in-process throughput of ``vislang embed`` on the same images.

    python bench/scale.py [--images 200] [--model shapes-clip] [--workers 1] [--size 224]

Writes generated shapes scenes (JPEG, --size pixels) to a temporary folder, embeds them
in-process and then on a local Ray (decode tasks + encoder actors), and prints images/s of
each, their ratio, and the CPU (lscpu model and flags) it ran on. The model is loaded before
either timing starts; Ray's timing includes its actors loading their copies of the model,
which is part of what --ray costs: the
second Ray run shows the steady state (the cold one includes each worker's model load).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path


def cpu() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu unavailable"
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                          "amx_int8") if f in flags]
    return (f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} CPUs, "
            f"flags: {' '.join(wanted) or 'none of avx2/avx512/amx'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="shapes-clip")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import vislang
    from vislang.datasets.shapes import generate_scenes
    from vislang.embed import embed
    from vislang.runtime import EngineSpec

    model = vislang.load(args.model, engine=EngineSpec("torch", "fp32"))
    model.prepare()
    with tempfile.TemporaryDirectory(prefix="vislang-bench-scale-") as tmp:
        root = Path(tmp, "images")
        root.mkdir()
        for scene in generate_scenes(args.images, 7, image_size=args.size):
            scene.image.save(root / f"scene-{scene.index:05d}.jpg", quality=90)
        started = time.perf_counter()
        from vislang.embed.distributed import connect

        connect("local")  # Ray's own start-up, timed apart
        print(f"ray start-up: {time.perf_counter() - started:.1f} s (not counted below)")
        timings = {}
        for run, runner in enumerate(("in-process", "ray", "ray")):
            started = time.perf_counter()
            summary = embed([root], Path(tmp, f"{runner}-{run}"), model,
                            batch_size=args.batch_size,
                            ray="local" if runner == "ray" else None, workers=args.workers)
            seconds = time.perf_counter() - started
            assert summary.embedded == args.images, summary.as_dict()
            label = runner if runner == "in-process" else f"ray ({'cold' if run == 1 else 'warm'})"
            timings[label] = seconds
            print(f"{label:>12}: {args.images} images in {seconds:6.2f} s = "
                  f"{args.images / seconds:7.1f} images/s", flush=True)
    print(f"ray (warm) / in-process throughput: "
          f"{timings['in-process'] / timings['ray (warm)']:.2f}x "
          f"(model {model.model_key}, {args.size}px JPEGs, {args.workers} encoder actor(s))")
    print(f"cpu: {cpu()}")


if __name__ == "__main__":
    main()
