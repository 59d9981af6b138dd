"""The page's tests in a real browser: Debian's Chromium driven by Playwright.

Importing this module skips the importing test module, with the reason, where Playwright or
Chromium is missing (CI installs both). ``open_page`` gives a page on a running server that
collects the page's uncaught script errors; ``until`` waits for a condition in the page.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import pytest

CHROMIUM = os.environ.get("VISLANG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT = 60_000  # ms: generous, the machine may be busy; nothing here measures speed

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                               "(pip install 'vislang[test]')")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set VISLANG_CHROMIUM)",
                allow_module_level=True)


@contextlib.contextmanager
def chromium():
    """A headless Chromium for a module's tests."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def open_page(browser, url: str, width: int = 1200, height: int = 900, **context):
    """A page at ``url`` in a fresh context (``context``: e.g. is_mobile, has_touch); on
    leaving, the page must have raised no uncaught script error."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, **context)
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    try:
        yield page
    finally:
        ctx.close()
    assert not errors, errors


def until(page, expression: str, timeout: float = TIMEOUT / 1000) -> None:
    """Wait until a JS expression is true. Polled from here: Playwright's wait_for_function
    evaluates a string inside the page, which the page's Content-Security-Policy forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout:.0f} s: {expression}")
        page.wait_for_timeout(50)
