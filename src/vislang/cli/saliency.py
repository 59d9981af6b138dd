"""``vislang saliency``: where in an image a phrase (or a second image) matches, as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from vislang.cli.common import (
    BackendOption,
    DeviceOption,
    JsonOption,
    ModelOption,
    PrecisionOption,
    engine_spec,
    existing_files,
    load_model,
    print_json,
    stdout,
)
from vislang.errors import InputError

METHODS = ("crops", "dense", "relevance")  # vislang.explain.METHODS, without importing it


def saliency(
    image: Path = typer.Argument(..., help="The image to explain."),
    query: str = typer.Argument(None, help='What to look for, in words: "a red car".'),
    query_image: Path = typer.Option(None, "--query-image", help="Look for what this image "
                                     "shows instead of a text query."),
    method: str = typer.Option("crops", "--method", help="crops (the seed's random crops), "
                               "dense (one pass, per patch) or relevance (attention x gradient)."),
    n_iters: int = typer.Option(300, "--n-iters", min=1, help="crops: how many crops."),
    min_crop: int = typer.Option(50, "--min-crop", min=1, help="crops: smallest crop side, px."),
    seed: int = typer.Option(None, "--seed", help="crops: random seed, for a repeatable map."),
    normalize: bool = typer.Option(False, "--normalize", help="crops: divide by how many crops "
                                   "covered each pixel (the plain sum favours the centre)."),
    sampler: str = typer.Option("random", "--sampler", help="crops: random (the seed's) or "
                                "stratified (even cover)."),
    contrast: bool = typer.Option(None, "--contrast/--no-contrast", help="Subtract each region's "
                                  "similarity to the empty text (default: on for dense and "
                                  "relevance, off for crops)."),
    output: Path = typer.Option(None, "--output", "-o", help="PNG to write. Default: "
                                "IMAGE-STEM.saliency-METHOD.png in the current folder."),
    npy: Path = typer.Option(None, "--npy", help="Also write the raw float32 map (H x W) here."),
    model: str = ModelOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Draw where in IMAGE the QUERY matches: red above the whole image's match, blue below."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose {', '.join(METHODS)}")
    if (query is None) == (query_image is None):
        raise InputError('give exactly one of a QUERY text or --query-image PATH')
    spec = engine_spec(backend, precision, device=device)
    existing_files([image] + ([query_image] if query_image is not None else []))
    png = writable(output or Path(f"{image.stem}.saliency-{method}.png"), "--output")
    npy = writable(npy.with_suffix(".npy") if npy is not None else None, "--npy")
    from vislang.explain import saliency as explain

    clip = load_model(model, spec, quiet=json_out)
    result = explain(clip, image, query if query is not None else query_image, method,
                     n_iters=n_iters, min_crop=min_crop, seed=seed, normalize=normalize,
                     sampler=sampler, contrast=contrast,
                     progress=not json_out)
    written = {"png": str(result.save(png))}
    if npy is not None:
        written["npy"] = str(result.save(npy))
    stats = result.stats()
    if json_out:
        print_json({"image": str(image), "query": result.query, "method": method,
                    "model": clip.model_key, **written, **stats,
                    "shape": list(result.array.shape)})
        return
    x, y = stats["argmax"]["x"], stats["argmax"]["y"]
    stdout.print(f"{method} map of {image} for {result.query!r}: min {stats['min']:.4g}, "
                 f"max {stats['max']:.4g} at (x={x}, y={y})", highlight=False)
    for kind, path in written.items():
        stdout.print(f"wrote {path}", highlight=False)


def writable(path: Path | None, option: str) -> Path | None:
    """``path``, once it is sure it can be written: a map takes seconds to minutes to compute,
    and a bad output path should not throw that work away at the end."""
    if path is None:
        return None
    folder = path.parent
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name, e.g. {path / 'map.png'}")
    if not folder.is_dir():
        raise InputError(f"cannot write {option} {path}: the folder {folder} does not exist; "
                         "create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {option} {path}: the folder {folder} is not writable; "
                         "choose another path")
    return path
