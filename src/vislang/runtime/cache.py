"""Where exported and compiled engines live, so the second run neither re-exports nor recompiles.

Each export is a folder named by a hash of everything that changes the graph: the weights
(model key), the tower, backend, precision, calibration, vislang's export recipe and the
versions of the libraries that wrote it. A change in any of them is a new folder;
``vislang cache clear`` removes all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from vislang.settings import logger, settings

LIBRARIES = ("vislang", "torch", "transformers", "openvino", "nncf", "onnx", "onnxruntime")
# Raised whenever vislang changes how it writes a graph (what is quantised, how it is pruned):
# exports made by the older recipe then miss the cache instead of running stale.
RECIPE = 2
log = logger("runtime")


def cache_root() -> Path:
    return settings().cache / "engines"


def openvino_config(hint: str, performance: str) -> dict[str, str]:
    """OpenVINO compile options: ``INFERENCE_PRECISION_HINT``, ``PERFORMANCE_HINT`` and the
    compiled-model cache. The cache has one folder per hint because OpenVINO (2026.4) names a
    compiled blob without the hint: a graph compiled under f32 and then under bf16 loads the
    f32 blob, and an int8 graph then crashes the process (segfault, seen here)."""
    return {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": performance,
            "CACHE_DIR": str(cache_root() / "openvino-compiled" / hint)}


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def entry_dir(model_key: str, tower: str, backend: str, precision: str, extra: str = "") -> Path:
    """The folder for one exported tower; its ``meta.json`` says what it holds."""
    identity = {"model": model_key, "tower": tower, "backend": backend, "precision": precision,
                "extra": extra, "recipe": RECIPE, "versions": library_versions()}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9]+", "-", model_key.split("@")[0])[-40:].strip("-")
    folder = cache_root() / f"{readable}-{tower}-{backend}-{precision}-{digest}"
    if not (folder / "meta.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps(identity, indent=2))
    return folder


def export_files(model_key: str, names: Sequence[str], backend: str, precision: str,
                 suffix: str, write: Callable[[str, Path], None], out_dir: Path | None = None,
                 prefix: str = "") -> dict[str, Path]:
    """Each graph's file (``<name><suffix>``): from the cache when already exported, written
    by ``write(name, path)`` when not. An explicit export to ``out_dir`` always writes, with
    what was asked for now."""
    paths = {}
    for name in names:
        folder = Path(out_dir or entry_dir(model_key, prefix + name, backend, precision))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}{suffix}"
        if out_dir is not None or not path.is_file():
            started = time.perf_counter()
            write(name, path)
            log.info("exported %s%s of %s as %s/%s to %s (%.1f s)", prefix, name, model_key,
                     backend, precision, path, time.perf_counter() - started)
        else:
            log.debug("cached %s%s of %s as %s/%s: %s", prefix, name, model_key, backend,
                      precision, path)
        paths[name] = path
    return paths


def engine_key(model_key: str, precision: str, calibration) -> str:
    """The key an engine's exports are cached under: the model's, plus, for int8 calibrated on
    the user's own images, which images (paths with size and time, or the bytes), so another
    calibration set is another export rather than a stale hit."""
    if precision != "int8" or not calibration:
        return model_key
    digest = hashlib.sha256()
    for item in calibration:
        if isinstance(item, (str, os.PathLike)):
            stat = os.stat(item)
            digest.update(f"{os.path.abspath(item)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        elif isinstance(item, (bytes, bytearray, memoryview)):
            digest.update(bytes(item))
        else:  # a PIL image
            digest.update(item.tobytes())
    return f"{model_key}#calibration={digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    model: str
    tower: str
    backend: str
    precision: str
    size_bytes: int


def list_entries() -> list[CacheEntry]:
    entries = []
    root = cache_root()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        meta_file = folder / "meta.json"
        if not meta_file.is_file():
            continue
        meta = json.loads(meta_file.read_text())
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        entries.append(CacheEntry(folder, meta["model"], meta["tower"], meta["backend"],
                                  meta["precision"], size))
    return entries


def clear() -> int:
    """Remove every cached engine; returns the bytes freed."""
    freed = sum(e.size_bytes for e in list_entries())
    shutil.rmtree(cache_root(), ignore_errors=True)
    return freed
