"""Everything vislang reads from the environment, read once into one frozen object.

    >>> from vislang.settings import settings
    >>> settings().index
    PosixPath('/home/me/.local/share/vislang/index')

| variable | setting | default |
|---|---|---|
| ``VISLANG_MODEL`` | ``model``: the CLIP model commands use | ``ViT-B/32`` |
| ``VISLANG_INDEX`` | ``index``: the index folder | the per-user data folder's ``index`` |
| ``VISLANG_CACHE`` | ``cache``: exported engines, thumbnails | the per-user cache folder |
| ``VISLANG_CAPTION_MODEL`` | ``caption_model``: BLIP for captions | Salesforce's BLIP base |
| ``VISLANG_VQA_MODEL`` | ``vqa_model``: BLIP for answers | Salesforce's BLIP VQA base |
| ``VISLANG_DEBUG`` | ``debug``: tracebacks instead of one error line | off |
| ``VISLANG_LOG_LEVEL`` | ``log_level``: the ``vislang`` logger (and the server's) | ``warning`` |

``VISLANG_CPU`` (a cap on the CPU class, for testing the AVX2 path on any machine) is not a
setting: it describes the hardware, so ``vislang.runtime.cpu`` reads it where it detects that.
The command line's ``--debug`` and ``--verbose`` change the settings with ``configure``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

LOGGER = "vislang"  # export, cache and engine-choice decisions; silent unless asked for
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    model: str
    index: Path
    cache: Path
    caption_model: str
    vqa_model: str
    debug: bool
    log_level: str

    @classmethod
    def from_environment(cls) -> "Settings":
        from platformdirs import user_cache_dir, user_data_dir

        env = os.environ.get
        level = (env("VISLANG_LOG_LEVEL") or "warning").strip().lower()
        return cls(
            model=env("VISLANG_MODEL") or "ViT-B/32",
            index=Path(env("VISLANG_INDEX") or Path(user_data_dir("vislang")) / "index"),
            cache=Path(env("VISLANG_CACHE") or user_cache_dir("vislang")),
            caption_model=env("VISLANG_CAPTION_MODEL") or "Salesforce/blip-image-captioning-base",
            vqa_model=env("VISLANG_VQA_MODEL") or "Salesforce/blip-vqa-base",
            debug=env("VISLANG_DEBUG", "") not in ("", "0"),
            log_level=level if level in LOG_LEVELS else "warning",
        )


_current: Settings | None = None


def settings() -> Settings:
    """The settings of this process: the environment as it was on first call, plus what
    ``configure`` changed since."""
    global _current
    if _current is None:
        _current = Settings.from_environment()
        _route_log(_current.log_level)
    return _current


def configure(**changes) -> Settings:
    """Replace some settings for the rest of the process (the CLI's --debug, --verbose)."""
    global _current
    _current = dataclasses.replace(settings(), **changes)
    _route_log(_current.log_level)
    return _current


def _route_log(level: str) -> None:
    """Below warning, the ``vislang`` logger's lines go to stderr, one per decision."""
    log = logging.getLogger(LOGGER)
    log.setLevel(level.upper())
    if level in ("debug", "info") and not any(getattr(h, "vislang", False) for h in log.handlers):
        handler = logging.StreamHandler()  # stderr: stdout carries results and --json
        handler.setFormatter(logging.Formatter("vislang: %(message)s"))
        handler.vislang = True
        log.addHandler(handler)
        # uvicorn (and others) configure the root logger: without this each line shows twice
        log.propagate = False


logging.getLogger(LOGGER).addHandler(logging.NullHandler())  # silent unless asked


def logger(name: str = "") -> logging.Logger:
    """``vislang`` or one of its children (``vislang.runtime``): decisions worth a line when
    someone asks why (``--verbose``), never printed otherwise."""
    return logging.getLogger(f"{LOGGER}.{name}" if name else LOGGER)
