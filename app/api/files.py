"""Files the API serves, from the store (`core.store`): on the local disk only regular files
whose real path (links resolved, at the moment of use) lies inside their own folder (`inside`:
the sweep's or the study's, itself no link) and the data root; in an object store only
published files, streamed without a local copy. JSON that does not parse is a clear 409."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import FileResponse, Response, StreamingResponse

from app.settings import Settings


def file_response(
    settings: Settings, path: Path, media_type: str, filename: str | None = None, *, inside: Path
) -> Response | None:
    """`path` as a response with `media_type` (an attachment named `filename`, when given), or
    None when it is not a file inside the folder `inside`."""
    found = settings.store().open(path, inside)
    if found is None:
        return None
    if found.path is not None:
        return FileResponse(found.path, media_type=media_type, filename=filename)
    assert found.chunks is not None
    headers = {"content-length": str(found.size)}
    if filename is not None:
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(found.chunks, media_type=media_type, headers=headers)


def listing(settings: Settings, folder: Path, suffix: str, *, inside: Path) -> list[str]:
    """Names of the files directly in `folder` that end in `suffix` and can be served from `inside`."""
    return settings.store().listing(folder, suffix, inside)


def read_json(settings: Settings, path: Path, rebuild: str, *, inside: Path | None = None) -> Any | None:
    """The JSON in `path` (None when it is not there, or leads outside `inside` or the data root).

    Raises:
        HTTPException: 409 when the file is there but unreadable (truncated, not UTF-8,
            not the JSON object it should be); `rebuild` says how to write it again.
    """
    data = settings.store().read_bytes(path, inside)
    if data is None:
        return None
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        reason = type(exc).__name__
    else:
        if isinstance(parsed, dict | list):
            return parsed
        reason = f"a JSON {type(parsed).__name__}"
    relative = path.relative_to(settings.data_root)
    raise HTTPException(status.HTTP_409_CONFLICT, f"{relative} cannot be read ({reason}): {rebuild}")
