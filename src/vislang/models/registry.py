"""Model names people type, and where each one lives on disk. Plain data plus lookups; the
hub (``vislang.models.hub``) builds on this, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

OPENCLIP_PREFIX, HF_HUB_PREFIX = "open_clip:", "hf-hub:"  # open_clip's own ways to name models

# OpenAI's names for their CLIP checkpoints -> the same weights on the Hugging Face hub.
ALIASES: dict[str, str] = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
    # Google's SigLIP 2 (Gemma's multilingual vocabulary; NaFlex images, torch engine only)
    "siglip2-base": "google/siglip2-base-patch16-naflex",
    "siglip2-so400m": "google/siglip2-so400m-patch16-naflex",
    # BLIP, for vislang.caption / vislang.ask (not vislang.load)
    "blip-caption": "Salesforce/blip-image-captioning-base",
    "blip-vqa": "Salesforce/blip-vqa-base",
}

# OpenCLIP's names for some well-known pretrained weights ("open_clip:ARCH/TAG", as open_clip's
# `create_model_and_transforms(ARCH, pretrained=TAG)` takes them) -> their hub repo.
OPENCLIP_PRETRAINED: dict[str, str] = {
    "ViT-B-32/laion2b_s34b_b79k": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "ViT-B-32/datacomp_xl_s13b_b90k": "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
    "ViT-B-16/laion2b_s34b_b88k": "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
    "ViT-B-16/datacomp_xl_s13b_b90k": "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K",
    "ViT-L-14/laion2b_s32b_b82k": "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    "ViT-L-14/datacomp_xl_s13b_b90k": "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K",
    "ViT-H-14/laion2b_s32b_b79k": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "ViT-g-14/laion2b_s34b_b88k": "laion/CLIP-ViT-g-14-laion2B-s34B-b88K",
    "ViT-bigG-14/laion2b_s39b_b160k": "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
    "ViT-L-14-quickgelu/dfn2b": "apple/DFN2B-CLIP-ViT-L-14",
    "ViT-H-14-quickgelu/dfn5b": "apple/DFN5B-CLIP-ViT-H-14",
    # multilingual: XLM-RoBERTa and NLLB text towers (vislang.models.openclip_hf)
    "xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k":
        "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k",
    "xlm-roberta-large-ViT-H-14/frozen_laion5b_s13b_b90k":
        "laion/CLIP-ViT-H-14-frozen-xlm-roberta-large-laion5B-s13B-b90k",
    "nllb-clip-base/v1": "visheratin/nllb-clip-base-oc",
    "nllb-clip-large/v1": "visheratin/nllb-clip-large-oc",
}

# Models trained by this project and shipped inside the package (folder under assets/models).
SHIPPED: dict[str, str] = {
    # A tiny CLIP trained on the generated shapes world (recipes/shapes-clip.sh): it knows
    # circles, squares and triangles in red, green, blue and yellow, and nothing else.
    "shapes-clip": "shapes-clip",
    # A tiny BLIP trained on the same world (recipes/shapes-blip.sh), for vislang.caption and
    # vislang.ask: one vision tower trained with two heads, saved as two checkpoints.
    "shapes-blip-caption": "shapes-blip-caption",
    "shapes-blip-vqa": "shapes-blip-vqa",
}


# The names above that are BLIP models, loaded by vislang.load_blip, not vislang.load.
BLIP_NAMES = ("blip-caption", "blip-vqa", "shapes-blip-caption", "shapes-blip-vqa")

# Checkpoints whose tokenizer reads many scripts (hub ids; a name above counts by its repo).
# Every other listed name is English-only: OpenAI's BPE vocabulary (OpenAI and OpenCLIP
# weights, shapes-clip) or BERT's (BLIP). Unlisted checkpoints are judged by their tokenizer
# (``ClipModel.multilingual``).
MULTILINGUAL: frozenset[str] = frozenset({
    "google/siglip2-base-patch16-naflex", "google/siglip2-so400m-patch16-naflex",
    "google/siglip2-base-patch16-224", "google/siglip2-base-patch16-256",
    "google/siglip2-base-patch16-384", "google/siglip2-base-patch16-512",
    "google/siglip2-large-patch16-256", "google/siglip2-so400m-patch14-224",
    "google/siglip2-so400m-patch14-384", "google/siglip2-so400m-patch16-384",
    "google/siglip2-giant-opt-patch16-256", "google/siglip-base-patch16-256-multilingual",
    "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k",
    "laion/CLIP-ViT-H-14-frozen-xlm-roberta-large-laion5B-s13B-b90k",
    "visheratin/nllb-clip-base-oc", "visheratin/nllb-clip-large-oc",
})


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what to pass to vislang.load (vislang.load_blip for family "blip")
    source: str  # hub id, or "vislang package" for shipped models
    on_disk: bool  # loadable right now without a network
    family: str = "clip"  # "clip" (CLIP, SigLIP, SigLIP 2: vislang.load) or "blip"
    multilingual: bool = False  # its tokenizer reads non-Latin scripts


def known_multilingual(name: str) -> bool | None:
    """True/False for a name or hub id this registry knows, None for any other."""
    repo = ALIASES.get(name) or OPENCLIP_PRETRAINED.get(name.removeprefix(OPENCLIP_PREFIX))
    repo = repo or name.removeprefix(HF_HUB_PREFIX)
    if repo in MULTILINGUAL:
        return True
    known = set(ALIASES.values()) | set(OPENCLIP_PRETRAINED.values())
    return False if name in SHIPPED or repo in known else None


def shipped_path(name: str) -> Path:
    return Path(str(resources.files("vislang") / "assets" / "models" / SHIPPED[name]))


def cached_snapshot(repo_id: str) -> Path | None:
    """The newest snapshot of ``repo_id`` in the hub cache with loadable weights, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path if has_weights(path) else None


def has_weights(path: Path) -> bool:
    # *.safetensors / *.bin cover OpenCLIP's open_clip_model.safetensors and
    # open_clip_pytorch_model.bin as well as transformers' model.safetensors.
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def available_models() -> list[str]:
    """The model names ``vislang.load`` accepts, as OpenAI's ``clip.available_models()``:
    shipped CLIP models, OpenAI's and Google's aliases, then the ``open_clip:ARCH/TAG`` names.
    BLIP models are listed by ``available_blip_models()``; hub ids and folders work too."""
    shipped = [n for n in SHIPPED if n not in BLIP_NAMES]
    aliases = [n for n in ALIASES if n not in BLIP_NAMES]
    return shipped + aliases + [OPENCLIP_PREFIX + n for n in OPENCLIP_PRETRAINED]


def available_blip_models() -> list[str]:
    """The model names ``vislang.load_blip`` (``caption``, ``ask``) accepts."""
    return [n for n in (*SHIPPED, *ALIASES) if n in BLIP_NAMES]


def model_records() -> list[ModelInfo]:
    """Every listed name, CLIP family then BLIP, with its source, whether it is on disk and
    whether it reads many scripts (what ``vislang models --json`` prints)."""
    def record(name: str) -> ModelInfo:
        family = "blip" if name in BLIP_NAMES else "clip"
        multilingual = bool(known_multilingual(name))
        if name in SHIPPED:
            return ModelInfo(name, "vislang package", shipped_path(name).is_dir(), family,
                             multilingual)
        repo = ALIASES.get(name) or OPENCLIP_PRETRAINED[name.removeprefix(OPENCLIP_PREFIX)]
        return ModelInfo(name, repo, cached_snapshot(repo) is not None, family, multilingual)

    return [record(n) for n in (*available_models(), *available_blip_models())]
