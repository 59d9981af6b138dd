"""BLIP captions and answers: vislang's generation loop vs transformers' ``generate``, one run.

Models: the real blip-vqa-base and blip-image-captioning-base architectures (``BlipConfig()``'s
defaults: a ViT-B/16 vision encoder at 384 px, BERT-base text encoder and decoder, a 30,524-entry
vocabulary), random weights, built offline with a synthetic WordPiece vocabulary of that size.
Compute does not depend on the weights; random weights almost never emit [SEP], so every run
generates its whole token budget, on both sides.

- ask: one 640x480 image + "what colour is the car?" -> up to 10 tokens. Baseline, as the
  transformers docs and the seed notebook write it: ``BlipProcessor(images, text)`` then
  ``BlipForQuestionAnswering.generate(**inputs, max_new_tokens=10)`` in eager fp32.
  Ours: ``vislang.ask(image, question, model)``.
- caption: one image -> up to 20 tokens (``generate(pixel_values, max_new_tokens=20)`` vs
  ``vislang.caption``).
- batch: 32 images captioned in one call, captions per second.

Ours runs as loaded with ``precision="auto"`` (what the CLI uses: bf16 on CPUs with AMX) and in
fp32. Calls alternate with the baseline's and the ratios are medians of paired runs. Checks:
our fp32 tokens equal ``generate``'s on the random models; on the shipped shapes BLIPs, the
auto precision gives the same captions and answers as fp32 on held-out scenes.

    .venv/bin/python bench/blip.py               # real size: about 5 minutes on 2 cores
    .venv/bin/python bench/blip.py --arch tiny   # seconds: checks the script only
    .venv/bin/python bench/blip.py --json
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encode import machine_facts, quiet  # noqa: E402

import vislang  # noqa: E402
from vislang.datasets.shapes import generate_scene, generate_scenes  # noqa: E402
from vislang.models.blip import load_blip  # noqa: E402

QUESTION = "what colour is the car?"
ASK_TOKENS, CAPTION_TOKENS, BATCH = 10, 20, 32
TARGET = 3.0
VOCAB = 30524  # bert-base-uncased + [DEC] and [ENC], as BLIP's


# -- the models ----------------------------------------------------------------------------
def write_tokenizer(folder: Path, size: int) -> None:
    """A BERT WordPiece tokenizer with BERT's special-token ids and ``size`` entries."""
    from transformers import BertTokenizerFast

    words = "what colour color is the car a picture of how many are there".split()
    vocab = ["[PAD]", *[f"[unused{i}]" for i in range(99)], "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += words + [f"w{i}" for i in range(size - 2 - len(vocab) - len(words))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"), bos_token="[DEC]",
                                  additional_special_tokens=["[ENC]"])
    assert len(tokenizer) == size, len(tokenizer)
    tokenizer.save_pretrained(folder)


def write_checkpoints(work: Path, arch: str) -> dict[str, Path]:
    from transformers import (BlipConfig, BlipForConditionalGeneration,
                              BlipForQuestionAnswering, BlipImageProcessor)

    size = VOCAB if arch == "base" else 1000
    tiny = {} if arch == "base" else dict(hidden_size=64, intermediate_size=128,
                                          num_hidden_layers=2, num_attention_heads=2)
    config = BlipConfig(
        text_config=dict(vocab_size=size, bos_token_id=size - 2, sep_token_id=102,
                         pad_token_id=0, **tiny, **({"encoder_hidden_size": 64} if tiny else {})),
        vision_config=dict(**tiny, **({"image_size": 96} if tiny else {})))
    side = config.vision_config.image_size
    out = {}
    for task, cls in (("vqa", BlipForQuestionAnswering),
                      ("caption", BlipForConditionalGeneration)):
        folder = work / task
        torch.manual_seed(0)
        cls(config).save_pretrained(folder)
        write_tokenizer(folder, size)
        BlipImageProcessor(size={"height": side, "width": side}).save_pretrained(folder)
        out[task] = folder
    return out


def test_images(count: int) -> list[Image.Image]:
    return [generate_scene(31, i, image_size=480, n_objects=3).image.resize((640, 480))
            for i in range(count)]


# -- timing --------------------------------------------------------------------------------
def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(baseline, ours, calls: int) -> tuple[float, float, float]:
    """Median seconds of each, and the median of the per-pair ratios (after one warm call)."""
    baseline(), ours()
    pairs = [(clock(baseline), clock(ours)) for _ in range(calls)]
    return (statistics.median(b for b, _ in pairs), statistics.median(o for _, o in pairs),
            statistics.median(b / o for b, o in pairs))


class Baseline:
    """transformers as its docs show it: the processor, then ``generate``, eager fp32."""

    def __init__(self, folder: Path, cls):
        from transformers import BlipProcessor

        self.processor = BlipProcessor.from_pretrained(folder)
        self.model = cls.from_pretrained(folder).eval()

    def ask(self, image, question: str) -> list[int]:
        inputs = self.processor(images=image, text=question, return_tensors="pt")
        with torch.inference_mode():
            return self.model.generate(**inputs, max_new_tokens=ASK_TOKENS)[0].tolist()

    def caption(self, images) -> list[list[int]]:
        inputs = self.processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(pixel_values=inputs["pixel_values"],
                                      max_new_tokens=CAPTION_TOKENS)
        return out.tolist()


def measure(folders: dict[str, Path], calls: int, log) -> dict:
    from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering

    images = test_images(BATCH)
    image = images[0]
    vqa_base = Baseline(folders["vqa"], BlipForQuestionAnswering)
    cap_base = Baseline(folders["caption"], BlipForConditionalGeneration)
    result = {"checks": check_tokens(folders, vqa_base, cap_base, image)}
    for precision in ("auto", "fp32"):
        vqa = load_blip(str(folders["vqa"]), precision=precision)
        cap = load_blip(str(folders["caption"]), precision=precision)
        name = f"torch/{vqa.engine_choice.precision}"
        log(f"{name}: ask")
        ask = paired(lambda: vqa_base.ask(image, QUESTION),
                     lambda: vislang.ask(image, QUESTION, vqa, max_tokens=ASK_TOKENS), calls)
        log(f"{name}: caption")
        one = paired(lambda: cap_base.caption([image]),
                     lambda: vislang.caption(image, cap, max_tokens=CAPTION_TOKENS), calls)
        log(f"{name}: batch of {BATCH}")
        batch = paired(lambda: cap_base.caption(images),
                       lambda: vislang.caption(images, cap, max_tokens=CAPTION_TOKENS,
                                               batch_size=BATCH), max(1, calls // 3))
        result[precision] = {
            "engine": name,
            "ask": {"baseline_s": ask[0], "ours_s": ask[1], "speedup": ask[2]},
            "caption": {"baseline_s": one[0], "ours_s": one[1], "speedup": one[2]},
            "batch": {"baseline_per_s": BATCH / batch[0], "ours_per_s": BATCH / batch[1],
                      "speedup": batch[2]},
        }
    return result


def check_tokens(folders: dict[str, Path], vqa_base: Baseline, cap_base: Baseline,
                 image: Image.Image) -> dict:
    """Our fp32 loop gives generate's tokens (greedy) on the random real-size models."""
    from vislang.captioning import answer_ids, caption_ids

    vqa = load_blip(str(folders["vqa"]), precision="fp32")
    cap = load_blip(str(folders["caption"]), precision="fp32")
    pixels = vqa.preprocess(image)[None]
    theirs = vqa_base.ask(image, QUESTION)
    ours = answer_ids(vqa, pixels, [QUESTION], 1, ASK_TOKENS)[0]
    theirs_caption = cap_base.caption([image])[0]
    ours_caption = caption_ids(cap, pixels, None, 1, CAPTION_TOKENS)[0]
    return {"ask_tokens_equal": ours == theirs[:len(ours)] and len(ours) == len(theirs),
            "caption_tokens_equal": ours_caption == theirs_caption,
            "tokens_generated": {"ask": len(ours) - 1, "caption": len(ours_caption) - 1}}


def shapes_agreement(scenes: int) -> dict:
    """Shipped shapes BLIPs on held-out scenes: the auto precision vs fp32, same text?"""
    held_out = generate_scenes(scenes, seed=246810)
    out = {}
    cap = {p: load_blip("shapes-blip-caption", precision=p) for p in ("auto", "fp32")}
    captions = {p: vislang.caption([s.image for s in held_out], m, batch_size=50)
                for p, m in cap.items()}
    out["captions_equal"] = sum(a == b for a, b in zip(captions["auto"], captions["fp32"]))
    vqa = {p: load_blip("shapes-blip-vqa", precision=p) for p in ("auto", "fp32")}
    qas = [(s.image, qa.question) for s in held_out for qa in s.qa][:scenes]
    answers = {p: [vislang.ask(i, q, m) for i, q in qas] for p, m in vqa.items()}
    out["answers_equal"] = sum(a == b for a, b in zip(answers["auto"], answers["fp32"]))
    out["auto_precision"] = cap["auto"].engine_choice.precision
    return {**out, "scenes": scenes, "questions": len(qas)}


# -- output --------------------------------------------------------------------------------
def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"\ncpu: {m['cpu']}, {m['cores']} cores, isa: {' '.join(m['isa']) or '-'}; "
          f"torch {m['torch']}, transformers {m['transformers']}")
    print(f"arch: {r['arch']}; baseline: transformers generate, eager fp32; medians of "
          f"{r['calls']} paired calls ({max(1, r['calls'] // 3)} for the batch)")
    c = r["checks"]
    print(f"our fp32 tokens == generate's: ask {c['ask_tokens_equal']}, caption "
          f"{c['caption_tokens_equal']} ({c['tokens_generated']['ask']} and "
          f"{c['tokens_generated']['caption']} tokens generated)")
    print(f"\n{'engine':<12} {'ask (10 tok)':>22} {'caption (20 tok)':>22} "
          f"{'batch of 32, captions/s':>26}")
    for key in ("auto", "fp32"):
        e = r[key]
        a, c, b = e["ask"], e["caption"], e["batch"]
        print(f"{e['engine']:<12} {a['ours_s']:>7.3f}s vs {a['baseline_s']:.3f}s {a['speedup']:>4.2f}x"
              f" {c['ours_s']:>7.3f}s vs {c['baseline_s']:.3f}s {c['speedup']:>4.2f}x"
              f" {b['ours_per_s']:>8.2f} vs {b['baseline_per_s']:.2f} {b['speedup']:>4.2f}x")
    s = r["shapes"]
    print(f"\nshapes BLIPs, {s['auto_precision']} vs fp32 on {s['scenes']} held-out scenes: "
          f"captions equal {s['captions_equal']}/{s['scenes']}, answers equal "
          f"{s['answers_equal']}/{s['questions']}")
    best = r["auto"]
    met = best["ask"]["speedup"] >= TARGET and best["caption"]["speedup"] >= TARGET
    print(f"target >= {TARGET}x on ask and caption: {'MET' if met else 'NOT MET'} "
          f"(ask {best['ask']['speedup']:.2f}x, caption {best['caption']['speedup']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("base", "tiny"), default="base")
    parser.add_argument("--calls", type=int, default=5, help="paired calls per measurement")
    parser.add_argument("--scenes", type=int, default=100, help="held-out scenes for agreement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet()

    def log(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory(prefix="vislang-bench-blip-") as work:
        log("building the checkpoints")
        folders = write_checkpoints(Path(work), args.arch)
        result = {"arch": args.arch, "calls": args.calls, "machine": machine_facts(),
                  **measure(folders, args.calls, log)}
    log("shapes BLIPs: auto vs fp32")
    result["shapes"] = shapes_agreement(args.scenes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
