"""Domain exceptions, mapped to HTTP status codes and CLI exit codes at the edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, addressed by a dotted path such as `walk_forward.folds[0].name`."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class TftsweepError(Exception):
    """Base class of every error the domain raises on purpose."""


class InvalidSweepConfig(TftsweepError):
    """A sweep (or HPO) config that cannot be accepted; carries every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))

    def to_list(self) -> list[dict[str, str]]:
        return [{"field": e.field, "message": e.message} for e in self.errors]


@dataclass(frozen=True)
class MergeViolation:
    """One reason a merge is refused: where, what it was, what it would become, which rule."""

    field: str
    old: Any
    new: Any
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule} (old: {_short(self.old)}, new: {_short(self.new)})"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new, "rule": self.rule}


class MergeRejected(TftsweepError):
    """A merge that breaks the merge rules; lists every violation, nothing is written."""

    def __init__(self, violations: list[MergeViolation]) -> None:
        self.violations = violations
        super().__init__("merge refused: " + "; ".join(str(v) for v in violations))


class SweepExists(TftsweepError):
    """A sweep for this (asset, output_subdir) exists and no merge was asked for."""


class Conflict(TftsweepError):
    """A request the current state does not allow (cancelling a finished sweep or study)."""


class StudyExists(TftsweepError):
    """An HPO study for this (asset, output_subdir) exists with a config it cannot continue with."""


class SweepFolderError(TftsweepError):
    """A sweep folder that cannot be read back (missing or invalid `analysis_config.json` or
    `sweep_runs.json`), or whose runs do not belong to its config."""


class DatasetExists(TftsweepError):
    """An import over a stored dataset without asking to replace it."""


class NothingToCompare(TftsweepError):
    """Sweeps that share no fold, seed or config with a succeeded run on both sides."""


class UnsafePath(TftsweepError):
    """A path that would lead outside the folder it must stay in (a planted symlink)."""


class DatasetError(TftsweepError):
    """A dataset that is missing or unusable; the message names the column or window, and
    `field` the input at fault: `asset` (a bad name), `file` (an upload or CSV that cannot
    be read) or `dataset` (the stored dataset)."""

    def __init__(self, message: str, field: str = "dataset") -> None:
        super().__init__(message)
        self.field = field


class DatasetTooLarge(DatasetError):
    """An imported file larger, once decoded, than the server accepts (rows, columns or
    bytes); found from its metadata or header before its data are decoded."""


class StoreError(TftsweepError):
    """The object store cannot be reached, refuses a request, or holds a folder that keeps
    changing while it is read (the message names the object and the cause)."""


class RunFailed(TftsweepError):
    """Training one run failed for a reason worth recording as the run's error."""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunCancelled(TftsweepError):
    """Training stopped because the run was cancelled (or its lease was lost)."""
