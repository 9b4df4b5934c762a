"""Names that become path components (assets, output_subdirs, folds, configs): one rule, one type.

`SafeName` is the pydantic type every model field and API path or query parameter that
names such a thing uses, so a new field cannot forget the rule.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

SAFE_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)


def check_safe_name(value: object) -> str | None:
    """Return why `value` is not a safe path component, or None when it is.

    Safe names start with a letter or digit, hold only letters, digits, `.`, `_`, `-`
    (nothing else: no separator, no whitespace, no trailing newline), are at most 64
    characters long and contain no `..`. The whole string must match.
    """
    if not isinstance(value, str):
        return "must be a string"
    if value == "":
        return "must not be empty"
    if len(value) > 64:
        return f"is {len(value)} characters long; at most 64 are allowed"
    if "/" in value or "\\" in value or "\x00" in value:
        return "must not contain path separators or NUL bytes"
    if value.startswith("."):
        return "must not start with a dot"
    if ".." in value:
        return "must not contain '..'"
    if not _SAFE_NAME.fullmatch(value):
        return "may hold only letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None


def _safe_name(value: str) -> str:
    problem = check_safe_name(value)
    if problem is not None:
        raise ValueError(f"{value!r} {problem}")
    return value


SafeName = Annotated[
    str,
    AfterValidator(_safe_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{SAFE_NAME_PATTERN}$",
            "description": "1-64 of A-Z a-z 0-9 . _ - , starting with a letter or digit, no '..'",
        }
    ),
]
