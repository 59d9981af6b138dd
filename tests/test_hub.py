"""Finding checkpoints: the hub cache offline, and a fast, clear failure when the hub is away."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest

HASH = "0123456789abcdef0123456789abcdef01234567"


def _python(code: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter: huggingface_hub reads its settings at import."""
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, timeout=timeout)


def _fake_hub_cache(home, repo_id: str, checkpoint_dir) -> None:
    """Lay a checkpoint out the way huggingface_hub caches a download."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint_dir, repo / "snapshots" / HASH)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(HASH)


def test_alias_loads_from_the_hub_cache_without_network(tiny_clip_dir, tmp_path):
    _fake_hub_cache(tmp_path, "openai/clip-vit-base-patch32", tiny_clip_dir)
    out = _python(
        "import vislang\n"
        "m = vislang.load('ViT-B/32')\n"
        "print(m.model_key)\n"
        "print({i.name: i.on_disk for i in vislang.available_models()})\n",
        {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    key, on_disk = out.stdout.splitlines()
    assert key == f"openai/clip-vit-base-patch32@{HASH}"
    assert "'ViT-B/32': True" in on_disk and "'ViT-B/16': False" in on_disk


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers: a hub behind a dead proxy."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def _closed_port() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("endpoint_kind", ["silent", "refused", "offline-env"])
def test_missing_model_fails_fast_and_says_what_to_do(endpoint_kind, silent_server, tmp_path):
    env = {"HF_HOME": str(tmp_path)}
    if endpoint_kind == "silent":
        env["HF_ENDPOINT"] = silent_server
    elif endpoint_kind == "refused":
        env["HF_ENDPOINT"] = _closed_port()
    else:
        env["HF_HUB_OFFLINE"] = "1"
    code = (
        "import time, vislang\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    vislang.load('ViT-L/14')\n"
        "except vislang.ModelNotFoundError as e:\n"
        "    print(round(time.monotonic() - t, 2)); print(e)\n"
    )
    start = time.monotonic()
    out = _python(code, env)
    assert out.returncode == 0, out.stderr
    seconds, message = out.stdout.split("\n", 1)
    assert float(seconds) < 10 and time.monotonic() - start < 30
    assert "ViT-L/14" in message and "openai/clip-vit-large-patch14" in message
    assert str(tmp_path / "hub") in message  # where it looked
    assert "network" in message and "save_pretrained" in message  # what to do


def test_folder_without_config_is_not_taken_for_a_model(tmp_path):
    """It used to pass as a checkpoint, and transformers then failed with a ValueError about
    `model_type` that named neither the folder's problem nor the way out."""
    from vislang.errors import ModelNotFoundError
    from vislang.models.hub import locate

    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json.*save_pretrained"):
        locate(str(tmp_path))
