"""Semantic image search: an index of a photo collection, searched by text or image."""

from vislang.search.index import Index, Result, Summary
from vislang.search.query import Filters, Term

__all__ = ["Filters", "Index", "Result", "Summary", "Term"]
