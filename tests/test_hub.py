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
        "print({i.name: i.on_disk for i in vislang.model_records()})\n",
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


class FakeHub:
    """A hub that answers as huggingface.co does for models one may not read: a private one
    (401 to anyone not logged in), a gated one (403 GatedRepo), a gated one whose description
    is public but whose files are not (as the hub has them), a missing one (404), and a token
    it does not accept. It records every request."""

    GATED = {"X-Error-Code": "GatedRepo",
             "X-Error-Message": "Access to model gated/model is restricted."}

    def __init__(self):
        import http.server

        hub = self
        self.requests: list[tuple[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hub.requests.append((self.command, self.path))
                status, headers, body = hub.answer(self.path, self.headers.get("authorization"))
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict, bytes]:
        import json

        def error(status: int, message: str, headers: dict | None = None):
            return status, headers or {}, json.dumps({"error": message}).encode()

        if authorization is not None and "wrong" in authorization:
            return error(401, "Invalid credentials in Authorization header")
        if path.startswith("/api/models/private/model"):
            return error(401, "Invalid username or password.")
        if path.startswith("/api/models/gated/model"):
            return error(403, "Access to model gated/model is restricted.", self.GATED)
        if path.startswith("/api/models/gated-files/model/tree/"):  # as is its file list
            files = [{"type": "file", "path": f, "size": 2, "oid": "0" * 40}
                     for f in ("config.json", "model.safetensors")]
            return 200, {}, json.dumps(files).encode()
        if path.startswith("/api/models/gated-files/model"):  # the description is public
            siblings = [{"rfilename": f} for f in ("config.json", "model.safetensors")]
            return 200, {}, json.dumps({"id": "gated-files/model", "sha": HASH, "gated": "manual",
                                        "siblings": siblings}).encode()
        if path.startswith("/gated-files/model/resolve/"):  # ... its files are not
            return error(403, "Access to model gated-files/model is restricted.", self.GATED)
        return error(404, "Repository not found", {"X-Error-Code": "RepoNotFound"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    yield hub
    hub.close()


LOAD_AND_SAY = (
    "import sys, vislang\n"
    "try:\n"
    "    vislang.load(sys.argv[1])\n"
    "except vislang.ModelNotFoundError as e:\n"
    "    print(e)\n"
)


def _load_message(model: str, hub: FakeHub, tmp_path, token: str | None = None) -> str:
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
           **({"HF_TOKEN": token} if token else {})}
    clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HF_")}
    out = subprocess.run([sys.executable, "-c", LOAD_AND_SAY, model], capture_output=True,
                         text=True, env={**clean, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("model", ["private/model", "gated/model", "gated-files/model"])
def test_a_private_or_gated_model_says_it_needs_access(model, fake_hub, tmp_path):
    message = _load_message(model, fake_hub, tmp_path)
    assert "no such model" not in message
    assert "needs access" in message and model in message
    assert "hf auth login" in message and "HF_TOKEN" in message  # how to get in
    assert f"{fake_hub.url}/{model}" in message  # where to request access
    if model.startswith("gated"):
        assert "exists on the hub but is gated" in message


def test_a_missing_model_is_still_no_such_model(fake_hub, tmp_path):
    message = _load_message("missing/model", fake_hub, tmp_path)
    assert "has no such model" in message and "needs access" not in message
    assert fake_hub.requests == [("GET", "/api/models/missing/model")]  # one probe, no download


def test_the_probe_carries_the_users_token_and_a_refused_one_is_named(fake_hub, tmp_path):
    message = _load_message("private/model", fake_hub, tmp_path, token="hf_wrong_token")
    assert "refused your token" in message and "HF_TOKEN" in message


def test_the_command_fails_in_one_line_with_the_model_error_code(fake_hub, tmp_path):
    from conftest import run_cli
    from vislang.errors import ModelNotFoundError

    image = tmp_path / "one.png"
    __import__("PIL.Image").Image.new("RGB", (8, 8)).save(image)
    result = run_cli("classify", image, "--labels", "a,b", "--model", "private/model",
                     env={"HF_HOME": str(tmp_path), "HF_ENDPOINT": fake_hub.url,
                          "HF_HUB_OFFLINE": "0", "HF_TOKEN": ""})
    assert result.returncode == ModelNotFoundError.exit_code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "needs access" in result.stderr
