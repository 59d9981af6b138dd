"""Train the shipped shapes-blip models: a tiny BLIP that captions shapes-world scenes and
answers questions about them, on a CPU, from scenes generated on the fly.

Two checkpoints come out, sharing one vision tower trained by both losses at once:

- ``shapes-blip-caption`` (BlipForConditionalGeneration): image -> "two red circles and a
  blue square";
- ``shapes-blip-vqa`` (BlipForQuestionAnswering): image + "how many circles are there?" -> "two".

Every step draws a fresh batch of scenes (``vislang.datasets.shapes``, seed ``TRAIN_SEED``,
never used for evaluation); seeds are fixed, so a run is reproducible up to CPU float
non-determinism. Weights are saved as float16 (vislang computes in float32), with the
BlipProcessor (BertTokenizer over a small WordPiece vocabulary of the shapes world's words).

    python recipes/train_shapes_blip.py train --out DIR          # DIR/shapes-blip-{caption,vqa}
    python recipes/train_shapes_blip.py eval --caption-model shapes-blip-caption \
        --vqa-model shapes-blip-vqa --json-out eval.json          # through vislang's public API
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from vislang.datasets.shapes import COLOURS, NUMBER_WORDS, SHAPES, generate_scenes, objects_named

TRAIN_SEED = 5150  # training scenes; evaluation uses EVAL_SEED, the tests yet another seed
EVAL_SEED = 77777
IMAGE_SIZE = 64
MEAN = (0.48145466, 0.4578275, 0.40821073)  # BlipImageProcessor's defaults (OpenAI CLIP's)
STD = (0.26862954, 0.26130258, 0.27577711)

WORDS = [
    "a", "and", "the", "is", "are", "there", "what", "how", "many", "color", "shape", "object",
    "which", "side", "on", "at", "or", "of", "left", "right", "top", "bottom", "above",
    "yes", "no", *NUMBER_WORDS[:4],
    *COLOURS, *SHAPES, *(f"{s}s" for s in SHAPES),
    ",", "?", ".",
]
CAPTION_LEN, QUESTION_LEN, ANSWER_LEN = 16, 16, 3  # the longest need 14, 14 and 3 tokens
VQA_KINDS = ("colour", "count", "presence", "shape", "position")
VQA_KIND_WEIGHTS = (0.3, 0.3, 0.25, 0.1, 0.05)


def build_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast(str(folder / "vocab.txt"), bos_token="[DEC]",
                             additional_special_tokens=["[ENC]"])


def build_config(tok, width: int, vision_layers: int, text_layers: int, patch: int):
    from transformers import BlipConfig

    return BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=text_layers, num_attention_heads=4,
                         encoder_hidden_size=width, max_position_embeddings=48,
                         bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=width, intermediate_size=2 * width,
                           num_hidden_layers=vision_layers, num_attention_heads=4,
                           image_size=IMAGE_SIZE, patch_size=patch),
        projection_dim=width,
    )


def pixels(images) -> torch.Tensor:
    """PIL 64x64 -> normalised ``float32[N, 3, 64, 64]``: BlipImageProcessor at its own size."""
    arr = torch.from_numpy(np.stack([np.asarray(i, dtype=np.uint8) for i in images]))
    x = arr.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def lm_loss(decoder, ids, mask, context, context_mask, pad_id):
    out = decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=context,
                  encoder_attention_mask=context_mask, is_decoder=True, return_dict=True)
    logits = out.logits[:, :-1].float()
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=-100)


def train(args) -> None:
    from transformers import (BlipForConditionalGeneration, BlipForQuestionAnswering,
                              BlipImageProcessorPil, BlipProcessor)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    out = Path(args.out)
    tok = build_tokenizer(out / "tokenizer-src")
    config = build_config(tok, args.width, args.vision_layers, args.text_layers, args.patch)
    cap = BlipForConditionalGeneration(config)
    vqa = BlipForQuestionAnswering(config)
    vqa.vision_model = cap.vision_model  # one vision tower, trained by both tasks
    params = list({id(p): p for m in (cap, vqa) for p in m.parameters()}.values())
    print(f"parameters: {sum(p.numel() for p in params) / 1e6:.2f} M, vocab {len(tok)}")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, 0.98))

    def lr_at(step):
        if step < args.warmup:
            return (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = random.Random(0)
    cap.train(), vqa.train()
    t0, log = time.time(), []
    for step in range(args.steps):
        scenes = generate_scenes(args.batch_size, TRAIN_SEED, start=step * args.batch_size)
        px = pixels([s.image for s in scenes])
        # fixed padded lengths: one tensor shape every step, so oneDNN's bf16 kernels are
        # built once (new shapes cost seconds each on CPU)
        c = tok([s.caption for s in scenes], padding="max_length", max_length=CAPTION_LEN,
                return_tensors="pt")
        c["input_ids"][:, 0] = tok.bos_token_id
        qas = []
        for s in scenes:
            kinds = [k for k in VQA_KINDS if any(q.kind == k for q in s.qa)]
            weights = [VQA_KIND_WEIGHTS[VQA_KINDS.index(k)] for k in kinds]
            kind = rng.choices(kinds, weights)[0]
            qas.append(rng.choice([q for q in s.qa if q.kind == kind]))
        q = tok([x.question for x in qas], padding="max_length", max_length=QUESTION_LEN,
                return_tensors="pt")
        a = tok([x.answer for x in qas], padding="max_length", max_length=ANSWER_LEN,
                return_tensors="pt")
        assert max(len(t["input_ids"][0]) for t in (c, q, a)) <= QUESTION_LEN
        a["input_ids"][:, 0] = tok.bos_token_id
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            image = cap.vision_model(pixel_values=px)[0]
            image_mask = torch.ones(image.shape[:-1], dtype=torch.long)
            loss_c = lm_loss(cap.text_decoder, c["input_ids"], c["attention_mask"], image,
                             image_mask, tok.pad_token_id)
            question = vqa.text_encoder(input_ids=q["input_ids"],
                                        attention_mask=q["attention_mask"],
                                        encoder_hidden_states=image,
                                        encoder_attention_mask=image_mask, return_dict=False)[0]
            loss_a = lm_loss(vqa.text_decoder, a["input_ids"], a["attention_mask"], question,
                             q["attention_mask"], tok.pad_token_id)
            loss = loss_c + loss_a
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            log.append({"step": step, "caption_loss": round(loss_c.item(), 4),
                        "vqa_loss": round(loss_a.item(), 4)})
            print(f"step {step:5d}  caption {loss_c.item():.4f}  vqa {loss_a.item():.4f}  "
                  f"lr {sched.get_last_lr()[0]:.2e}  {time.time() - t0:.0f}s", flush=True)
    seconds = time.time() - t0
    print(f"training took {seconds:.0f} s ({args.steps} steps of {args.batch_size} scenes)")
    processor = BlipProcessor(BlipImageProcessorPil(size={"height": IMAGE_SIZE,
                                                          "width": IMAGE_SIZE}), tok)
    info = {"train_seconds": round(seconds, 1), "steps": args.steps,
            "batch_size": args.batch_size, "train_seed": TRAIN_SEED,
            "settings": vars(args), "log": log}
    for name, model in (("shapes-blip-caption", cap), ("shapes-blip-vqa", vqa)):
        dest = out / name
        shutil.rmtree(dest, ignore_errors=True)
        model.eval()
        # float16 weights (vislang computes in float32), like recipes/ship_model.py for CLIP
        model.to(torch.float16).save_pretrained(dest)
        processor.save_pretrained(dest)
        (dest / "training.json").write_text(json.dumps(info, indent=1) + "\n")
        for f in dest.iterdir():
            f.chmod(0o644)
        size = sum(f.stat().st_size for f in dest.iterdir()) / 2**20
        print(f"saved {dest} ({size:.1f} MiB)")
    shutil.rmtree(out / "tokenizer-src", ignore_errors=True)


# -- evaluation, through vislang's public API ----------------------------------------------------


def evaluate(caption_model: str, vqa_model: str, n: int = 500, seed: int = EVAL_SEED) -> dict:
    import vislang
    from vislang.models.blip import load_blip

    scenes = generate_scenes(n, seed)
    t0 = time.time()
    captions = vislang.caption([s.image for s in scenes], model=caption_model, batch_size=64)
    right_set = sum(objects_named(c) == Counter((o.colour, o.shape) for o in s.objects)
                    for c, s in zip(captions, scenes))
    exact = sum(c == s.caption for c, s in zip(captions, scenes))
    caption_s = time.time() - t0
    right, total = Counter(), Counter()
    wrong_examples = []
    answerer = load_blip(vqa_model)  # loaded once (a name string would reload it per question)
    t0 = time.time()
    for s in scenes:
        for qa in s.qa:
            got = vislang.ask(s.image, qa.question, model=answerer)
            total[qa.kind] += 1
            right[qa.kind] += got == qa.answer
            if got != qa.answer and len(wrong_examples) < 10:
                wrong_examples.append([s.index, qa.question, qa.answer, got])
    result = {
        "held_out_seed": seed, "scenes": n,
        "caption_right_object_set": right_set / n,
        "caption_exact_match": exact / n,
        "vqa_accuracy": {k: right[k] / total[k] for k in total},
        "vqa_questions": dict(total),
        "caption_seconds": round(caption_s, 1), "vqa_seconds": round(time.time() - t0, 1),
        "wrong_answers_sample": wrong_examples,
        "wrong_captions_sample": [[s.index, s.caption, c] for c, s in zip(captions, scenes)
                                  if objects_named(c) != Counter((o.colour, o.shape)
                                                                 for o in s.objects)][:10],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=3500)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=100)
    t.add_argument("--width", type=int, default=128)
    t.add_argument("--vision-layers", type=int, default=4)
    t.add_argument("--text-layers", type=int, default=2)
    t.add_argument("--patch", type=int, default=8)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    e = sub.add_parser("eval")
    e.add_argument("--caption-model", default="shapes-blip-caption")
    e.add_argument("--vqa-model", default="shapes-blip-vqa")
    e.add_argument("-n", type=int, default=500)
    e.add_argument("--json-out", nargs="*", default=[])
    args = parser.parse_args()
    if args.command == "train":
        train(args)
    else:
        torch.set_num_threads(2)
        result = evaluate(args.caption_model, args.vqa_model, args.n)
        print(json.dumps({k: v for k, v in result.items() if "sample" not in k}, indent=1))
        for path in args.json_out:
            Path(path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
