"""The index on a system without fcntl (Windows), and its one-writer-at-a-time lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_search import write_gallery
from vislang.errors import IndexBusyError
from vislang.search import Index

# Windows has no fcntl: a None in sys.modules makes every `import fcntl` fail the same way.
WITHOUT_FCNTL = """
import json, sys, warnings
sys.modules["fcntl"] = None
warnings.simplefilter("ignore")  # filelock warns that only its soft lock is left
from vislang.search import Index
with Index.open(sys.argv[1], "shapes-clip", backend="torch") as index:
    print(json.dumps(index.update([sys.argv[2]]).as_dict()))
"""


def test_an_index_updates_where_fcntl_cannot_be_imported(tmp_path):
    root = tmp_path / "photos"
    write_gallery(root, 3, seed=313131)
    result = subprocess.run([sys.executable, "-c", WITHOUT_FCNTL, str(tmp_path / "idx"),
                             str(root)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] == 3 and summary["embedded"] == 3


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    root = tmp_path / "photos"
    write_gallery(root, 1, seed=1)
    with Index.open(tmp_path / "idx") as first, Index.open(tmp_path / "idx") as second:
        with first.writing():
            with pytest.raises(IndexBusyError, match=f"being updated by pid {os.getpid()}"):
                second.remove([root])
        assert second.remove([root]) == 0  # released: the next writer gets in
