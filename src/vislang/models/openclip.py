"""OpenCLIP checkpoints in their own layout, mapped onto transformers' ``CLIPModel``.

An OpenCLIP hub repo (or folder) holds ``open_clip_config.json`` -- ``model_cfg`` (``embed_dim``,
``vision_cfg``, ``text_cfg``, ``quick_gelu``) and ``preprocess_cfg`` (mean, std, resize) -- and
the weights as ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``. When the image
tower is OpenCLIP's ViT and the text tower OpenAI's causal transformer, the model is exactly a
transformers ``CLIPModel``: this module builds its ``CLIPConfig`` and renames the weights, so the
model then runs on every engine like any CLIP. A Hugging Face text tower
(``text_cfg.hf_model_name``: the multilingual XLM-RoBERTa CLIPs, NLLB-CLIP) pairs the same ViT
with that transformers model: ``vislang.models.openclip_hf``. Anything else (timm, ConvNeXt,
EVA or ResNet image towers, attentional pooling, CoCa decoders, layer scale, custom attention
blocks) is refused with one ``UnsupportedModelError`` line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vislang.errors import UnsupportedModelError

CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# OpenAI's BPE vocabulary, the only one the mapped text tower reads (vislang ships it).
VOCAB_SIZE, BOS_ID, EOS_ID, PAD_ID = 49408, 49406, 49407, 1
_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0}  # PIL.Image.Resampling values

# Attention-block options of OpenCLIP's "custom" block, none of which CLIPModel has.
_CUSTOM_BLOCK = ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner",
                 "scale_attn", "scale_fc")


def is_openclip(directory: Path) -> bool:
    """An OpenCLIP checkpoint: ``open_clip_config.json`` and no transformers ``config.json``
    (one without ``model_type`` is some other library's, e.g. timm's)."""
    if not (directory / CONFIG_FILE).is_file():
        return False
    config = directory / "config.json"
    if not config.is_file():
        return True
    try:
        return "model_type" not in json.loads(config.read_text())
    except (ValueError, OSError):
        return True


def read_config(directory: Path) -> dict:
    """The whole ``open_clip_config.json``: ``{"model_cfg": ..., "preprocess_cfg": ...}``."""
    data = json.loads((directory / CONFIG_FILE).read_text())
    if "model_cfg" not in data:  # a bare model config, as in open_clip's model_configs/
        data = {"model_cfg": data, "preprocess_cfg": {}}
    data.setdefault("preprocess_cfg", {})
    return data


def model_config(name: str, directory: Path):
    """The config vislang runs an OpenCLIP checkpoint with: a ``CLIPConfig`` for OpenAI-style
    text towers, an ``openclip_hf.HFTextClipConfig`` for Hugging Face ones (XLM-R, NLLB)."""
    if read_config(directory)["model_cfg"].get("text_cfg", {}).get("hf_model_name"):
        from vislang.models import openclip_hf  # it builds on this module

        return openclip_hf.hf_text_clip_config(name, directory)
    return clip_config(name, directory)


def clip_config(name: str, directory: Path):
    """The ``transformers.CLIPConfig`` of an OpenCLIP checkpoint, or ``UnsupportedModelError``
    naming what the mapping does not cover."""
    from transformers import CLIPConfig

    data = read_config(directory)
    cfg = data["model_cfg"]
    vision, text = dict(cfg.get("vision_cfg", {})), dict(cfg.get("text_cfg", {}))
    problems = (unsupported_vision(cfg, vision) + _unsupported_text(text)
                + unsupported_preprocess(data["preprocess_cfg"]))
    refuse(name, problems)
    act = activation(cfg)
    t_width = text.get("width", 512)
    return CLIPConfig(
        text_config=dict(
            vocab_size=text.get("vocab_size", VOCAB_SIZE),
            hidden_size=t_width,
            intermediate_size=int(t_width * text.get("mlp_ratio", 4.0)),
            num_hidden_layers=text.get("layers", 12),
            num_attention_heads=text.get("heads", 8),
            max_position_embeddings=text.get("context_length", 77),
            hidden_act=act, layer_norm_eps=_eps(text),
            bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID),
        vision_config=vision_config(vision, act),
        projection_dim=cfg["embed_dim"],
    )


def refuse(name: str, problems: list[str]) -> None:
    """One ``UnsupportedModelError`` line listing ``problems``, if there are any."""
    if problems:
        raise UnsupportedModelError(
            f"{name} is an OpenCLIP checkpoint with {'; '.join(problems)}: vislang maps only "
            "ViT image towers with OpenAI-style or Hugging Face (XLM-R, NLLB) text towers")


def activation(cfg: dict) -> str:
    return "quick_gelu" if cfg.get("quick_gelu", False) else "gelu"


def vision_config(vision: dict, act: str) -> dict:
    """``CLIPVisionConfig`` arguments for OpenCLIP's ViT ``vision_cfg``."""
    width = vision.get("width", 768)
    return dict(
        hidden_size=width,
        intermediate_size=int(width * vision.get("mlp_ratio", 4.0)),
        num_hidden_layers=vision.get("layers", 12),
        num_attention_heads=width // vision.get("head_width", 64),
        image_size=_side(vision.get("image_size", 224)),
        patch_size=_side(vision.get("patch_size", 16)),
        hidden_act=act, layer_norm_eps=_eps(vision))


def _side(value) -> int:
    return value[0] if isinstance(value, (list, tuple)) else int(value)


def _eps(tower: dict) -> float:
    return float((tower.get("norm_kwargs") or {}).get("eps", 1e-5))


def unsupported_vision(cfg: dict, vision: dict) -> list[str]:
    """What in ``model_cfg`` and its image tower CLIP's ViT cannot hold, in words; empty when
    it maps exactly."""
    out: list[str] = []
    if cfg.get("multimodal_cfg"):
        out.append("a CoCa text decoder (multimodal_cfg)")
    if cfg.get("init_logit_bias") is not None:
        out.append("a logit bias (SigLIP-style sigmoid training)")
    if "embed_dim" not in cfg:
        out.append("no embed_dim in model_cfg")
    # image tower
    if vision.get("timm_model_name"):
        out.append(f"a timm image tower ({vision['timm_model_name']}; e.g. ConvNeXt or EVA)")
    elif isinstance(vision.get("layers"), (list, tuple)):
        out.append("a ResNet image tower (ModifiedResNet)")
    else:
        for key in ("image_size", "patch_size"):
            value = vision.get(key)
            if isinstance(value, (list, tuple)) and len(set(value)) > 1:
                out.append(f"a non-square image tower {key} {list(value)}")
        if vision.get("attentional_pool"):
            out.append("attentional pooling in the image tower")
        if vision.get("pool_type", "tok") != "tok":
            out.append(f"image pooling {vision['pool_type']!r} (only the class token is mapped)")
        if vision.get("no_ln_pre"):
            out.append("no LayerNorm before the image transformer (no_ln_pre)")
        if vision.get("pos_embed_type", "learnable") != "learnable":
            out.append(f"{vision['pos_embed_type']!r} image position embeddings")
        if vision.get("width", 768) % vision.get("head_width", 64):
            out.append("an image tower width that is not a multiple of its head width")
        out += _block_problems("image", vision)
    return out


def _unsupported_text(text: dict) -> list[str]:
    """What in an OpenAI-style ``text_cfg`` CLIP's text transformer cannot hold, in words."""
    out: list[str] = []
    if text.get("hf_tokenizer_name"):
        out.append(f"a non-OpenAI tokenizer ({text['hf_tokenizer_name']})")
    if text.get("tokenizer_kwargs") or text.get("tokenizer_mode"):
        out.append("non-default tokenizer settings (tokenizer_kwargs / tokenizer_mode)")
    if text.get("vocab_size", VOCAB_SIZE) != VOCAB_SIZE:
        out.append(f"a text vocabulary of {text['vocab_size']} tokens (OpenAI's has {VOCAB_SIZE})")
    if text.get("embed_cls"):
        out.append("a text class token (embed_cls)")
    if text.get("no_causal_mask"):
        out.append("a text tower without a causal mask")
    pool = text.get("pool_type", "argmax")
    if not (pool == "argmax" or (pool == "eos" and text.get("eos_id") == EOS_ID)):
        out.append(f"text pooling {pool!r} (only the end token is mapped)")
    if text.get("proj_type", "linear") != "linear" or text.get("proj_bias"):
        out.append("a text projection other than one linear map without bias")
    out += _block_problems("text", text)
    return out


def _block_problems(tower: str, cfg: dict) -> list[str]:
    out = []
    if cfg.get("ls_init_value") is not None:
        out.append(f"layer scale in the {tower} tower")
    custom = [k for k in _CUSTOM_BLOCK if cfg.get(k)]
    if custom or cfg.get("block_type") not in (None, "default"):
        kinds = ", ".join(custom) or cfg["block_type"]
        out.append(f"custom attention blocks in the {tower} tower ({kinds})")
    if cfg.get("act_kwargs"):
        out.append(f"activation settings in the {tower} tower (act_kwargs)")
    if set(cfg.get("norm_kwargs") or {}) - {"eps"}:
        out.append(f"LayerNorm settings other than eps in the {tower} tower")
    return out


def unsupported_preprocess(pre: dict) -> list[str]:
    out = []
    if pre.get("resize_mode", "shortest") not in ("shortest", "squash"):
        out.append(f"resize_mode {pre['resize_mode']!r} (padding to a square)")
    if pre.get("interpolation", "bicubic") not in _RESAMPLE:
        out.append(f"interpolation {pre['interpolation']!r}")
    return out


def image_transform(directory: Path, config):
    """Preprocessing from ``preprocess_cfg``: resize (shortest side, then centre crop; or
    "squash" to the square), OpenAI's mean and std unless given."""
    from vislang.models.transform import ImageTransform

    pre = read_config(directory)["preprocess_cfg"]
    side = _side(pre.get("size", config.vision_config.image_size))
    squash = pre.get("resize_mode", "shortest") == "squash"
    return ImageTransform(
        shortest_edge=None if squash else side,
        resize_to=(side, side) if squash else None,
        crop=None if squash else (side, side),
        mean=tuple(pre.get("mean", OPENAI_MEAN)),
        std=tuple(pre.get("std", OPENAI_STD)),
        resample=_RESAMPLE[pre.get("interpolation", "bicubic")],
    )


def load_model(name: str, directory: Path, config):
    """A float32 model holding the checkpoint's OpenCLIP weights: a ``CLIPModel``, or an
    ``openclip_hf.HFTextClipModel`` for a Hugging Face text tower."""
    from transformers import CLIPModel

    if config.model_type != "clip":
        from vislang.models import openclip_hf

        return openclip_hf.load_model(name, directory, config)
    state = convert_state_dict(read_weights(directory), config, name)
    model = CLIPModel(config)
    model.load_state_dict(state, strict=False)  # strict on everything but position_ids buffers
    return model.eval()


def tokenizer(config):
    """The checkpoint's tokenizer: OpenAI's BPE (which vislang ships) for a CLIP text tower,
    the Hugging Face tower's own otherwise."""
    if config.model_type != "clip":
        from vislang.models import openclip_hf

        return openclip_hf.tokenizer(config)
    from vislang.models.tokenizer import clip_tokenizer

    return clip_tokenizer()


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    for file in WEIGHT_FILES:
        path = directory / file
        if not path.is_file():
            continue
        if file.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
        return {k.removeprefix("module."): v for k, v in state.items()}
    raise UnsupportedModelError(
        f"{directory} has {CONFIG_FILE} but no weights ({' or '.join(WEIGHT_FILES)})")


class WeightMap:
    """OpenCLIP tensors placed under transformers names, each remembering where it came from,
    so that a misfit is reported by the name the user's file has."""

    def __init__(self, state: dict[str, torch.Tensor], name: str):
        self.state, self.name = state, name
        self.out: dict[str, tuple[str, torch.Tensor]] = {}  # HF name -> (OpenCLIP name, tensor)
        self.used: set[str] = set()

    def take(self, src: str, dst: str, transpose: bool = False) -> None:
        if src not in self.state:
            raise UnsupportedModelError(
                f"{self.name}: the weights have no {src!r}, which {dst} needs")
        self.used.add(src)
        tensor = self.state[src]
        self.out[dst] = (src, tensor.T if transpose else tensor)

    def blocks(self, src: str, dst: str, layers: int) -> None:
        """OpenCLIP's residual attention blocks -> CLIP encoder layers (q, k, v split)."""
        for i in range(layers):
            s, d = f"{src}.resblocks.{i}", f"{dst}.layers.{i}"
            for part in ("weight", "bias"):
                key = f"{s}.attn.in_proj_{part}"
                if key not in self.state:
                    raise UnsupportedModelError(f"{self.name}: the weights have no {key!r}")
                self.used.add(key)
                for proj, chunk in zip("qkv", self.state[key].chunk(3, dim=0)):
                    self.out[f"{d}.self_attn.{proj}_proj.{part}"] = (key, chunk)
                self.take(f"{s}.attn.out_proj.{part}", f"{d}.self_attn.out_proj.{part}")
                self.take(f"{s}.ln_1.{part}", f"{d}.layer_norm1.{part}")
                self.take(f"{s}.ln_2.{part}", f"{d}.layer_norm2.{part}")
                self.take(f"{s}.mlp.c_fc.{part}", f"{d}.mlp.fc1.{part}")
                self.take(f"{s}.mlp.c_proj.{part}", f"{d}.mlp.fc2.{part}")

    def vision(self, prefix: str, layers: int) -> None:
        """OpenCLIP's ViT (``visual.*``) -> ``{prefix}vision_model.*`` and
        ``{prefix}visual_projection``, the names CLIPModel and CLIPVisionModelWithProjection
        share."""
        v = f"{prefix}vision_model"
        self.take("visual.conv1.weight", f"{v}.embeddings.patch_embedding.weight")
        self.take("visual.class_embedding", f"{v}.embeddings.class_embedding")
        self.take("visual.positional_embedding", f"{v}.embeddings.position_embedding.weight")
        self.blocks("visual.transformer", f"{v}.encoder", layers)
        for part in ("weight", "bias"):
            self.take(f"visual.ln_pre.{part}", f"{v}.pre_layrnorm.{part}")
            self.take(f"visual.ln_post.{part}", f"{v}.post_layernorm.{part}")
        self.take("visual.proj", f"{prefix}visual_projection.weight", transpose=True)

    def checked(self, model: torch.nn.Module, covers: str) -> dict[str, torch.Tensor]:
        """The mapped tensors, after checking that every OpenCLIP tensor has a place (``covers``
        says what the mapping covers, for the error) and every place of ``model`` (built on the
        meta device) one tensor of its shape."""
        unmapped = [k for k in self.state if k not in self.used and not k.endswith("attn_mask")]
        if unmapped:
            raise UnsupportedModelError(
                f"{self.name}: weight {unmapped[0]!r} has no place in the mapped model "
                f"({len(unmapped)} such; the mapping covers {covers} only)")
        for dst, param in model.state_dict().items():
            if dst not in self.out:
                if dst.endswith(("position_ids", "token_type_ids")):  # buffers, not weights
                    continue
                raise UnsupportedModelError(f"{self.name}: no OpenCLIP weight maps to {dst}")
            src, tensor = self.out[dst]
            if tuple(tensor.shape) != tuple(param.shape):
                raise UnsupportedModelError(
                    f"{self.name}: weight {src!r} has shape {tuple(self.state[src].shape)}, "
                    f"which does not fit {dst} {tuple(param.shape)} as {CONFIG_FILE} describes "
                    "the model")
        return {dst: tensor.float().contiguous() for dst, (_, tensor) in self.out.items()}


def convert_state_dict(state: dict[str, torch.Tensor], config, name: str = "checkpoint"
                       ) -> dict[str, torch.Tensor]:
    """OpenCLIP names -> transformers' CLIPModel names, every tensor checked against the shape
    ``config`` gives it; the first misfit, missing or unmapped tensor raises."""
    from transformers import CLIPModel

    # CustomTextCLIP keeps its text tower under "text."; CLIP keeps it at the top level.
    t = "text." if any(k.startswith("text.") for k in state) else ""
    weights = WeightMap(state, name)
    weights.vision("", config.vision_config.num_hidden_layers)
    for part in ("weight", "bias"):
        weights.take(f"{t}ln_final.{part}", f"text_model.final_layer_norm.{part}")
    weights.take(f"{t}token_embedding.weight", "text_model.embeddings.token_embedding.weight")
    weights.take(f"{t}positional_embedding", "text_model.embeddings.position_embedding.weight")
    weights.blocks(f"{t}transformer", "text_model.encoder", config.text_config.num_hidden_layers)
    weights.take(f"{t}text_projection", "text_projection.weight", transpose=True)
    weights.take("logit_scale", "logit_scale")
    with torch.device("meta"):
        model = CLIPModel(config)
    return weights.checked(model, "ViT + OpenAI-style text towers")
