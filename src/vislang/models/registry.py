"""Model names people type, and where each one lives on disk. Plain data plus lookups; the
hub (``vislang.models.hub``) builds on this, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# OpenAI's names for their CLIP checkpoints -> the same weights on the Hugging Face hub.
ALIASES: dict[str, str] = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
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


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what to pass to vislang.load
    source: str  # hub id, or "vislang package" for shipped models
    on_disk: bool  # loadable right now without a network


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


def available_models() -> list[ModelInfo]:
    """The names ``vislang.load`` knows, shipped models first, and whether each is on disk."""
    shipped = [ModelInfo(n, "vislang package", shipped_path(n).is_dir()) for n in SHIPPED]
    hub = [ModelInfo(n, repo, cached_snapshot(repo) is not None) for n, repo in ALIASES.items()]
    return shipped + hub
