"""Files the API reads from the data root: only regular files whose real path (links resolved,
at the moment of use) lies inside it, and JSON that does not parse is a clear 409."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import HTTPException, status

from app.settings import Settings
from core.paths import resolve_inside


def servable(settings: Settings, path: Path) -> Path | None:
    """The real file behind `path` if it is a regular file inside the data root, else None."""
    real = resolve_inside(settings.data_root, path)
    return real if real is not None and real.is_file() else None


def read_json(settings: Settings, path: Path, rebuild: str) -> Any | None:
    """The JSON in `path` (None when it is not there, or leads outside the data root).

    Raises:
        HTTPException: 409 when the file is there but unreadable (truncated, not UTF-8,
            not the JSON object it should be); `rebuild` says how to write it again.
    """
    real = servable(settings, path)
    if real is None:
        return None
    try:
        data = json.loads(real.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = type(exc).__name__
    else:
        if isinstance(data, dict | list):
            return data
        reason = f"a JSON {type(data).__name__}"
    relative = real.relative_to(settings.data_root.resolve())
    raise HTTPException(status.HTTP_409_CONFLICT, f"{relative} cannot be read ({reason}): {rebuild}")
