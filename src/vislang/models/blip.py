"""``BlipModel``: one BLIP captioning or VQA checkpoint -- preprocessing, tokenizer and graphs.

A BLIP checkpoint runs as three graphs, the split the OpenVINO export of the seed notebook uses:

- the vision encoder: ``pixel_values [N, 3, H, W] -> image_embeds [N, P, D]``;
- the text encoder (VQA only): the question, cross-attending to the image, ``-> [N, T, D]``;
- the text decoder, one step at a time with a KV cache: next-token logits over the vocabulary.

``TorchBlipEngine`` runs the encoders with the checkpoint's own torch modules and the decoder
written out step by step (``blip_decoder.py``: the per-step cost is the weights, not the
bookkeeping); the generation loop in ``vislang.captioning`` only calls ``encode_images``,
``encode_question``, ``decode`` and ``reorder``, so another engine can replace this one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from vislang.errors import InputError, UnsupportedModelError
from vislang.images import ImageSource
from vislang.models.blip_decoder import BlipDecoder, DecoderCache
from vislang.models.hub import Checkpoint, locate
from vislang.models.transform import ImageTransform
from vislang.runtime import EngineChoice, choose, supported_precisions
from vislang.runtime.torch_engine import DTYPES

# what BLIP's exported graphs run in, per backend
EXPORTED_PRECISIONS = {"openvino": ("fp32", "bf16", "int8"), "onnx": ("fp32", "int8")}
CAPTION = "caption"
VQA = "vqa"
# transformers class named in a checkpoint's config.json -> what it can do
ARCHITECTURES: dict[str, str] = {
    "BlipForConditionalGeneration": CAPTION,
    "BlipForQuestionAnswering": VQA,
}


class TorchBlipEngine:
    """The three BLIP graphs on the checkpoint's torch modules, in fp32 (the reference) or with
    the weights cast to bf16 / fp16; logits always come back float32."""

    def __init__(self, weights: Callable[[], torch.nn.Module], precision: str = "fp32",
                 device: str = "cpu"):
        self._weights = weights
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.device = torch.device(device)

    @functools.cached_property
    def hf_model(self) -> torch.nn.Module:
        with torch.inference_mode(False):  # first use may be inside inference_mode
            return self._weights().to(self.device, dtype=self.dtype)

    def prepare(self) -> None:
        _ = self.decoder  # loads the weights, packs the decoder's

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``float32[N, 3, H, W]`` -> patch embeddings ``[N, P, D]``."""
        pixel_values = pixel_values.to(self.device, dtype=self.dtype)
        return self.hf_model.vision_model(pixel_values=pixel_values)[0]

    def encode_question(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        image_embeds: torch.Tensor) -> torch.Tensor:
        """Question tokens cross-attending to the image -> ``[N, T, D]`` (VQA checkpoints)."""
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        return self.hf_model.text_encoder(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
            encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
            return_dict=False)[0]

    @functools.cached_property
    def decoder(self) -> BlipDecoder:
        return BlipDecoder(self.hf_model.text_decoder, self.dtype)

    def decode(self, input_ids: torch.Tensor, context: torch.Tensor,
               past: DecoderCache | None = None) -> tuple[torch.Tensor, DecoderCache]:
        """One decoder step -> (next-token logits ``float32[N, V]``, the new KV cache).

        Without ``past`` it reads the whole ``input_ids`` (the prompt) and ``context`` (what it
        cross-attends to: image or question embeddings); with it, only the new last column.
        """
        logits, cache = self.decoder.step(input_ids.to(self.device), context, past)
        return logits.cpu(), cache

    @staticmethod
    def reorder(past: DecoderCache, index: torch.Tensor) -> DecoderCache:
        """Keep the cache rows ``index`` (in that order): beam search's reshuffle."""
        return past.reorder(index.to(past.keys[0].device))


class BlipModel:
    """A loaded BLIP checkpoint: ``task`` is ``"caption"`` or ``"vqa"``."""

    def __init__(self, checkpoint: Checkpoint, config, task: str,
                 weights: Callable[[], torch.nn.Module],
                 transform: Callable[[], ImageTransform], tokenizer,
                 choice: EngineChoice = EngineChoice("torch", "fp32", "the reference"),
                 device: str = "cpu", calibration: Sequence[ImageSource] | None = None):
        self.checkpoint = checkpoint
        self.config = config
        self.task = task
        self._transform = transform
        self.tokenizer = tokenizer
        self.engine_choice = choice
        self._calibration_images = calibration
        self.engine = self._engine(weights, device)
        text = config.text_config
        self.bos_token_id: int = text.bos_token_id  # [DEC]: starts every decoded sequence
        self.eos_token_id: int = text.sep_token_id  # [SEP]: BLIP's decoder ends with it
        self.pad_token_id: int = text.pad_token_id

    def _engine(self, weights: Callable[[], torch.nn.Module], device: str):
        from vislang.runtime.cache import engine_key

        backend, precision = self.engine_choice.backend, self.engine_choice.precision
        key = engine_key(self.model_key, precision, self._calibration_images)
        if backend == "openvino":
            from vislang.runtime.openvino_blip import OpenVINOBlipEngine

            return OpenVINOBlipEngine(weights, key, self.task, precision,
                                      self._calibration_pixels)
        if backend == "onnx":
            from vislang.runtime.onnx_blip import OnnxBlipEngine

            return OnnxBlipEngine(weights, key, self.task, precision)
        return TorchBlipEngine(weights, precision, device)

    def prepare(self) -> None:
        """Do now what the first caption or answer would: load the weights, or export (if not
        cached) and compile every graph."""
        self.engine.prepare()

    def _calibration_pixels(self, count: int = 64) -> list[np.ndarray]:
        """Images to calibrate int8 on, preprocessed: the user's if given, else shapes scenes."""
        from vislang.datasets.shapes import generate_scenes
        from vislang.images import load_image

        images = self._calibration_images or [s.image for s in
                                              generate_scenes(count, seed=7_000_002)]
        return [self.transform(load_image(i, min_side=self.transform.min_side)).numpy()[None]
                for i in list(images)[:count]]

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
              device: str = "cpu", calibration: Sequence[ImageSource] | None = None
              ) -> BlipModel:
    """Load a BLIP captioning or VQA checkpoint: an alias (``blip-caption``, ``blip-vqa``), a
    hub id, or a save_pretrained directory. Weights load on first use.

    ``backend="auto"`` is OpenVINO on a CPU where it is installed (the graphs are exported and
    compiled on first use, then cached), torch otherwise; ``precision="auto"`` is bf16 on CPUs
    with AMX matrix units and fp16 on CUDA, fp32 elsewhere. ``int8`` (OpenVINO) is the fastest
    and opt-in; ``calibration`` images tune its vision encoder (default: generated scenes).
    """
    choice = _choose(backend, precision, device)
    checkpoint = locate(name_or_path)
    config, task = _load_config(checkpoint)
    return BlipModel(checkpoint, config, task,
                     functools.cache(lambda: _load_hf_model(checkpoint, task)),
                     functools.partial(_load_transform, checkpoint, config),
                     _load_tokenizer(checkpoint), choice, device, calibration)


def is_blip(name_or_path: str) -> bool:
    """Whether a checkpoint is a BLIP one (reads its config.json only)."""
    import json

    config = locate(name_or_path).path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "blip"


def _choose(backend: str, precision: str, device: str) -> EngineChoice:
    """torch (any device), OpenVINO or ONNX Runtime (CPU); auto is OpenVINO on a CPU where it
    is installed, else torch."""
    if backend in EXPORTED_PRECISIONS and device.startswith("cuda"):
        raise InputError(f"BLIP runs on CUDA with the torch backend, not {backend}")
    # What BLIP's graphs can be is checked before what this CPU can run: "not fp16" is the
    # answer on every machine, whatever the CPU's class.
    _check_blip_precision(backend, precision)
    choice = choose(backend, precision, device)  # auto: the same rule as CLIP's
    _check_blip_precision(choice.backend, choice.precision)
    return choice


def _check_blip_precision(backend: str, precision: str) -> None:
    allowed = EXPORTED_PRECISIONS.get(backend)
    if allowed and precision != "auto" and precision not in allowed:
        runs_it = [b for b, graphs in EXPORTED_PRECISIONS.items()
                   if precision in graphs and precision in supported_precisions(b)]
        way = f" (for {precision} use --backend {runs_it[0]})" if runs_it else ""
        raise InputError(f"BLIP on {backend} runs in {', '.join(allowed)}, not {precision}{way}")


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
