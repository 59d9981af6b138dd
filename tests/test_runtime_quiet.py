"""An export silences the libraries it runs, and nothing else: a server thread printing or
logging meanwhile is heard as before."""

from __future__ import annotations

import logging
import warnings

import pytest

import vislang
from vislang.runtime import installed
from vislang.runtime.towers import quiet_export


def test_the_quiet_block_leaves_stdout_and_the_root_logger_alone(capsys):
    root = logging.getLogger()
    level = root.level
    with quiet_export():
        print("marker from another thread")
        assert root.level == level
    assert "marker from another thread" in capsys.readouterr().out


@pytest.mark.skipif(not installed("onnx"), reason="needs the onnx extra")
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")  # names its caller
def test_an_export_lets_other_output_through(tiny_clip_dir, tmp_path, monkeypatch, capsys):
    """Stands in for a server printing while a first use exports: the print, made inside the
    export's quiet block, reaches stdout; the root logger keeps its level, and a warning of
    the application's own is still shown."""
    import torch

    from vislang import runtime

    root = logging.getLogger()
    level = root.level
    seen = []
    real_export = torch.onnx.export

    def export_and_print(*args, **kwargs):
        print("marker printed during an export")
        seen.append(root.level)
        with warnings.catch_warnings(record=True) as caught:  # under the export's filters
            warnings.warn("the application's own", UserWarning)
        seen.append([str(w.message) for w in caught])
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_and_print)
    paths = runtime.export(vislang.load(str(tiny_clip_dir)), "onnx", "fp32", tmp_path)
    assert sorted(paths) == ["image", "text"]
    assert "marker printed during an export" in capsys.readouterr().out
    assert seen[0] == level and seen[1] == ["the application's own"]


def test_overlapping_quiet_blocks_restore_once_the_last_ends():
    """Two threads exporting at once: the first to finish must not undo the other's quiet."""
    filters = list(warnings.filters)
    outer = quiet_export()
    outer.__enter__()
    inner = quiet_export()
    inner.__enter__()
    outer.__exit__(None, None, None)  # the first thread finishes first
    assert warnings.filters != filters  # the second is still quiet
    inner.__exit__(None, None, None)
    assert warnings.filters == filters
