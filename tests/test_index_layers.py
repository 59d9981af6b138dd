"""The index stores and the models compute: what vislang.search may import, and how it asks
for a model."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vislang
from vislang.models import clip
from vislang.runtime import EngineSpec
from vislang.search import Index

SOURCES = Path(vislang.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((SOURCES / "search").glob("*.py")), ids=lambda p: p.name)
def test_the_search_package_leaves_computing_to_the_models(path):
    computing = {m for m in imported_modules(path)
                 if m.split(".")[0] == "torch" or m.startswith("vislang.captioning")}
    assert not computing, f"{path.name} imports {computing}"


def test_no_vislang_module_needs_fcntl_which_windows_lacks():
    users = [p.relative_to(SOURCES) for p in SOURCES.rglob("*.py")
             if "fcntl" in imported_modules(p)]
    assert not users


def test_the_engine_spec_wins_and_each_use_picks_its_mode(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(clip, "load", lambda name, **how: asked.append((name, how)) or name)
    spec = EngineSpec("torch", "fp32", device="cuda")
    with Index.open(tmp_path / "a", "shapes-clip", backend="onnx", engine=spec) as index:
        index.model("latency")
    with Index.open(tmp_path / "b", "shapes-clip", backend="torch", precision="fp32") as index:
        index.model()
    assert asked == [("shapes-clip", {"engine": EngineSpec("torch", "fp32", "latency", "cuda")}),
                     ("shapes-clip", {"engine": EngineSpec("torch", "fp32", "throughput")})]
