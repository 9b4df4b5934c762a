"""A sweep's model confidence set and SPA test as its last report build found them.

Both come from the runs' stored predictions, which only the report build reads (the API ranks
live from the database and cannot recompute them). The build records, in `Sweep.selection_json`,
the summary's `selection` block and each config's `mcs_pvalue`/`in_mcs` of the ranking files it
wrote (sweep level and per fold), with the sweep revision and the rank_by they were computed for;
`selection_view` says whether a ranking asked for now may show them, and if not, why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.models import Sweep
from app.db.sweeps import utcnow
from core.report_files import json_safe

# Per config: [mcs_pvalue, in_mcs] (null where not computed).
Members = dict[str, list[Any]]


def selection_record(
    revision: int, rank_by: str, block: dict[str, Any] | None, sweep: Members | None, folds: dict[str, Members]
) -> dict[str, Any]:
    """What `selection_json` holds: `block` is summary.json's `selection` (None when the build
    wrote none), `sweep` and `folds` the ranking files' columns (None / absent when a file has none)."""
    return {"revision": revision, "rank_by": rank_by, "block": block, "sweep": sweep, "folds": folds}


def record_selection(session: Session, sweep_id: int, record: dict[str, Any]) -> None:
    """Keep `record` unless a newer revision's is already there (builds are one at a time per
    sweep, so this only guards against a build that lost its lock). Callers commit."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return
    stored = stored_selection(sweep)
    if stored is not None and int(stored.get("revision", -1)) > record["revision"]:
        return
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id)
        .values(selection_json=json.dumps(json_safe(record), allow_nan=False), selection_at=utcnow()),
        execution_options={"synchronize_session": False},
    )


def stored_selection(sweep: Sweep) -> dict[str, Any] | None:
    return json.loads(sweep.selection_json) if sweep.selection_json else None


@dataclass(frozen=True)
class SelectionView:
    """What a ranking (or summary) answer shows: the `selection` block, with `available` and
    `reason`, and per config (mcs_pvalue, in_mcs), empty when not available."""

    block: dict[str, Any]
    members: dict[str, tuple[float | None, bool | None]]


def selection_view(record: dict[str, Any] | None, revision: int, rank_by: str, fold: str | None) -> SelectionView:
    """The stored selection for a ranking of the sweep at `revision` by `rank_by` (of `fold`, or
    of the sweep): available only when it was computed for exactly that (same revision, same
    metric); otherwise null with the reason."""

    def missing(reason: str) -> SelectionView:
        computed = {"computed_for": record.get("rank_by"), "revision": record.get("revision")} if record else {}
        return SelectionView({"available": False, "reason": reason, **computed}, {})

    if record is None:
        return missing("not computed yet: the sweep's reports have not been built since this server kept it")
    if record["revision"] != revision:
        return missing(
            f"stale: computed by the report build of revision {record['revision']}, the sweep is at revision "
            f"{revision} (its runs or config changed); the next report build recomputes it"
        )
    if record["rank_by"] != rank_by:
        return missing(f"computed for {record['rank_by']} (the sweep's evaluation.rank_by), not {rank_by}")
    block = record.get("block")
    if block is None:
        return missing("the report build computed no model confidence set (reports of a version without it)")
    if fold is not None:
        block = (block.get("folds") or {}).get(fold)
        if block is None:
            return missing(f"the report build computed no model confidence set for fold {fold}")
    shown = {key: value for key, value in block.items() if key != "folds"}  # each fold's answer has its own
    shown |= {"computed_for": rank_by, "revision": revision, **({"fold": fold} if fold is not None else {})}
    if not block.get("available", False):
        return SelectionView({**shown, "available": False, "reason": str(block.get("reason") or "not available")}, {})
    table = record["sweep"] if fold is None else record.get("folds", {}).get(fold)
    if table is None:
        where = "the sweep's config_ranking.csv" if fold is None else f"fold {fold}'s config_ranking.csv"
        return missing(f"{where} has no mcs_pvalue/in_mcs")
    members = {config_id: (value[0], value[1]) for config_id, value in table.items()}
    return SelectionView({**shown, "available": True, "reason": None}, members)
