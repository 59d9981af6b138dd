"""Feedback recorded by ``vislang serve`` as training data, and the measure of what it taught.

``read_index_feedback`` turns an index's recorded searches into ``Feedback`` records (paths as
they are now), split by search into a training part and a held-out part. The held-out search
ids are saved beside the trained model (``HELD_OUT_NAME``), so ``evaluate_feedback`` measures
the old and the new model on the same searches, none of which the new one trained on.

The measure: for each held-out search and each result the user chose, its rank when the query
is scored against the whole collection (not only the page that was shown), as the mean
reciprocal rank and recall@k.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vislang.errors import InputError
from vislang.search.feedback import Export, FeedbackLog, stored_vectors
from vislang.search.index import Index
from vislang.train.data import Feedback

HELD_OUT_NAME = "feedback_heldout.json"
RECALL_KS = (1, 5, 10)


@dataclass
class IndexFeedback:
    train: list[Feedback]
    held_out: list[int]  # search ids
    export: Export


def read_index_feedback(folder: str | Path, fraction: float, seed: int) -> IndexFeedback:
    """The index's recorded feedback, ``fraction`` of the searches held out (at random by
    ``seed``, at least one when there are two or more)."""
    with Index.open(folder, create=False) as index:
        export = FeedbackLog(index.store).export()
    if not export.records:
        raise InputError(f"the index at {folder} has no recorded search with a chosen result "
                         "(vislang feedback stats shows what is recorded)")
    ids = [r["search"] for r in export.records]
    random.Random(seed).shuffle(ids)
    n_held = max(1, round(len(ids) * fraction)) if fraction > 0 and len(ids) > 1 else 0
    held = set(ids[:n_held])
    train = [_feedback(r) for r in export.records if r["search"] not in held]
    return IndexFeedback(train, sorted(held), export)


def _feedback(record: dict) -> Feedback:
    clicked = tuple(Path(p) for p in record["clicked"])
    return Feedback(record["query"], clicked,
                    tuple(Path(p) for p in record["shown"] if Path(p) not in clicked))


def save_held_out(out: Path, folder: str | Path, held_out: list[int]) -> Path:
    path = Path(out) / HELD_OUT_NAME
    path.write_text(json.dumps({"index": str(Path(folder).expanduser().resolve()),
                                "searches": held_out}, indent=2) + "\n")
    return path


def read_held_out(path: Path) -> list[int]:
    try:
        data = json.loads(Path(path).read_text())
        return [int(s) for s in data["searches"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} is not a held-out list written by vislang train "
                         f"--feedback-from ({error})") from None


def evaluate_feedback(folder: str | Path, model, searches: list[int] | None = None,
                      ks: tuple[int, ...] = RECALL_KS) -> dict:
    """MRR and recall@k of the chosen results of ``searches`` (default: all recorded) among
    the whole collection, ranked by ``model`` (a loaded ClipModel)."""
    with Index.open(folder, create=False) as index:
        log = FeedbackLog(index.store)
        records = log.export().records
        if searches is not None:
            wanted = set(searches)
            records = [r for r in records if r["search"] in wanted]
        if not records:
            raise InputError(f"none of the searches to evaluate is in the index at {folder} "
                             "with a chosen result that still exists")
        collection = log.collection()
        vectors = _collection_vectors(index, model, collection)
        # export names a content by its first path, as the collection does: copies are one
        row_of = {path: i for i, (_, path) in enumerate(collection)}
    ranks = _ranks(model, records, vectors, row_of)
    report = {"model": model.model_key, "searches": len(records), "clicks": len(ranks),
              "mrr": float(np.mean(1.0 / ranks))}
    report |= {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    return report


def _collection_vectors(index: Index, model, collection: list[tuple[str, str]]) -> np.ndarray:
    """The index's own vectors by this model when it has them all, else embedded now."""
    stored = stored_vectors(index.store, model.model_key)
    if all(h in stored for h, _ in collection):
        return np.stack([stored[h] for h, _ in collection])
    return model.embed_images([path for _, path in collection])


def _ranks(model, records: list[dict], vectors: np.ndarray, row_of: dict[str, int]) -> np.ndarray:
    queries = list(dict.fromkeys(r["query"] for r in records))
    scores = model.embed_texts(queries) @ vectors.T
    query_row = {q: i for i, q in enumerate(queries)}
    ranks = []
    for record in records:
        row = scores[query_row[record["query"]]]
        for path in record["clicked"]:
            if path in row_of:  # else unreadable now: not in what a search ranks
                # Ties count against the chosen result: a model scoring everything alike
                # ranks nothing first.
                ranks.append(int((row >= row[row_of[path]]).sum()))
    return np.array(ranks, dtype=np.float64)
