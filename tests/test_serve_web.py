"""The web page in a real browser: Debian's Chromium driven by Playwright, against a server
this test starts on a generated gallery with the shipped models."""

from __future__ import annotations

import pytest

from browser import chromium, open_page, until
from serve_gallery import CAPTION_MODEL, VQA_MODEL, Gallery, ServerThread, build

from vislang.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Gallery:
    from vislang.captioning import caption_index
    from vislang.models.blip import load_blip
    from vislang.search import Index

    gallery = build(tmp_path_factory.mktemp("web"), n=45, seed=616161)  # two pages of 30
    with Index.open(gallery.index) as index:  # stored captions, shown under the thumbnails
        caption_index(index, load_blip(CAPTION_MODEL))
    return gallery


@pytest.fixture(scope="module")
def server(gallery, tmp_path_factory):
    app = create_app(gallery.index, caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     thumbnails=tmp_path_factory.mktemp("thumbs"))
    with ServerThread(app) as running:
        yield running
    app.state.vislang.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture()
def page(browser, server):
    with open_page(browser, server.url) as page:  # no uncaught script errors along the way
        yield page


def search(page, query: str) -> None:
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("/")  # the keyboard shortcut lands in the search box
    page.keyboard.type(query)
    page.keyboard.press("Enter")
    page.locator(".tile").first.wait_for()


def first_path(page) -> str:
    return page.locator(".tile").first.get_attribute("data-path")


def test_typing_a_query_shows_the_matching_image_first(page, gallery):
    path, caption = next(iter(gallery.unique().items()))
    search(page, caption)
    assert first_path(page) == path
    first = page.locator(".tile").first
    assert float(first.locator(".score").inner_text().split()[0]) > 0
    assert gallery.scenes[path].caption in first.locator(".caption").inner_text()
    # The thumbnail really loaded (a broken image has no natural width).
    until(page, "document.querySelector('.tile img').naturalWidth > 0")
    assert "#q=" in page.url  # a reload keeps the query


def test_a_result_opens_with_its_explanation_and_caption(page, gallery):
    path, caption = next(iter(gallery.unique().items()))
    search(page, caption)
    page.locator(".tile").first.focus()
    page.keyboard.press("Enter")  # keyboard only
    dialog = page.locator("#detail")
    dialog.wait_for(state="visible")
    overlay = page.locator("#overlay")
    overlay.wait_for(state="visible")  # explained for the query at once
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    until(page, "document.getElementById('overlay').naturalWidth === 64")
    assert "matches best at" in page.locator("#saliency-info").inner_text()
    until(page, "document.getElementById('caption').textContent.length > 0 && "
                           "!document.getElementById('caption').textContent.endsWith('…')")
    assert page.locator("#caption").inner_text() == f"{gallery.scenes[path].caption} " \
                                                    f"({CAPTION_MODEL})"
    # Another method, chosen from the list, redraws the overlay.
    before = overlay.get_attribute("src")
    page.select_option("#method", "crops")
    page.click("#explain")
    until(page, f"document.getElementById('overlay').src !== {before!r}")
    assert page.locator("#saliency-info").inner_text().startswith("crops")
    # A question gets BLIP's answer.
    qa = next(q for q in gallery.scenes[path].qa if q.kind == "count")
    page.fill("#question", qa.question)
    page.keyboard.press("Enter")
    until(page, "document.getElementById('answer').textContent.includes('→')")
    assert page.locator("#answer").inner_text().endswith(qa.answer)
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.dataset.path") == path  # focus came back


def test_an_uploaded_image_comes_back_first(page, gallery):
    path = sorted(gallery.scenes)[7]
    page.set_input_files("#pick", path)
    until(page, f"document.querySelector('.tile')?.dataset.path === {path!r}")
    assert page.locator(".tile").first.locator(".score").inner_text().startswith("1.000")


def test_more_like_this_from_the_detail_view(page, gallery):
    path = sorted(gallery.scenes)[3]
    search(page, gallery.scenes[path].caption)
    page.locator(f'.tile[data-path="{path}"]').click()
    page.click("#similar")
    until(page, f"document.querySelector('.tile')?.dataset.path === {path!r} && "
                           "!document.getElementById('detail').open")


def test_scrolling_loads_the_next_page(page, gallery):
    search(page, "a red circle")
    until(page, "document.querySelectorAll('.tile').length >= 30")
    page.locator(".tile").last.scroll_into_view_if_needed()  # the end of the page is in view
    until(page, f"document.querySelectorAll('.tile').length === {len(gallery.scenes)}")
    paths = page.eval_on_selector_all(".tile", "tiles => tiles.map(t => t.dataset.path)")
    assert sorted(paths) == sorted(gallery.scenes)  # each image once, none missing


def test_a_failing_request_is_explained(page):
    # The box stops at 300 characters; a longer query (as a script might send) is refused by
    # the server, and the page says why.
    page.evaluate("document.getElementById('q').removeAttribute('maxlength')")
    page.fill("#q", "y" * 301)
    page.keyboard.press("Enter")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "over the limit of 300" in error.inner_text()
    assert page.locator("#progress").is_hidden()  # and stops showing progress


def test_a_long_query_stays_inside_the_page(page):
    # The search is held unanswered, so the "Searching for …" line stays up to be measured.
    page.route(lambda url: "/api/search" in url, lambda route: None)
    page.fill("#q", "y" * 300)  # the most the box takes, as one word: nowhere to wrap
    page.keyboard.press("Enter")
    until(page, "document.getElementById('status').textContent.startsWith('Searching for “yyy')")
    # No sideways scrolling, and the line ends where the page's column does.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1200
    status, main = page.locator("#status").bounding_box(), page.locator("main").bounding_box()
    assert status["x"] + status["width"] <= main["x"] + main["width"]
    assert page.evaluate("(s => s.scrollWidth <= s.clientWidth || "
                         "getComputedStyle(s).textOverflow === 'ellipsis')"
                         "(document.getElementById('status'))")


def test_works_at_phone_width(browser, server, gallery):
    """Touch on a phone (tests/test_serve_web_narrow.py drives every control by keyboard)."""
    with open_page(browser, server.url, 375, 740, is_mobile=True, has_touch=True) as page:
        path, caption = next(iter(gallery.unique().items()))
        page.fill("#q", caption)
        page.keyboard.press("Enter")
        page.locator(".tile").first.wait_for()
        assert first_path(page) == path
        # Nothing wider than the screen: no sideways scrolling.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.locator(".tile").first.tap()
        page.locator("#overlay").wait_for(state="visible")
        box = page.locator("#detail").bounding_box()
        assert box["width"] <= 375
