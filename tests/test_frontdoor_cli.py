"""The command line's front door: settings from the environment and the global options, a
start-up that imports no numerical library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import run_cli


@pytest.fixture(scope="module")
def red_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("frontdoor") / "red.png"
    Image.new("RGB", (64, 64), "red").save(path)
    return path


def test_the_command_line_starts_without_numpy():
    """numpy was a third of `vislang --help`'s start-up; only a command that computes needs it."""
    code = "import sys, vislang.cli.main; print('numpy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_verbose_says_which_model_and_engine_and_vislang_model_is_the_default(red_image):
    result = run_cli("-v", "classify", red_image, "--labels", "red circle,blue square",
                     "--backend", "torch", "--precision", "fp32", "--json",
                     env={"VISLANG_MODEL": "shapes-clip"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["path"] == str(red_image)  # stdout stays the result
    lines = result.stderr.splitlines()
    assert "vislang: shapes-clip: shipped with vislang" in lines[0]
    assert all(line.startswith("vislang: ") for line in lines), result.stderr


def test_without_verbose_nothing_is_logged(red_image):
    result = run_cli("classify", red_image, "--labels", "red circle,blue square", "--model",
                     "shapes-clip", "--backend", "torch", "--precision", "fp32", "--json")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_debug_shows_the_traceback_and_plain_errors_are_one_line(tmp_path):
    missing = tmp_path / "missing.png"
    plain = run_cli("classify", missing, "--labels", "a,b")
    assert plain.returncode == 2 and plain.stderr.strip() == f"error: no such file: {missing}"
    debug = run_cli("--debug", "classify", missing, "--labels", "a,b")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "InputError: no such file" in debug.stderr


def test_vislang_caption_model_is_the_captioning_default(red_image):
    """Without the variable the default is Salesforce's BLIP, which this offline run lacks."""
    result = run_cli("caption", red_image, "--backend", "torch", "--json",
                     env={"VISLANG_CAPTION_MODEL": "shapes-blip-caption"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["caption"]


def test_an_unknown_backend_is_refused_before_any_model_work(red_image):
    result = run_cli("classify", red_image, "--labels", "a,b", "--model", "no/such-model",
                     "--backend", "tpu")
    assert result.returncode == 2 and "unknown backend 'tpu'" in result.stderr
