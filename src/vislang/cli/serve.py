"""``vislang serve``: the HTTP API and the web page over an index, on this machine by default."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import typer

from vislang.cli.common import (
    BackendOption,
    DeviceOption,
    PrecisionOption,
    engine_spec,
    stderr,
    stdout,
)
from vislang.errors import InputError
from vislang.settings import settings


def serve(
    index_path: Path = typer.Option(None, "--index", "-i", help="Index folder. Default: "
                                    "$VISLANG_INDEX or the per-user one (as vislang search)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but "
                             "the loopback needs a token."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port (0: any free)."),
    token: str = typer.Option(None, "--token", envvar="VISLANG_TOKEN", help="Require "
                              "'Authorization: Bearer TOKEN' on every API request (16 "
                              "characters or more). Default off on the loopback; elsewhere a "
                              "random one is made and printed."),
    model: str = typer.Option(None, "--model", "-m", help="Search model. Default: the one the "
                              "index was built with."),
    caption_model: str = typer.Option(None, "--caption-model", help="BLIP captioning model. "
                                      "Default: $VISLANG_CAPTION_MODEL or "
                                      "Salesforce/blip-image-captioning-base."),
    vqa_model: str = typer.Option(None, "--vqa-model", help="BLIP question answering model. "
                                  "Default: $VISLANG_VQA_MODEL or "
                                  "Salesforce/blip-vqa-base."),
    max_queue: int = typer.Option(16, "--max-queue", min=1, help="Model jobs running or waiting "
                                  "before new requests get 503 + Retry-After."),
    watch: bool = typer.Option(False, "--watch", help="Keep the index current while serving: "
                               "files that appear, change, move or vanish under its folders "
                               "are indexed in batches (GET /api/status shows what is "
                               "pending)."),
    poll: bool = typer.Option(False, "--poll", help="With --watch: poll for changes (network "
                              "shares, where the system sends no file events)."),
    feedback: bool = typer.Option(True, "--feedback/--no-feedback", help="Record text "
                                  "searches and the results opened or marked 'this one' in "
                                  "the index, for vislang train --feedback-from (vislang "
                                  "feedback clear erases them). --no-feedback records nothing."),
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
) -> None:
    """Serve the search API and web page: search, more like this, explain, caption, ask."""
    spec = engine_spec(backend, precision, "latency", device)  # requests come one at a time
    try:
        import uvicorn

        from vislang.serve import create_app
        from vislang.serve.guard import LOOPBACK_NAMES, is_loopback
    except ImportError as error:
        raise InputError(f"vislang serve needs the serve extra ({error.name} is missing): "
                         "pip install 'vislang[serve]'") from None
    from vislang.search.index import default_index_path

    local = is_loopback(host)
    if not local and not token:
        token = secrets.token_urlsafe(24)
    folder = index_path or default_index_path()
    app = create_app(folder, model=model, caption_model=caption_model, vqa_model=vqa_model,
                     engine=spec, token=token, max_pending=max_queue,
                     hosts=LOOPBACK_NAMES + (host,) if local else None, watch=watch,
                     poll=poll, feedback=feedback)
    state = app.state.vislang
    with stderr.status(f"loading {state.services.index.model_name}..."):
        state.services.clip()  # fail now, not on the first request, if it cannot load
    listener = _listen(host, port)
    # A wildcard address is not one to open: name this machine instead.
    shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{listener.getsockname()[1]}"
    stats = state.services.index.stats()
    stdout.print(f"index {stats['path']}: {stats['files']} files under "
                 f"{len(stats['roots'])} folder(s), model {stats['model']}", highlight=False)
    if state.watcher is not None:
        state.watcher.on_problem = lambda line: stderr.print(f"watch: {line}", highlight=False,
                                                             markup=False)
        for line in state.watcher.problems:  # noted before the server started
            stderr.print(f"watch: {line}", highlight=False, markup=False)
        shown_roots = ", ".join(state.watcher.roots) or "no folders"
        stdout.print(f"watching {shown_roots}{' (polling)' if state.watcher.polling else ''}",
                     highlight=False)
    stdout.print("searches and clicks are recorded locally in the index; vislang feedback "
                 "clear erases them" if feedback else "searches and clicks are not recorded",
                 highlight=False)
    if local:
        stdout.print(f"open {url}  (this machine only{'; token required' if token else ''})",
                     highlight=False)
    else:
        stdout.print(f"listening on {url}, reachable from other machines: every API request "
                     f"needs 'Authorization: Bearer {token}'\nopen {url}/?token={token}",
                     highlight=False)
    config = uvicorn.Config(app, log_level=settings().log_level,
                            timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        state.close()


def _listen(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is one clear error line, not a log record."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror}; pick another "
                         "--port or --host") from None
    listener.listen(128)
    listener.set_inheritable(True)
    return listener
