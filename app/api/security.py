"""API keys (read and write scopes) and request limits: ASGI middlewares in front of every route.

Keys come from `TFTSWEEP_API_KEYS` (`read:KEY,write:KEY,...`), are kept only as SHA-256
digests, and are compared in constant time. With keys configured every route but
`/healthz` needs one: `Authorization: Bearer KEY` or `X-API-Key: KEY`; GET/HEAD need the
read scope (a write key has it too), everything else the write scope.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READ = "read"
WRITE = "write"
OPEN_PATHS = frozenset({"/healthz"})
# Dashboard shells and their static files hold no data: the browser then calls the API with its key.
OPEN_PREFIXES = ("/ui",)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ApiKey:
    scope: str
    digest: bytes


def parse_api_keys(raw: str | None) -> list[ApiKey]:
    """`read:abc,write:def` into hashed keys.

    Raises:
        ValueError: an entry without a known scope or with a key shorter than 16 characters.
    """
    keys = []
    for entry in (raw or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        scope, sep, key = entry.partition(":")
        if not sep or scope not in (READ, WRITE):
            raise ValueError("TFTSWEEP_API_KEYS entries look like read:KEY or write:KEY")
        if len(key) < 16:
            raise ValueError("TFTSWEEP_API_KEYS: keys must be at least 16 characters")
        keys.append(ApiKey(scope, hashlib.sha256(key.encode()).digest()))
    return keys


def scope_of(keys: list[ApiKey], presented: str) -> str | None:
    """The scope of `presented`, comparing digests in constant time against every key."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            found = key.scope
    return found


def json_depth(body: bytes, limit: int) -> int:
    """Nesting depth of a JSON text, stopping early past `limit` (strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class ApiKeyMiddleware:
    """With keys configured, every route but the open ones needs a key of the right scope."""

    def __init__(self, app: ASGIApp, keys: list[ApiKey]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path in OPEN_PATHS or (method in READ_METHODS and path.startswith(OPEN_PREFIXES)):
            await self.app(scope, receive, send)
            return
        presented = _presented_key(scope)
        if presented is None:
            await _reply(
                send, 401, "missing API key (Authorization: Bearer KEY or X-API-Key)", {"www-authenticate": "Bearer"}
            )
            return
        granted = scope_of(self.keys, presented)
        if granted is None:
            await _reply(send, 401, "invalid API key", {"www-authenticate": "Bearer"})
            return
        if method not in READ_METHODS and granted != WRITE:
            await _reply(send, 403, "this key has the read scope; this route needs a write key")
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Body size and JSON nesting limits, before any route parses a body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes
        self.max_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if method in READ_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.max_upload if path.startswith("/datasets/") else self.max_body
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, f"request body over {limit} bytes")
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _reply(send, 413, f"request body over {limit} bytes")
                return
        content_type = _header(scope, b"content-type") or ""
        if "json" in content_type and json_depth(bytes(body), self.max_depth) > self.max_depth:
            await _reply(send, 422, f"JSON nested deeper than {self.max_depth} levels")
            return
        await self.app(scope, _replay(bytes(body)), send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _presented_key(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return _header(scope, b"x-api-key") or None


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _reply(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    payload: dict[str, Any] = {"detail": detail}
    body = json.dumps(payload).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
