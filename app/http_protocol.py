"""uvicorn's httptools protocol with a deadline on reading requests, and a 503 that says when to retry.

uvicorn (0.54) times out idle keep-alive connections only after a response: a client that
connects and sends nothing, or half a request line, holds its connection (and a slot of
`limit_concurrency`) for ever. Here a client has `read_timeout` seconds from connecting, or
from the first byte of a request, to send the request's line and headers (then 408 and the
connection is closed), and as long between two pieces of a body (then the connection is
closed; the app sees a disconnect). uvicorn's own 503 past `limit_concurrency` gains a
`Retry-After`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from weakref import WeakKeyDictionary

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

DEFAULT_READ_TIMEOUT = 10.0
RETRY_AFTER_SECONDS = b"1"
TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\nconnection: close\r\n\r\nthe request was not sent in time"
)


async def busy(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """What uvicorn answers past `limit_concurrency`, with Retry-After."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"19"),
                (b"retry-after", RETRY_AFTER_SECONDS),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable", "more_body": False})


class ReadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose reads of a request's head and body have a deadline.

    A request only notes when the connection started waiting for the client (a float); one
    timer per server, every quarter of the deadline, closes the connections that waited too
    long, so a request costs no timer of its own.
    """

    read_timeout: float = DEFAULT_READ_TIMEOUT
    # One sweeping timer per server (its state holds the set of its connections).
    _sweeps: ClassVar[WeakKeyDictionary[ServerState, asyncio.TimerHandle]] = WeakKeyDictionary()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting_since: float | None = None  # when it began waiting for the client, if it is
        self.in_head = True  # waiting for (the rest of) a request's line and headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        if self.server_state not in self._sweeps:
            self._schedule_sweep(self.loop, self.server_state, self.read_timeout)

    @classmethod
    def _schedule_sweep(cls, loop: asyncio.AbstractEventLoop, state: ServerState, timeout: float) -> None:
        cls._sweeps[state] = loop.call_later(max(timeout / 4, 0.05), cls._sweep, loop, state, timeout)

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop, state: ServerState, timeout: float) -> None:
        now = loop.time()
        for conn in list(state.connections):
            if not isinstance(conn, ReadTimeoutProtocol) or conn.waiting_since is None:
                continue
            if now - conn.waiting_since > timeout:
                conn.timed_out()
        if state.connections:
            cls._schedule_sweep(loop, state, timeout)
        else:  # idle server: the next connection starts the sweeping again
            del cls._sweeps[state]

    def timed_out(self) -> None:
        self.waiting_since = None
        if self.transport.is_closing():
            return
        if not self.in_head and self.flow.read_paused:
            self.waiting_since = self.loop.time()  # the app is not reading the body: the slow side is not the client
            return
        if self.in_head:
            self.transport.write(TIMED_OUT)
        # Mid-body the app may be answering: closing is all that can be said (it sees a disconnect).
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting_since = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        if self.waiting_since is None:  # a new request on a kept-alive connection
            self.waiting_since = self.loop.time()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.in_head = False
        self.waiting_since = self.loop.time()  # for the body's first piece (none: cleared at once)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self.waiting_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.waiting_since = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        super()._start_asgi_task(cycle, busy if app is service_unavailable else app)


def read_timeout_protocol(seconds: float) -> type[ReadTimeoutProtocol]:
    """The protocol class with a read deadline of `seconds` (uvicorn.Config's `http`)."""
    return type("ReadTimeoutProtocol", (ReadTimeoutProtocol,), {"read_timeout": seconds})
