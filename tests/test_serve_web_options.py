"""The page's filters row and near-duplicates view in Chromium (skipped without it)."""

from __future__ import annotations

import json
import shutil

import pytest

from browser import chromium, open_page, until
from serve_gallery import CAPTION_MODEL, VQA_MODEL, ServerThread  # skips without fastapi

from vislang.datasets.shapes import generate_scenes  # noqa: E402
from vislang.search import Index  # noqa: E402
from vislang.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-options")
    root = folder / "photos"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
    for scene in generate_scenes(24, seed=737373, n_objects=2, image_size=64):
        scene.image.save(root / ("a" if scene.index % 2 else "b") / f"s-{scene.index:03d}.png")
    shutil.copy2(root / "a" / "s-001.png", root / "b" / "copy.png")
    with Index.open(folder / "index", "shapes-clip") as index:
        index.update([root])
    return root, folder / "index"


@pytest.fixture(scope="module")
def page(gallery, tmp_path_factory):
    app = create_app(gallery[1], caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     thumbnails=tmp_path_factory.mktemp("thumbs"))
    with ServerThread(app) as server, chromium() as browser, \
            open_page(browser, server.url) as page:
        yield page
    app.state.vislang.close()


def test_the_filters_row_restricts_the_results(page, gallery):
    root = gallery[0]
    page.locator("#filters summary").click()
    page.fill("#f-under", str(root / "a"))
    page.fill("#q", "a red circle")
    page.keyboard.press("Enter")
    page.locator(".tile").first.wait_for()
    paths = [t.get_attribute("data-path") for t in page.locator(".tile").all()]
    assert len(paths) == 12 and all(p.startswith(str(root / "a") + "/") for p in paths)
    page.fill("#f-under", "/nowhere")
    page.locator("#q").press("Enter")
    page.locator("#error").wait_for()
    assert "inside the index's folders" in page.locator("#error").inner_text()
    page.fill("#f-under", "")


def test_the_duplicates_view_lists_the_files_not_kept(page, gallery):
    root = gallery[0]
    page.click("#dups-open")
    page.fill("#dups-threshold", "0.999")
    page.click("#dups-form button")
    page.locator(".dup-group").first.wait_for()
    group = page.locator(".dup-group").first
    pair = {str(root / "b" / "copy.png"), str(root / "a" / "s-001.png")}
    boxes = page.locator("input.keep")
    assert all(boxes.nth(i).is_checked() == (i == 0) for i in range(group.locator(
        "input.keep").count()))  # the first of a group is kept unless you say otherwise
    until(page, "document.querySelector('.dup-group img').naturalWidth > 0")
    page.click("#dups-list")
    others = page.locator("#dups-out").input_value().split("\n")
    assert len(pair & set(others)) == 1  # one of the copies kept, the other listed
    kept = (pair - set(others)).pop()
    page.locator(f"input.keep[data-path='{kept}']").uncheck()
    page.click("#dups-list")
    assert pair <= set(page.locator("#dups-out").input_value().split("\n"))
    page.check("#dups-json")
    listed = json.loads(page.locator("#dups-out").input_value())
    assert pair <= set(listed) and len(listed) == len(others) + 1
