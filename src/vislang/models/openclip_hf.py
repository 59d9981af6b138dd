"""OpenCLIP checkpoints with a Hugging Face text tower: the multilingual XLM-RoBERTa CLIPs
(``xlm-roberta-base-ViT-B-32``, ``xlm-roberta-large-ViT-H-14``) and NLLB-CLIP.

OpenCLIP builds such a text tower (``text_cfg.hf_model_name``) as ``HFTextEncoder``: a
transformers encoder, pooled over the tokens that are not padding (``hf_pooler_type``), then
projected (``hf_proj_type``: a two-layer MLP or one linear map). vislang builds the same modules
from a config -- never a download -- and pairs them with CLIP's ViT for the image tower, so the
OpenCLIP weights load under the names they already have (``text.transformer.*``,
``text.proj.*``) and the model runs on every engine through ``get_image_features`` /
``get_text_features``.

Where the text tower's config and tokenizer come from, first found first:
the checkpoint folder (tokenizer files, as OpenCLIP's ``local-dir:`` loading expects), then
``hf_model_name`` / ``hf_tokenizer_name`` as a folder (absolute, or relative to the checkpoint),
then the Hugging Face cache; a well-known tower's config is also in ``KNOWN_TEXT_CONFIGS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vislang.errors import ModelNotFoundError
from vislang.models import openclip

KIND = "openclip-hf"  # ClipModel.kind of these models
# transformers model types mapped (OpenCLIP's hf_configs.py knows mt5 and bert too: unverified)
TEXT_TYPES = ("xlm-roberta", "roberta", "m2m_100")
POOLERS = ("mean_pooler", "cls_pooler", "cls_last_hidden_state_pooler")
PROJECTIONS = ("mlp", "linear", None)
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model", "vocab.json")

# The published configs (config.json of each hub repo) of the text towers that OpenCLIP's
# pretrained XLM-R CLIPs name, so a checkpoint loads without fetching them; a tower not listed
# needs its config.json on disk.
_XLMR = dict(model_type="xlm-roberta", vocab_size=250002, max_position_embeddings=514,
             type_vocab_size=1, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2,
             pad_token_id=1, hidden_act="gelu")
KNOWN_TEXT_CONFIGS: dict[str, dict] = {
    "xlm-roberta-base": dict(_XLMR, hidden_size=768, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072),
    "xlm-roberta-large": dict(_XLMR, hidden_size=1024, num_hidden_layers=24,
                              num_attention_heads=16, intermediate_size=4096),
}


@dataclass
class HFTextClipConfig:
    """What ``HFTextClipModel`` is built from; shaped like a transformers CLIP config where
    vislang reads one (``model_type``, ``vision_config``, ``text_config``, ``projection_dim``)."""

    vision_config: object  # transformers.CLIPVisionConfig, projection_dim included
    text_config: object  # the text tower's transformers config (XLMRobertaConfig, ...)
    projection_dim: int
    context_length: int  # what OpenCLIP's tokenizer pads to (text_cfg.context_length, 77)
    pooler: str
    proj_type: str | None
    tokenizer_source: Path
    model_type: str = KIND


class HFTextTower(torch.nn.Module):
    """OpenCLIP's ``HFTextEncoder``, with its parameter names: ``transformer`` (the encoder),
    a pooler over the tokens that are not padding, and ``proj``."""

    def __init__(self, config, output_dim: int, pooler: str, proj_type: str | None):
        super().__init__()
        from transformers import AutoModel

        self.pad_id, self.pooler = config.pad_token_id, pooler
        if getattr(config, "is_encoder_decoder", False):  # NLLB: only the encoder is used
            self.transformer = AutoModel.from_config(config).encoder
        else:  # BERT's pooling layer (dense + tanh) exists only where the pooler reads it
            self.transformer = AutoModel.from_config(
                config, add_pooling_layer=pooler == "cls_pooler")
        width = config.hidden_size
        if proj_type is None:
            self.proj = torch.nn.Identity()
        elif proj_type == "linear":
            self.proj = torch.nn.Linear(width, output_dim, bias=False)
        else:  # "mlp": OpenCLIP's width -> (width + out) / 2 -> GELU -> out
            hidden = (width + output_dim) // 2
            self.proj = torch.nn.Sequential(torch.nn.Linear(width, hidden, bias=False),
                                            torch.nn.GELU(),
                                            torch.nn.Linear(hidden, output_dim, bias=False))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The mask is made from the ids, as OpenCLIP does: one input, like CLIP's text tower,
        # so exported graphs keep the engines' one-input text signature.
        mask = (input_ids != self.pad_id).long()
        out = self.transformer(input_ids=input_ids, attention_mask=mask)
        if self.pooler == "mean_pooler":
            summed = (out.last_hidden_state * mask.unsqueeze(-1)).sum(dim=1)
            pooled = summed / mask.sum(-1, keepdim=True)
        elif self.pooler == "cls_pooler" and getattr(out, "pooler_output", None) is not None:
            pooled = out.pooler_output
        else:  # the first token's state (cls_last_hidden_state_pooler, or no pooling layer)
            pooled = out.last_hidden_state[:, 0]
        return self.proj(pooled)


class HFTextClipModel(torch.nn.Module):
    """CLIP's ViT (``vision``) beside ``HFTextTower`` (``text``), with CLIP's feature methods."""

    def __init__(self, config: HFTextClipConfig):
        super().__init__()
        from transformers import CLIPVisionModelWithProjection

        self.config = config
        self.vision = CLIPVisionModelWithProjection(config.vision_config)
        self.text = HFTextTower(config.text_config, config.projection_dim, config.pooler,
                                config.proj_type)
        self.logit_scale = torch.nn.Parameter(torch.zeros([]))

    @property
    def dtype(self) -> torch.dtype:  # what TorchEngine casts its inputs to
        return self.logit_scale.dtype

    def get_image_features(self, pixel_values: torch.Tensor):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        embeds = self.vision(pixel_values=pixel_values).image_embeds
        return BaseModelOutputWithPooling(pooler_output=embeds)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask=None):
        """``attention_mask`` is ignored: the tower masks its padding itself."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return BaseModelOutputWithPooling(pooler_output=self.text(input_ids))


# -- config -----------------------------------------------------------------------------------
def hf_text_clip_config(name: str, directory: Path) -> HFTextClipConfig:
    """The config of an OpenCLIP checkpoint whose ``text_cfg`` names a Hugging Face model, or
    one ``UnsupportedModelError`` line saying what the mapping does not cover."""
    from transformers import CLIPVisionConfig

    data = openclip.read_config(directory)
    cfg = data["model_cfg"]
    vision, text = dict(cfg.get("vision_cfg", {})), dict(cfg.get("text_cfg", {}))
    openclip.refuse(name, openclip.unsupported_vision(cfg, vision) + _unsupported_text(text)
                    + openclip.unsupported_preprocess(data["preprocess_cfg"]))
    text_config = _text_config(name, directory, text["hf_model_name"])
    if text_config.model_type not in TEXT_TYPES:
        openclip.refuse(name, [f"a {text_config.model_type!r} Hugging Face text tower "
                               f"(mapped: {', '.join(TEXT_TYPES)})"])
    proj_type = text.get("hf_proj_type", "mlp")
    if proj_type is None and text_config.hidden_size != cfg["embed_dim"]:
        openclip.refuse(name, ["no text projection, yet a text width unlike embed_dim"])
    vision_config = CLIPVisionConfig(**openclip.vision_config(vision, openclip.activation(cfg)),
                                     projection_dim=cfg["embed_dim"])
    return HFTextClipConfig(
        vision_config=vision_config, text_config=text_config, projection_dim=cfg["embed_dim"],
        context_length=text.get("context_length", 77),
        pooler=text.get("hf_pooler_type", "mean_pooler"), proj_type=proj_type,
        tokenizer_source=_tokenizer_source(name, directory, text))


def _unsupported_text(text: dict) -> list[str]:
    out = []
    if text.get("hf_pooler_type", "mean_pooler") not in POOLERS:
        out.append(f"text pooling {text['hf_pooler_type']!r} (mapped: {', '.join(POOLERS)})")
    if text.get("hf_proj_type", "mlp") not in PROJECTIONS:
        out.append(f"a text projection {text['hf_proj_type']!r} (mapped: mlp, linear)")
    if text.get("proj_bias"):
        out.append("a text projection with bias")
    kwargs = text.get("tokenizer_kwargs") or {}
    if text.get("tokenizer_mode") or kwargs not in ({}, {"clean": "whitespace"}):
        out.append("non-default tokenizer settings (tokenizer_kwargs / tokenizer_mode)")
    return out


def _text_config(name: str, directory: Path, hf_name: str):
    from transformers import AutoConfig

    folder = _find(directory, hf_name, "config.json")
    if folder is not None:
        return AutoConfig.from_pretrained(folder)
    if hf_name in KNOWN_TEXT_CONFIGS:
        known = dict(KNOWN_TEXT_CONFIGS[hf_name])
        return AutoConfig.for_model(known.pop("model_type"), **known)
    raise ModelNotFoundError(
        f"{name}: its text tower {hf_name!r} has no config.json on disk (looked in "
        f"{directory}, a folder of that name and the Hugging Face cache); fetch it once with "
        f"`hf download {hf_name} config.json`")


def _tokenizer_source(name: str, directory: Path, text: dict) -> Path:
    if any((directory / f).is_file() for f in TOKENIZER_FILES):
        return directory
    hf_name = text.get("hf_tokenizer_name") or text["hf_model_name"]
    for file in TOKENIZER_FILES:
        folder = _find(directory, hf_name, file)
        if folder is not None:
            return folder
    raise ModelNotFoundError(
        f"{name}: the tokenizer {hf_name!r} is not on disk (looked in {directory}, a folder of "
        f"that name and the Hugging Face cache); fetch it once with `hf download {hf_name}`")


def _find(directory: Path, hf_name: str, file: str) -> Path | None:
    """The folder holding ``file`` for ``hf_name``: a path (absolute or relative to the
    checkpoint), else the hub cache's snapshot; None when neither has it."""
    for folder in (Path(hf_name).expanduser(), directory / hf_name):
        if (folder / file).is_file():
            return folder
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(hf_name, file)
    except ValueError:  # not a valid repo id (a path that does not exist, say)
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def tokenizer(config: HFTextClipConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(config.tokenizer_source)


def clean(text: str) -> str:
    """OpenCLIP's ``whitespace`` cleaning for Hugging Face tokenizers: ftfy, HTML unescaped,
    whitespace collapsed; case kept (XLM-R's vocabulary is cased)."""
    import html

    import ftfy

    return " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).split())


# -- weights ----------------------------------------------------------------------------------
def load_model(name: str, directory: Path, config: HFTextClipConfig) -> HFTextClipModel:
    """A float32 ``HFTextClipModel`` holding the checkpoint's weights, each checked."""
    state = openclip.read_weights(directory)
    weights = openclip.WeightMap(state, name)
    weights.vision("vision.", config.vision_config.num_hidden_layers)
    for key in state:
        if not key.startswith("text."):
            continue
        if key.startswith("text.transformer.pooler.") and config.pooler != "cls_pooler":
            weights.used.add(key)  # a pooling layer OpenCLIP built but never reads
        else:
            weights.take(key, key)  # the tower keeps OpenCLIP's own names
    weights.take("logit_scale", "logit_scale")
    with torch.device("meta"):
        skeleton = HFTextClipModel(config)
    tensors = weights.checked(skeleton, "ViT + Hugging Face text towers")
    model = HFTextClipModel(config)
    model.load_state_dict(tensors, strict=False)  # checked above; buffers keep their defaults
    return model.eval()
