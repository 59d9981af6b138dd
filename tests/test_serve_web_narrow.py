"""The page on a phone-sized screen, driven from the keyboard: every control fits the screen,
is reached with Tab, and does its job (Chromium via Playwright; skipped without it)."""

from __future__ import annotations

import shutil

import pytest

from browser import TIMEOUT, chromium, open_page
from serve_gallery import CAPTION_MODEL, VQA_MODEL, ServerThread  # skips without fastapi

from vislang.datasets.shapes import generate_scenes  # noqa: E402
from vislang.search import Index  # noqa: E402
from vislang.serve import create_app  # noqa: E402

WIDTH, HEIGHT = 375, 740  # an iPhone SE-sized screen
# The main page's controls, in the order Tab reaches them.
MAIN_CONTROLS = ["q", "text-filter", "pick-label", "dups-open"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web-narrow")
    root = folder / "photos"
    root.mkdir()
    for scene in generate_scenes(12, seed=828282, n_objects=1, image_size=64):
        scene.image.save(root / f"s-{scene.index:03d}.png")
    shutil.copy2(root / "s-001.png", root / "copy.png")
    with Index.open(folder / "index", "shapes-clip") as index:
        index.update([root])
    return folder / "index"


@pytest.fixture(scope="module")
def phone(index, tmp_path_factory):
    app = create_app(index, caption_model=CAPTION_MODEL, vqa_model=VQA_MODEL,
                     thumbnails=tmp_path_factory.mktemp("thumbs"))
    with ServerThread(app) as server, chromium() as browser, \
            open_page(browser, server.url, WIDTH, HEIGHT, is_mobile=True, has_touch=True) as page:
        yield page
    app.state.vislang.close()


def focused(page) -> str:
    """The focused element's id, or its tag and class when it has none."""
    return page.evaluate("(e => e.id || (e.tagName.toLowerCase() + '.' + e.className))"
                         "(document.activeElement)")


def tab_until(page, wanted: str, presses: int = 60) -> None:
    """Press Tab until the element with id ``wanted`` has the focus (or fail)."""
    for _ in range(presses):
        if focused(page) == wanted:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{wanted} (ends on {focused(page)})")


def fits(page, selector: str) -> None:
    """The element is shown and lies within the screen's width (scrolled into view)."""
    element = page.locator(selector).first
    element.scroll_into_view_if_needed()
    box = element.bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= -0.5 and box["x"] + box["width"] <= WIDTH + 0.5, (selector, box)


def no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH


def test_every_main_control_fits_and_tab_reaches_it_in_order(phone):
    phone.focus("#q")  # where the page starts (and "/" jumps to)
    order = ["q"]
    for _ in range(12):
        phone.keyboard.press("Tab")
        if focused(phone) in MAIN_CONTROLS and focused(phone) not in order:
            order.append(focused(phone))
    assert order == MAIN_CONTROLS
    for control in MAIN_CONTROLS + ["#filters summary"]:
        fits(phone, control if control.startswith("#") else f"#{control}")
    no_sideways_scroll(phone)


def test_filters_open_and_apply_from_the_keyboard(phone, index):
    root = str(index.parent / "photos")
    phone.focus("#dups-open")
    phone.keyboard.press("Tab")  # the filters' summary comes next
    assert focused(phone).startswith("summary")
    phone.keyboard.press("Enter")
    assert phone.locator("#filters").get_attribute("open") is not None
    for field in ("f-under", "f-ext", "f-since", "f-until", "f-threshold", "f-add", "f-sub"):
        fits(phone, f"#{field}")
    tab_until(phone, "f-under")
    phone.keyboard.type(root)
    tab_until(phone, "f-ext")
    phone.keyboard.type("png")
    phone.focus("#q")
    phone.keyboard.type("a red circle")
    phone.keyboard.press("Enter")
    phone.locator(".tile").first.wait_for()
    paths = [t.get_attribute("data-path") for t in phone.locator(".tile").all()]
    assert paths and all(p.startswith(root) and p.endswith(".png") for p in paths)
    no_sideways_scroll(phone)
    phone.fill("#f-under", "")
    phone.fill("#f-ext", "")
    phone.locator("#filters summary").press("Enter")  # closed again for the next test


def test_a_result_opens_and_every_detail_control_works_from_the_keyboard(phone):
    phone.fill("#q", "a blue square")
    phone.keyboard.press("Enter")
    phone.locator(".tile").first.wait_for()
    phone.focus("#q")
    for _ in range(20):  # Tab from the search box to the first result
        phone.keyboard.press("Tab")
        if phone.evaluate("document.activeElement.classList.contains('tile')"):
            break
    else:
        raise AssertionError(f"Tab never reached a result (ends on {focused(phone)})")
    fits(phone, ".tile")
    phone.keyboard.press("Tab")  # each result's "this one" mark follows it
    assert focused(phone) == "button.mark"
    fits(phone, ".mark")
    phone.keyboard.press("Enter")  # recorded: the server answers, then the mark shows it
    phone.locator(".mark[aria-pressed='true']").first.wait_for()
    phone.keyboard.press("Shift+Tab")
    phone.keyboard.press("Enter")
    dialog = phone.locator("#detail")
    dialog.wait_for(state="visible")
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH
    for control in ("#close", "#prev", "#next", "#similar", "#explain-q", "#method", "#explain",
                    "#show-overlay", "#question", "#ask"):
        fits(phone, control)
    tab_until(phone, "explain-q")
    phone.keyboard.type("a blue square")
    phone.keyboard.press("Enter")
    phone.locator("#overlay").wait_for(state="visible")
    tab_until(phone, "question")
    phone.keyboard.type("what color is the square?")
    phone.keyboard.press("Enter")
    until_text(phone, "#answer")
    no_sideways_scroll(phone)
    phone.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def test_the_duplicates_view_works_on_a_phone_from_the_keyboard(phone):
    phone.focus("#dups-open")
    phone.keyboard.press("Enter")
    phone.locator("#dups-view").wait_for(state="visible")
    tab_until(phone, "dups-threshold")
    phone.keyboard.press("Control+A")
    phone.keyboard.type("0.999")
    phone.keyboard.press("Enter")
    phone.locator(".dup-group").first.wait_for()
    for control in ("#dups-threshold", ".dup-group", "input.keep", "#dups-list", "#dups-json",
                    "#dups-out"):
        fits(phone, control)
    tab_until(phone, "dups-list")
    phone.keyboard.press("Enter")
    assert phone.locator("#dups-out").input_value().strip()
    no_sideways_scroll(phone)


def until_text(page, selector: str) -> None:
    """Wait until ``selector`` shows some text (polled: the page's CSP forbids
    Playwright's wait_for_function)."""
    for _ in range(TIMEOUT // 100):
        if page.locator(selector).inner_text().strip():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} stayed empty")
