"""Rules for names that become path components: assets, output_subdirs, folds, configs."""

from __future__ import annotations

import re

SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SAFE_NAME = re.compile(SAFE_NAME_PATTERN)


def check_safe_name(value: str) -> str | None:
    """Return why `value` is not a safe path component, or None when it is.

    Safe names start with a letter or digit, hold only letters, digits, `.`, `_`, `-`,
    are at most 64 characters long and contain no `..`.
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
    if not _SAFE_NAME.match(value):
        return "may hold only letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None
