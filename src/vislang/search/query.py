"""What a search asks for: weighted text and image terms, and filters on the files.

Terms combine as in rclip: the query vector is the weighted sum of each term's unit vector
(subtracted terms have negative weights), normalised again. "sunset" + "beach" - "people" finds
beaches at sunset without crowds, because directions in CLIP's space add up to meanings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

import numpy as np

from vislang.errors import InputError
from vislang.images import is_image_path

_WEIGHT = re.compile(r"^(?P<weight>[+-]?\d+(?:\.\d*)?|[+-]?\.\d+):(?P<value>.+)$", re.S)


@dataclass(frozen=True)
class Term:
    value: object  # text, or an image (path, bytes or PIL image)
    is_image: bool = False
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "Term":
        """``"sunset"``, ``"0.5:sunset"`` (weighted), or the path of an existing image file."""
        weight = 1.0
        if match := _WEIGHT.match(text):
            weight, text = float(match["weight"]), match["value"]
        image = is_image_path(text) and os.path.isfile(os.path.expanduser(text))
        return cls(os.path.expanduser(text) if image else text, image, weight)

    def negated(self) -> "Term":
        return replace(self, weight=-self.weight)


def combine(terms: Sequence[Term], vector_of: Callable[[Term], np.ndarray]) -> np.ndarray:
    """Weighted sum of the terms' unit vectors, as a unit vector."""
    total = sum(t.weight * np.asarray(vector_of(t), np.float32) for t in terms)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise InputError("the terms cancel out: the combined query has no direction left")
    return (total / norm).astype(np.float32)


@dataclass(frozen=True)
class Filters:
    """Which files may be results: under a folder, with an extension, taken in a date range."""

    under: str | None = None
    extensions: tuple[str, ...] = ()
    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive

    @property
    def empty(self) -> bool:
        return self.under is None and not self.extensions and self.since is None \
            and self.until is None

    def sql(self) -> tuple[str, tuple]:
        """An ``AND ...`` clause on table alias ``f`` (files), with its parameters."""
        clauses, params = [], []
        if self.under is not None:
            folder = os.path.abspath(os.path.expanduser(self.under)).rstrip("/")
            clauses.append("f.path GLOB ?")
            params.append("".join(f"[{c}]" if c in "[*?" else c for c in folder) + "/*")
        if self.extensions:
            exts = [e.lower() if e.startswith(".") else f".{e.lower()}" for e in self.extensions]
            clauses.append("(" + " OR ".join("lower(f.path) LIKE ?" for _ in exts) + ")")
            params += [f"%{e}" for e in exts]
        if self.since is not None:
            clauses.append("f.taken >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("f.taken < ?")
            params.append(self.until)
        return "".join(f" AND {c}" for c in clauses), tuple(params)


def parse_date(text: str, end: bool = False) -> float:
    """``2024``, ``2024-06`` or ``2024-06-30`` -> unix seconds at the start of that period, or
    (``end=True``) at the start of the next one, so ``--until 2024`` includes all of 2024."""
    parts = text.strip().split("-")
    try:
        numbers = [int(p) for p in parts]
        if not 1 <= len(numbers) <= 3:
            raise ValueError
        year, month, day = (numbers + [1, 1])[:3]
        start = date(year, month, day)
    except ValueError:
        raise InputError(f"cannot read the date {text!r}; write YYYY, YYYY-MM or YYYY-MM-DD") \
            from None
    if end:
        if len(numbers) == 1:
            start = date(year + 1, 1, 1)
        elif len(numbers) == 2:
            start = date(year + (month == 12), month % 12 + 1, 1)
        else:
            start = date.fromordinal(start.toordinal() + 1)
    return datetime(start.year, start.month, start.day).timestamp()
