"""Search under hostile conditions: special files, mistyped index folders, odd file names,
out-of-range thresholds, unusual EXIF dates. Everything a user would notice, end to end."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from PIL import Image

from conftest import VISLANG, run_cli
from test_search import write_gallery
from vislang.errors import InputError
from vislang.search import Index
from vislang.search.scan import FileStat, read_content

HANG_GUARD = 600  # seconds: turns a regression into a failure instead of a stuck test run


def test_index_skips_fifos_and_devices_named_like_images(tmp_path):
    root = tmp_path / "photos"
    write_gallery(root, 2, seed=11)
    os.mkfifo(root / "pipe.jpg")  # opening it to read blocks until someone writes
    (root / "zero.png").symlink_to("/dev/zero")  # reading it never ends
    result = run_cli("index", root, "--index", tmp_path / "idx", "-m", "shapes-clip", "--json",
                     timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    reasons = {s["path"]: s["reason"] for s in summary["skipped"]}
    assert "FIFO" in reasons[str(root / "pipe.jpg")]
    assert "device" in reasons[str(root / "zero.png")]
    assert summary["added"] == 2 and summary["embedded"] == 2


def test_python_add_of_a_fifo_skips_it(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    code = ("import json, sys\nfrom vislang.search import Index\n"
            "with Index.open(sys.argv[1], 'shapes-clip') as index:\n"
            "    print(json.dumps(index.add([sys.argv[2]]).as_dict()))")
    # A subprocess, so that a blocking open cannot hang the test run itself.
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx"), str(fifo)],
                            capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
    skipped = json.loads(result.stdout)["skipped"]
    assert skipped == [{"path": str(fifo), "reason": "not a regular file (a FIFO)"}]


@pytest.mark.parametrize("command", [["search", "a red circle"], ["dups"],
                                     ["index", "--status"], ["index"]])
def test_read_only_commands_never_create_an_index(tmp_path, command):
    missing = tmp_path / "no" / "such" / "dir"
    result = run_cli(*command, "--index", missing)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no index at {missing}")
    assert "vislang index DIR" in lines[0]
    assert not (tmp_path / "no").exists()


def test_indexing_a_missing_folder_creates_no_index(tmp_path):
    index = tmp_path / "new-index"
    result = run_cli("index", tmp_path / "typo", "--index", index)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: no such folder: {tmp_path / 'typo'}"
    assert not index.exists()


@pytest.fixture()
def odd_names(tmp_path):
    """An index whose best match for its own image has a newline in its file name."""
    root = tmp_path / "photos"
    write_gallery(root, 4, seed=12)
    odd = root / "two\nlines.png"
    shutil.copy(root / "scene-0000.png", odd)
    (root / "scene-0000.png").unlink()
    assert run_cli("index", root, "--index", tmp_path / "idx", "-m", "shapes-clip").returncode == 0
    return tmp_path / "idx", odd


def test_search_null_lists_every_path_whole(odd_names):
    idx, odd = odd_names
    result = subprocess.run([str(VISLANG), "search", "--image", str(odd), "--index", str(idx),
                             "-k", "4", "-0"], capture_output=True, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"\0")
    paths = [os.fsdecode(p) for p in result.stdout[:-1].split(b"\0")]
    assert paths[0] == str(odd) and len(paths) == 4
    assert all(os.path.isfile(p) for p in paths)


def test_search_paths_leaves_out_a_path_with_a_newline_and_says_so(odd_names):
    idx, odd = odd_names
    result = run_cli("search", "--image", odd, "--index", idx, "-k", "4", "--paths")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(os.path.isfile(line) for line in lines)
    assert "newline" in result.stderr and "--null" in result.stderr


@pytest.mark.parametrize("flag", ["--paths", "--null", "-0"])
def test_search_refuses_json_with_a_paths_output(tmp_path, flag):
    result = run_cli("search", "a red circle", "--json", flag, "--index", tmp_path / "idx")
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error: --json and ") and "give one" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["dups", "-t", "-3"], ["dups", "--threshold", "1.5"],
                                     ["search", "x", "--threshold", "1.5"],
                                     ["search", "x", "--threshold", "-2"]])
def test_cli_thresholds_outside_their_range_are_usage_errors(tmp_path, command):
    result = run_cli(*command, "--index", tmp_path / "idx")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "--threshold" in result.stderr
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize("value", [-0.5, 1.5, math.nan])
def test_python_duplicates_threshold_is_bounded(tmp_path, value):
    with Index.open(tmp_path / "idx") as index:
        with pytest.raises(InputError, match="threshold must be between 0 and 1"):
            index.duplicates(value)


@pytest.mark.parametrize("value", [-1.5, 2.0, math.nan])
def test_python_search_threshold_is_bounded(tmp_path, value):
    with Index.open(tmp_path / "idx") as index:
        with pytest.raises(InputError, match="threshold must be between -1 and 1"):
            index.search(text="a red circle", threshold=value)


def _photo_with_exif(path, **tags) -> FileStat:
    """A JPEG whose EXIF IFD holds ``tags`` (tag number -> value; 0x0132 goes in IFD0)."""
    exif = Image.Exif()
    for tag, value in tags.items():
        number = int(tag, 16)
        (exif if number == 0x0132 else exif.get_ifd(0x8769))[number] = value
    Image.new("RGB", (32, 32), "red").save(path, exif=exif)
    info = os.stat(path)
    return FileStat(str(path), info.st_size, info.st_mtime_ns)


SEPT_17_UTC = datetime(2012, 9, 17, 19, 53, 45, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("tags, expected", [
    ({"0x9003": "2012-09-17T15:53:45-04:00"}, SEPT_17_UTC),
    ({"0x9003": "2012:09:17 15:53:45", "0x9011": "-04:00"}, SEPT_17_UTC),
    ({"0x9003": "2012:09:17 15:53:45", "0x9011": "-04:00", "0x9291": "25"}, SEPT_17_UTC + 0.25),
    ({"0x9003": "2012:09:17 15:53:45"}, datetime(2012, 9, 17, 15, 53, 45).timestamp()),
    # A camera whose clock was never set: the next date tag answers, not the file's mtime.
    ({"0x9003": "0000:00:00 00:00:00", "0x0132": "2010:01:02 03:04:05"},
     datetime(2010, 1, 2, 3, 4, 5).timestamp()),
])
def test_exif_dates_in_each_form_give_the_taken_time(tmp_path, tags, expected):
    content = read_content(_photo_with_exif(tmp_path / "photo.jpg", **tags))
    assert content.error is None
    assert content.taken == pytest.approx(expected, abs=1e-3)


def test_search_dates_filter_by_an_iso_exif_date(tmp_path):
    root = tmp_path / "photos"
    write_gallery(root, 2, seed=13)
    photo = root / "holiday.jpg"
    _photo_with_exif(photo, **{"0x9003": "2012-09-17T15:53:45-04:00"})
    idx = tmp_path / "idx"
    assert run_cli("index", root, "--index", idx, "-m", "shapes-clip").returncode == 0
    found = run_cli("search", "a red square", "--index", idx, "--paths", "--since", "2012-09",
                    "--until", "2012-09")
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines() == [str(photo)]


def test_index_reports_model_loading_apart_from_embedding(tmp_path):
    root = tmp_path / "photos"
    write_gallery(root, 3, seed=14)
    idx = tmp_path / "idx"
    text = run_cli("index", root, "--index", idx, "-m", "shapes-clip")
    assert text.returncode == 0, text.stderr
    assert "loaded the model in " in text.stdout and "embedded 3 images in " in text.stdout
    write_gallery(root / "more", 1, seed=15)
    summary = json.loads(run_cli("index", "--index", idx, "--json").stdout)
    assert summary["embedded"] == 1 and summary["load_seconds"] > 0
    # Both parts lie within the whole update (each is rounded to a millisecond).
    assert summary["seconds"] >= summary["load_seconds"] + summary["embed_seconds"] - 0.002
    nothing_new = run_cli("index", "--index", idx)
    assert "loaded the model" not in nothing_new.stdout and "embedded 0 images" in \
        nothing_new.stdout
