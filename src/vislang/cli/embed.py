"""``vislang embed``: embed many images into Parquet shards (docs/scale.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from vislang.cli.common import (
    BackendOption,
    DeviceOption,
    JsonOption,
    ModelOption,
    PrecisionOption,
    engine_spec,
    load_model,
    print_json,
    stderr,
    stdout,
)


def embed(
    sources: list[Path] = typer.Argument(..., help="Image folders, lists of image paths "
                                         "(.txt, .csv or .parquet with a 'path' column, "
                                         "optional 'id' and 'caption'), WebDataset .tar shards."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the Parquet shards and "
                             "_manifest.json."),
    model: str = ModelOption,
    ray: bool = typer.Option(False, "--ray", help="Run on Ray Data: a local Ray on this "
                             "machine's cores, or the cluster --ray-address names. Needs "
                             "pip install 'vislang\\[scale]'."),
    ray_address: str = typer.Option(None, "--ray-address", metavar="ADDRESS",
                                    help="Join this Ray cluster ('auto', host:6379 or "
                                    "ray://host:10001); implies --ray."),
    workers: int = typer.Option(1, "--workers", min=1, help="Encoder actors (with --ray), "
                                "each with its own copy of the model."),
    cpus_per_worker: int = typer.Option(1, "--cpus-per-worker", min=1, help="Cores each "
                                        "encoder actor reserves and runs its model on (with "
                                        "--ray; on the local Ray the actors share all cores; "
                                        "on CUDA an actor takes one GPU instead)."),
    resume: bool = typer.Option(False, "--resume", help="Keep the finished shards in --out "
                                "and embed only what they lack."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per model call "
                                   "(default: 32 on the CPU, 256 on CUDA; 128 at least on Ray)."),
    shard_rows: int = typer.Option(50_000, "--shard-rows", min=1, help="Rows per shard."),
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Embed images in bulk into Parquet shards + a manifest (resumable; --ray to scale out)."""
    from vislang.embed import embed as run_embed

    spec = engine_spec(backend, precision, device=device)
    ray_at = ray_address or ("local" if ray else None)
    if ray_at:
        from vislang.embed.distributed import connect

        connect(ray_at)  # a missing extra or a silent cluster fails before the model loads
    clip = load_model(model, spec, quiet=json_out)
    summary = run_embed([str(s) for s in sources], out, clip, resume=resume,
                        batch_size=batch_size,
                        rows_per_shard=shard_rows, ray=ray_at, workers=workers,
                        cpus_per_worker=cpus_per_worker, model_name=model,
                        progress=not json_out and stderr.is_terminal)
    if json_out:
        print_json(summary.as_dict())
        return
    rate = summary.as_dict()["images_per_second"]
    stdout.print(f"embedded {summary.embedded} images into {len(summary.shards)} new shard(s) "
                 f"in {summary.out} ({summary.seconds:.1f} s"
                 + (f", {rate} images/s" if rate else "") + f", {summary.runner})", highlight=False)
    if summary.resumed:
        stdout.print(f"{summary.resumed} already embedded (resumed)", highlight=False)
    for failure in summary.failures[:20]:
        stdout.print(f"  failed: {failure['path']}: {failure['reason']}", highlight=False)
    if len(summary.failures) > 20:
        stdout.print(f"  ... and {len(summary.failures) - 20} more (see _manifest.json)")
