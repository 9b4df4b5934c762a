"""Domain exceptions mapped to HTTP status codes, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import DatasetError, InvalidSweepConfig, MergeRejected, SweepExists


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if part == "body" and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(body)"


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
        return JSONResponse({"detail": [{"field": "dataset", "message": str(exc)}]}, status_code=422)

    @app.exception_handler(SweepExists)
    async def exists(_request: Request, exc: SweepExists) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

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
