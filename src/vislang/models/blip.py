"""``BlipModel``: one BLIP captioning or VQA checkpoint -- preprocessing, tokenizer and graphs.

A BLIP checkpoint runs as three graphs, the split the OpenVINO export of the seed notebook uses:

- the vision encoder: ``pixel_values [N, 3, H, W] -> image_embeds [N, P, D]``;
- the text encoder (VQA only): the question, cross-attending to the image, ``-> [N, T, D]``;
- the text decoder, one step at a time with a KV cache: next-token logits over the vocabulary.

Which engine runs the graphs (torch, OpenVINO, ONNX Runtime) is ``vislang.runtime``'s answer
(``choose_blip``, ``create_blip_engine``); the generation loop in ``vislang.captioning`` only
calls the engine's ``encode_images``, ``encode_question``, ``decode`` and ``reorder``
(``vislang.runtime.protocols.BlipEngine``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from vislang.errors import UnsupportedModelError
from vislang.images import ImageSource
from vislang.models.hub import Checkpoint, locate
from vislang.models.transform import ImageTransform
from vislang.runtime import REFERENCE, EngineSpec, choose_blip, create_blip_engine
from vislang.runtime.calibration import blip_pixels
from vislang.runtime.cache import engine_key
from vislang.runtime.protocols import BlipEngine

CAPTION = "caption"
VQA = "vqa"
# transformers class named in a checkpoint's config.json -> what it can do
ARCHITECTURES: dict[str, str] = {
    "BlipForConditionalGeneration": CAPTION,
    "BlipForQuestionAnswering": VQA,
}


class BlipModel:
    """A loaded BLIP checkpoint: ``task`` is ``"caption"`` or ``"vqa"``."""

    family = "blip"  # what vislang.runtime tells models apart by

    def __init__(self, checkpoint: Checkpoint, config, task: str,
                 weights: Callable[[], torch.nn.Module],
                 transform: Callable[[], ImageTransform], tokenizer,
                 engine: EngineSpec = REFERENCE,
                 calibration: Sequence[ImageSource] | None = None):
        self.checkpoint = checkpoint
        self.config = config
        self.task = task
        self._transform = transform
        self.tokenizer = tokenizer
        self.engine_choice = choose_blip(engine)
        key = engine_key(self.model_key, self.engine_choice.precision, calibration)
        self.engine: BlipEngine = create_blip_engine(
            weights, key, task, self.engine_choice, engine,
            calibration=functools.partial(blip_pixels, self, calibration))
        text = config.text_config
        self.bos_token_id: int = text.bos_token_id  # [DEC]: starts every decoded sequence
        self.eos_token_id: int = text.sep_token_id  # [SEP]: BLIP's decoder ends with it
        self.pad_token_id: int = text.pad_token_id

    def prepare(self) -> None:
        """Do now what the first caption or answer would: load the weights, or export (if not
        cached) and compile every graph."""
        self.engine.prepare()

    @functools.cached_property
    def transform(self) -> ImageTransform:
        return self._transform()

    @property
    def model_key(self) -> str:
        return self.checkpoint.model_key

    @functools.cached_property
    def text_window(self) -> int:
        """The most token positions the text encoder and decoder take: the size of their
        position table, or the tokenizer's limit where that is smaller."""
        window = self.config.text_config.max_position_embeddings
        return min(window, getattr(self.tokenizer, "model_max_length", None) or window)

    @functools.cached_property
    def generation_config(self):
        """The settings ``text_decoder.generate`` uses (beam search's length penalty and early
        stop): transformers builds them from the text config, so no weights need loading."""
        from transformers import GenerationConfig

        return GenerationConfig.from_model_config(self.config.text_config)

    @property
    def hf_model(self) -> torch.nn.Module:
        """The transformers model the engine runs (in its precision), loaded on first use."""
        return self.engine.hf_model

    def __repr__(self) -> str:
        return (f"BlipModel({self.model_key!r}, task={self.task!r}, "
                f"engine={self.engine_choice.backend}/{self.engine_choice.precision})")

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> ``float32[3, H, W]``, equal to the checkpoint's BlipImageProcessor."""
        return self.transform(image)

    def require(self, task: str) -> None:
        if task != self.task:
            want = "a captioning (BlipForConditionalGeneration)" if task == CAPTION else \
                "a question-answering (BlipForQuestionAnswering)"
            have = "captioning" if self.task == CAPTION else "question-answering"
            hint = "vislang ask / vislang.ask" if self.task == VQA else "vislang caption / vislang.caption"
            raise UnsupportedModelError(
                f"{self.checkpoint.name} is a BLIP {have} checkpoint, this needs {want} "
                f"checkpoint; use it with {hint}, or pass another --model")


def load_blip(name_or_path: str, backend: str = "auto", precision: str = "auto",
              device: str = "cpu", calibration: Sequence[ImageSource] | None = None, *,
              engine: EngineSpec | None = None) -> BlipModel:
    """Load a BLIP captioning or VQA checkpoint: an alias (``blip-caption``, ``blip-vqa``), a
    hub id, or a save_pretrained directory. Weights load on first use.

    ``engine`` (else ``backend``, ``precision`` and ``device``) says what runs it. "auto" is
    OpenVINO on a CPU where it is installed (the graphs are exported and compiled on first use,
    then cached), torch otherwise; ``precision="auto"`` is bf16 on CPUs with AMX matrix units
    and fp16 on CUDA, fp32 elsewhere. ``int8`` (OpenVINO) is the fastest and opt-in;
    ``calibration`` images tune its vision encoder (default: generated scenes).
    """
    spec = engine or EngineSpec(backend, precision, device=device)
    choose_blip(spec)  # refuses what BLIP cannot run here before any download
    checkpoint = locate(name_or_path)
    config, task = _load_config(checkpoint)
    return BlipModel(checkpoint, config, task,
                     functools.cache(lambda: _load_hf_model(checkpoint, task)),
                     functools.partial(_load_transform, checkpoint, config),
                     _load_tokenizer(checkpoint), spec, calibration)


def is_blip(name_or_path: str) -> bool:
    """Whether a checkpoint is a BLIP one (reads its config.json only)."""
    import json

    config = locate(name_or_path).path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "blip"


def _load_config(checkpoint: Checkpoint):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint.path)
    if config.model_type != "blip":
        raise UnsupportedModelError(
            f"{checkpoint.name} is a {config.model_type!r} checkpoint; captions and answers need a "
            "BLIP checkpoint (e.g. Salesforce/blip-image-captioning-base or "
            "Salesforce/blip-vqa-base)")
    tasks = {ARCHITECTURES[a] for a in (config.architectures or []) if a in ARCHITECTURES}
    if len(tasks) != 1:
        raise UnsupportedModelError(
            f"{checkpoint.name} is a BLIP checkpoint of architecture "
            f"{config.architectures or 'unknown'}; vislang runs "
            f"{' and '.join(ARCHITECTURES)} (save the model with that class)")
    return config, tasks.pop()


def _load_hf_model(checkpoint: Checkpoint, task: str) -> torch.nn.Module:
    from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering

    cls = BlipForConditionalGeneration if task == CAPTION else BlipForQuestionAnswering
    with torch.inference_mode(False):
        return cls.from_pretrained(checkpoint.path, dtype=torch.float32).eval()


def _load_transform(checkpoint: Checkpoint, config) -> ImageTransform:
    from transformers import AutoImageProcessor, BlipImageProcessorPil

    if any((checkpoint.path / f).is_file()
           for f in ("preprocessor_config.json", "processor_config.json")):
        processor = AutoImageProcessor.from_pretrained(checkpoint.path, backend="pil")
    else:  # a bare save_pretrained of the model: BLIP's preprocessing at the tower's size
        side = config.vision_config.image_size
        processor = BlipImageProcessorPil(size={"height": side, "width": side})
    return ImageTransform.from_processor(processor)


def _load_tokenizer(checkpoint: Checkpoint):
    from transformers import AutoTokenizer

    if any((checkpoint.path / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        return AutoTokenizer.from_pretrained(checkpoint.path)
    raise UnsupportedModelError(
        f"{checkpoint.name} has no tokenizer files (tokenizer.json or vocab.txt); save the "
        "BLIP processor or tokenizer beside the model")
