"""The installed ``vislang`` command fed what users get wrong: bad flags, odd folders, long
text, broken files. Each answer is one line on stderr and the documented exit code."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from conftest import run_cli
from test_cli import _one_line_error

LONG_QUESTION = "is there a red circle next to a blue square " * 7 + "?"  # ~310 characters


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "red.png"
    Image.new("RGB", (64, 64), "red").save(path)
    return path


@pytest.mark.parametrize("args, needle", [
    (["--no-such-flag"], "--no-such-flag"),
    (["no-such-command"], "no-such-command"),
    (["search", "-k", "0", "foo"], "--top"),
    (["search", "-k", "-1", "foo"], "--top"),
])
def test_usage_errors_exit_2_on_one_line(args, needle, tmp_path):
    result = run_cli(*args, env={"VISLANG_INDEX": str(tmp_path / "index")})
    _one_line_error(result, 2, needle)
    assert "internal error" not in result.stderr


@pytest.mark.parametrize("command", [["classify", "-l", "a,b"], ["caption"]])
def test_model_folder_without_config_is_a_model_error(command, picture, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    result = run_cli(*command, picture, "--model", folder)
    _one_line_error(result, 3, str(folder), "config.json", "save_pretrained")


def test_saliency_checks_the_output_folder_before_computing(picture, tmp_path):
    # one stderr line: the progress bar of a computed map would add more
    result = run_cli("saliency", picture, "a red square", "-m", "shapes-clip", "--backend",
                     "torch", "-o", tmp_path / "missing" / "map.png")
    _one_line_error(result, 2, "missing", "does not exist")


def test_flags_have_no_value_tag_in_help():
    result = run_cli("dups", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()
             if line.startswith("│ --")}
    assert "<bool>" not in lines["--json"] and "<bool>" not in lines["--help"]
    assert "<float" in lines["--threshold"] and "<path>" in lines["--index"]


def test_long_question_is_cut_to_the_window_with_a_note(picture):
    result = run_cli("ask", picture, LONG_QUESTION, "-m", "shapes-blip-vqa", "--backend",
                     "torch", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["answer"]
    (note,) = result.stderr.strip().splitlines()
    assert re.match(r"note: the question is \d+ tokens, .*window of shapes-blip-vqa \(48 tokens",
                    note), note


def test_long_caption_prompt_is_cut_with_a_note(picture):
    result = run_cli("caption", picture, "-m", "shapes-blip-caption", "--backend", "torch",
                     "--prompt", "a red square " * 30, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["caption"].startswith("a red square")
    (note,) = result.stderr.strip().splitlines()
    assert note.startswith("note: the prompt is ") and "shapes-blip-caption" in note


@pytest.fixture(scope="module")
def folder_with_a_bad_file(tmp_path_factory):
    """An ImageFolder of two classes, three pictures each, and one corrupt file among them."""
    root = tmp_path_factory.mktemp("classes")
    for colour in ("red", "blue"):
        (root / colour).mkdir()
        for i in range(3):
            Image.new("RGB", (64, 64), colour).save(root / colour / f"{i}.png")
    (root / "red" / "broken.png").write_bytes(b"not a picture at all")
    return root


def test_classify_skips_a_bad_file_and_goes_on(folder_with_a_bad_file):
    good = folder_with_a_bad_file / "blue" / "0.png"
    bad = folder_with_a_bad_file / "red" / "broken.png"
    args = ["classify", good, bad, "-l", "red square,blue square", "-m", "shapes-clip",
            "--backend", "torch"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"skipped {bad}: not an image" in result.stdout and "blue square" in result.stdout
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["path"] for r in rows] == [str(good), str(bad)]
    assert rows[0]["predictions"][0]["label"] == "blue square"
    assert rows[1]["predictions"] == [] and "not an image" in rows[1]["skipped"]


def test_classify_with_no_readable_image_exits_4(folder_with_a_bad_file):
    bad = folder_with_a_bad_file / "red" / "broken.png"
    result = run_cli("classify", bad, bad, "-l", "red square,blue square", "-m", "shapes-clip",
                     "--backend", "torch")
    _one_line_error(result, 4, str(bad), "none of the 2 images")


def test_eval_zeroshot_skips_a_bad_file_and_reports_it(folder_with_a_bad_file):
    args = ["eval", "zeroshot", folder_with_a_bad_file, "-m", "shapes-clip", "--backend",
            "torch"]
    result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    bad = str(folder_with_a_bad_file / "red" / "broken.png")
    assert report["images"] == 6 and [s["path"] for s in report["skipped"]] == [bad]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"skipped {bad}: not an image" in result.stdout
