"""Domain exceptions mapped to HTTP status codes, in one place: routes raise, never catch them;
and the two middlewares that shape answers by method (`Allow` on a 405, `HEAD` as GET).

InvalidSweepConfig 422 (each problem with its field), DatasetError 422 (its field: asset,
file or dataset), DatasetTooLarge 413 (an upload over a dataset limit); SweepExists,
StudyExists, DatasetExists, MergeRejected, SweepFolderError, Conflict, UnsafePath and NothingToCompare 409;
StoreError 503 (the object store failed: try again); sqlalchemy's pool TimeoutError 503
with Retry-After (every database connection is in use).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.config import loc_path
from core.errors import (
    Conflict,
    DatasetError,
    DatasetExists,
    DatasetTooLarge,
    InvalidSweepConfig,
    MergeRejected,
    NothingToCompare,
    StoreError,
    StudyExists,
    SweepExists,
    SweepFolderError,
    UnsafePath,
)


def _loc(loc: tuple[int | str, ...]) -> str:
    """A request error's field: the parameter or body path without where it came from
    (`asset`, `fold`, `config.walk_forward.folds[0].name`)."""
    if loc and loc[0] in ("body", "path", "query", "header", "cookie"):
        where, loc = loc[0], loc[1:]
        return loc_path(loc) if loc else f"({where})"
    return loc_path(loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidSweepConfig)
    async def invalid_config(_request: Request, exc: InvalidSweepConfig) -> JSONResponse:
        detail = [
            {"field": f"config.{e.field}" if not e.field.startswith("(") else e.field, "message": e.message}
            for e in exc.errors
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(DatasetError)
    async def bad_dataset(_request: Request, exc: DatasetError) -> JSONResponse:
        return JSONResponse({"detail": [{"field": exc.field, "message": str(exc)}]}, status_code=422)

    @app.exception_handler(DatasetTooLarge)
    async def dataset_too_large(_request: Request, exc: DatasetTooLarge) -> JSONResponse:
        return JSONResponse({"detail": [{"field": exc.field, "message": str(exc)}]}, status_code=413)

    @app.exception_handler(SweepExists)
    @app.exception_handler(StudyExists)
    @app.exception_handler(DatasetExists)
    @app.exception_handler(Conflict)
    @app.exception_handler(UnsafePath)
    @app.exception_handler(NothingToCompare)
    async def exists(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(SweepFolderError)
    async def bad_folder(_request: Request, exc: SweepFolderError) -> JSONResponse:
        return JSONResponse({"detail": f"the sweep's folder cannot be used: {exc}"}, status_code=409)

    @app.exception_handler(StoreError)
    async def store_failed(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(PoolTimeoutError)
    async def pool_exhausted(_request: Request, _exc: PoolTimeoutError) -> JSONResponse:
        detail = "the server is busy: every database connection is in use; retry shortly"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(MergeRejected)
    async def merge_refused(_request: Request, exc: MergeRejected) -> JSONResponse:
        body = {
            "detail": f"merge refused: {len(exc.violations)} violation(s); nothing was written",
            "violations": [v.to_dict() for v in exc.violations],
        }
        return JSONResponse(body, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": _loc(tuple(e["loc"])), "message": str(e["msg"])} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)


class AllowHeaderMiddleware:
    """A 405 names every method the path supports (Starlette lists only the route it matched)."""

    def __init__(self, app: Any, spec: Any) -> None:
        self.app = app
        self._spec = spec
        self._table: list[tuple[re.Pattern[str], str]] | None = None

    def _allowed(self, path: str) -> str | None:
        if self._table is None:
            self._table = [
                (
                    re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"),
                    # HEAD is answered wherever GET is (HeadAsGetMiddleware).
                    ", ".join(sorted({m.upper() for m in operations} | ({"HEAD"} if "get" in operations else set()))),
                )
                for template, operations in self._spec()["paths"].items()
            ]
        return next((allow for pattern, allow in self._table if pattern.match(path)), None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def patched(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self._allowed(scope["path"])
                if allow:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow.encode())]}
            await send(message)

        await self.app(scope, receive, patched)


class HeadAsGetMiddleware:
    """`HEAD` answers on every GET route (HTTP requires it; routes declare only GET): the request
    runs as a GET and the body is dropped, its headers (`content-length` too) kept as they are."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Any) -> None:
            if message["type"] in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return  # a streamed body: only its end is sent, empty
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
