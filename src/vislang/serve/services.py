"""The capabilities the server offers, over one index and models loaded once.

Everything here is blocking and runs in a ``WorkQueue`` thread, never on the event loop. The
compute queue has one worker (torch already spreads one call over the cores), so the index
and the models are used by one thread at a time; ``lock`` covers the rest (the roots read by
file requests).
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from vislang.runtime import EngineSpec
from vislang.search.feedback import FeedbackLog
from vislang.search.index import Index, Result
from vislang.serve.limits import Limits
from vislang.settings import settings


@dataclass(frozen=True)
class Page:
    results: list[Result]
    more: bool  # whether a next page exists
    search_id: int | None = None  # set when the search was recorded (a text query, feedback on)
    ids: dict[str, str] | None = None  # path -> content id, for the clicks to name


class _Lru(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Services:
    def __init__(self, index: Index, limits: Limits, engine: EngineSpec,
                 caption_model: str | None = None, vqa_model: str | None = None,
                 feedback: bool = True):
        self.index, self.limits, self.engine = index, limits, engine
        # None under serve --no-feedback: nothing about searches is written anywhere.
        self.feedback = FeedbackLog(index.store) if feedback else None
        self.caption_model = caption_model or settings().caption_model
        self.vqa_model = vqa_model or settings().vqa_model
        self.lock = threading.RLock()
        self._clip = None  # the search model, once a request needed it
        self._blips: dict[str, object] = {}
        self._classifiers = _Lru(32)  # label lists a client repeats: their text embeddings
        self._captions = _Lru(4096)  # (file, size, mtime) -> caption: re-opening is free

    # -- models, loaded on first use and shared ---------------------------------------------------
    def clip(self):
        with self.lock:
            self._clip = self.index.model("latency")
            return self._clip

    def blip(self, name: str):
        with self.lock:
            if name not in self._blips:
                from vislang.models.blip import load_blip

                self._blips[name] = load_blip(name, engine=self.engine)
            return self._blips[name]

    def roots(self) -> list[str]:
        with self.lock:
            return self.index.store.roots()

    # -- capabilities ------------------------------------------------------------------------------
    def search(self, k: int, offset: int, text: str | None = None, image=None,
               text_filter: str | None = None, filters=None, threshold: float | None = None,
               add=(), sub=()) -> Page:
        """One page of results; one more is asked for to know whether a next page exists."""
        with self.lock:
            self.clip()  # loaded here rather than inside the index: /api/status names its engine
            results = self.index.search(text=text, image=image, k=offset + k + 1,
                                        text_filter=text_filter, filters=filters,
                                        threshold=threshold, add=add, sub=sub)
            page = Page(results[offset:offset + k], len(results) > offset + k)
            return self._recorded(page, text) if text and self.feedback else page

    def _recorded(self, page: Page, query: str) -> Page:
        """The page with the search remembered: its id and the content ids of its results."""
        ids = self.feedback.content_ids(r.path for r in page.results)
        search_id = self.feedback.record_search(query, list(ids.values()))
        return Page(page.results, page.more, search_id, ids)

    def record_click(self, search_id: int, content_id: str, kind: str) -> str | None:
        """None when recorded, else why the click was ignored (and counted)."""
        with self.lock:
            return self.feedback.record_click(search_id, content_id, kind)

    def duplicates(self, threshold: float) -> list[list[Result]]:
        with self.lock:
            return self.index.duplicates(threshold)

    def saliency(self, picture: Image.Image, query: str, method: str, n_iters: int) -> dict:
        from vislang.explain import saliency

        picture = _shrunk(picture, self.limits.saliency_side)
        # crops: the seed's 50 px smallest crop, scaled down for small images (64 px -> 24 px)
        options = {"crops": dict(n_iters=n_iters, min_crop=min(50, min(picture.size) * 3 // 8),
                                 seed=0, contrast=True)}.get(method, {})
        started = time.perf_counter()
        smap = saliency(self.clip(), picture, query, method, **options)
        seconds = time.perf_counter() - started
        png = io.BytesIO()
        smap.overlay().save(png, "PNG")
        return {"query": smap.query, "method": method, "width": picture.width,
                "height": picture.height, **smap.stats(), "seconds": round(seconds, 3),
                "png": png.getvalue()}

    def caption(self, picture: Image.Image, key: tuple | None = None) -> str:
        from vislang.captioning import caption

        if key is not None and key in self._captions:
            return self._captions[key]
        text = caption([picture], model=self.blip(self.caption_model))[0]
        return self._captions.put(key, text) if key is not None else text

    def ask(self, picture: Image.Image, question: str) -> tuple[str, str | None]:
        """The answer, and a note when the question was longer than the model reads (it
        answers its first tokens: the page says so rather than answer in silence)."""
        from vislang.captioning import ask

        blip = self.blip(self.vqa_model)
        length, window = len(blip.tokenizer(question)["input_ids"]), blip.text_window
        note = (f"the question is {length} tokens; {self.vqa_model} read its first {window}"
                if length > window else None)
        return ask(picture, question, model=blip), note

    def classify(self, picture: Image.Image, labels: list[str]) -> list[dict]:
        from vislang.zeroshot import Classifier

        key = tuple(labels)
        classifier = self._classifiers.get(key) or self._classifiers.put(
            key, Classifier(self.clip(), labels))
        (predictions,) = classifier.predict([picture], top_k=len(labels))
        return [{"label": p.label, "prob": p.prob} for p in predictions]

    def status(self) -> dict:
        with self.lock:
            stats = self.index.stats()
        return {"index": stats, "models": {"search": self.index.model_name,
                                           "caption": self.caption_model, "vqa": self.vqa_model},
                "engines": self.engines()}

    def engines(self) -> dict[str, str | None]:
        """The engine each model runs on ("openvino/bf16"), None until a request loads it."""
        def running(model) -> str | None:
            if model is None:
                return None
            choice = model.engine_choice
            return f"{choice.backend}/{choice.precision}"

        with self.lock:
            return {"search": running(self._clip),
                    "caption": running(self._blips.get(self.caption_model)),
                    "vqa": running(self._blips.get(self.vqa_model))}


def _shrunk(picture: Image.Image, side: int) -> Image.Image:
    # Saliency cost and the overlay's size grow with pixels; the model sees 224 px anyway.
    if max(picture.size) <= side:
        return picture
    picture = picture.copy()
    picture.thumbnail((side, side))
    return picture
