"""Contrastive fine-tuning of a CLIP checkpoint on (image, caption) pairs and search feedback.

One step: encode a batch of images and their captions, score every image against every caption,
and apply cross-entropy both ways (CLIP's symmetric InfoNCE, learnable temperature). Captions
repeat in real data (and always in class-name data), so an image's targets are *all* captions
equal to its own, not just the diagonal. Feedback adds a text->image term per search whose
targets are the clicked images, with the skipped ones among the negatives; with no pairs,
that term is the whole step.

The run is resumable: every ``checkpoint_every`` steps the model, optimiser, scheduler and RNG
state are written atomically to ``OUT/checkpoint``; batch order is a pure function of (seed,
step), so a resumed run sees exactly the batches the interrupted one would have.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vislang.errors import InputError, UnsupportedModelError
from vislang.images import load_image
from vislang.models.clip import ClipModel, load
from vislang.parallel import ordered_map
from vislang.progress import progress_bar
from vislang.prompts import CAPTION_TEMPLATES
from vislang.train.data import Feedback, Pair, Problems, read_feedback, read_pairs

FREEZE_CHOICES = ("vision", "text", "towers")
MAX_LOGIT_SCALE = math.log(100)  # CLIP clamps the temperature so logits stay below 100


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: int = 100
    grad_clip: float = 1.0
    freeze: str | None = None  # "vision", "text", or "towers" (train projections + temperature)
    precision: str = "auto"  # "bf16" autocast where the CPU has bf16 units, else "fp32"
    checkpoint_every: int = 200
    eval_fraction: float = 0.05
    augment_captions: bool = False  # wrap captions in random templates ("a photo of ...")
    feedback_batch: int = 8
    seed: int = 0
    device: str = "cpu"  # cpu, cuda or cuda:N (resolved: runtime.resolve_device)


def train(data: str | Path | None, out: str | Path, config: TrainConfig, *,
          init: str | None = None, arch: str | None = None,
          feedback: str | Path | list[Feedback] | None = None, resume: bool = False,
          progress: bool = True, log=print) -> dict:
    """Train, save a loadable checkpoint in ``out`` and return the evaluation report.

    ``data``: pairs (see ``read_pairs``); None trains on ``feedback`` alone. ``feedback``: a
    JSONL file of searches, or ``Feedback`` records already read (``read_index_feedback``).
    """
    out = Path(out)
    problems = Problems()
    if data is None and not feedback:
        raise InputError("nothing to train on: give pairs (--data), feedback, or both")
    pairs = read_pairs(data, problems, seed=config.seed) if data is not None else []
    searches = (read_feedback(feedback, problems) if isinstance(feedback, (str, Path))
                else list(feedback or []))
    for message in problems.messages[:20]:
        log(f"skipped {message}")
    if len(problems) > 20:
        log(f"... and {len(problems) - 20} more skipped records")
    train_pairs, eval_pairs = _split(pairs, config.eval_fraction, config.seed)
    model, state = _start(out, init, arch, resume, config.seed)
    trainer = _Trainer(model, train_pairs, searches, config, state)
    log(f"training {model.model_key} on {len(train_pairs)} pairs and {len(searches)} searches "
        f"({len(eval_pairs)} held out), steps {trainer.step}..{config.steps}, "
        f"precision {trainer.precision}")
    trainer.run(out, progress)
    model = _save_final(model, out, trainer.carried)
    report = evaluate(model, eval_pairs) if eval_pairs else {}
    report.update(steps=config.steps, pairs=len(train_pairs), searches=len(searches),
                  held_out=len(eval_pairs),
                  skipped_records=len(problems), losses=trainer.losses, config=asdict(config))
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return report


def _split(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = int(len(pairs) * fraction) if len(pairs) >= 20 else 0
    held = set(order[:n_eval])
    return ([p for i, p in enumerate(pairs) if i not in held],
            [p for i, p in enumerate(pairs) if i in held])


def _start(out: Path, init: str | None, arch: str | None, resume: bool, seed: int):
    checkpoint = out / "checkpoint"
    if resume and (checkpoint / "trainer_state.pt").is_file():
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False,
                           map_location="cpu")  # the optimizer moves it to the weights' device
        return load(str(checkpoint)), state
    if resume:
        raise InputError(f"--resume: no checkpoint in {checkpoint} to resume from")
    if (init is None) == (arch is None):
        raise InputError("start from exactly one of --init CHECKPOINT or --config NAME")
    if arch is not None:
        from vislang.models.tiny import tiny_clip

        init = str(tiny_clip(out / "init", config=arch, seed=seed))
    model = load(init)
    if model.kind != "clip":
        raise UnsupportedModelError(f"training supports CLIP checkpoints; {init} is {model.kind}")
    return model, None


class _Trainer:
    def __init__(self, model: ClipModel, pairs: list[Pair], searches: list[Feedback],
                 config: TrainConfig, state: dict | None):
        self.model, self.pairs, self.searches, self.config = model, pairs, searches, config
        self.carried = carried_files(model.checkpoint.path)
        self.device = torch.device(config.device)
        self.hf = model.hf_model.to(self.device)  # before the optimizer: its state follows
        self.hf.train()
        _freeze(self.hf, config.freeze)
        self.vision_frozen = config.freeze in ("vision", "towers")
        self.text_frozen = config.freeze in ("text", "towers")
        # image path or query -> the frozen tower's output: with both towers frozen, a
        # feedback step is two projections, hundreds of times faster than running the towers
        self.pooled: dict[Path | str, torch.Tensor] = {}
        # foreach: one fused update over all tensors; PyTorch picks it only on GPUs by default.
        self.optimizer = torch.optim.AdamW(_param_groups(self.hf, config.weight_decay),
                                           lr=config.lr, foreach=True)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, config.warmup,
                                                         config.steps)
        self.precision = _precision(config.precision, self.device)
        self.step, self.losses = 0, []
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step, self.losses = state["step"], state["losses"]
            torch.set_rng_state(state["torch_rng"])

    # -- data ------------------------------------------------------------------------------
    def batch_indices(self, step: int) -> list[int]:
        """The pair indices of ``step``: epoch-wise shuffles, a pure function of (seed, step)."""
        n, size = len(self.pairs), min(self.config.batch_size, len(self.pairs))
        start = step * size
        indices = []
        while len(indices) < size:
            epoch, offset = divmod(start + len(indices), n)
            order = np.random.default_rng([self.config.seed, epoch]).permutation(n)
            indices.extend(order[offset: offset + size - len(indices)].tolist())
        return indices

    def load_batch(self, step: int) -> tuple[torch.Tensor | None, list[str]]:
        if not self.pairs:  # feedback alone: the step is its search term
            return None, []
        pairs = [self.pairs[i] for i in self.batch_indices(step)]
        pixels = torch.stack([self.model.transform(load_image(p.image)) for p in pairs])
        rng = random.Random(self.config.seed * 1_000_003 + step)
        captions = [rng.choice(CAPTION_TEMPLATES).format(p.caption)
                    if self.config.augment_captions else p.caption for p in pairs]
        return pixels, captions

    # -- the loop --------------------------------------------------------------------------
    def run(self, out: Path, progress: bool) -> None:
        config = self.config
        batches = ordered_map(self.load_batch, range(self.step, config.steps), workers=2, ahead=2)
        started, seen = time.monotonic(), 0
        with progress_bar(config.steps, "training", unit="steps", enabled=progress) as advance:
            advance(self.step)
            for pixels, captions in batches:
                loss = self.train_step(pixels, captions)
                self.step += 1
                seen += len(captions) or min(config.feedback_batch, len(self.searches))
                self.losses.append(round(loss, 5))
                rate = seen / max(time.monotonic() - started, 1e-9)
                advance(1, f"loss {loss:.3f}  {rate:.0f} examples/s")
                if self.step % config.checkpoint_every == 0 and self.step < config.steps:
                    self.save_checkpoint(out / "checkpoint")

    def train_step(self, pixels: torch.Tensor, captions: list[str]) -> float:
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            loss = self.pair_loss(pixels, captions) if captions else 0.0
            if self.searches:
                loss = loss + self.feedback_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.hf.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.hf.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        return float(loss.detach())

    def features(self, pixels: torch.Tensor | None, texts: list[str] | None):
        image = text = None
        if pixels is not None:
            pixels = pixels.to(self.device)
            image = F.normalize(self.hf.get_image_features(pixel_values=pixels).pooler_output,
                                dim=-1)
        if texts is not None:
            tokens = self.model.tower_tokens(self.model.tokenize(texts, truncate=True))
            tokens = tokens.to(self.device)
            text = F.normalize(self.hf.get_text_features(input_ids=tokens).pooler_output, dim=-1)
        return image, text

    def pair_loss(self, pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
        image, text = self.features(pixels, captions)
        logits = self.hf.logit_scale.exp() * image @ text.T
        ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        labels = torch.tensor([ids[c] for c in captions], device=self.device)
        same = (labels[:, None] == labels[None, :]).float()
        targets = same / same.sum(dim=1, keepdim=True)  # symmetric, so it serves both ways
        return (F.cross_entropy(logits.float(), targets) +
                F.cross_entropy(logits.T.float(), targets)) / 2

    def feedback_loss(self) -> torch.Tensor:
        """Text -> image cross-entropy over clicked (targets) and skipped (negatives) images."""
        rng = np.random.default_rng([self.config.seed, self.step, 1])
        count = min(self.config.feedback_batch, len(self.searches))
        picked = [self.searches[i] for i in rng.choice(len(self.searches), count, replace=False)]
        paths = list(dict.fromkeys(p for s in picked for p in (*s.clicked, *s.skipped)))
        column = {p: i for i, p in enumerate(paths)}
        image = self.search_images(paths)
        text = self.search_texts([s.query for s in picked])
        logits = self.hf.logit_scale.exp() * text @ image.T
        targets = torch.zeros(len(picked), len(paths), device=self.device)
        for row, search in enumerate(picked):
            targets[row, [column[p] for p in search.clicked]] = 1 / len(search.clicked)
        return F.cross_entropy(logits.float(), targets)

    def search_images(self, paths: list[Path]) -> torch.Tensor:
        """Normalised embeddings of feedback images. With the vision tower frozen, its output
        for an image never changes: it is computed once per image and kept (a search's images
        come back step after step), and only the projection runs each step."""
        if not self.vision_frozen:
            pixels = torch.stack([self.model.transform(load_image(p)) for p in paths])
            return self.features(pixels, None)[0]
        todo = [p for p in dict.fromkeys(paths) if p not in self.pooled]
        if todo:
            with torch.no_grad():
                pixels = torch.stack([self.model.transform(load_image(p)) for p in todo])
                pooled = self.hf.vision_model(pixel_values=pixels.to(self.device)).pooler_output
            self.pooled.update(zip(todo, pooled))
        pooled = torch.stack([self.pooled[p] for p in paths])
        return F.normalize(self.hf.visual_projection(pooled), dim=-1)

    def search_texts(self, queries: list[str]) -> torch.Tensor:
        """Normalised embeddings of queries; kept per query, as images are, when the text
        tower is frozen."""
        if not self.text_frozen:
            return self.features(None, queries)[1]
        todo = [q for q in dict.fromkeys(queries) if q not in self.pooled]
        if todo:
            tokens = self.model.tower_tokens(self.model.tokenize(todo, truncate=True))
            with torch.no_grad():
                pooled = self.hf.text_model(input_ids=tokens.to(self.device)).pooler_output
            self.pooled.update(zip(todo, pooled))
        pooled = torch.stack([self.pooled[q] for q in queries])
        return F.normalize(self.hf.text_projection(pooled), dim=-1)

    # -- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, directory: Path) -> None:
        """Write model + trainer state next to ``directory``, then swap it in atomically."""
        staging = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        save_model(self.model, staging, self.carried)
        torch.save({"optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "step": self.step,
                    "losses": self.losses, "torch_rng": torch.get_rng_state(),
                    "config": asdict(self.config)}, staging / "trainer_state.pt")
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if directory.exists():
            directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old, ignore_errors=True)


def _freeze(hf, freeze: str | None) -> None:
    if freeze not in (None, *FREEZE_CHOICES):
        raise InputError(f"--freeze takes one of {', '.join(FREEZE_CHOICES)}, not {freeze!r}")
    frozen = {"vision": ("vision_model.",), "text": ("text_model.",),
              "towers": ("vision_model.", "text_model.")}.get(freeze, ())
    for name, parameter in hf.named_parameters():
        parameter.requires_grad = not name.startswith(frozen)


def _param_groups(hf, weight_decay: float) -> list[dict]:
    # Decay matrices only: decaying norms, biases, embeddings and the temperature hurts CLIP.
    decay, no_decay = [], []
    for name, p in hf.named_parameters():
        if p.requires_grad:
            plain_matrix = p.ndim >= 2 and "embedding" not in name
            (decay if plain_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _precision(choice: str, device: torch.device) -> str:
    from vislang.runtime.cpu import cpu_has_amx, cpu_has_bf16

    if device.type == "cuda":  # bf16 autocast needs no loss scaling, unlike fp16
        bf16 = torch.cuda.is_bf16_supported()
        if choice == "bf16" and not bf16:
            raise InputError(f"{device} has no bf16 support; use --precision fp32")
        return choice if choice in ("bf16", "fp32") else ("bf16" if bf16 else "fp32")
    if choice == "auto":
        # Measured here: without AMX tiles, bf16 autocast's casts cost more than AVX512-BF16
        # saves on small models (0.87 s vs 0.60 s per step), so only AMX gets bf16 by default.
        return "bf16" if cpu_has_amx() else "fp32"
    if choice not in ("bf16", "fp32"):
        raise InputError(f"--precision takes bf16, fp32 or auto, not {choice!r}")
    if choice == "bf16" and not cpu_has_bf16():
        raise InputError("this CPU has no bf16 units (AVX512-BF16 or AMX); use --precision fp32")
    return choice


def carried_files(source: Path) -> dict[str, bytes]:
    """The tokenizer and processor files of a checkpoint, kept in memory: the directory they
    came from (an earlier checkpoint) may be replaced while training goes on."""
    return {f.name: f.read_bytes() for f in source.iterdir()
            if f.is_file() and f.suffix in (".json", ".txt", ".model")
            and f.name not in ("config.json", "generation_config.json",
                               # an earlier run's held-out searches say nothing of this run's
                               "feedback_heldout.json")}


def save_model(model: ClipModel, directory: Path, carried: dict[str, bytes]) -> None:
    """save_pretrained the weights, plus the tokenizer and processor files."""
    directory.mkdir(parents=True, exist_ok=True)
    model.hf_model.save_pretrained(directory)
    for name, content in carried.items():
        (directory / name).write_bytes(content)


def _save_final(model: ClipModel, out: Path, carried: dict[str, bytes]) -> ClipModel:
    save_model(model, out, carried)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    shutil.rmtree(out / "init", ignore_errors=True)
    return load(str(out))


def evaluate(model: ClipModel, pairs: list[Pair]) -> dict:
    """Held-out text->image recall@1/@5, and zero-shot accuracy when pairs carry labels."""
    from vislang.metrics import text_to_image_recall

    images = model.embed_images([p.image for p in pairs])
    captions = [p.caption for p in pairs]
    queries = list(dict.fromkeys(captions))
    report = text_to_image_recall(images, captions, model.embed_texts(queries), queries)
    labels = [p.label for p in pairs]
    if all(labels) and len(set(labels)) > 1:
        from vislang.zeroshot import Classifier

        classes = sorted(set(labels))
        probs = Classifier(model, classes).probabilities(images)
        report["zeroshot_top1"] = float(np.mean(
            [classes[i] == label for i, label in zip(probs.argmax(axis=1), labels)]))
    return report
