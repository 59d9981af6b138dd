"""``vislang train``: contrastive fine-tuning on your pairs and search feedback."""

from __future__ import annotations

from pathlib import Path

import typer

from vislang.cli.common import DeviceOption, JsonOption, print_json, stderr, stdout
from vislang.errors import InputError


def train(
    data: Path = typer.Option(None, "--data", help="Pairs: a .jsonl or .csv of (image, "
                              "caption), or an ImageFolder (captions from class names). "
                              "Optional with feedback."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (save_pretrained layout)."),
    init: str = typer.Option(None, "--init", help="Start from this checkpoint (name/hub id/dir)."),
    config: str = typer.Option(None, "--config", help="Start from scratch: tiny or small."),
    feedback: Path = typer.Option(None, "--feedback", help="JSONL of {query, clicked, shown}."),
    feedback_from: Path = typer.Option(None, "--feedback-from", help="An index whose server "
                                       "recorded searches and clicks (vislang serve): train on "
                                       "them, holding some out for vislang eval feedback."),
    feedback_held_out: float = typer.Option(0.2, "--feedback-held-out", min=0.0, max=0.9,
                                            help="With --feedback-from: the fraction of "
                                            "searches held out (saved in OUT/"
                                            "feedback_heldout.json)."),
    steps: int = typer.Option(1000, "--steps", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2),
    lr: float = typer.Option(5e-4, "--lr"),
    weight_decay: float = typer.Option(0.1, "--weight-decay"),
    warmup: int = typer.Option(100, "--warmup", min=0, help="Linear warm-up steps."),
    grad_clip: float = typer.Option(1.0, "--grad-clip"),
    freeze: str = typer.Option(None, "--freeze",
                               help="vision, text, or towers (projections only)."),
    precision: str = typer.Option("auto", "--precision", help="auto, bf16 or fp32."),
    feedback_batch: int = typer.Option(8, "--feedback-batch", min=1, help="Searches per "
                                       "step's feedback term."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every", min=1),
    eval_fraction: float = typer.Option(0.05, "--eval-fraction", min=0.0, max=0.5),
    augment_captions: bool = typer.Option(False, "--augment-captions",
                                          help='Wrap captions in templates ("a photo of ...").'),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoint."),
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Fine-tune CLIP contrastively (symmetric InfoNCE, AdamW, warm-up + cosine decay)."""
    from vislang.train import TrainConfig
    from vislang.train import train as run_training

    device = _torch_device(device)
    if feedback is not None and feedback_from is not None:
        raise InputError("give --feedback FILE or --feedback-from INDEX, not both")
    held_out: list[int] = []
    if feedback_from is not None:
        feedback, held_out = _index_feedback(feedback_from, feedback_held_out, seed)

    settings = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                           warmup=warmup, grad_clip=grad_clip, freeze=freeze, precision=precision,
                           checkpoint_every=checkpoint_every, eval_fraction=eval_fraction,
                           augment_captions=augment_captions, feedback_batch=feedback_batch,
                           seed=seed, device=device)
    report = run_training(data, out, settings, init=init, arch=config, feedback=feedback,
                          resume=resume, progress=not json_out,
                          log=lambda line: stderr.print(line, highlight=False))
    if feedback_from is not None:
        from vislang.train.feedback import save_held_out

        report["feedback_held_out"] = str(save_held_out(out, feedback_from, held_out))
    if json_out:
        print_json(report | {"out": str(out)})
        return
    stdout.print(f"saved to {out} (load it with vislang.load({str(out)!r}))")
    losses = report["losses"]
    if losses:
        stdout.print(f"loss: first {losses[0]:.3f}, last {losses[-1]:.3f}")
    for key in ("recall@1", "recall@5", "zeroshot_top1"):
        if key in report:
            stdout.print(f"held-out {key}: [bold]{report[key]:.1%}[/]")
    stdout.print(f"evaluation saved to {out / 'eval.json'}")
    if feedback_from is not None:
        stdout.print(f"{len(held_out)} searches held out, listed in "
                     f"{report['feedback_held_out']}: measure them with vislang eval feedback "
                     f"--index {feedback_from} --model {out}", highlight=False)


def _index_feedback(folder: Path, fraction: float, seed: int):
    """The index's recorded feedback for training, and the held-out search ids."""
    from vislang.train.feedback import read_index_feedback

    found = read_index_feedback(folder, fraction, seed)
    summary = found.export.summary()
    stderr.print(f"feedback from {folder}: {summary['records']} searches with a chosen result "
                 f"({len(found.held_out)} held out); skipped {summary['missing_ids']} results no "
                 f"longer in the index", highlight=False, soft_wrap=True)
    if not found.train:
        raise InputError(f"every recorded search of {folder} is held out; record more "
                         "searches or lower --feedback-held-out")
    return found.train, found.held_out


def _torch_device(device: str) -> str:
    """Training runs torch itself: cpu or a CUDA device (auto: CUDA when torch sees one)."""
    from vislang.runtime import is_openvino_device, resolve_device

    if is_openvino_device(device):
        raise InputError(f"training runs on torch: --device cpu, cuda or cuda:N, not the "
                         f"OpenVINO device {device}")
    return resolve_device(device)
