"""vislang: vision-language models made practical.

    >>> import vislang
    >>> model = vislang.load("ViT-B/32")
    >>> vislang.zeroshot.Classifier(model, ["cat", "dog"]).predict(["pet.jpg"], top_k=1)
    [[Prediction(label='cat', prob=0.97)]]

Names are imported on first use, so ``import vislang`` (and the CLI) start fast; torch and
transformers load only when a model does.
"""

from importlib import import_module

from vislang.errors import (
    ImageLoadError,
    InputError,
    ModelNotFoundError,
    TokenizeError,
    UnsupportedModelError,
    VislangError,
)

__version__ = "0.1.0"

_LAZY = {
    "ClipModel": "vislang.models.clip",
    "load": "vislang.models.clip",
    "ModelInfo": "vislang.models.registry",
    "available_models": "vislang.models.registry",
    "available_blip_models": "vislang.models.registry",
    "model_records": "vislang.models.registry",
    "tokenize": "vislang.models.tokenizer",
    "load_image": "vislang.images",
    "zeroshot": "vislang.zeroshot",
    "probe": "vislang.probe",
    "Index": "vislang.search.index",
    "search": "vislang.search",
    "saliency": "vislang.explain",
    "SaliencyMap": "vislang.explain",
    "caption": "vislang.captioning",
    "ask": "vislang.captioning",
    "load_blip": "vislang.models.blip",
    "ocr": "vislang.textread",
    "textread": "vislang.textread",
}

__all__ = [
    "ImageLoadError",
    "InputError",
    "ModelNotFoundError",
    "TokenizeError",
    "UnsupportedModelError",
    "VislangError",
    *_LAZY,
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'vislang' has no attribute {name!r}")
    module = import_module(_LAZY[name])
    value = module if module.__name__ == f"vislang.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
