"""The layers import downwards only: the runtime knows models by their public attributes,
never by importing vislang.models, and models never import the generated data set."""

from __future__ import annotations

import ast
from pathlib import Path

import vislang

PACKAGE = Path(vislang.__file__).parent


def _imports(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[path.name] = names
    return found


def test_runtime_imports_nothing_from_models_or_above():
    above = ("vislang.models", "vislang.search", "vislang.captioning", "vislang.cli",
             "vislang.serve", "vislang.explain", "vislang.zeroshot", "vislang.probe",
             "vislang.train")
    wrong = {f: sorted(m for m in names if m.startswith(above))
             for f, names in _imports("runtime").items()}
    assert not {f: m for f, m in wrong.items() if m}


def test_models_do_not_import_the_shapes_world_for_calibration():
    for name in ("clip.py", "blip.py"):
        assert "vislang.datasets.shapes" not in _imports("models")[name]
