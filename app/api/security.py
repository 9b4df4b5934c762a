"""What the API refuses before any route runs: ASGI middlewares, outermost first.

1. `Host` must be an allowed name (Starlette's TrustedHostMiddleware; loopback names by
   default, `TFTSWEEP_ALLOWED_HOSTS` otherwise): a page on another site that points a
   name of its own at this server (DNS rebinding) gets 400.
2. `LoopbackOnlyMiddleware`: without API keys the server is open to whoever reaches it,
   so a request that arrived on a non-loopback local address is refused (403), however
   the app was started.
3. `CrossSiteMiddleware`: a state-changing request whose `Origin` or `Sec-Fetch-Site`
   shows another site is refused (403): a browser on another page cannot cancel a sweep
   or overwrite a dataset (curl and scripts send neither header).
4. `ApiKeyMiddleware`: keys come from `TFTSWEEP_API_KEYS` (`read:KEY,write:KEY,...`), are
   kept only as SHA-256 digests and compared in constant time. With keys configured every
   route but `/healthz` needs one (`Authorization: Bearer KEY` or `X-API-Key: KEY`):
   GET/HEAD the read scope, everything else the write scope. The pages (`/ui`, `/docs`) hold
   no data and need none: their scripts send the key the user entered.
5. `BodyLimitMiddleware`: body size and JSON nesting limits; JSON routes take JSON only
   (415 for a form), uploads take multipart only.
6. `SecurityHeadersMiddleware`: `nosniff` on every answer; a CSP that allows only the app's
   own scripts and styles, no framing and no referrer on the dashboard (`/ui`) and the API
   docs (`/docs`, served from the `swagger-ui-bundle` package, no CDN).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READ = "read"
WRITE = "write"
OPEN_PATHS = frozenset({"/healthz", "/favicon.ico"})
# The pages: the dashboard and the API docs (and what lies under them). Their shells and static
# files hold no data, so they need no key (a plain link to them works on a keyed server): the
# browser then calls the API, `/openapi.json` included, with its key. They get the strict CSP.
PAGE_PREFIXES = ("/ui", "/docs", "/redoc")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UPLOAD_PREFIX = "/datasets/"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(configured: str | None) -> list[str]:
    """The `Host` names the API answers: `TFTSWEEP_ALLOWED_HOSTS` (comma-separated), else loopback."""
    names = [h.strip() for h in (configured or "").split(",") if h.strip()]
    return names or list(LOOPBACK_HOSTS)


class LoopbackOnlyMiddleware:
    """Without keys, only requests that arrived on a loopback address are served."""

    def __init__(self, app: ASGIApp, keys: list[ApiKey]) -> None:
        self.app = app
        self.open = not keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if self.open and scope["type"] == "http" and server and not is_loopback(str(server[0])):
            await _reply(
                send,
                403,
                f"this server has no API keys, so it answers only on loopback addresses, not on {server[0]}: "
                "set TFTSWEEP_API_KEYS (read:KEY,write:KEY) to serve other addresses",
            )
            return
        await self.app(scope, receive, send)


class CrossSiteMiddleware:
    """A state-changing request sent by a page of another site is refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in READ_METHODS:
            fetch_site = (_header(scope, b"sec-fetch-site") or "").lower()
            origin = _header(scope, b"origin")
            own = f"{scope.get('scheme', 'http')}://{_header(scope, b'host') or ''}".lower()
            if fetch_site not in ("", "same-origin", "none") or (origin is not None and origin.lower() != own):
                await _reply(
                    send,
                    403,
                    f"cross-site request refused (Origin {origin or '-'}, Sec-Fetch-Site {fetch_site or '-'}): "
                    "this API changes state only for requests from its own pages or from non-browser clients",
                )
                return
        await self.app(scope, receive, send)


def is_page(path: str) -> bool:
    """A dashboard or docs path (`/ui`, `/docs`, `/redoc`, or one under them)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PAGE_PREFIXES)


class SecurityHeadersMiddleware:
    """`X-Content-Type-Options: nosniff` everywhere; on the pages (`/ui`, `/docs`), a CSP allowing
    only the app's own scripts, styles and images (blob: for plots and downloads fetched with the
    key; data: for Swagger UI's icons), no framing, no referrer."""

    UI_HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(b"x-content-type-options", b"nosniff")]
        if is_page(scope["path"]):
            extra += list(self.UI_HEADERS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


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
        if path in OPEN_PATHS or (method in READ_METHODS and is_page(path)):
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
        upload = path.startswith(UPLOAD_PREFIX)
        limit = self.max_upload if upload else self.max_body
        media = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
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
        if body and media != ("multipart/form-data" if upload else "application/json"):
            wanted = "multipart/form-data (a file field)" if upload else "application/json"
            await _reply(send, 415, f"this route takes {wanted}, not {media or 'an untyped body'}")
            return
        if media == "application/json" and json_depth(bytes(body), self.max_depth) > self.max_depth:
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
