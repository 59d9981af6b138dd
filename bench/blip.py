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

Ours: every engine/precision this machine runs (``--engines`` to pick), loaded as a user
would (``load_blip(dir, backend, precision)``); OpenVINO engines export and compile on their
first calls, timed apart ("first s") in a scratch engine cache. Calls alternate with the
baseline's and the ratios are medians of paired runs. Checks: our torch fp32 tokens equal
``generate``'s on the random models (the tests check every engine's fp32 on tiny ones); on the
shipped shapes BLIPs, each engine gives the same captions and answers as torch fp32 on
held-out scenes, and where an answer differs, how close a call it was in fp32.

    .venv/bin/python bench/blip.py               # real size: about 17 minutes on 2 cores
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


def engines() -> list[str]:
    """Every BLIP engine/precision this machine runs: exported engines first, then torch."""
    from vislang.runtime import BLIP_PRECISIONS
    from vislang.runtime import installed, supported_precisions

    found = [f"{b}/{p}" for b, allowed in BLIP_PRECISIONS.items() if installed(b)
             for p in supported_precisions(b) if p in allowed]
    return found + [f"torch/{p}" for p in supported_precisions("torch")]


def measure(folders: dict[str, Path], configs: list[str], calls: int, log) -> dict:
    from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering

    images = test_images(BATCH)
    image = images[0]
    vqa_base = Baseline(folders["vqa"], BlipForQuestionAnswering)
    cap_base = Baseline(folders["caption"], BlipForConditionalGeneration)
    result = {"checks": check_tokens(folders, vqa_base, cap_base, image), "engines": {}}
    for name in configs:
        backend, precision = name.split("/")
        vqa = load_blip(str(folders["vqa"]), backend, precision)
        cap = load_blip(str(folders["caption"]), backend, precision)
        log(f"{name}: first calls (export and compile, where the engine has them)")
        first = clock(lambda: vislang.ask(image, QUESTION, vqa, max_tokens=ASK_TOKENS)) + \
            clock(lambda: vislang.caption(image, cap, max_tokens=CAPTION_TOKENS))
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
        result["engines"][name] = {
            "first_calls_s": first,
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

    vqa = load_blip(str(folders["vqa"]), "torch", "fp32")
    cap = load_blip(str(folders["caption"]), "torch", "fp32")
    pixels = vqa.preprocess(image)[None]
    theirs = vqa_base.ask(image, QUESTION)
    ours = answer_ids(vqa, pixels, [QUESTION], 1, ASK_TOKENS)[0]
    theirs_caption = cap_base.caption([image])[0]
    ours_caption = caption_ids(cap, pixels, None, 1, CAPTION_TOKENS)[0]
    return {"ask_tokens_equal": ours == theirs[:len(ours)] and len(ours) == len(theirs),
            "caption_tokens_equal": ours_caption == theirs_caption,
            "tokens_generated": {"ask": len(ours) - 1, "caption": len(ours_caption) - 1}}


def shapes_agreement(configs: list[str], scenes: int) -> dict:
    """Shipped shapes BLIPs on held-out scenes: each engine vs torch fp32, the same text?"""
    held_out = generate_scenes(scenes, seed=246810)
    qas = [(s.image, qa.question) for s in held_out for qa in s.qa][:scenes]

    def run(backend: str, precision: str) -> tuple[list[str], list[str]]:
        cap = load_blip("shapes-blip-caption", backend, precision)
        vqa = load_blip("shapes-blip-vqa", backend, precision)
        return (vislang.caption([s.image for s in held_out], cap, batch_size=50),
                [vislang.ask(i, q, vqa) for i, q in qas])

    reference = run("torch", "fp32")
    fp32_vqa = load_blip("shapes-blip-vqa", "torch", "fp32")
    out = {"scenes": scenes, "questions": len(qas), "engines": {}}
    for name in configs:
        captions, answers = run(*name.split("/"))
        differ = [i for i, (a, b) in enumerate(zip(answers, reference[1])) if a != b]
        out["engines"][name] = {
            "captions_equal": sum(a == b for a, b in zip(captions, reference[0])),
            "answers_equal": len(qas) - len(differ),
            "fp32_margins_where_answers_differ": [answer_margin(fp32_vqa, *qas[i])
                                                  for i in differ]}
    return out


def answer_margin(vqa, image: Image.Image, question: str) -> float:
    """How close a call the answer is in fp32: the logit gap between the best and the
    second-best first answer token (answers are one word)."""
    from vislang.captioning import load_for

    engine = vqa.engine
    with torch.inference_mode():
        embeds = engine.encode_images(vqa.preprocess(load_for(vqa, image))[None])
        tokens = vqa.tokenizer([question], return_tensors="pt")
        context = engine.encode_question(tokens["input_ids"], tokens["attention_mask"], embeds)
        logits, _ = engine.decode(torch.tensor([[vqa.bos_token_id]]), context)
    best, second = logits[0].topk(2).values.tolist()
    return best - second


# -- output --------------------------------------------------------------------------------
def print_report(r: dict) -> None:
    m = r["machine"]
    print(f"\ncpu: {m['cpu']}, {m['cores']} cores, isa: {' '.join(m['isa']) or '-'}; "
          f"torch {m['torch']}, transformers {m['transformers']}, openvino "
          f"{m.get('openvino', '-')}")
    print(f"arch: {r['arch']}; baseline: transformers generate, eager fp32; medians of "
          f"{r['calls']} paired calls ({max(1, r['calls'] // 3)} for the batch); auto picks "
          f"{r['auto']}")
    c = r["checks"]
    print(f"our torch fp32 tokens == generate's: ask {c['ask_tokens_equal']}, caption "
          f"{c['caption_tokens_equal']} ({c['tokens_generated']['ask']} and "
          f"{c['tokens_generated']['caption']} tokens generated)")
    s = r["shapes"]
    print(f"\n{'engine':<14} {'ask (10 tok)':>22} {'caption (20 tok)':>22} "
          f"{'batch of 32, captions/s':>26} {'first s':>8}  shapes BLIPs = torch fp32")
    for name, e in r["engines"].items():
        a, c, b = e["ask"], e["caption"], e["batch"]
        same = s["engines"].get(name)
        agree = (f"captions {same['captions_equal']}/{s['scenes']}, answers "
                 f"{same['answers_equal']}/{s['questions']}" + _margins(same)
                 ) if same else "(reference)"
        print(f"{name:<14} {a['ours_s']:>7.3f}s vs {a['baseline_s']:.3f}s {a['speedup']:>4.2f}x"
              f" {c['ours_s']:>7.3f}s vs {c['baseline_s']:.3f}s {c['speedup']:>4.2f}x"
              f" {b['ours_per_s']:>8.2f} vs {b['baseline_per_s']:.2f} {b['speedup']:>4.2f}x"
              f" {e['first_calls_s']:>8.1f}  {agree}")
    best = max(r["engines"], key=lambda n: min(r["engines"][n]["ask"]["speedup"],
                                               r["engines"][n]["caption"]["speedup"]))
    e = r["engines"][best]
    met = e["ask"]["speedup"] >= TARGET and e["caption"]["speedup"] >= TARGET
    print(f"target >= {TARGET}x on ask and caption: {'MET' if met else 'NOT MET'} by the "
          f"fastest engine, {best} (ask {e['ask']['speedup']:.2f}x, caption "
          f"{e['caption']['speedup']:.2f}x)")


def _margins(agreement: dict) -> str:
    margins = agreement["fp32_margins_where_answers_differ"]
    return f" (fp32 logit margins there: {', '.join(f'{m:.3f}' for m in margins)})" \
        if margins else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=("base", "tiny"), default="base")
    parser.add_argument("--calls", type=int, default=5, help="paired calls per measurement")
    parser.add_argument("--scenes", type=int, default=100, help="held-out scenes for agreement")
    parser.add_argument("--engines", nargs="+", metavar="BACKEND/PRECISION",
                        help="what to measure (default: every engine this machine runs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quiet()
    configs = args.engines or engines()

    def log(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr if args.json else sys.stdout, flush=True)

    with tempfile.TemporaryDirectory(prefix="vislang-bench-blip-") as work:
        # a scratch engine cache: every OpenVINO config pays its real export and compile
        os.environ["VISLANG_CACHE"] = str(Path(work) / "cache")
        log("building the checkpoints")
        folders = write_checkpoints(Path(work), args.arch)
        auto = load_blip(str(folders["caption"])).engine_choice
        result = {"arch": args.arch, "calls": args.calls, "machine": machine_facts(),
                  "auto": f"{auto.backend}/{auto.precision}",
                  **measure(folders, configs, args.calls, log)}
        log("shapes BLIPs: each engine vs torch fp32")
        result["shapes"] = shapes_agreement([c for c in configs if c != "torch/fp32"],
                                            args.scenes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
