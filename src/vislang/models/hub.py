"""Find a checkpoint on disk, or fetch it from the Hugging Face hub -- quickly or not at all.

Many machines that run vislang have no route to the hub. huggingface_hub's own retries and
timeouts can keep a caller waiting for minutes, so before any download we ask the hub one
question with a hard deadline; if it does not answer, the user gets ``ModelNotFoundError`` in
seconds, with the model, the place we looked and what to do. The question carries the user's
token (``HF_TOKEN`` or ``hf auth login``), so a private or gated model they may read loads, and
one they may not is told apart from a model that does not exist.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from vislang.errors import ModelNotFoundError
from vislang.models.registry import (
    ALIASES,
    OPENCLIP_PRETRAINED,
    SHIPPED,
    cached_snapshot,
    has_weights,
    shipped_path,
)
from vislang.settings import logger

log = logger("models")

PROBE_TIMEOUT_S = 4.0
# Everything a checkpoint needs to load, without the TF/Flax/ONNX copies many repos also hold;
# "*.json" and "*.safetensors" take in OpenCLIP's open_clip_config.json and
# open_clip_model.safetensors (its open_clip_pytorch_model.bin comes with the "*.bin" fallback).
CHECKPOINT_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]
OPENCLIP_PREFIX, HF_HUB_PREFIX = "open_clip:", "hf-hub:"  # open_clip's own ways to name models


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
    """Resolve a shipped name, a local directory, an alias or a hub id to files on disk.

    OpenCLIP's names work too: ``hf-hub:org/repo`` (a hub id) and ``open_clip:ARCH/TAG`` for
    the well-known pretrained weights in ``registry.OPENCLIP_PRETRAINED``."""
    if name_or_path.startswith(OPENCLIP_PREFIX):
        return _fetch(name_or_path, _openclip_repo(name_or_path))
    if name_or_path.startswith(HF_HUB_PREFIX):
        return _fetch(name_or_path, name_or_path.removeprefix(HF_HUB_PREFIX).strip("/"))
    if name_or_path in SHIPPED:
        path = shipped_path(name_or_path)
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"the shipped model {name_or_path!r} is missing from {path}; "
                                     "reinstall vislang")
        log.info("%s: shipped with vislang, %s", name_or_path, path)
        return Checkpoint(name_or_path, path, content_hash(path))
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        log.info("%s: a local folder", name_or_path)
        return _local_checkpoint(local)
    if _looks_like_path(name_or_path):
        raise ModelNotFoundError(
            f"model directory {name_or_path!r} does not exist; pass a directory written by "
            "save_pretrained, or a model name (see `vislang models`)"
        )
    return _fetch(name_or_path, ALIASES.get(name_or_path, name_or_path))


def _fetch(name_or_path: str, repo_id: str) -> Checkpoint:
    """A hub checkpoint from the cache, else downloaded; named by its hub id whatever the
    user called it, so the model key is the same under every name."""
    snapshot = cached_snapshot(repo_id)
    if snapshot is None:
        snapshot = _download(name_or_path, repo_id)
    else:
        log.info("%s: %s from the hub cache, %s", name_or_path, repo_id, snapshot)
    return Checkpoint(repo_id, snapshot, snapshot.name)


def _openclip_repo(name: str) -> str:
    import difflib

    key = name.removeprefix(OPENCLIP_PREFIX)
    if key in OPENCLIP_PRETRAINED:
        return OPENCLIP_PRETRAINED[key]
    close = difflib.get_close_matches(key, list(OPENCLIP_PRETRAINED), n=3, cutoff=0.5)
    hint = (f"did you mean {', '.join(OPENCLIP_PREFIX + c for c in close)}?" if close
            else f"known: {', '.join(OPENCLIP_PREFIX + k for k in OPENCLIP_PRETRAINED)}.")
    raise ModelNotFoundError(
        f"unknown OpenCLIP model {name!r}; {hint} Any OpenCLIP repo on the hub loads as "
        "hf-hub:org/repo")


def _local_checkpoint(directory: Path) -> Checkpoint:
    # Without this check transformers fails later with a ValueError about `model_type` that
    # names neither the folder's problem nor the way out.
    if not any((directory / f).is_file() for f in ("config.json", "open_clip_config.json")):
        raise ModelNotFoundError(
            f"{directory} is not a model folder: it has no config.json. A model folder holds "
            "config.json, the weights (model.safetensors) and the tokenizer files, as written "
            "by save_pretrained (or OpenCLIP's open_clip_config.json and "
            "open_clip_model.safetensors); or pass a model name (see `vislang models`)")
    return Checkpoint(str(directory.resolve()), directory.resolve(), fingerprint(directory))


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
    answer = _probe(repo_id)
    if answer.kind == MISSING:
        raise not_found(f"the hub at {constants.ENDPOINT} has no such model")
    if answer.kind in (LOCKED, GATED, BAD_TOKEN):
        raise _access_error(name, repo_id, answer.kind)
    if answer.kind == UNREACHABLE:
        raise not_found(f"the hub at {constants.ENDPOINT} is unreachable ({answer.reason})")
    log.info("%s: downloading %s from %s", name, repo_id, constants.ENDPOINT)
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=CHECKPOINT_FILES, etag_timeout=10))
        if not has_weights(path):  # older repos hold only pytorch_model.bin
            path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.bin"]))
    except GatedRepoError as e:  # a gated repo's description is public, its files are not
        raise _access_error(name, repo_id, GATED) from e
    except RepositoryNotFoundError as e:
        raise not_found(f"the hub refused it ({type(e).__name__})") from e
    except OSError as e:
        raise not_found(f"the download failed ({e})") from e
    return path


# What the hub said about a model: the kinds of _Answer.
FOUND, MISSING, LOCKED, GATED, BAD_TOKEN, UNREACHABLE = (
    "found", "missing", "locked", "gated", "bad-token", "unreachable")


@dataclass(frozen=True)
class _Answer:
    kind: str
    reason: str = ""  # why the hub did not answer (UNREACHABLE)


def _access_error(name: str, repo_id: str, kind: str) -> ModelNotFoundError:
    """The hub has (or may have) the model, but this user may not read it: how to get in."""
    from huggingface_hub import constants

    alias = f" ({repo_id})" if repo_id != name else ""
    page = f"{constants.ENDPOINT}/{repo_id}"
    login = "log in (`hf auth login`) or set HF_TOKEN to a token of an account that has access"
    if kind == BAD_TOKEN:
        return ModelNotFoundError(
            f"the hub at {constants.ENDPOINT} refused your token for model {name!r}{alias} "
            "(from HF_TOKEN or `hf auth login`): log in again or set a valid HF_TOKEN")
    if kind == GATED:
        return ModelNotFoundError(
            f"model {name!r}{alias} exists on the hub but is gated: it needs access. Request "
            f"access on its page, {page}, then {login}.")
    return ModelNotFoundError(  # LOCKED: a 401 to an anonymous user, or a 403
        f"model {name!r}{alias} needs access: the hub at {constants.ENDPOINT} shows it only to "
        f"an account allowed to read it (it is private or gated, or the name is wrong). "
        f"{login[0].upper()}{login[1:]}, and request access on its page, {page}.")


def _probe(repo_id: str, timeout: float = PROBE_TIMEOUT_S) -> _Answer:
    """What the hub says about ``repo_id`` within ``timeout`` seconds, asked once with the
    user's token.

    Runs in a daemon thread because name resolution ignores socket timeouts and can hang.
    Plain huggingface_hub calls (``HfApi.model_info``) would first fetch the hub's list of AI
    agents to fill in the user agent: a second request and 3 s more against a silent hub.
    """
    outcome: list[_Answer] = []

    def ask() -> None:
        try:
            outcome.append(_ask_hub(repo_id, timeout))
        except Exception as e:  # noqa: BLE001 -- any failure means "not reachable"
            outcome.append(_Answer(UNREACHABLE, _unreachable_reason(e, timeout)))

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    return outcome[0] if outcome else _Answer(UNREACHABLE, f"no answer within {timeout:.0f} s")


def _ask_hub(repo_id: str, timeout: float) -> _Answer:
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import get_session, hf_raise_for_status

    token = get_token()  # HF_TOKEN, else the saved login
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = get_session().get(f"{constants.ENDPOINT}/api/models/{repo_id}",
                                 headers=headers, timeout=timeout)
    try:
        hf_raise_for_status(response)
    except GatedRepoError:
        return _Answer(GATED)
    except RepositoryNotFoundError:
        # The hub answers 401 to anyone not logged in for a private, gated or missing repo
        # alike, and 404 to a logged-in user for one they cannot see.
        return _Answer(LOCKED if response.status_code == 401 else MISSING)
    except HfHubHTTPError:
        if response.status_code == 401:
            return _Answer(BAD_TOKEN if token else LOCKED)
        if response.status_code == 403:
            return _Answer(LOCKED)
        if response.status_code == 404:
            return _Answer(MISSING)
        return _Answer(FOUND)  # a server error: the download says what is wrong, if anything
    return _Answer(FOUND)


def _unreachable_reason(error: Exception, timeout: float) -> str:
    # By name: the HTTP client is huggingface_hub's (httpx or a fork of it), not ours to import.
    if isinstance(error, TimeoutError) or "Timeout" in type(error).__name__:
        return f"no answer within {timeout:.0f} s"  # the user reads "timed out" as a hang
    return str(error) or type(error).__name__
