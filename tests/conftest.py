"""Shared fixtures: tiny checkpoints in save_pretrained layout, loaded like any user's model."""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub; a test that needs "the hub is unreachable" sets its own endpoint.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Exported engines go to a folder of this test run, not the user's cache.
os.environ["VISLANG_CACHE"] = tempfile.mkdtemp(prefix="vislang-test-cache-")

VISLANG = Path(sys.executable).with_name("vislang")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    from vislang.models.tiny import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    from vislang.models.tiny import tiny_siglip

    return tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


@pytest.fixture(scope="session")
def clip_model(tiny_clip_dir):
    import vislang

    return vislang.load(str(tiny_clip_dir))


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """120 one-object shapes scenes on disk: pairs.jsonl and an ImageFolder under classes/."""
    from vislang.datasets.shapes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("shapes"), 120, seed=3, n_objects=1)


def run_cli(*args: str, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``vislang`` command the way a user would. ``timeout`` guards against
    a hang only: a first use exports and quantises models, minutes on a loaded 2-core CPU."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(VISLANG), *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)

