"""The two towers of a CLIP/SigLIP checkpoint as stand-alone modules, for export.

Exported engines run one graph per tower with a dynamic batch (and, for text, a dynamic
length), so the image side can be batched for throughput while a query runs alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch


class ImageTower(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.hf_model.get_image_features(pixel_values=pixel_values).pooler_output


class TextTower(torch.nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf_model = hf_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.hf_model.get_text_features(input_ids=input_ids).pooler_output


def example_inputs(config) -> dict[str, torch.Tensor]:
    """Inputs to trace each tower with: two items, so batch is not mistaken for a constant."""
    side = config.vision_config.image_size
    text = config.text_config
    ids = torch.full((2, 8), 320, dtype=torch.long)
    # End tokens in place, at different positions: CLIP pools where the end token is.
    eos = text.eos_token_id if text.eos_token_id not in (None, 2) else text.vocab_size - 1
    ids[:, 0] = text.bos_token_id if text.bos_token_id is not None else 0
    ids[0, 5], ids[1, 7] = eos, eos
    return {"image": torch.zeros(2, 3, side, side), "text": ids}


TOWERS = ("image", "text")


def tower(hf_model, name: str) -> torch.nn.Module:
    return (ImageTower if name == "image" else TextTower)(hf_model).eval()


@contextlib.contextmanager
def quiet_export():
    """Tracing warns about every Python branch in transformers' code, and NNCF draws progress
    bars (on stdout, where they would corrupt a command's --json): none of it is actionable
    for a user exporting a supported model."""
    loggers = [logging.getLogger(), logging.getLogger("nncf")]  # ORT's quantiser logs to root
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
