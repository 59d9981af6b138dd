"""Caption words in search: an image whose caption contains the query's words ranks higher.

``vislang caption --index`` stores a caption per image, and SQLite's FTS5 indexes its words
(Porter-stemmed, so "dogs" finds "dog"). A text search then blends two signals:

    score = cosine(query, image) + CAPTION_WEIGHT * coverage * spread

- ``coverage``: the fraction of the query's words (stop words and words every caption shares,
  such as "photo", aside) that the image's caption contains: 0 when none, 1 when all;
- ``spread``: the best cosine minus the 100th best, for this query. Models differ widely in how
  far apart their cosines lie (real CLIPs put most images within 0.1 of each other, our tiny
  shapes-clip across a whole unit), so the caption's bonus is measured in the query's own
  spread: a caption holding every word is worth a quarter of the way from the 100th match to the
  best. The embedding stays the main signal; captions break near-ties and lift images the
  model half-recognised, or cannot see at all (a name a better captioner wrote).

The blend is exact, not a re-ranking of a shortlist: images with the same coverage are ordered
by cosine alone, so the best ``k`` of each coverage level (a filtered FAISS search) together
with the best ``k`` overall must hold the blended top ``k``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import numpy as np

CAPTION_WEIGHT = 0.25
SPREAD_RANK = 100  # the spread is measured down to this rank
STOP_WORDS = frozenset(
    "a an the and or of on in at to with for from by is are be this that it its as "
    "some there their picture photo photograph image".split())


def query_words(text: str) -> list[str]:
    """The words of a query that count for caption matching, lower-case, each once (one-letter
    words, such as the s of "dog's", say nothing)."""
    words = re.findall(r"\w+", text.lower())
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOP_WORDS))


def blend(hits: dict[int, float], words: list[str], weight: float,
          ids_with_word: Callable[[str], np.ndarray],
          best_among: Callable[[np.ndarray], dict[int, float]],
          allowed: np.ndarray | None = None) -> dict[int, float]:
    """Blended scores: ``hits`` (vector id -> cosine, the best ``SPREAD_RANK`` or more overall)
    plus the best of each coverage level, each raised by ``weight * coverage * spread``.

    ``ids_with_word(w)``: the vector ids whose caption contains ``w``; ``best_among(ids)``:
    the best ``k`` cosines among ``ids``; ``allowed``: the ids a filter lets through.
    """
    matched = Counter()
    for word in words:
        found = ids_with_word(word)
        if allowed is not None:
            found = found[np.isin(found, allowed)]
        matched.update(found.tolist())
    levels: dict[int, list[int]] = {}
    for vector_id, count in matched.items():
        levels.setdefault(count, []).append(vector_id)
    spread = max(hits.values()) - min(hits.values()) if hits else 0.0
    scores = dict(hits)
    for members in levels.values():
        scores.update(best_among(np.array(members, dtype=np.int64)))
    bonus = weight * spread / len(words)
    return {i: s + bonus * matched.get(i, 0) for i, s in scores.items()}
