"""The FastAPI app: routes parse and check, a ``WorkQueue`` thread does the work.

    app = create_app("~/.local/share/vislang/index")
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.routing import APIRoute
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

import vislang
from vislang import errors
from vislang.images import load_image
from vislang.runtime import EngineSpec
from vislang.search.index import Index, Result
from vislang.search.query import Filters, Term, parse_date
from vislang.serve import schemas
from vislang.serve.files import (
    BROWSER_TYPES,
    THUMB_SIZES,
    Forbidden,
    NotFound,
    Roots,
    Thumbnails,
    render_jpeg,
)
from vislang.serve.guard import (
    COOKIE,
    LOOPBACK_NAMES,
    Guard,
    UploadTooLarge,
    check_token,
    token_matches,
)
from vislang.serve.limits import Limits
from vislang.serve.services import Services
from vislang.serve.work import Busy, WorkQueue
from vislang.settings import settings

STATIC = Path(__file__).with_name("static")
PROBLEMS = {code: {"model": schemas.Problem} for code in (403, 404, 413, 422, 503)}
# The server answers one request at a time per model: latency, on the fastest engine here.
SERVE_ENGINE = EngineSpec(mode="latency")


def create_app(index: str | os.PathLike | Index, *, model=None, caption_model: str | None = None,
               vqa_model: str | None = None, engine: EngineSpec = SERVE_ENGINE,
               limits: Limits = Limits(), token: str | None = None,
               hosts: tuple[str, ...] | None = LOOPBACK_NAMES, max_pending: int = 16,
               thumbnails: str | os.PathLike | None = None, watch: bool = False,
               poll: bool = False, feedback: bool = True) -> FastAPI:
    """The web app over the index at ``index`` (a folder ``vislang index`` wrote).

    ``engine``: what every model of the server (search, caption, VQA) runs on.
    ``token``: required on every /api request when given; 16 characters or more (InputError
    otherwise). ``hosts``: the Host names accepted (None: any; the default, the loopback
    names, suits a server bound to 127.0.0.1).
    ``max_pending``: model jobs running or waiting before new ones get 503.
    ``watch``: keep the index current while serving (a background thread indexes the files
    that appear, change, move or vanish under the index's folders, in batches); ``poll``:
    look for changes by polling instead of the operating system's events.
    ``feedback``: record text searches and the results opened or marked "this one" in the
    index's database (vislang feedback export reads them; False records nothing).
    """
    check_token(token)  # first: a guessable token is an error, not a false safety
    services = Services(_open_index(index, model, engine), limits, engine, caption_model,
                        vqa_model, feedback=feedback)
    state = State(services, limits, Roots(services.roots),
                  Thumbnails(Path(thumbnails) if thumbnails else _thumbnail_dir(), limits.pixels),
                  WorkQueue("model", 1, max_pending),
                  WorkQueue("file", min(4, os.cpu_count() or 1), 64), token)
    if watch:
        from vislang.search.watch import Watcher

        served = services.index
        state.watcher = Watcher(Index.open(served.folder, served.model_name, create=False),
                                served.store.roots(), poll=poll, catch_up=True, owns_index=True)
        state.watcher.start()
    app = FastAPI(title="vislang", version=vislang.__version__, openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None,  # their UIs load scripts from a CDN
                  dependencies=[Depends(_known_parameters)],
                  description="Search, explain, caption and question the images of one index.")
    app.state.vislang = state
    _errors(app)
    _api(app, state)
    _files(app, state)
    _page(app, state)
    app.add_middleware(Guard, upload_limit=limits.upload_bytes, token=token, hosts=hosts)
    return app


@dataclass
class State:
    services: Services
    limits: Limits
    roots: Roots
    thumbnails: Thumbnails
    model_queue: WorkQueue
    file_queue: WorkQueue
    token: str | None
    watcher: object | None = None  # a vislang.search.watch.Watcher under serve --watch

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.model_queue.shutdown()
        self.file_queue.shutdown()
        self.services.index.close()


def _open_index(index, model, engine: EngineSpec) -> Index:
    if isinstance(index, Index):
        return index
    return Index.open(index, model, create=False, engine=engine)


def _thumbnail_dir() -> Path:
    return settings().cache / "thumbnails"


# -- errors: one JSON shape, {"error": "..."}, with the status that says whose fault ------------
STATUS = ((errors.ImageTooLargeError, 413), (errors.ImageLoadError, 422),
          (errors.InputError, 422), (errors.TokenizeError, 422),
          (errors.ModelNotFoundError, 503), (errors.UnsupportedModelError, 503),
          (errors.IndexBusyError, 503), (errors.VislangError, 500))


def _problem(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    # One line, whatever the message: an engine's may span many.
    return JSONResponse({"error": " ".join(message.split())}, status_code=status,
                        headers=headers)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(errors.VislangError)
    async def vislang_error(_, error: errors.VislangError):
        return _problem(next(code for kind, code in STATUS if isinstance(error, kind)), str(error))

    @app.exception_handler(Forbidden)
    async def forbidden(_, error: Forbidden):
        return _problem(403, str(error))

    @app.exception_handler(NotFound)
    async def not_found(_, error: NotFound):
        return _problem(404, str(error))

    @app.exception_handler(Busy)
    async def busy(_, error: Busy):
        return _problem(503, str(error), {"Retry-After": str(error.retry_after)})

    @app.exception_handler(HTTPException)
    async def http_error(_, error: HTTPException):
        return _problem(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def bug(_, error: Exception):
        # An engine's message tells a client nothing it can act on, and shows our insides.
        # Starlette re-raises the error after this answer, so the server logs its traceback.
        return _problem(500, "internal error: the request failed in a way the server did not "
                             "expect; its log has the details")

    @app.exception_handler(RequestValidationError)
    async def invalid(_, error: RequestValidationError):
        return _problem(422, "; ".join(_describe(e) for e in error.errors()))


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
    given = error.get("input")
    shown = f" (got {given!r:.60})" if isinstance(given, (str, int, float)) else ""
    return f"{where}: {error.get('msg', 'invalid')}{shown}"


def _declared(route: APIRoute) -> frozenset[str]:
    names = getattr(route, "_vislang_query_names", None)
    if names is None:
        names, todo = set(), [route.dependant]
        while todo:  # the route's own parameters and those of its dependencies (paging)
            dependant = todo.pop()
            names |= {getattr(p, "alias", None) or p.name for p in dependant.query_params}
            todo += dependant.dependencies
        names = frozenset(names)
        route._vislang_query_names = names
    return names


async def _known_parameters(request: Request) -> None:
    """Every /api route refuses query parameters it does not declare: a misspelt or
    unsupported option (?under= where there is none) must not be ignored in silence."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.path.startswith("/api"):
        return
    unknown = sorted(set(request.query_params) - _declared(route))
    if unknown:
        known = ", ".join(sorted(_declared(route))) or "none"
        raise errors.InputError(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(unknown)} for {route.path} (it takes: {known})")


# -- inputs --------------------------------------------------------------------------------------
@dataclass
class ImageArg:
    """An image named by ``path`` (inside the roots) or uploaded as ``file``."""

    path: str | None
    data: bytes | None
    name: str = "upload"

    def load(self, state: State):
        """(decoded RGB image, cache key or None); runs in a worker thread."""
        if self.data is not None:
            return load_upload(self.data, self.name, state.limits.pixels), None
        with state.roots.open(self.path) as image:
            return image.load(state.limits.pixels), (image.real, image.size, image.mtime_ns)


def load_upload(data: bytes, name: str, max_pixels: int):
    try:
        return load_image(data, max_pixels=max_pixels)
    except errors.ImageLoadError as error:  # name the upload, not "<bytes>"
        raise type(error)(f"the uploaded {name}", error.reason) from None


async def read_upload(file: UploadFile, limits: Limits) -> bytes:
    # The guard bounds the whole body; this bounds the image itself, as documented.
    data = await file.read(limits.upload_bytes + 1)
    if len(data) > limits.upload_bytes:
        raise UploadTooLarge(limits.upload_bytes)
    return data


def image_input(limits: Limits):
    """The dependency that reads an image argument: a form field ``path`` or ``file``."""
    async def image_arg(path: str | None = Form(None, max_length=4096, description="An "
                                                 "indexed image: its path as results give it."),
                        file: UploadFile | None = File(None, description="Or an uploaded "
                                                       "image.")) -> ImageArg:
        if (path is None) == (file is None):
            raise errors.InputError("give exactly one image: a path from the index or an "
                                    "uploaded file")
        if file is None:
            return ImageArg(path, None)
        return ImageArg(None, await read_upload(file, limits), file.filename or "upload")

    return image_arg


def _text(value: str, what: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise errors.InputError(f"the {what} is empty")
    if len(value) > limit:
        raise errors.InputError(f"the {what} is {len(value)} characters, over the limit of "
                                f"{limit}")
    return value


def _page_of(results: list[Result], query: str | None, k: int, offset: int,
             more: bool, search_id: int | None = None,
             ids: dict[str, str] | None = None) -> schemas.SearchPage:
    ids = ids or {}
    hits = [schemas.Hit(path=r.path, score=r.score, taken=r.taken,
                        caption=getattr(r, "caption", None), ocr=getattr(r, "ocr", None),
                        thumbnail=f"/api/thumbnail?path={quote(r.path)}&size=256",
                        image=f"/api/image?path={quote(r.path)}", id=ids.get(r.path))
            for r in results]
    return schemas.SearchPage(query=query, offset=offset, k=k, results=hits, more=more,
                              search_id=search_id)


async def read_small_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes before more is read: the
    guard's bound is sized for image uploads, far above what a click needs."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is over the limit of {limit:,} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is over the limit of {limit:,} bytes")
    return body


# -- the API -------------------------------------------------------------------------------------
def _api(app: FastAPI, state: State) -> None:
    limits, services, run = state.limits, state.services, state.model_queue.run
    image_arg = image_input(limits)

    def paging(k: int = Query(20, ge=1, le=limits.k, description="Results per page."),
               offset: int = Query(0, ge=0, description="Results to skip (paging).")) -> tuple:
        if offset + k > limits.results:
            raise errors.InputError(f"offset + k is {offset + k}, over the limit of "
                                    f"{limits.results} results")
        return k, offset

    def confined_term(text: str) -> Term:
        """A text term, or an indexed image named by its path (inside the roots only)."""
        weight, value = _weighted(text)
        if os.path.isabs(value):
            with state.roots.open(value) as image:  # confined: no probing outside the roots
                return Term(image.path, True, weight)
        return Term(_text(value, "term", limits.query_chars), False, weight)

    def under_root(folder: str) -> str:
        real = os.path.realpath(folder)
        if not os.path.isabs(folder) or not any(
                real == r or real.startswith(r.rstrip("/") + "/")
                for r in state.roots.real_roots()):
            raise errors.InputError(f"under: {folder!r} is not a folder inside the index's "
                                    "folders; give an absolute path below one of them "
                                    "(GET /api/status lists them)")
        return folder

    @app.get("/api/search", response_model=schemas.SearchPage, responses=PROBLEMS,
             tags=["search"])
    async def search_text(q: str | None = Query(None, description="What to look for, in "
                                                "words (or give add terms only)."),
                          text: str | None = Query(None, description="Only images whose text "
                                                   "(read by vislang index --ocr) contains "
                                                   "this phrase, ignoring case."),
                          under: str | None = Query(None, max_length=4096, description="Only "
                                                    "files below this folder (absolute, inside "
                                                    "the index's folders)."),
                          ext: list[str] = Query([], description="Only these extensions: "
                                                 "repeat it or give a comma list (jpg,png)."),
                          since: str | None = Query(None, max_length=32, description="Taken "
                                                    "on or after: YYYY[-MM[-DD]]."),
                          until: str | None = Query(None, max_length=32, description="Taken "
                                                    "up to the end of: YYYY[-MM[-DD]]."),
                          threshold: float | None = Query(None, ge=-1.0, le=1.0,
                                                          description="Drop results scoring "
                                                          "below this cosine similarity."),
                          add: list[str] = Query([], description="A text or an indexed "
                                                 "image's path to add to the query; "
                                                 "'0.5:sunset' weighs it (repeatable)."),
                          sub: list[str] = Query([], description="A text or an indexed "
                                                 "image's path to steer away from "
                                                 "(repeatable)."),
                          page: tuple = Depends(paging)):
        """The indexed images that best match a text, with the options of vislang search."""
        q = _text(q, "query", limits.query_chars) if q is not None else None
        if text is not None:
            text = _text(text, "text filter", limits.query_chars)
        if len(add) + len(sub) > limits.labels:
            raise errors.InputError(f"{len(add) + len(sub)} add/sub terms, over the limit of "
                                    f"{limits.labels}")
        if q is None and not add:
            raise errors.InputError("nothing to search for: give q, or add terms")
        extensions = tuple(e.strip() for value in ext for e in value.split(",") if e.strip())
        for e in extensions:
            if len(e) > 16 or "/" in e or "%" in e or "_" in e:
                raise errors.InputError(f"ext: {e!r} is not a file extension (jpg, png)")
        filters = Filters(under=under_root(under) if under is not None else None,
                          extensions=extensions,
                          since=parse_date(since) if since else None,
                          until=parse_date(until, end=True) if until else None)
        found = await run(lambda: services.search(
            *page, text=q, text_filter=text, filters=filters, threshold=threshold,
            add=[confined_term(t) for t in add], sub=[confined_term(t) for t in sub]))
        return _page_of(found.results, q, *page, found.more, found.search_id, found.ids)

    @app.get("/api/dups", response_model=schemas.DupsOut, responses=PROBLEMS, tags=["search"])
    async def dups(threshold: float = Query(0.95, ge=0.0, le=1.0, description="Cosine "
                                            "similarity at or above which two images count "
                                            "as near-duplicates.")):
        """Groups of near-duplicate images (copies, re-encodes, resizes, bursts), largest
        first, each file with its size and date. vislang deletes nothing: the page lists the
        files left unkept, for you to delete."""
        groups = await run(lambda: services.duplicates(threshold))
        return {"threshold": threshold, "groups": [
            {"files": [{"path": r.path, "score": r.score, "taken": r.taken,
                        "size": _size(r.path),
                        "thumbnail": f"/api/thumbnail?path={quote(r.path)}&size=256",
                        "image": f"/api/image?path={quote(r.path)}"} for r in group]}
            for group in groups]}

    @app.post("/api/search/image", response_model=schemas.SearchPage, responses=PROBLEMS,
              tags=["search"])
    async def search_image(file: UploadFile = File(..., description="The image to match."),
                           page: tuple = Depends(paging)):
        """The indexed images that look most like an uploaded one."""
        data = await read_upload(file, limits)
        found = await run(lambda: services.search(
            *page, image=load_upload(data, file.filename or "upload", limits.pixels)))
        return _page_of(found.results, None, *page, found.more)

    @app.get("/api/similar", response_model=schemas.SearchPage, responses=PROBLEMS,
             tags=["search"])
    async def similar(path: str = Query(..., max_length=4096, description="An indexed image."),
                      page: tuple = Depends(paging)):
        """More like this: the indexed images closest to an indexed one."""
        def find():
            with state.roots.open(path) as image:  # confined first: no probing outside roots
                return services.search(*page, image=image.path)
        found = await run(find)
        return _page_of(found.results, None, *page, found.more)

    @app.post("/api/saliency", responses={**PROBLEMS, 200: {"content": {"image/png": {}}}},
              response_model=schemas.SaliencyOut, tags=["explain"])
    async def saliency(image: ImageArg = Depends(image_arg),
                       q: str = Form(..., description="The phrase to find in the image."),
                       method: Literal["crops", "dense", "relevance"] = Form("dense"),
                       n_iters: int = Form(100, ge=1, le=limits.crops,
                                           description="crops: how many crops."),
                       format: Literal["json", "png"] = Form("json", description="png: the "
                                                             "overlay alone, stats in headers")):
        """Where in the image the phrase matches: an overlay (red: better than the whole
        image) and the raw map's min, max and peak."""
        q = _text(q, "query", limits.query_chars)
        out = await run(lambda: services.saliency(image.load(state)[0], q, method, n_iters))
        png = out.pop("png")
        if format == "png":
            return Response(png, media_type="image/png", headers={
                "X-Saliency-Min": f"{out['min']:.6g}", "X-Saliency-Max": f"{out['max']:.6g}",
                "X-Saliency-Argmax": f"{out['argmax']['x']},{out['argmax']['y']}"})
        return {**out, "overlay": "data:image/png;base64," + base64.b64encode(png).decode()}

    @app.post("/api/caption", response_model=schemas.CaptionOut, responses=PROBLEMS,
              tags=["describe"])
    async def caption(image: ImageArg = Depends(image_arg)):
        """A caption written by the BLIP captioning model."""
        text = await run(lambda: services.caption(*image.load(state)))
        return {"caption": text, "model": services.caption_model}

    @app.post("/api/ask", response_model=schemas.AnswerOut, responses=PROBLEMS,
              tags=["describe"])
    async def ask(image: ImageArg = Depends(image_arg),
                  question: str = Form(..., description="A question about the image.")):
        """The BLIP VQA model's answer to a question about the image."""
        question = _text(question, "question", limits.question_chars)
        answer, note = await run(lambda: services.ask(image.load(state)[0], question))
        return {"question": question, "answer": answer, "model": services.vqa_model,
                "note": note}

    @app.post("/api/classify", response_model=schemas.ClassifyOut, responses=PROBLEMS,
              tags=["describe"])
    async def classify(image: ImageArg = Depends(image_arg),
                       labels: str = Form(..., description="Comma-separated: 'cat, dog'.")):
        """Zero-shot: the probability of each label, typed as words."""
        names = [_text(label, "label", limits.label_chars) for label in labels.split(",")]
        if len(names) > limits.labels:
            raise errors.InputError(f"{len(names)} labels, over the limit of {limits.labels}")
        predictions = await run(lambda: services.classify(image.load(state)[0], names))
        return {"predictions": predictions, "model": services.index.model_name}

    feedback_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schemas.FeedbackIn.model_json_schema()}}}}

    @app.post("/api/feedback", response_model=schemas.FeedbackOut, responses=PROBLEMS,
              tags=["search"], openapi_extra=feedback_body)
    async def feedback(request: Request):
        """Record that a result of a recorded search was opened or marked "this one". A click
        on a search or result the index does not know is ignored and counted, not an error:
        the file may have gone since the search. 404 under vislang serve --no-feedback."""
        if services.feedback is None:
            raise NotFound("searches are not recorded: this server runs with --no-feedback")
        body = await read_small_body(request, limits.feedback_bytes)
        try:
            click = schemas.FeedbackIn.model_validate_json(body)
        except ValidationError as error:
            # located as FastAPI locates a body's errors, so the message names the field
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                          for e in error.errors()]) from None
        ignored = await state.file_queue.run(
            lambda: services.record_click(click.search_id, click.id, click.kind))
        return {"recorded": ignored is None, "ignored": ignored}

    @app.get("/api/status", response_model=schemas.StatusOut, tags=["index"])
    async def status():
        """The index (roots, counts, models), the models in use, the limits, the queues."""
        out = await state.file_queue.run(services.status)
        queues = {q.name: {"workers": q.workers, "pending": q.pending,
                           "max_pending": q.max_pending}
                  for q in (state.model_queue, state.file_queue)}
        return {**out, "limits": limits.as_dict(), "queues": queues,
                "auth": state.token is not None, "feedback": services.feedback is not None,
                "watch": state.watcher.status() if state.watcher is not None else None}


_WEIGHT = re.compile(r"^(?P<weight>[+-]?\d+(?:\.\d*)?|[+-]?\.\d+):(?P<value>.+)$", re.S)


def _weighted(text: str) -> tuple[float, str]:
    """"0.5:snow" -> (0.5, "snow"); "snow" -> (1.0, "snow"), as vislang search --add reads."""
    if match := _WEIGHT.match(text):
        return float(match["weight"]), match["value"]
    return 1.0, text


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


# -- images from the roots -----------------------------------------------------------------------
def _files(app: FastAPI, state: State) -> None:
    run = state.file_queue.run
    image_only = {200: {"content": {"image/jpeg": {}, "image/png": {}}}, **PROBLEMS}

    @app.get("/api/thumbnail", response_class=Response, responses=image_only, tags=["images"])
    async def thumbnail(path: str = Query(..., max_length=4096),
                        size: int = Query(256, description="Longest side: one of "
                                          f"{', '.join(map(str, THUMB_SIZES))}.")):
        """A JPEG thumbnail (EXIF-rotated, cached) of an image inside the index's folders."""
        if size not in THUMB_SIZES:  # a few sizes only: the cache stays small
            raise errors.InputError(f"size must be one of {', '.join(map(str, THUMB_SIZES))}, "
                                    f"not {size}")
        def make() -> bytes:
            with state.roots.open(path) as image:
                return state.thumbnails.get(image, size)
        return Response(await run(make), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/image", response_class=Response, responses=image_only, tags=["images"])
    async def image(path: str = Query(..., max_length=4096)):
        """The image itself; formats browsers cannot show (HEIC, TIFF) as a JPEG rendition."""
        def read() -> tuple[bytes, str]:
            with state.roots.open(path) as found:
                kind = BROWSER_TYPES.get(os.path.splitext(found.real)[1].lower())
                if kind:
                    return found.file.read(), kind
                return render_jpeg(found.load(state.limits.pixels), 2048), "image/jpeg"
        data, kind = await run(read)
        return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=60"})


# -- the web page --------------------------------------------------------------------------------
def _page(app: FastAPI, state: State) -> None:
    @app.get("/", include_in_schema=False)
    async def page(request: Request):
        given = request.query_params.get("token")
        if given is not None and state.token is not None:
            if not token_matches(given, state.token):  # a link must not replace a good cookie
                return _problem(401, "the token in this address is wrong; open the address "
                                "vislang serve printed when it started",
                                {"WWW-Authenticate": "Bearer"})
            # Trade the token in the address for a cookie, and drop it from the address bar.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, state.token, httponly=True, samesite="strict")
            return response
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html",
                        headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
