"""``vislang demo``: the README's main job, offline, on data and a model made on the spot."""

from __future__ import annotations

from pathlib import Path

import typer
from platformdirs import user_cache_dir
from rich.table import Table

from vislang.cli.common import stdout

DEMO_SCENES = 24


def demo(
    workdir: Path = typer.Option(Path(user_cache_dir("vislang")) / "demo", "--workdir",
                                 help="Where the demo writes its images and model."),
) -> None:
    """Zero-shot classification of generated shape images, offline."""
    from vislang.datasets.folder import ImageFolder
    from vislang.datasets.shapes import write_dataset
    from vislang.models.clip import load
    from vislang.models.tiny import tiny_clip
    from vislang.zeroshot import Classifier

    stdout.rule("vislang demo: zero-shot classification")
    images = write_dataset(workdir / "shapes", DEMO_SCENES, seed=7, n_objects=1)
    model_dir = workdir / "tiny-clip-untrained"
    if not (model_dir / "config.json").is_file():
        tiny_clip(model_dir, image_size=64)
    model = load(str(model_dir))
    stdout.print(f"[yellow]Note: {model_dir.name} is an UNTRAINED tiny CLIP built on the spot, so "
                 "its guesses are close to chance. It shows the pipeline, not the quality.[/]")
    data = ImageFolder.open(images / "classes")
    classifier = Classifier(model, data.classes)
    results = classifier.predict(data.paths, top_k=1)
    table = Table("image", "truth", "prediction", "probability")
    for path, target, (best,) in zip(data.paths, data.targets, results):
        table.add_row(path.name, data.classes[target], best.label, f"{best.prob:.1%}")
    stdout.print(table)
    hits = sum(best.label == data.classes[t] for t, (best,) in zip(data.targets, results))
    stdout.print(f"accuracy {hits}/{len(results)} (chance is 1/{len(data.classes)})")
    stdout.print("\nOn a real checkpoint (downloads once, needs network the first time):\n"
                 f"  vislang classify {data.paths[0]} --labels \"red circle,blue square\" "
                 "--model ViT-B/32\n"
                 f"  vislang eval zeroshot {images / 'classes'} --model ViT-B/32")
