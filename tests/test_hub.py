"""Finding checkpoints: the hub cache offline, and a fast, clear failure when the hub is away."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading

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


class SilentServer:
    """A port that accepts connections and never answers: a hub behind a dead proxy. It
    counts the connections made to it."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.socket.accept()[0])  # held open, never answered
            except OSError:
                return

    def close(self) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def _closed_port() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("endpoint_kind", ["silent", "refused", "offline-env"])
def test_missing_model_fails_fast_and_says_what_to_do(endpoint_kind, silent_server, tmp_path):
    """Fast means bounded by our own probe's timeout, not by huggingface_hub's retries and
    its 10 s etag timeout: one connection at most, and none when offline is set. (Seconds
    are not asserted: a loaded machine makes any wall-clock bound a flake.)"""
    from vislang.models.hub import PROBE_TIMEOUT_S

    env = {"HF_HOME": str(tmp_path)}
    if endpoint_kind == "silent":
        env["HF_ENDPOINT"] = silent_server.url
    elif endpoint_kind == "refused":
        env["HF_ENDPOINT"] = _closed_port()
    else:
        env["HF_HUB_OFFLINE"] = "1"
        env["HF_ENDPOINT"] = silent_server.url  # must not even be tried
    code = (
        "import vislang\n"
        "try:\n"
        "    vislang.load('ViT-L/14')\n"
        "except vislang.ModelNotFoundError as e:\n"
        "    print(e)\n"
    )
    out = _python(code, env)  # (its timeout is a hang guard only)
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert "ViT-L/14" in message and "openai/clip-vit-large-patch14" in message
    assert str(tmp_path / "hub") in message  # where it looked
    assert "network" in message and "save_pretrained" in message  # what to do
    if endpoint_kind == "silent":
        assert f"no answer within {PROBE_TIMEOUT_S:.0f} s" in message
        assert len(silent_server.held) == 1  # the probe; no download waited on the hub
    elif endpoint_kind == "offline-env":
        assert "HF_HUB_OFFLINE" in message and not silent_server.held
