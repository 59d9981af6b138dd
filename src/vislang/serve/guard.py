"""Who may talk to the server, and how much they may send.

- Bound to loopback, the server answers only requests whose Host header names the loopback
  (``localhost``, ``127.0.0.1``, ``[::1]``): a web page elsewhere that points its own domain at
  127.0.0.1 (DNS rebinding) cannot read the API through the user's browser.
- With a token (required when bound elsewhere), every ``/api`` request carries it, as
  ``Authorization: Bearer TOKEN`` or as the cookie the page sets when opened at ``/?token=``.
- Every response says: load nothing from elsewhere, never be framed, never sniff types.
- Request bodies are counted as they arrive, so an upload over the limit is refused without
  being held in memory or on disk, Content-Length or not.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vislang.errors import InputError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
COOKIE = "vislang_token"
MIN_TOKEN_CHARS = 16  # a made one has 32 (token_urlsafe(24)); 16 is beyond guessing
FORM_SLACK = 64 * 1024  # a body holds the upload plus the other form fields and framing


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def check_token(token: str | None) -> None:
    """Refuse a token short enough to guess (``--token a``): it would guard nothing."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise InputError(f"the token is too short to be safe ({len(token)} characters, at "
                         f"least {MIN_TOKEN_CHARS} needed); make one with: python -c 'import "
                         "secrets; print(secrets.token_urlsafe())' (or, on a --host other than "
                         "the loopback, leave --token out and one is made and printed)")


def token_matches(given: str, token: str) -> bool:
    # Constant time: how long a wrong guess takes must not say how much of it was right.
    return secrets.compare_digest(given.strip().encode(), token.encode())


class UploadTooLarge(HTTPException):
    # An HTTPException so that FastAPI's form parsing passes it on instead of turning it
    # into "400 error parsing the body".
    def __init__(self, limit: int):
        super().__init__(413, f"the upload is over the limit of {limit:,} bytes; send a "
                              "smaller image (or shrink it first)")


async def _send_json(send: Send, status: int, message: str, headers: Iterable = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Host check, token check and body limit, before any route runs."""

    def __init__(self, app: ASGIApp, upload_limit: int, token: str | None = None,
                 hosts: Iterable[str] | None = LOOPBACK_NAMES):
        self.app, self.upload_limit, self.token = app, upload_limit, token
        self.body_limit = upload_limit + FORM_SLACK
        self.hosts = None if hosts is None else frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self.hosts is not None and host_name(headers.get("host", "")).lower() not in self.hosts:
            return await _send_json(send, 421, "this server answers only requests addressed "
                                    "to the loopback (http://127.0.0.1:PORT or localhost)")
        if self.token and scope["path"].startswith("/api/") and not self._authorised(headers):
            return await _send_json(send, 401, "this server needs a token: send "
                                    "'Authorization: Bearer TOKEN', or open the page at "
                                    "/?token=TOKEN (printed when the server started)",
                                    [(b"www-authenticate", b"Bearer")])
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.body_limit):
            if not length.isdigit():
                return await _send_json(send, 400, f"bad Content-Length {length!r}")
            return await _send_json(send, 413, UploadTooLarge(self.upload_limit).detail)
        await self.app(scope, self._counting(receive), _hardened(send))

    def _authorised(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            given = _cookie(headers.get("cookie", ""), COOKIE) or ""
        return token_matches(given, self.token)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.body_limit:
                    raise UploadTooLarge(self.upload_limit)
            return message

        return counted


# The page loads only its own files; nothing may frame it; no response is sniffed into HTML.
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy",
                     b"default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"),
                    (b"referrer-policy", b"no-referrer")]


def _hardened(send: Send) -> Send:
    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return with_headers


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
