"""``ClipModel``: one CLIP or SigLIP checkpoint -- preprocessing, tokenizer and towers.

The methods follow OpenAI's CLIP API (``encode_image``, ``encode_text``, ``model(images,
texts)``); ``embed_images`` / ``embed_texts`` are the bulk path every capability uses: they take
files or strings and return L2-normalised float32 numpy rows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vislang.errors import ImageLoadError, TokenizeError, UnsupportedModelError
from vislang.images import load_image
from vislang.models import naflex, openclip, openclip_hf
from vislang.models.hub import Checkpoint, locate
from vislang.models.tokenizer import clean_text, frame
from vislang.models.transform import ImageTransform
from vislang.parallel import batched, prepared_batches
from vislang.runtime import REFERENCE, EngineSpec, choose_spec, create_engine
from vislang.runtime.cache import engine_key
from vislang.runtime.calibration import clip_inputs
from vislang.runtime.protocols import ClipEngine
from vislang.runtime.towers import trim_padding
from vislang.settings import logger

SUPPORTED_TYPES = ("clip", "siglip", "siglip2")
# Checkpoints whose image processor is NaFlex (variable patch grids): the torch engine only.
NAFLEX_TYPES = ("siglip2",)
ImageInput = str | os.PathLike | bytes | Image.Image


@dataclass(frozen=True)
class Embedded:
    """What ``ClipModel.embed_readable`` made of a list of images."""

    vectors: np.ndarray  # float32[K, D]: one normalised row per readable image
    kept: list[int]  # each row's position in the input
    skipped: list[tuple[str, str]]  # (image, reason) for each that could not be read


@dataclass(frozen=True)
class EmbeddedBatch:
    """One batch from ``ClipModel.embed_batches``: its readable items and their rows."""

    items: list  # the items that made rows, in input order
    vectors: np.ndarray  # float32[len(items), D]: their L2-normalised rows
    failed: list[tuple[object, ImageLoadError]]  # (item, why) for each that could not be read

# Images per model call when the caller names none: a GPU is fed in bigger batches.
CPU_BATCH, CUDA_BATCH = 32, 256
# What a CUDA allocation failure raises (torch.OutOfMemoryError since 2.5; older: torch.cuda's).
OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
log = logger("models")


class ClipModel:
    family = "clip"  # what vislang.runtime tells models apart by

    def __init__(self, checkpoint: Checkpoint, config, weights: Callable[[], torch.nn.Module],
                 transform: Callable[[], ImageTransform], tokenizer,
                 engine: EngineSpec = REFERENCE,
                 calibration: Sequence[ImageInput] | None = None):
        self.checkpoint = checkpoint
        self.config = config
        self.kind: str = config.model_type
        self._transform = transform
        self.tokenizer = tokenizer
        # OpenCLIP's Hugging Face text towers pad to its context length, not the tower's own
        self.context_length: int = (config.context_length if self.kind == openclip_hf.KIND
                                    else config.text_config.max_position_embeddings)
        projected = self.kind in ("clip", openclip_hf.KIND)
        self.embed_dim: int = config.projection_dim if projected else (
            config.text_config.projection_size or config.text_config.hidden_size
        )
        self._weights = weights
        if self.kind in NAFLEX_TYPES:
            engine = _torch_only(checkpoint.name, self.kind, engine)
        self.engine_choice = choose_spec(engine)
        key = engine_key(checkpoint.model_key, self.engine_choice.precision, calibration)
        self.engine: ClipEngine = create_engine(
            weights, config, key, self.engine_choice, engine,
            calibration=functools.partial(clip_inputs, self, calibration))
        self._oom_cap: int | None = None  # the largest image batch that fit, after an OOM

    @property
    def device(self) -> str:
        """What the engine runs on: "cpu", "cuda" or "cuda:N" (a spec's "auto" resolved)."""
        return self.engine_choice.device

    @property
    def default_batch(self) -> int:
        """Images per model call when none is named: 256 on CUDA, 32 on the CPU."""
        return CUDA_BATCH if self.device.startswith("cuda") else CPU_BATCH

    @functools.cached_property
    def transform(self) -> ImageTransform:
        """Image preprocessing, read off the checkpoint's processor on first use (reading it
        imports much of transformers, which a text-only search process never needs)."""
        return self._transform()

    # -- identity --------------------------------------------------------------------------
    @property
    def model_key(self) -> str:
        """Name and revision of the weights; vectors with different keys are never compared."""
        return self.checkpoint.model_key

    @property
    def hf_model(self) -> torch.nn.Module:
        """The underlying transformers model (``CLIPModel`` or ``SiglipModel``), loaded on first
        use: an exported engine runs without it, which makes a search process start fast."""
        return self._weights()

    @property
    def backend(self) -> str:
        """Engine and precision running the towers, e.g. ``"openvino/bf16"``."""
        return f"{self.engine_choice.backend}/{self.engine_choice.precision}"

    @property
    def logit_scale(self) -> float:
        return float(self.hf_model.logit_scale.detach().exp())

    @property
    def logit_bias(self) -> float:
        """SigLIP adds a learned bias to its logits; CLIP has none."""
        bias = getattr(self.hf_model, "logit_bias", None)
        return float(bias.detach()) if bias is not None else 0.0

    @functools.cached_property
    def multilingual(self) -> bool:
        """Whether this model reads non-Latin scripts: the registry's table for the names it
        lists, else whether the tokenizer covers at least three of the sample scripts."""
        from vislang.models.registry import known_multilingual
        from vislang.models.tokenizer import covered_scripts

        known = known_multilingual(self.checkpoint.name)
        return known if known is not None else len(covered_scripts(self.tokenizer)) >= 3

    def reads(self, text: str) -> bool:
        """False when ``text`` has letters of a non-Latin script and this model is
        English-only: it still embeds such text, but as little more than noise."""
        from vislang.models.tokenizer import scripts_in

        return self.multilingual or not scripts_in(text)

    def script_note(self, texts: str | Sequence[str]) -> str | None:
        """A one-line note for stderr when a query is in a script this model does not read,
        else None."""
        from vislang.models.tokenizer import scripts_in

        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.multilingual:
            return None
        scripts = sorted(set().union(*map(scripts_in, texts))) if texts else []
        if not scripts:
            return None
        return (f"note: {self.checkpoint.name} reads English only; text in {', '.join(scripts)} "
                "script will match poorly (a multilingual model: see `vislang models`)")

    def __repr__(self) -> str:
        return (f"ClipModel({self.model_key!r}, kind={self.kind!r}, dim={self.embed_dim}, "
                f"engine={self.backend!r})")

    # -- inputs ----------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> ``float32[3, H, W]``, equal to the checkpoint's own image processor."""
        return self.transform(image)

    def tokenize(self, texts: str | Sequence[str], truncate: bool = False) -> torch.Tensor:
        """Text -> ``long[N, context_length]`` token ids for this checkpoint.

        CLIP checkpoints follow OpenAI's ``clip.tokenize`` (cleaned text, zero padding, an
        error on over-long text unless ``truncate``); SigLIP pads to its fixed length.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        tok = self.tokenizer
        if self.kind == openclip_hf.KIND:  # as OpenCLIP's HFTokenizer cleans text
            texts = [openclip_hf.clean(t) for t in texts]
        if self.kind != "clip":  # SigLIP, SigLIP 2 and OpenCLIP's HF towers pad to a fixed length
            return self._tokenize_siglip(texts, truncate)
        ids = tok([clean_text(t) for t in texts], add_special_tokens=False)["input_ids"]
        return frame(ids, texts, sot=tok.bos_token_id, eot=tok.eos_token_id,
                     context_length=self.context_length, truncate=truncate)

    def _tokenize_siglip(self, texts: list[str], truncate: bool) -> torch.Tensor:
        # SigLIP pools the last position, so it was trained on text padded to a fixed length.
        out = self.tokenizer(texts, padding="max_length", max_length=self.context_length,
                             truncation=True, return_overflowing_tokens=False)["input_ids"]
        if not truncate:
            full = self.tokenizer(texts)["input_ids"]
            for text, ids in zip(texts, full):
                if len(ids) > self.context_length:
                    raise TokenizeError(
                        f"text is too long for context length {self.context_length} "
                        f"({len(ids)} tokens): {text[:60]!r}; shorten it or pass truncate=True")
        return torch.tensor(out, dtype=torch.long)

    # -- the CLIP API ----------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``float32[N, 3, H, W]`` -> projected image features ``[N, D]`` (not normalised)."""
        return self.engine.encode_images(pixels)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids from ``tokenize`` -> projected text features ``[N, D]`` (not normalised).

        No attention mask is needed: CLIP's text tower is causal and reads the end token, so
        the padding after it changes nothing; SigLIP was trained without a mask.
        """
        return self.engine.encode_texts(self.tower_tokens(tokens))

    def tower_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids as the text tower runs them: padding columns after the longest text cut
        where they change nothing (CLIP reads the end token; OpenCLIP's HF towers mask
        padding), kept for SigLIP, which pools the last position."""
        if self.kind == "clip":
            return trim_padding(tokens)
        if self.kind == openclip_hf.KIND:
            return trim_padding(tokens, pad=self.tokenizer.pad_token_id)
        return tokens

    def __call__(self, images: torch.Tensor, texts: torch.Tensor):
        """``(logits_per_image [N, M], logits_per_text [M, N])``: scaled cosine similarity."""
        image_features = _normalize(self.encode_image(images))
        text_features = _normalize(self.encode_text(texts))
        logits_per_image = self.logit_scale * image_features @ text_features.T + self.logit_bias
        return logits_per_image, logits_per_image.T

    # -- bulk embedding --------------------------------------------------------------------
    def embed_images(
        self,
        images: Iterable[ImageInput],
        batch_size: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Files, bytes or PIL images -> L2-normalised ``float32[N, D]``.

        Decoding and preprocessing run in worker threads, overlapped with inference. A file
        that cannot be read raises ``ImageLoadError`` naming it. ``batch_size`` defaults to
        ``default_batch`` (256 on CUDA, 32 on the CPU); on CUDA, a batch that runs out of
        memory is halved and retried.
        """
        chunks = [np.zeros((0, self.embed_dim), np.float32)]
        for batch in self.embed_batches(images, batch_size, progress=progress):
            if batch.failed:
                raise batch.failed[0][1]
            chunks.append(batch.vectors)
        return np.concatenate(chunks)

    def embed_readable(self, images: Iterable[ImageInput], batch_size: int | None = None,
                       progress: bool = False) -> Embedded:
        """``embed_images`` for a collection that may hold unreadable files: each is skipped,
        with its reason, instead of stopping the whole run."""
        images = list(images)
        chunks = [np.zeros((0, self.embed_dim), np.float32)]
        kept: list[int] = []
        skipped: list[tuple[str, str]] = []
        for batch in self.embed_batches(range(len(images)), batch_size,
                                        source=images.__getitem__, progress=progress):
            chunks.append(batch.vectors)
            kept += batch.items
            skipped += [(error.path, error.reason) for _, error in batch.failed]
        return Embedded(np.concatenate(chunks), kept, skipped)

    def embed_batches(self, items: Iterable, batch_size: int | None = None,
                      source: Callable[[object], ImageInput] | None = None,
                      progress: bool = False) -> Iterator[EmbeddedBatch]:
        """Embed ``items`` a batch at a time, yielding each batch's readable items, their
        rows and the failures, so a caller can keep (store, commit) one batch before the next
        runs. An unreadable image is a failure, never an exception.

        ``source(item)`` is the image an item stands for (default: the item itself), so items
        can carry what the caller needs, e.g. ``(content hash, path)`` with ``source=lambda
        item: item[1]``. Decoding runs in worker threads, overlapped with inference.
        """
        image_of = source or (lambda item: item)
        for batch in prepared_batches(items, lambda item: self._load_and_preprocess(
                image_of(item)), batch_size or self.default_batch, label="embedding",
                progress=progress):
            yield EmbeddedBatch(batch.items, self.embed_pixels(batch.values), batch.failed)

    def embed_pixels(self, pixels: list[torch.Tensor]) -> np.ndarray:
        """Preprocessed images (``preprocess``) -> normalised ``float32`` rows (none ->
        ``[0, D]``): the model math of ``embed_batches``, for callers that decode apart (a Ray
        task feeding an encoder actor)."""
        if not pixels:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.concatenate(self._fitting_chunks(pixels))

    def _fitting_chunks(self, pixels: list[torch.Tensor]) -> list[np.ndarray]:
        """``pixels`` embedded in chunks the device has memory for: a chunk that raises CUDA's
        out-of-memory error is halved and retried (down to one image, which re-raises), and
        the halved size caps this model's later batches."""
        chunks, start = [], 0
        while start < len(pixels):
            size = min(len(pixels) - start, self._oom_cap or len(pixels))
            try:
                # Entered per chunk, never held across embed_batches' yield: inference mode
                # is per-thread state and would leak into the caller's code between batches.
                with torch.inference_mode():
                    features = self.encode_image(torch.stack(pixels[start:start + size]))
                    chunks.append(_normalize(features).float().cpu().numpy())
            except OOM:
                if size == 1:
                    raise
                self._oom_cap = size // 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                log.warning("out of memory embedding %d images on %s: retrying %d at a time",
                            size, self.device, self._oom_cap)
                continue
            start += size
        return chunks

    def prepare(self) -> None:
        """Run the image tower once on a blank image. Weights load, and an engine exports or
        compiles, on first use: this makes that happen now, so a caller timing loading apart
        from embedding (``vislang index``) counts it as loading."""
        self.embed_pixels([self.preprocess(Image.new("RGB", (64, 64)))])

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Strings -> L2-normalised ``float32[N, D]``. Over-long text is truncated."""
        chunks = [np.zeros((0, self.embed_dim), np.float32)]
        with torch.inference_mode():
            for batch in batched(texts, batch_size):
                tokens = self.tokenize(batch, truncate=True)
                chunks.append(_normalize(self.encode_text(tokens)).cpu().numpy())
        return np.concatenate(chunks)

    def _load_and_preprocess(self, source: ImageInput) -> torch.Tensor:
        return self.transform(load_image(source, min_side=self.transform.min_side))


def load(name_or_path: str, device: str | None = None, backend: str = "torch",
         precision: str | None = None, mode: str = "throughput",
         calibration: Sequence[ImageInput] | None = None, *,
         engine: EngineSpec | None = None) -> ClipModel:
    """Load a CLIP or SigLIP checkpoint: an alias (``ViT-B/32``), a hub id, or a directory.

    ``engine`` (else ``backend``, ``precision``, ``mode`` and ``device``) says what runs it:
    ``"auto"`` for the fastest this machine has; the default, torch fp32 (``REFERENCE``), is
    the exact reference and the one that carries gradients. ``mode`` is ``"throughput"`` (bulk
    work) or ``"latency"`` (one query at a time); ``calibration`` images tune int8
    quantisation (default: generated shapes scenes).

    As OpenAI's ``clip.load``: ``device`` defaults to ``"cuda"`` when torch sees a GPU, else
    ``"cpu"``; ``precision`` defaults to fp16 on CUDA and fp32 on the CPU.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision is None:
        precision = "fp16" if str(device).startswith("cuda") else "fp32"
    spec = engine or EngineSpec(backend, precision, mode, device)
    checkpoint = locate(name_or_path)
    config = _load_config(checkpoint)
    return ClipModel(
        checkpoint, config, functools.cache(lambda: _load_hf_model(checkpoint)),
        functools.partial(_load_transform, checkpoint, config),
        _load_tokenizer(checkpoint, config), spec, calibration,
    )


def _load_config(checkpoint: Checkpoint):
    from transformers import AutoConfig

    if openclip.is_openclip(checkpoint.path):  # OpenCLIP's own layout, mapped onto CLIPModel
        return openclip.model_config(checkpoint.name, checkpoint.path)
    config = AutoConfig.from_pretrained(checkpoint.path)
    if config.model_type not in SUPPORTED_TYPES:
        raise UnsupportedModelError(
            f"{checkpoint.name} is a {config.model_type!r} checkpoint; vislang.load takes "
            f"{' or '.join(SUPPORTED_TYPES)} models (for BLIP use vislang.caption / vislang.ask)"
        )
    return config


def _load_hf_model(checkpoint: Checkpoint):
    from transformers import AutoModel

    # float32 whatever the file holds: lower precisions are chosen per engine, not per file.
    # Loading is lazy, so it may first happen inside an inference_mode() block (an engine
    # exporting on its first call); weights made there could never carry gradients.
    with torch.inference_mode(False):
        if openclip.is_openclip(checkpoint.path):
            return openclip.load_model(checkpoint.name, checkpoint.path,
                                       openclip.model_config(checkpoint.name, checkpoint.path))
        if _model_type(checkpoint) in NAFLEX_TYPES:  # takes packed NaFlex batches too
            return naflex.packed_siglip2_class().from_pretrained(checkpoint.path,
                                                                 dtype=torch.float32)
        return AutoModel.from_pretrained(checkpoint.path, dtype=torch.float32)


def _model_type(checkpoint: Checkpoint) -> str | None:
    import json

    config = checkpoint.path / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def _torch_only(name: str, kind: str, engine: EngineSpec) -> EngineSpec:
    """NaFlex images are variable patch grids, which vislang's exported graphs (one fixed
    picture size) cannot take: such a model runs on torch; "auto" picks it."""
    import dataclasses

    if engine.backend == "auto":
        return dataclasses.replace(engine, backend="torch")
    if engine.backend != "torch":
        raise UnsupportedModelError(
            f"{name} is a {kind} model: its NaFlex image inputs (variable patch grids) run on "
            f"the torch backend only, not {engine.backend}; use --backend torch (or auto)")
    return engine


def _load_transform(checkpoint: Checkpoint, config) -> ImageTransform:
    from transformers import AutoImageProcessor, CLIPImageProcessorPil

    if openclip.is_openclip(checkpoint.path):
        return openclip.image_transform(checkpoint.path, config)
    if config.model_type in NAFLEX_TYPES:
        return naflex.NaFlexTransform.from_processor(
            AutoImageProcessor.from_pretrained(checkpoint.path, backend="pil"))
    # backend="pil": the same numbers as the torchvision backend, which we do not depend on.
    if (checkpoint.path / "preprocessor_config.json").is_file():
        processor = AutoImageProcessor.from_pretrained(checkpoint.path, backend="pil")
    else:  # a bare save_pretrained of the model: OpenAI's preprocessing at the tower's size
        side = config.vision_config.image_size
        processor = CLIPImageProcessorPil(size={"shortest_edge": side},
                                          crop_size={"height": side, "width": side})
    return ImageTransform.from_processor(processor)


def _load_tokenizer(checkpoint: Checkpoint, config):
    from transformers import AutoTokenizer

    from vislang.models.tokenizer import clip_tokenizer

    if openclip.is_openclip(checkpoint.path):  # OpenAI's vocabulary, or the HF tower's own
        return openclip.tokenizer(config)
    names = ("tokenizer.json", "vocab.json", "spiece.model")
    if any((checkpoint.path / f).is_file() for f in names):
        return AutoTokenizer.from_pretrained(checkpoint.path)
    if config.model_type == "clip" and config.text_config.vocab_size == len(clip_tokenizer()):
        return clip_tokenizer()  # OpenAI's vocabulary, which vislang ships
    raise UnsupportedModelError(
        f"{checkpoint.name} has no tokenizer files (tokenizer.json, vocab.json or spiece.model) "
        "and its vocabulary is not OpenAI CLIP's; save the tokenizer beside the model")


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)
