"""Cached report tables and encoded answers, keyed on `Sweep.revision`.

A sweep's ranking over 10,000 runs takes a tenth of a second to build; its runs change a
few times a minute while it trains and never once it is done. Tables and the JSON
bodies built from them are kept per (what, sweep, fold, revision); a request then costs
one primary-key read. When a run changes, the first request for the new revision builds
the value and concurrent requests for it wait for that one build instead of each
building their own.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, TypeVar

from fastapi import Request, Response

T = TypeVar("T")

JSON = "application/json"


class BuildOnce:
    """A bounded LRU map whose values are built at most once per key, even when many
    threads ask for a missing key at the same time."""

    def __init__(self, size: int = 256) -> None:
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._building: dict[Hashable, Future[Any]] = {}
        self._size = size
        self._lock = threading.Lock()

    def peek(self, key: Hashable) -> Any | None:
        """The value of `key` if it is built (None otherwise); never builds, never waits."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                value: T = self._entries[key]
                return value
            pending = self._building.get(key)
            owner = pending is None
            if pending is None:
                pending = self._building[key] = Future()
        if not owner:
            result: T = pending.result()
            return result
        try:
            value = build()
        except BaseException as exc:
            with self._lock:
                del self._building[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._building[key]
            self._entries[key] = value
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        pending.set_result(value)
        return value


def json_answer(request: Request, cache: BuildOnce, key: tuple[Any, ...], build: Callable[[], bytes]) -> Response:
    """The cached JSON body for `key` (built by `build` on a miss), with an ETag; 304 when
    the client already holds it (`If-None-Match`)."""

    def body_and_tag() -> tuple[bytes, str]:
        return build(), '"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'

    body, etag = cache.get(("answer", *key), body_and_tag)
    return respond(request, body, etag)


def cached_answer(request: Request, cache: BuildOnce, key: tuple[Any, ...]) -> Response | None:
    """The answer for `key` if its body is built already (no build, no wait), else None."""
    found = cache.peek(("answer", *key))
    return None if found is None else respond(request, *found)


def respond(request: Request, body: bytes, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=JSON, headers=headers)
