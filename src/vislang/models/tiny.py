"""Small CLIP and SigLIP architectures, written as checkpoints in save_pretrained layout.

Tests, the offline demo and ``vislang train --config NAME`` start from these. They load through
the same ``vislang.load(path)`` as a real checkpoint. The CLIP and SigLIP ones use OpenAI's
real BPE vocabulary, so ``vislang.tokenize`` output works with them as with any CLIP; the SigLIP 2
and multilingual ones carry a small tokenizer trained on ``MULTILINGUAL_SENTENCES``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vislang.errors import InputError
from vislang.models.tokenizer import clip_tokenizer

CLIP_VOCAB_SIZE = 49408

# name -> (text tower, vision tower, projection dim). Plain data, like a config file.
CLIP_CONFIGS: dict[str, dict] = {
    # For tests: a few hundred kilobytes of layers (the 49408-token embedding dominates).
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16,
    ),
    # The shipped shapes-clip: 64-pixel images as an 8x8 grid of patches.
    "small": dict(
        text=dict(hidden_size=96, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
        vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, image_size=64, patch_size=8),
        projection_dim=64,
    ),
}


def tiny_clip(path: Path, *, config: str = "tiny", image_size: int | None = None,
              seed: int = 0) -> Path:
    """Write a randomly initialised CLIP of the named size, with tokenizer and processor."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    if config not in CLIP_CONFIGS:
        raise InputError(f"unknown model config {config!r}; choose one of: {', '.join(CLIP_CONFIGS)}")
    spec = CLIP_CONFIGS[config]
    vision = {**spec["vision"], **({"image_size": image_size} if image_size else {})}
    torch.manual_seed(seed)
    hf_config = CLIPConfig(
        text_config=dict(vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=77,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=1, **spec["text"]),
        vision_config=vision,
        projection_dim=spec["projection_dim"],
    )
    CLIPModel(hf_config).save_pretrained(path)
    clip_tokenizer().save_pretrained(path)
    side = vision["image_size"]
    CLIPImageProcessorPil(size={"shortest_edge": side},
                          crop_size={"height": side, "width": side}).save_pretrained(path)
    return Path(path)


def tiny_siglip(path: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer SigLIP: fixed-size resize, no crop, [-1, 1] pixels, padded fixed-length text."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=dict(vocab_size=CLIP_VOCAB_SIZE, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=image_size, patch_size=8),
    )
    SiglipModel(config).save_pretrained(path)
    clip_tokenizer().save_pretrained(path)
    SiglipImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return Path(path)


# A dog, a cat and a red car, said in several scripts: the text a tiny multilingual tokenizer
# learns its vocabulary from (Latin, Cyrillic, Greek, Han and kana, Hangul, Arabic).
MULTILINGUAL_SENTENCES = [
    "a photo of a dog on the beach", "a photo of a cat", "a red car in the street",
    "une photo d'un chien sur la plage", "ein Foto einer Katze", "un coche rojo en la calle",
    "фотография собаки на пляже", "фотография кошки", "красная машина на улице",
    "φωτογραφία ενός σκύλου στην παραλία", "φωτογραφία μιας γάτας", "ένα κόκκινο αυτοκίνητο",
    "海滩上的狗的照片", "一只猫的照片", "街上的红色汽车",
    "浜辺の犬の写真", "猫の写真", "通りの赤い車",
    "해변에 있는 개 사진", "고양이 사진", "거리의 빨간 차",
    "صورة كلب على الشاطئ", "صورة قطة", "سيارة حمراء في الشارع",
]


def small_tokenizer(sentences: list[str], vocab_size: int = 400, xlmr: bool = False):
    """A BPE tokenizer trained (``tokenizers``, in memory) on ``sentences``: lower-cased NFKC,
    ``<unk>`` for characters it never saw, ``</s>`` after each text, ``<pad>`` to pad.
    ``xlmr``: XLM-RoBERTa's layout instead (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
    each text framed ``<s> ... </s>``), for OpenCLIP's XLM-R text towers."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"] if xlmr else ["<pad>", "<unk>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(sentences, BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                  show_progress=False))
    single = "<s> $A </s>" if xlmr else "$A </s>"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, tok.token_to_id(t)) for t in specials
                                       if t in single.split()])
    # Padded on the right, as SigLIP's text was in training (its tower reads the last position).
    extra = dict(bos_token="<s>") if xlmr else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="</s>", padding_side="right", **extra)


def _text_config(tokenizer, max_len: int = 16) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=max_len,
                bos_token_id=None, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)


def tiny_siglip2(path: Path, *, patch_size: int = 8, max_num_patches: int = 16,
                 seed: int = 0) -> Path:
    """A 2-layer SigLIP 2: NaFlex images (aspect kept, at most ``max_num_patches`` patches) and
    its own small multilingual tokenizer (SigLIP 2's real one is Gemma's), padded text."""
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model

    torch.manual_seed(seed)
    tokenizer = small_tokenizer(MULTILINGUAL_SENTENCES)
    config = Siglip2Config(
        text_config=_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, patch_size=patch_size,
                           num_patches=max_num_patches),
    )
    Siglip2Model(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    Siglip2ImageProcessorPil(patch_size=patch_size,
                             max_num_patches=max_num_patches).save_pretrained(path)
    return Path(path)


def tiny_multilingual(path: Path, *, image_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer SigLIP whose tokenizer, trained on ``MULTILINGUAL_SENTENCES``, reads Latin,
    Cyrillic, Greek, Han, kana, Hangul and Arabic text without unknown tokens."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    torch.manual_seed(seed)
    tokenizer = small_tokenizer(MULTILINGUAL_SENTENCES)
    config = SiglipConfig(
        text_config=_text_config(tokenizer),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=image_size, patch_size=8),
    )
    SiglipModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    SiglipImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return Path(path)
