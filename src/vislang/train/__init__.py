"""Contrastive fine-tuning: ``train(data, out, TrainConfig(...))``; see ``loop.py``."""

from vislang.train.loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
