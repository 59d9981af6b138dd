"""The page draws the matched words' boxes over an opened result, where the word is printed
(Chromium via Playwright, the real OCR models; skipped without them)."""

from __future__ import annotations

import pytest

pytest.importorskip("rapidocr", reason="the OCR extra is not installed")
from browser import chromium, open_page  # noqa: E402  (skips without Playwright or Chromium)
from serve_gallery import ServerThread  # noqa: E402  (skips without fastapi)

from vislang.datasets.shapes import generate_scenes  # noqa: E402
from vislang.datasets.text_scenes import generate_text_scene  # noqa: E402
from vislang.search import Index  # noqa: E402
from vislang.serve import create_app  # noqa: E402
from vislang.textread.index import ocr_index  # noqa: E402

WORDS = ("COFFEE", "MUSEUM", "BAKERY")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Three scenes each printing one word, among shapes scenes; word -> (path, drawn box)."""
    folder = tmp_path_factory.mktemp("ocr-web")
    root = folder / "photos"
    root.mkdir()
    drawn = {}
    for i, word in enumerate(WORDS):
        scene = generate_text_scene(777, i, size=(480, 360), texts=[word], text_height=44,
                                    angle=0.0, background="plain")
        path = root / f"text-{i}.png"
        scene.image.save(path)
        drawn[word] = (str(path), scene.texts[0].bounds())
    for scene in generate_scenes(4, seed=77, image_size=64):
        scene.image.save(root / f"s-{scene.index}.png")
    with Index.open(folder / "index", "shapes-clip") as index:
        index.update([root])
        ocr_index(index)
    return folder / "index", drawn


@pytest.fixture(scope="module")
def page(gallery, tmp_path_factory):
    app = create_app(gallery[0], thumbnails=tmp_path_factory.mktemp("thumbs"))
    with ServerThread(app) as server, chromium() as browser, \
            open_page(browser, server.url) as page:
        yield page
    app.state.vislang.close()


def screen_box(page, box: tuple[float, float, float, float]) -> dict:
    """An image-pixel box (x0, y0, x1, y1) where the opened image shows it on the screen (the
    image is drawn whole, scaled to fit and centred: object-fit contain)."""
    return page.evaluate("""([x0, y0, x1, y1]) => {
        const img = document.getElementById('full');
        const r = img.getBoundingClientRect();
        const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
        const dx = r.x + (r.width - img.naturalWidth * s) / 2;
        const dy = r.y + (r.height - img.naturalHeight * s) / 2;
        return {x0: dx + x0 * s, y0: dy + y0 * s, x1: dx + x1 * s, y1: dy + y1 * s};
    }""", list(box))


def iou(a: dict, b: dict) -> float:
    w = max(0.0, min(a["x1"], b["x1"]) - max(a["x0"], b["x0"]))
    h = max(0.0, min(a["y1"], b["y1"]) - max(a["y0"], b["y0"]))
    union = ((a["x1"] - a["x0"]) * (a["y1"] - a["y0"]) + (b["x1"] - b["x0"]) * (b["y1"] - b["y0"])
             - w * h)
    return w * h / union if union else 0.0


@pytest.mark.parametrize("word", WORDS[:2])
def test_the_matched_word_is_boxed_where_it_is_printed(page, gallery, word):
    path, drawn = gallery[1][word]
    page.fill("#q", word.lower())
    page.keyboard.press("Enter")
    page.locator(f".tile[data-path='{path}']").first.wait_for()
    assert page.locator(".tile").first.get_attribute("data-path") == path
    page.locator(".tile").first.click()
    page.locator("#text-boxes polygon").first.wait_for(state="attached")
    assert page.locator("#text-boxes").is_visible()
    assert page.locator("#text-boxes polygon title").first.text_content() == word
    shown = page.evaluate("""() => {
        const r = document.querySelector('#text-boxes polygon').getBoundingClientRect();
        return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom};
    }""")
    # The reader's box is the ink grown by its margin: about 0.55 IoU is a tight fit.
    assert iou(shown, screen_box(page, drawn)) > 0.4, (shown, screen_box(page, drawn))
    page.keyboard.press("Escape")
    page.locator("#detail").wait_for(state="hidden")
    page.locator(".tile").first.click()  # opened again: the image is cached, boxes still drawn
    page.locator("#text-boxes polygon").first.wait_for(state="attached")
    assert page.locator("#text-boxes").is_visible()
    page.keyboard.press("Escape")
    page.locator("#detail").wait_for(state="hidden")


def test_a_result_without_matched_text_draws_no_boxes(page, gallery):
    page.fill("#q", "a red circle")
    page.keyboard.press("Enter")
    page.locator(".tile").first.wait_for()
    shapes = page.locator(".tile[data-path$='s-0.png']")
    shapes.first.click()
    page.locator("#detail").wait_for(state="visible")
    page.wait_for_timeout(500)
    assert page.locator("#text-boxes polygon").count() == 0
    assert not page.locator("#text-boxes").is_visible()
    page.keyboard.press("Escape")
