"""What one request may ask of the server: each limit keeps one client from taking it over.

Every limit answers with a 4xx that names the limit, so a client knows what to change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    upload_bytes: int = 20 * 2**20  # one uploaded image; larger request bodies get 413
    pixels: int = 50_000_000  # width x height of any image decoded, uploaded or on disk
    query_chars: int = 300  # a text query or saliency phrase (CLIP reads 77 tokens anyway)
    question_chars: int = 300
    k: int = 100  # results per page
    results: int = 1000  # offset + k: how deep paging may go
    labels: int = 50  # classify: labels per request
    label_chars: int = 100
    saliency_side: int = 768  # saliency runs on the image shrunk to this longest side
    crops: int = 500  # saliency method crops: most crops per request
    feedback_bytes: int = 1024  # a click's JSON body is ~100 bytes; more is not a click

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
