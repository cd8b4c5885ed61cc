"""What every API request passes before the application sees it: Host, key, body size.

FastAPI reads and validates a route's JSON body before it runs the route's dependencies, so a key
checked there came after a stranger's 10 MB body had been read and parsed (and answered 422, not
401). This pure ASGI middleware runs first, on the headers alone, and reads the body itself only up
to a cap:

- **Host** (when the API has no keys, hence listens on loopback only): a browser tricked by DNS
  rebinding sends its page's host name, so only ``localhost`` and loopback literals are accepted
  (``400`` otherwise); a cross-site page's ``Origin`` is refused likewise (``403``). With keys any
  Host is fine: the key is the defence.
- **Key**: ``Authorization: Bearer <key>`` on every path but ``/health`` (``401``).
- **Body**: at most ``MAX_BODY_BYTES``, by Content-Length up front and by counting while it streams
  (chunked bodies), ``413`` beyond; the app then gets the body whole from memory.

No CORS headers are ever added: a page from another origin cannot read an answer or send a
preflighted request. Refusals are JSON ``{"error": ...}`` like the rest of the API, and close the
connection (a body left unread cannot be skipped safely).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# POST /calls needs well under 10 KiB (metadata is capped at 20 items of 256 characters).
MAX_BODY_BYTES = 64 * 1024
OPEN_PATHS = frozenset({"/health"})


class Rejection(Exception):
    def __init__(self, status: int, error: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers


class RequestGuard:
    """Pure ASGI middleware (not BaseHTTPMiddleware: that reads nothing before the app, either)."""

    def __init__(self, app: ASGIApp, api_keys: tuple[str, ...] = ()) -> None:
        self.app = app
        self.keys = [key.encode() for key in api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            headers = _headers(scope)
            if self.keys:
                if scope["path"] not in OPEN_PATHS:
                    self._check_key(headers.get(b"authorization", []))
            else:
                _check_local(headers)
            length = _content_length(headers, MAX_BODY_BYTES)
            if not length and b"transfer-encoding" not in headers:
                await self.app(scope, receive, send)  # no body to guard
                return
            body = await self._read_body(receive)
        except Rejection as refusal:
            client = (scope.get("client") or ("?",))[0]
            path = scope["path"][:100]  # a stranger's text: bounded before any log formatting
            log.debug("API %s %s from %s refused: %s", scope["method"], path, client, refusal.error)
            await _refuse(send, refusal)
            return
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    def _check_key(self, values: list[bytes]) -> None:
        scheme, _, token = (values[0] if len(values) == 1 else b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise Rejection(
                401, "this API needs 'Authorization: Bearer <key>'", ((b"www-authenticate", b"Bearer"),)
            )
        presented = token.strip()
        if not any(hmac.compare_digest(presented, key) for key in self.keys):
            invalid = (b"www-authenticate", b'Bearer error="invalid_token"')
            raise Rejection(401, "unknown API key", (invalid,))

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, refused as soon as it passes the cap (chunked bodies have no length);
        None when the client went away before the end of it (nobody to answer)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Rejection(413, _too_large(MAX_BODY_BYTES))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _headers(scope: Scope) -> dict[bytes, list[bytes]]:
    headers: dict[bytes, list[bytes]] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.lower(), []).append(value)
    return headers


def _content_length(headers: dict[bytes, list[bytes]], cap: int) -> int | None:
    values = headers.get(b"content-length")
    if values is None:
        return None
    if len(set(values)) != 1 or not values[0].isdigit():
        raise Rejection(400, "Content-Length must be one whole number")
    length = int(values[0])
    if length > cap:
        raise Rejection(413, _too_large(cap))
    return length


def _too_large(cap: int) -> str:
    return f"request body over {cap // 1024} KiB"


def _check_local(headers: dict[bytes, list[bytes]]) -> None:
    """Without keys the API answers only requests addressed to loopback by name or literal (a
    missing Host is no rebinding: browsers always send one), and no page of another site."""
    hosts = headers.get(b"host", [])
    if len(hosts) > 1 or (hosts and not is_loopback_authority(hosts[0].decode("latin-1"))):
        raise Rejection(400, "this API answers only requests for localhost or a loopback address (Host)")
    for origin in headers.get(b"origin", []):
        netloc = urlsplit(origin.decode("latin-1")).netloc
        if not is_loopback_authority(netloc):
            raise Rejection(403, "requests from web pages of other sites are refused (Origin)")


def is_loopback_authority(authority: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``[::1]``, each with or without ``:port``."""
    host, port = _split_authority(authority.strip())
    if port is not None and not (port.isdigit() and int(port) <= 65535):
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_authority(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        host, bracket, rest = authority[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return "", None
        return host, rest[1:] if rest else None
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, as one message; then whatever the server says (a disconnect)."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _refuse(send: Send, refusal: Rejection) -> None:
    body = json.dumps({"error": refusal.error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *refusal.headers,
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
