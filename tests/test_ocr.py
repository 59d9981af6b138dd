"""Reading text in images with the real PP-OCRv6 models (the rapidocr wheel's ONNX files), on
scenes rendered with known words at known places."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

pytest.importorskip("rapidocr", reason="needs the OCR extra: pip install 'vislang[ocr]'")

from PIL import Image  # noqa: E402

from vislang.datasets.text_scenes import generate_text_scene  # noqa: E402
from vislang.textread import TextReader, read_one  # noqa: E402
from vislang.textread.scoring import Score, iou, score_scene  # noqa: E402

from conftest import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


@pytest.fixture(scope="module")
def sign(tmp_path_factory):
    """A photo-like picture with two clear lines of large text, saved as a PNG."""
    scene = generate_text_scene(7, 0, background="photo", angle=0.0, text_height=48,
                                texts=["OPEN TODAY", "Fresh coffee 42"])
    path = tmp_path_factory.mktemp("ocr") / "sign.png"
    scene.image.save(path)
    return scene, path


def _line_for(drawn, lines):
    return max(lines, key=lambda line: iou(drawn.box, line.box))


def test_reads_the_words_where_they_were_drawn(reader, sign):
    scene, path = sign
    result = reader.read([path])[0]
    assert [line.text for line in result.lines] == [d.text for d in scene.texts] or sorted(
        line.text for line in result.lines) == sorted(d.text for d in scene.texts)
    for drawn in scene.texts:
        line = _line_for(drawn, result.lines)
        assert line.text == drawn.text
        # The detector's box is the ink box grown by its unclip margin: about 0.55 here.
        assert iou(drawn.box, line.box) > 0.4
        assert line.confidence > 0.9
    assert result.source == str(path) and result.skipped is None
    assert result.size == scene.image.size


def test_upside_down_and_rotated_text_reads_the_right_way_up(reader):
    scenes = [generate_text_scene(8, i, background="plain", angle=angle, text_height=40,
                                  texts=["Museum entrance"])
              for i, angle in enumerate((180.0, 178.0, 15.0, -15.0))]
    for scene, result in zip(scenes, reader.read([s.image for s in scenes])):
        assert [line.text for line in result.lines] == ["Museum entrance"], scene.texts[0].angle
        assert iou(scene.texts[0].box, result.lines[0].box) > 0.4


def test_no_text_gives_an_empty_result(reader):
    scenes = [generate_text_scene(9, i, background=bg, n_texts=0, size=(1200, 900))
              for i, bg in enumerate(("shapes", "shapes", "photo"))]
    results = reader.read([s.image for s in scenes])
    assert [r.lines for r in results] == [[], [], []]
    assert all(r.skipped is None and r.text == "" for r in results)


def test_quality_on_a_mixed_sample(reader):
    """CER at >= 24 px on 8 scenes across backgrounds and angles. bench/ocr_quality.py
    measures 0-2% per condition on 25-scene samples; this bound leaves room for one bad line."""
    options = [dict(background="plain"), dict(background="photo"), dict(background="shapes"),
               dict(angle=(10.0, 30.0)), dict(angle=(177.0, 183.0)),
               dict(background="gradient", text_height=(24, 30))]
    scenes = [generate_text_scene(18, 100 + i, **options[i % len(options)]) for i in range(8)]
    total = Score()
    for scene, result in zip(scenes, reader.read([s.image for s in scenes])):
        total.add(score_scene(scene.texts, result.lines))
    assert total.texts >= 12
    assert total.cer <= 0.05, total
    assert total.exact >= 0.85 * total.texts, total


def test_unreadable_files_are_skipped_with_a_reason_and_the_rest_read(reader, sign, tmp_path):
    scene, good = sign
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.png"
    results = reader.read([corrupt, good, missing])
    assert [r.source for r in results] == [str(corrupt), str(good), str(missing)]
    assert "corrupt" in results[0].skipped or "not an image" in results[0].skipped
    assert results[2].skipped == "file not found"
    assert results[0].lines == [] and results[2].lines == []
    assert {line.text for line in results[1].lines} == {d.text for d in scene.texts}
    batches = list(reader.read_batches([("a", corrupt), ("b", good)], source=lambda t: t[1]))
    assert [b.items for b in batches] == [[("b", good)]]
    assert [item for item, _ in batches[0].failed] == [("a", corrupt)]


def test_bytes_and_pil_images_read_like_files(reader, sign):
    """Through vislang.ocr's default reader: a second reader in the process (``reader``)
    must read alike (they share the model sessions and the alphabet)."""
    import vislang

    scene, path = sign
    buffer = io.BytesIO()
    scene.image.save(buffer, format="PNG")
    from_bytes = read_one(buffer.getvalue())
    from_pil = vislang.ocr(scene.image)
    assert from_bytes.source == "<bytes>"
    assert from_bytes.text == from_pil.text
    assert sorted(from_pil.text.splitlines()) == ["Fresh coffee 42", "OPEN TODAY"]
    assert [r.text for r in vislang.ocr([path])] == [from_pil.text]


# This process's own peak, VmHWM: getrusage's ru_maxrss would also count the parent's (pytest's,
# over 1 GB) peak, which Linux carries across the fork and exec that started it.
ENORMOUS = """
import json, resource, sys
from vislang.textread import read_one
r = read_one(sys.argv[1])
try:
    peak = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"lines": [l.as_dict() for l in r.lines], "size": r.size,
                  "rss_mb": peak / 1024}))
"""


def test_an_enormous_image_is_read_scaled_down_in_bounded_memory(tmp_path):
    """12000x9000 (108 MP): decoded once (324 MB of pixels), then read at 2000 px on the
    long side, boxes given in the original's pixels."""
    from PIL import ImageDraw

    from vislang.datasets.text_scenes import _font

    image = Image.new("RGB", (12000, 9000), (235, 230, 220))
    draw, font = ImageDraw.Draw(image), _font("DejaVuSans-Bold.ttf", 900)
    draw.text((2000, 3000), "HARBOUR", font=font, fill=(20, 20, 90))
    x0, y0, x1, y1 = draw.textbbox((2000, 3000), "HARBOUR", font=font)
    path = tmp_path / "huge.jpg"
    image.save(path, quality=80)
    del image
    out = subprocess.run([sys.executable, "-c", ENORMOUS, str(path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [line["text"] for line in found["lines"]] == ["HARBOUR"]
    assert found["size"] == [12000, 9000]
    ink = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    assert iou(ink, found["lines"][0]["box"]) > 0.5
    # The decoded image is 324 MB; the rest (models, the 2000 px copy) stays small.
    assert found["rss_mb"] < 1500, found["rss_mb"]


def test_cli_json_and_human_output(sign, tmp_path):
    scene, good = sign
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = run_cli("ocr", good, corrupt, "--json")
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [r["path"] for r in records] == [str(good), str(corrupt)]
    assert {line["text"] for line in records[0]["lines"]} == {d.text for d in scene.texts}
    line = records[0]["lines"][0]
    assert set(line) == {"text", "confidence", "box"} and 0 < line["confidence"] <= 1
    assert len(line["box"]) == 4 and all(len(point) == 2 for point in line["box"])
    assert records[1]["lines"] == [] and records[1]["skipped"]
    assert "skipped" not in records[0]

    out = run_cli("ocr", good, corrupt)
    assert out.returncode == 0, out.stderr
    assert f"{good}: 2 lines" in out.stdout
    assert "OPEN TODAY" in out.stdout and "Fresh coffee 42" in out.stdout
    assert f"{corrupt}: skipped:" in out.stdout
