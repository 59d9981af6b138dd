"""``vislang demo``: the README's main job, offline, on generated scenes and the shipped model."""

from __future__ import annotations

from pathlib import Path

import typer
from platformdirs import user_cache_dir
from rich.table import Table

from vislang.cli.common import DeviceOption, engine_spec, load_blip_model, load_model, stdout

DEMO_MODEL = "shapes-clip"
QUERIES = ("a red circle and a blue square", "two blue triangles",
           "a yellow circle, a blue square and a green triangle")


def demo(
    workdir: Path = typer.Option(Path(user_cache_dir("vislang")) / "demo", "--workdir",
                                 help="Where the demo writes its generated images."),
    device: str = DeviceOption,
) -> None:
    """A tour on generated shape scenes with the shipped shapes-clip model, fully offline."""
    from vislang.datasets.shapes import write_dataset
    from vislang.models.clip import load
    from vislang.runtime.cpu import describe

    spec = engine_spec(device=device)  # auto: the demo shows what this machine runs best
    model = load_model(DEMO_MODEL, spec, quiet=True)
    stdout.print(f"model: [bold]{DEMO_MODEL}[/], a tiny CLIP vislang trained on generated "
                 "scenes of circles, squares and triangles in four colours "
                 f"({model.model_key}).\n"
                 f"cpu: {describe()}; engine: [bold]{model.backend}[/] "
                 f"({model.engine_choice.reason})\n", highlight=False)
    singles = write_dataset(workdir / "one-object", 12, seed=90001, n_objects=1)
    _zero_shot(model, singles / "classes")
    scenes = write_dataset(workdir / "gallery", 200, seed=90002)
    _search(model, scenes, workdir / "index")
    _saliency(model, workdir / "saliency")
    _captions_and_answers(workdir / "blip", spec)
    # vislang.load's default is the reference (torch fp32) the chosen engine is timed against.
    _speed(model, load(DEMO_MODEL), sorted((scenes / "images").glob("*.png")))
    stdout.print(f"\nAll of it in a browser (search, more like this, explain, caption, ask):\n"
                 f"  vislang serve --index {workdir / 'index'} --caption-model "
                 "shapes-blip-caption --vqa-model shapes-blip-vqa\n"
                 "  then open http://127.0.0.1:8000", highlight=False)
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


def _search(model, root: Path, index_dir: Path) -> None:
    """The main job: index a folder, then search it by text, by image, and by text minus text."""
    import json

    from vislang.search import Index

    stdout.rule("photo search: vislang index, then vislang search, over 200 generated scenes")
    captions = {str(root / r["image"]): r["caption"] for r in
                map(json.loads, (root / "pairs.jsonl").read_text().splitlines())}
    with Index.open(index_dir, model) as index:
        s = index.update([root / "images"])
        stdout.print(f"index {root / 'images'}: added {s.added}, updated {s.updated}, "
                     f"unchanged {s.unchanged}, embedded {s.embedded} in {s.seconds:.1f} s "
                     f"(a second run re-reads only what changed)")
        for query in QUERIES:
            _results(index.search(text=query, k=3), captions, f"query: {query!r}", query)
        example = sorted(captions)[17]
        _results(index.search(image=example, k=3), captions,
                 f"more like images/{Path(example).name} ({captions[example]})",
                 captions[example])
        _results(index.search(text="a red circle", sub=["a blue square"], k=3), captions,
                 "'a red circle' minus 'a blue square'", None)
    stdout.print(f"The same from the shell:\n  vislang index {root / 'images'} --index {index_dir} "
                 f"--model {DEMO_MODEL}\n  vislang search \"two blue triangles\" --index "
                 f"{index_dir}\n  vislang search --image {example} --index {index_dir} --json")


def _saliency(model, folder: Path) -> None:
    """Where the model sees a phrase: each method's map over one scene, written as a PNG."""
    from vislang.datasets.shapes import generate_scenes
    from vislang.explain import METHODS, saliency

    stdout.rule("saliency: where in the picture does the phrase match?")
    scene = next(s for s in generate_scenes(50, seed=90003, n_objects=2, image_size=64)
                 if len({(o.colour, o.shape) for o in s.objects}) == 2)
    target = scene.objects[0]
    query = f"a {target.colour} {target.shape}"
    folder.mkdir(parents=True, exist_ok=True)
    scene.image.save(folder / "scene.png")
    x0, y0, x1, y1 = target.box
    stdout.print(f"scene: {scene.caption} ({folder / 'scene.png'}); phrase {query!r}, "
                 f"whose box is x {x0}-{x1}, y {y0}-{y1}")
    # relevance reads the torch weights' gradients: one layer in, as the pointing game measured.
    options = {"crops": dict(n_iters=100, min_crop=24, seed=0, contrast=True),
               "dense": {}, "relevance": dict(start_layer=1)}
    table = Table("method", "peak (x, y)", "inside the box", "overlay")
    for method in METHODS:
        result = saliency(model, scene.image, query, method, **options[method])
        x, y = result.argmax
        inside = x0 <= x < x1 and y0 <= y < y1
        path = result.save(folder / f"{method}.png")
        table.add_row(method, f"({x}, {y})", "[green]yes[/]" if inside else "[red]no[/]",
                      str(path))
    stdout.print(table)
    stdout.print(f"The same from the shell: vislang saliency {folder / 'scene.png'} \"{query}\" "
                 f"--method dense --model {DEMO_MODEL}")


def _captions_and_answers(folder: Path, spec) -> None:
    """The shipped tiny BLIPs: a caption for each new scene, and answers about it."""
    from vislang.captioning import ask, caption
    from vislang.datasets.shapes import generate_scenes

    stdout.rule("captions and answers: the shipped shapes-blip models (BLIP)")
    folder.mkdir(parents=True, exist_ok=True)
    scenes = generate_scenes(4, seed=90004)
    paths = []
    for scene in scenes:
        paths.append(folder / f"{scene.index:05d}.png")
        scene.image.save(paths[-1])
    captioner = load_blip_model("shapes-blip-caption", spec)
    choice = captioner.engine_choice
    stdout.print(f"engine: {choice.backend}/{choice.precision} ({choice.reason})")
    captions = caption(paths, model=captioner)
    vqa = load_blip_model("shapes-blip-vqa", spec)
    table = Table("image", "caption (truth)", "question", "answer (truth)")
    right = total = 0
    for path, scene, text in zip(paths, scenes, captions):
        table.add_row(path.name, _mark(text, scene.caption), "", "")
        for qa in [q for q in scene.qa if q.kind in ("count", "colour", "presence")][:2]:
            answer = ask(path, qa.question, model=vqa)
            right, total = right + (answer == qa.answer), total + 1
            table.add_row("", "", qa.question, _mark(answer, qa.answer))
    stdout.print(table)
    hits = sum(c == s.caption for c, s in zip(captions, scenes))
    stdout.print(f"captions right {hits}/{len(scenes)}, answers right {right}/{total}")
    stdout.print(f"The same from the shell: vislang caption {paths[0]} --model shapes-blip-caption; "
                 f"vislang ask {paths[0]} \"how many circles are there?\" --model shapes-blip-vqa")


def _mark(got: str, truth: str) -> str:
    return f"[green]{got}[/]" if got == truth else f"[red]{got}[/] ({truth})"


def _results(results, captions: dict[str, str], title: str, expected: str | None) -> None:
    table = Table("rank", "image", "score", "its caption", title=title)
    for rank, r in enumerate(results, start=1):
        caption = captions[r.path]
        shown = f"[green]{caption}[/]" if caption == expected else caption
        table.add_row(str(rank), f"images/{Path(r.path).name}", f"{r.score:.3f}", shown)
    stdout.print(table)
