"""/compare: two sweeps of the database compared as `tftsweep compare` compares two folders
(core.compare), with each sweep's model confidence set as its last report build recorded it.

Built from the sweeps' run tables (cached per revision), never from predictions, and cached per
(a, b, their revisions, their recorded selections)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from app.api.deps import TablesDep
from app.api.models import ComparedSweepPublic, ComparePublic, ErrorPublic
from app.api.tables import SweepTables
from app.db.models import Sweep
from app.db.sweeps import stored_config
from core.compare import ComparedSweep, Membership, compare_loaded
from core.report_files import json_safe, table_rows

router = APIRouter(prefix="/compare", tags=["compare"])

CompareId = Annotated[int, Query(ge=1, le=2**62)]


def _sweep(tables: SweepTables, name: str, sweep_id: int) -> Sweep:
    sweep = tables.session.get(Sweep, sweep_id)
    if sweep is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, [{"field": name, "message": f"sweep {sweep_id} not found"}])
    return sweep


def _compared(tables: SweepTables, sweep: Sweep) -> ComparedSweep:
    """The sweep as core.compare reads it: its config, its runs (all folds) and the MCS its last
    report build recorded for its own rank_by (null with the reason when stale or absent)."""
    config = stored_config(sweep)
    view = tables.selection(sweep, None, config.evaluation.rank_by)
    mcs = Membership(view.members) if view.block["available"] else Membership(None, view.block.get("reason"))
    label = f"{sweep.asset}/{sweep.output_subdir}"
    return ComparedSweep(label, sweep.asset, config, tables.runs(sweep, None), mcs)


def _public(sweep: Sweep) -> dict[str, Any]:
    label = f"{sweep.asset}/{sweep.output_subdir}"
    return ComparedSweepPublic(
        id=sweep.id, asset=sweep.asset, output_subdir=sweep.output_subdir, label=label
    ).model_dump()


@router.get(
    "",
    response_model=ComparePublic,
    responses={
        404: {"model": ErrorPublic, "description": "No sweep `a` or `b` (the field names which)."},
        409: {"model": ErrorPublic, "description": "The sweeps share nothing that can be compared (it says what)."},
        422: {"model": ErrorPublic, "description": "`a` or `b` is not a sweep id, or `b` is `a`."},
    },
    summary="Compare two sweeps: on one asset on common folds and seeds; across assets by transfer",
)
def compare(
    request: Request,
    tables: TablesDep,
    a: Annotated[CompareId, Query(description="The reference sweep's id.")],
    b: Annotated[CompareId, Query(description="The sweep compared with it.")],
) -> Response:
    """As `tftsweep compare` over the two sweeps' folders, from the database. For the configs
    they share, each sweep's model confidence set (`mcs`: `in_mcs`, `mcs_pvalue`, from its last
    report build, for its evaluation.rank_by). On one asset: both ranked on their common folds,
    seeds and configs, and b tested against a on the same config, fold and seed. On different
    assets the answer is transfer, not volatility: each shared variant's paired delta against its
    own sweep's baseline (and its error relative to its own naive forecast), the sign agreement of
    those deltas, and the Spearman and Kendall correlation (with p-values) of the two rankings."""
    if a == b:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [{"field": "b", "message": "must be another sweep than a"}]
        )
    first, second = _sweep(tables, "a", a), _sweep(tables, "b", b)
    key = ("compare", a, b, first.revision, first.selection_at, second.revision, second.selection_at)

    def build() -> bytes:
        table, report = compare_loaded([_compared(tables, first), _compared(tables, second)])
        answer = {"a": _public(first), "b": _public(second), **report, "table": table_rows(table)}
        answer.setdefault("metric", None)
        return orjson.dumps(json_safe(answer))

    return tables.answer(request, key, build)
