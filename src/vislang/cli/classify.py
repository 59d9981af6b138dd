"""``vislang classify``, ``vislang eval zeroshot`` / ``eval retrieval`` and ``vislang probe``.

The evals take several ``--model``s: each is loaded, exported or compiled if its engine needs
it (not timed), then measured on the same data, and one table compares them -- the score, the
embedding size and the images per second this machine embedded during the eval.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from vislang.cli.common import (
    DEFAULT_MODEL,
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
from vislang.cli.search import SKIPPED_SHOWN
from vislang.errors import ImageLoadError, InputError

eval_app = typer.Typer(help="Measure a model on a labelled image folder.", no_args_is_help=True)

TemplatesOption = typer.Option(None, "--templates",
                               help="Prompt template set: default, imagenet, imagenet-simple.")
ModelsOption = typer.Option(None, "--model", "-m",
                            help="Model name (see `vislang models`), hub id or directory; repeat "
                                 "it (-m A -m B) to compare models in one table. "
                                 "Default: $VISLANG_MODEL or ViT-B/32.")


def classify(
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    labels: str = typer.Option(None, "--labels", "-l", help='Comma-separated classes: "cat,dog".'),
    labels_file: Path = typer.Option(None, "--labels-file", help="A file with one class per line."),
    probe_file: Path = typer.Option(None, "--probe", help="Use a probe saved by `vislang probe`."),
    top: int = typer.Option(5, "--top", "-k", min=1, help="How many labels to show per image."),
    model: str = ModelOption,
    templates: str = TemplatesOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Classify images zero-shot among LABELS, or with a trained linear probe."""
    existing_files(images)
    spec = engine_spec(backend, precision, device=device)
    if probe_file is not None:
        class_names, probs, embedded = _probe_probabilities(probe_file, images, model, spec)
    else:
        from vislang.zeroshot import Classifier

        class_labels = _read_labels(labels, labels_file)  # bad input fails before model work
        clip = load_model(model, spec, quiet=json_out)
        if note := clip.script_note(class_labels):  # e.g. Cyrillic labels, English-only model
            print(note, file=sys.stderr)
        classifier = Classifier(clip, class_labels, templates)
        class_names = classifier.labels
        embedded = _embed(classifier.model, images, progress=len(images) > 32)
        probs = classifier.probabilities(embedded.vectors)
    from vislang.zeroshot import top_predictions

    results = dict(zip(embedded.kept, top_predictions(probs, class_names, top)))
    if json_out:
        reasons = dict(embedded.skipped)
        return print_json([_json_row(path, results.get(i), reasons.get(str(path)))
                           for i, path in enumerate(images)])
    table = Table("image", "prediction", "probability")
    table.columns[0].overflow = "fold"  # a file path is worth more than a tidy table
    for i, preds in results.items():
        for rank, pred in enumerate(preds):
            table.add_row(str(images[i]) if rank == 0 else "", pred.label, f"{pred.prob:.1%}")
    stdout.print(table)
    _print_skipped(embedded.skipped)


def _embed(clip, images: list[Path], progress: bool):
    """Features of the readable images. An unreadable one is skipped with its reason, as
    `vislang index` does, so one bad file does not cost the rest; none readable is an error."""
    embedded = clip.embed_readable(images, progress=progress)
    if not embedded.kept:
        path, reason = embedded.skipped[0]
        others = f" (none of the {len(images)} images could be read)" if len(images) > 1 else ""
        raise ImageLoadError(path, reason + others)
    return embedded


def _json_row(path: Path, preds, reason: str | None) -> dict:
    if preds is None:  # the output stays one row per image given, in order
        return {"path": str(path), "predictions": [], "skipped": reason}
    return {"path": str(path), "predictions": [{"label": x.label, "prob": round(x.prob, 6)}
                                               for x in preds]}


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped[:SKIPPED_SHOWN]:
        stdout.print(f"skipped {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
    if len(skipped) > SKIPPED_SHOWN:
        stdout.print(f"... and {len(skipped) - SKIPPED_SHOWN} more skipped (--json lists all)")


def _read_labels(labels: str | None, labels_file: Path | None) -> list[str]:
    if (labels is None) == (labels_file is None):
        raise InputError("give the classes with exactly one of --labels or --labels-file")
    if labels_file is not None:
        existing_files([labels_file])
        lines = labels_file.read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return [label.strip() for label in labels.split(",") if label.strip()]


def _probe_probabilities(probe_file: Path, images: list[Path], model: str, spec):
    from vislang.probe import LinearProbe

    existing_files([probe_file])
    probe = LinearProbe.load(probe_file)
    clip = load_model(probe.model_name if model == DEFAULT_MODEL else model, spec, quiet=True)
    if clip.model_key != probe.model_key:
        raise InputError(f"{probe_file} was trained on features of {probe.model_key}, "
                         f"but the model is {clip.model_key}; pass --model {probe.model_name}")
    embedded = _embed(clip, images, progress=len(images) > 32)
    return probe.labels, probe.probabilities(embedded.vectors), embedded


@eval_app.command("zeroshot")
def eval_zeroshot(
    folder: Path = typer.Argument(..., help="ImageFolder: one sub-folder of images per class."),
    models: list[str] = ModelsOption,
    templates: str = TemplatesOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Zero-shot top-1 / top-5 accuracy on an ImageFolder, with a per-class table; several
    --model: one comparison table."""
    from vislang.datasets.folder import ImageFolder

    spec = engine_spec(backend, precision, device=device)
    data = ImageFolder.open(folder)
    reports = [_zeroshot_report(name, data, templates, spec, json_out) for name in _names(models)]
    if len(reports) > 1:
        return _print_comparison(reports, {"top1": "top-1", "top5": "top-5"}, json_out,
                                 f"zero-shot on {folder} ({len(data.paths)} images)")
    (report,) = reports
    if json_out:
        return print_json(_single(report))
    _print_report(report, f"zero-shot on {folder} ({report['images']} images)")
    _print_skipped([(row["path"], row["reason"]) for row in report["skipped"]])


def _names(models: list[str] | None) -> list[str]:
    """The models to evaluate, in the order given, each once (default: the one default)."""
    return list(dict.fromkeys(models or [DEFAULT_MODEL]))


def _zeroshot_report(name: str, data, templates: str | None, spec, quiet: bool) -> dict:
    import numpy as np  # here, not at the top: a third of `vislang --help`'s start-up

    from vislang.metrics import accuracy_report
    from vislang.zeroshot import Classifier

    clip = load_model(name, spec, quiet=quiet)
    classifier = Classifier(clip, data.classes, templates)
    embedded, rate = _timed(clip, lambda: _embed(clip, data.paths, progress=True))
    probs = classifier.probabilities(embedded.vectors)
    report = accuracy_report(probs, np.array(data.targets)[embedded.kept], data.classes)
    report.update(model=clip.model_key, images=len(embedded.kept),
                  skipped=[{"path": p, "reason": r} for p, r in embedded.skipped])
    return _with_speed(report, name, clip, rate(len(embedded.kept)))


def _timed(clip, embed: Callable):
    """``embed()``'s result and a function of the image count giving images per second; the
    model's weights load, and its engine exports or compiles, before the clock starts."""
    clip.prepare()
    start = time.perf_counter()
    result = embed()
    elapsed = time.perf_counter() - start
    return result, lambda count: count / elapsed if elapsed > 0 else 0.0


def _with_speed(report: dict, name: str, clip, images_per_s: float) -> dict:
    """The comparison's columns (the model as the user named it), kept apart from the
    one-model report (``_single``)."""
    return {**report, "name": name, "embed_dim": clip.embed_dim,
            "backend": clip.backend, "images_per_s": round(images_per_s, 2)}


def _single(report: dict) -> dict:
    """A one-model report exactly as the command printed it before it compared models."""
    return {k: v for k, v in report.items() if k not in ("name", "embed_dim", "backend",
                                                          "images_per_s")}


def _print_comparison(reports: list[dict], scores: dict[str, str], json_out: bool,
                      title: str) -> None:
    """One row per model: its scores (report key -> column), embedding size, engine and
    images per second."""
    if json_out:
        return print_json({"models": reports})
    table = Table("model", *scores.values(), "dim", "engine", "images/s", title=title)
    table.columns[0].overflow = "fold"  # a directory's path is worth more than a tidy table
    for report in reports:
        table.add_row(report["name"], *(f"{report[s]:.1%}" for s in scores),
                      str(report["embed_dim"]), report["backend"],
                      f"{report['images_per_s']:.1f}")
    stdout.print(table)
    stdout.print("images/s: decoding, preprocessing and the image tower on this machine, "
                 "measured during the eval (loading and export excluded)", highlight=False)


def _print_report(report: dict, title: str) -> None:
    table = Table("class", "images", "top-1", title=title)
    for row in report["per_class"]:
        acc = "-" if row["top1"] is None else f"{row['top1']:.1%}"
        table.add_row(row["class"], str(row["images"]), acc)
    stdout.print(table)
    stdout.print(f"top-1 accuracy: [bold]{report['top1']:.1%}[/]   "
                 f"top-5 accuracy: [bold]{report['top5']:.1%}[/]")


def probe(
    train: Path = typer.Option(..., "--train", help="ImageFolder to fit the probe on."),
    test: Path = typer.Option(..., "--test", help="ImageFolder to measure it on."),
    save: Path = typer.Option(None, "--save", help="Write the probe here (for classify --probe)."),
    model: str = ModelOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Linear-probe evaluation: logistic regression on image features, C swept on validation."""
    import numpy as np

    from vislang.datasets.folder import ImageFolder
    from vislang.metrics import accuracy_report
    from vislang.probe import fit_probe

    spec = engine_spec(backend, precision, device=device)
    train_data, test_data = ImageFolder.open(train), ImageFolder.open(test)
    missing = sorted(set(test_data.classes) - set(train_data.classes))
    if missing:
        raise InputError(f"test classes not in the training folder: {', '.join(missing)}")
    clip = load_model(model, spec, quiet=json_out)
    train_x = clip.embed_images(train_data.paths, progress=True)
    test_x = clip.embed_images(test_data.paths, progress=True)
    fitted = fit_probe(train_x, np.array(train_data.targets), train_data.classes,
                       model_name=model, model_key=clip.model_key)
    test_y = np.array([train_data.classes.index(c) for c in
                       (test_data.classes[t] for t in test_data.targets)])
    report = accuracy_report(fitted.probabilities(test_x), test_y, train_data.classes)
    report.update(model=clip.model_key, C=fitted.C, train_images=len(train_data.paths),
                  test_images=len(test_data.paths), sweep={str(c): a for c, a in fitted.sweep.items()})
    if save is not None:
        report["saved"] = str(fitted.save(save))
    if json_out:
        print_json(report)
        return
    _print_report(report, f"linear probe, C={fitted.C:g} (validation sweep)")
    if save is not None:
        stdout.print(f"probe saved to {save}; use it with: vislang classify --probe {save} IMAGE...")


@eval_app.command("retrieval")
def eval_retrieval(
    pairs: Path = typer.Argument(..., help="A .jsonl or .csv of (image, caption) pairs."),
    models: list[str] = ModelsOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Text -> image recall@1 / @5: each distinct caption must find an image it describes;
    several --model: one comparison table."""
    from vislang.train.data import Problems, read_pairs

    spec = engine_spec(backend, precision, device=device)
    problems = Problems()
    data = read_pairs(pairs, problems)
    reports = [_retrieval_report(name, data, problems, spec, json_out) for name in _names(models)]
    if len(reports) > 1:
        return _print_comparison(reports, {"recall@1": "recall@1", "recall@5": "recall@5"},
                                 json_out,
                                 f"text -> image on {pairs} ({reports[0]['queries']} captions, "
                                 f"{len(data)} images)")
    (report,) = reports
    if json_out:
        return print_json(_single(report))
    stdout.print(f"{report['queries']} distinct captions over {len(data)} images: "
                 f"recall@1 [bold]{report['recall@1']:.1%}[/], "
                 f"recall@5 [bold]{report['recall@5']:.1%}[/]")


def _retrieval_report(name: str, data: list, problems, spec, quiet: bool) -> dict:
    from vislang.metrics import text_to_image_recall

    clip = load_model(name, spec, quiet=quiet)
    images, rate = _timed(clip, lambda: clip.embed_images([p.image for p in data],
                                                          progress=True))
    captions = [p.caption for p in data]
    queries = list(dict.fromkeys(captions))
    report = text_to_image_recall(images, captions, clip.embed_texts(queries), queries)
    report.update(model=clip.model_key, images=len(data), queries=len(queries),
                  skipped_records=problems.messages)
    return _with_speed(report, name, clip, rate(len(data)))
