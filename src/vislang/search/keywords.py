"""Words in search: an image whose caption or printed text holds the query's words ranks higher.

``vislang caption --index`` stores a caption per image and ``vislang index --ocr`` the text read
in it; SQLite's FTS5 indexes the words of both (Porter-stemmed, so "dogs" finds "dog"). A text
search then blends the embedding with them, by one rule for both sources:

    score = cosine(query, image) + spread * sum(weight(word) for word in words) / len(words)
    weight(word) = TEXT_WEIGHT     if the text read in the image holds the word,
                   CAPTION_WEIGHT  else if its caption holds it,
                   0               else

- ``words``: the query's words, stop words (and words every caption shares, such as "photo")
  aside. Each word counts once, with the weight of the strongest source that holds it: the
  match share is taken over caption and read text together (a caption "a sign on a wall" and a
  sign reading "Fresh coffee" together cover "coffee sign"), and a word found in both counts
  once, not twice. With captions alone (or text alone) this is ``weight * coverage * spread``.
- the weights: text read in the image is the word itself, printed there, so it outweighs the
  embedding (``TEXT_WEIGHT`` 2.0): an image holding every word of the query gains two spreads,
  and as no image ranked lies more than one spread below the best, it passes every image
  holding none; one holding half the words at least ties them. A word printed in exactly one
  image therefore ranks that image first (``bench/ocr_search.py`` measures it among 500). A
  caption is another model's guess, worth a quarter:
- ``spread``: the best cosine minus the lowest of the images ranked: the best 100 for this query
  and the best of those holding query words. Models differ widely in how far apart their
  cosines lie (real CLIPs put most images within 0.1 of each other, our tiny shapes-clip across
  a whole unit), so the bonus is measured in the query's own spread: a caption holding every
  word is worth a quarter of the way from the lowest image ranked to the best. The embedding
  stays the main signal among images holding no printed word; captions break near-ties and
  lift images the model half-recognised, or cannot see at all (a name a better captioner
  wrote).

The blend is exact, not a re-ranking of a shortlist: images with the same coverage are ordered
by cosine alone, so the best ``k`` of each coverage level (a filtered FAISS search) together
with the best ``k`` overall must hold the blended top ``k``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

CAPTION_WEIGHT = 0.25
TEXT_WEIGHT = 2.0  # words read in the image (OCR)
SPREAD_RANK = 100  # the spread is measured down to this rank
STOP_WORDS = frozenset(
    "a an the and or of on in at to with for from by is are be this that it its as "
    "some there their picture photo photograph image".split())


def query_words(text: str) -> list[str]:
    """The words of a query that count for caption matching, lower-case, each once (one-letter
    words, such as the s of "dog's", say nothing)."""
    words = re.findall(r"\w+", text.lower())
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in STOP_WORDS))


Source = tuple[float, Callable[[str], np.ndarray]]  # (weight, word -> vector ids holding it)


def blend(hits: dict[int, float], words: list[str], weight: float,
          ids_with_word: Callable[[str], np.ndarray],
          best_among: Callable[[np.ndarray], dict[int, float]],
          allowed: np.ndarray | None = None, more: Sequence[Source] = ()) -> dict[int, float]:
    """Blended scores: ``hits`` (vector id -> cosine, the best ``SPREAD_RANK`` or more overall)
    plus the best of each bonus level, each raised by the module's rule.

    ``weight`` / ``ids_with_word(w)``: the caption source (the vector ids whose caption
    contains ``w``); ``more``: further (weight, ids_with_word) sources, such as the text read
    in the images; a word found in several sources counts with the largest weight.
    ``best_among(ids)``: the best ``k`` cosines among ``ids``; ``allowed``: the ids a filter
    lets through.
    """
    sources = [(weight, ids_with_word), *more]
    earned: dict[int, float] = Counter()
    for word in words:
        best: dict[int, float] = {}
        for source_weight, lookup in sources:
            if not source_weight:
                continue
            found = lookup(word)
            if allowed is not None:
                found = found[np.isin(found, allowed)]
            for vector_id in found.tolist():
                best[vector_id] = max(best.get(vector_id, 0.0), source_weight)
        for vector_id, value in best.items():
            earned[vector_id] += value
    # Images with the same bonus are ordered by cosine alone: the best k of each level
    # (rounded, so float sums of the same weights meet) hold the blended top k.
    levels: dict[float, list[int]] = {}
    for vector_id, value in earned.items():
        levels.setdefault(round(value, 9), []).append(vector_id)
    scores = dict(hits)
    for members in levels.values():
        scores.update(best_among(np.array(members, dtype=np.int64)))
    # Measured over every image ranked, those holding words included: a printed word lifts
    # its image by at least its own distance from the best, however far below it lies.
    spread = max(scores.values()) - min(scores.values()) if scores else 0.0
    unit = spread / len(words)
    return {i: s + unit * earned.get(i, 0.0) for i, s in scores.items()}
