"""Find a checkpoint on disk, or fetch it from the Hugging Face hub -- quickly or not at all.

Many machines that run vislang have no route to the hub. huggingface_hub's own retries and
timeouts can keep a caller waiting for minutes, so before any download we ask the hub one
question with a hard deadline; if it does not answer, the user gets ``ModelNotFoundError`` in
seconds, with the model, the place we looked and what to do.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vislang.errors import ModelNotFoundError
from vislang.models.registry import ALIASES, SHIPPED, shipped_path

PROBE_TIMEOUT_S = 4.0
# Everything a checkpoint needs to load, without the TF/Flax/ONNX copies many repos also hold.
CHECKPOINT_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]


@dataclass(frozen=True)
class Checkpoint:
    name: str  # what the user asked for, or the hub id an alias maps to
    path: Path  # a directory in save_pretrained layout
    revision: str  # hub commit, or a fingerprint of the local files

    @property
    def model_key(self) -> str:
        """Identity of the weights: vectors from different keys never mix."""
        return f"{self.name}@{self.revision}"


def locate(name_or_path: str) -> Checkpoint:
    """Resolve a shipped name, a local directory, an alias or a hub id to files on disk."""
    if name_or_path in SHIPPED:
        path = shipped_path(name_or_path)
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"the shipped model {name_or_path!r} is missing from {path}; "
                                     "reinstall vislang")
        return Checkpoint(name_or_path, path, content_hash(path))
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return _local_checkpoint(local)
    if _looks_like_path(name_or_path):
        raise ModelNotFoundError(
            f"model directory {name_or_path!r} does not exist; pass a directory written by "
            "save_pretrained, or a model name (see `vislang models`)"
        )
    repo_id = ALIASES.get(name_or_path, name_or_path)
    snapshot = cached_snapshot(repo_id)
    if snapshot is None:
        snapshot = _download(name_or_path, repo_id)
    return Checkpoint(repo_id, snapshot, snapshot.name)


def _local_checkpoint(directory: Path) -> Checkpoint:
    # Without this check transformers fails later with a ValueError about `model_type` that
    # names neither the folder's problem nor the way out.
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(
            f"{directory} is not a model folder: it has no config.json. A model folder holds "
            "config.json, the weights (model.safetensors) and the tokenizer files, as written "
            "by save_pretrained; or pass a model name (see `vislang models`)")
    return Checkpoint(str(directory.resolve()), directory.resolve(), fingerprint(directory))


def cached_snapshot(repo_id: str) -> Path | None:
    """The newest cached snapshot of ``repo_id`` with loadable weights, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
    return path if _has_weights(path) else None


def fingerprint(directory: Path) -> str:
    """A short, cheap identity for local weights: file names, sizes and modification times."""
    digest = hashlib.sha256()
    for f in sorted(directory.iterdir()):
        if f.is_file():
            stat = f.stat()
            digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def content_hash(directory: Path) -> str:
    """Identity from the bytes themselves: the same on every install (small models only)."""
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:12]


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _download(name: str, repo_id: str) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    def not_found(why: str) -> ModelNotFoundError:
        alias = f" ({repo_id})" if repo_id != name else ""
        return ModelNotFoundError(
            f"model {name!r}{alias} is not on disk (looked in {constants.HF_HUB_CACHE}) and {why}. "
            "Run once on a machine with network access to download it into that cache, "
            "or pass a local directory saved with save_pretrained."
        )

    if constants.HF_HUB_OFFLINE:
        raise not_found("HF_HUB_OFFLINE is set")
    problem = _probe(f"{constants.ENDPOINT}/api/models/{repo_id}")
    if problem == "404":
        raise not_found(f"the hub at {constants.ENDPOINT} has no such model")
    if problem:
        raise not_found(f"the hub at {constants.ENDPOINT} is unreachable ({problem})")
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=CHECKPOINT_FILES, etag_timeout=10))
        if not _has_weights(path):  # older repos hold only pytorch_model.bin
            path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.bin"]))
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise not_found(f"the hub refused it ({type(e).__name__})") from e
    except OSError as e:
        raise not_found(f"the download failed ({e})") from e
    return path


def _probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if ``url`` answers within ``timeout`` seconds, else a short reason.

    Runs in a daemon thread because name resolution ignores socket timeouts and can hang.
    """
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
            outcome.append(None)
        except urllib.error.HTTPError as e:
            outcome.append("404" if e.code in (401, 404) else None)
        except Exception as e:  # noqa: BLE001 -- any failure means "not reachable"
            reason = getattr(e, "reason", e)
            silent = isinstance(reason, TimeoutError)  # the user reads "timed out" as a hang
            outcome.append(f"no answer within {timeout:.0f} s" if silent
                           else str(reason) or type(e).__name__)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    return outcome[0] if outcome else f"no answer within {timeout:.0f} s"
