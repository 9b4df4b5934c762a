"""The answer to a sweep's submission, shared by `POST /sweeps` and `POST /studies/{id}/sweep`:
record the sweep, answer, then send its runs' messages."""

from __future__ import annotations

from fastapi import BackgroundTasks, status
from fastapi.responses import JSONResponse

from app.api.deps import FactoryDep, QueueDep, SettingsDep
from app.api.models import SweepSubmitted
from app.service.submission import send_submitted, submit_sweep
from core.config import SweepConfig


def submit_sweep_response(
    factory: FactoryDep,
    queue: QueueDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    asset: str,
    config: SweepConfig,
    merge: bool,
    continue_on_error: bool,
) -> JSONResponse:
    """Record the sweep, answer 201 (created) or 202 (merged), then send the runs' messages."""
    result = submit_sweep(
        factory, queue, settings, asset, config, merge=merge, continue_on_error=continue_on_error, send=False
    )
    # The runs are committed; their messages go out right after the answer (the reaper
    # sends any that a crash would lose), so a 5,000-run plan answers fast.
    background.add_task(send_submitted, factory, queue, result)
    payload = SweepSubmitted(
        id=result.sweep_id,
        asset=result.asset,
        output_subdir=result.output_subdir,
        status=result.status,
        new_runs=len(result.new_run_ids),
        total_runs=result.total_runs,
        merged=result.merged,
        effective_folds=result.effective_folds,
    )
    code = status.HTTP_202_ACCEPTED if result.merged else status.HTTP_201_CREATED
    return JSONResponse(payload.model_dump(), status_code=code, headers={"Location": f"/sweeps/{result.sweep_id}"})
