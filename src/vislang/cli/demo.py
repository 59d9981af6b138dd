"""``vislang demo``: the README's main job, offline, on generated scenes and the shipped model."""

from __future__ import annotations

from pathlib import Path

import typer
from platformdirs import user_cache_dir
from rich.table import Table

from vislang.cli.common import stdout

DEMO_MODEL = "shapes-clip"
QUERIES = ("a red circle and a blue square", "two blue triangles",
           "a yellow circle, a blue square and a green triangle")


def demo(
    workdir: Path = typer.Option(Path(user_cache_dir("vislang")) / "demo", "--workdir",
                                 help="Where the demo writes its generated images."),
) -> None:
    """A tour on generated shape scenes with the shipped shapes-clip model, fully offline."""
    from vislang.datasets.shapes import write_dataset
    from vislang.models.clip import load

    model = load(DEMO_MODEL, backend="auto", precision="auto")
    stdout.print(f"model: [bold]{DEMO_MODEL}[/], a tiny CLIP vislang trained on generated "
                 "scenes of circles, squares and triangles in four colours "
                 f"({model.model_key}).\n"
                 f"engine: [bold]{model.backend}[/] ({model.engine_choice.reason})\n")
    singles = write_dataset(workdir / "one-object", 12, seed=90001, n_objects=1)
    _zero_shot(model, singles / "classes")
    scenes = write_dataset(workdir / "gallery", 200, seed=90002)
    _retrieval(model, scenes)
    _speed(model, load(DEMO_MODEL), sorted((scenes / "images").glob("*.png")))
    stdout.print("\nThe same on a real checkpoint (downloads once, needs network the first time):\n"
                 f"  vislang classify YOUR_PHOTO.jpg --labels \"cat,dog,bird\" --model ViT-B/32\n"
                 f"  vislang eval zeroshot {singles / 'classes'} --model ViT-B/32")


def _zero_shot(model, folder: Path) -> None:
    from vislang.datasets.folder import ImageFolder
    from vislang.datasets.shapes import CLASS_NAMES
    from vislang.zeroshot import Classifier

    stdout.rule("zero-shot classification: 12 labels typed as words, no training")
    data = ImageFolder.open(folder)
    results = Classifier(model, list(CLASS_NAMES)).predict(data.paths, top_k=1)
    table = Table("image", "truth", "prediction", "probability")
    hits = 0
    for path, target, (best,) in zip(data.paths, data.targets, results):
        right = best.label == data.classes[target]
        hits += right
        mark = "[green]" if right else "[red]"
        table.add_row(path.name, data.classes[target], f"{mark}{best.label}[/]", f"{best.prob:.1%}")
    stdout.print(table)
    stdout.print(f"accuracy {hits}/{len(results)} (chance: 1/{len(CLASS_NAMES)})\n")


def _speed(model, reference, paths: list[Path]) -> None:
    """Time the image tower on the demo's 200 images: chosen engine against torch fp32.

    Images are decoded once beforehand: decoding is the same work whichever engine runs, and
    at 64x64 pixels it would hide the engines' difference.
    """
    import time

    import torch

    from vislang.images import load_image

    stdout.rule("speed: the image tower on the 200 gallery images")
    pixels = torch.stack([model.preprocess(load_image(p)) for p in paths])
    timings, features = {}, {}
    for name, m in (("torch/fp32", reference), (model.backend, model)):
        with torch.inference_mode():
            m.encode_image(pixels[:32])  # warm-up: first calls allocate and compile
            start = time.perf_counter()
            features[name] = torch.nn.functional.normalize(m.encode_image(pixels), dim=-1)
            timings[name] = time.perf_counter() - start
    base, ours = timings["torch/fp32"], timings[model.backend]
    agreement = float((features["torch/fp32"] * features[model.backend]).sum(dim=1).min())
    stdout.print(f"torch/fp32 (the reference): {len(paths) / base:.0f} images/s; "
                 f"{model.backend}: {len(paths) / ours:.0f} images/s -> "
                 f"[bold]{base / ours:.1f}x[/] (features agree: min cosine {agreement:.5f})")


def _retrieval(model, root: Path) -> None:
    import json

    stdout.rule("text -> image search over 200 generated scenes")
    records = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    vectors = model.embed_images([root / r["image"] for r in records])
    for query in QUERIES:
        scores = vectors @ model.embed_texts([query])[0]
        table = Table("rank", "image", "score", "its caption", title=f"query: {query!r}")
        for rank, i in enumerate(scores.argsort()[::-1][:3], start=1):
            caption = records[i]["caption"]
            mark = "[green]" if caption == query else ""
            table.add_row(str(rank), records[i]["image"], f"{scores[i]:.3f}",
                          f"{mark}{caption}[/]" if mark else caption)
        stdout.print(table)
