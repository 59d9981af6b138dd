"""Without the OCR extra, reading text fails at once with the command that installs it."""

from __future__ import annotations

import sys

import pytest

from vislang.errors import InputError


def test_missing_rapidocr_names_the_extra(monkeypatch):
    from vislang.textread import models

    monkeypatch.setitem(sys.modules, "rapidocr", None)  # `import rapidocr` now raises
    monkeypatch.setattr(models, "_load", models._load.__wrapped__)  # no cached sessions
    from vislang.textread import TextReader

    with pytest.raises(InputError, match=r"pip install 'vislang\[ocr\]'") as caught:
        TextReader()
    assert "\n" not in str(caught.value)
