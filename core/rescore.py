"""Scores from the stored predictions: every metric of a run recomputed without training.

A run's scores depend on its predictions and on the sweep's `evaluation` block (references,
costs) and the metric registry. Each scored record carries the key of what it was scored with
(`SCORED_WITH`); a record whose key differs from the current one (the block was merged or
regenerated with other values, a metric or a reference was registered since) is rescored from
its model version's `predictions.parquet`, or, for runs made before predictions were kept,
from `test_predictions.csv` (test metrics only: validation metrics stay null).

Only the registered columns beyond the seed's run fields change: the seed's columns are the
run's record, and a CSV of 8 significant digits must not overwrite them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from core.config import EvaluationConfig, Fold
from core.evaluation import evaluate, read_predictions
from core.metrics import METRICS, metric_columns
from core.paths import LEGACY_PREDICTIONS_FILE, PREDICTIONS_FILE, version_folder
from core.references import REFERENCES
from core.runs import SCORED_FROM, SCORED_WITH, extra_scores

# Where a record's scores came from (`SCORED_FROM`), as the summary counts them.
log = logging.getLogger("tftsweep.reports")

FROM_PREDICTIONS = PREDICTIONS_FILE
FROM_TEST_PREDICTIONS = LEGACY_PREDICTIONS_FILE
FROM_TRAINING = "training"
FROM_UNREADABLE = "unreadable"


def scoring_key(evaluation: EvaluationConfig) -> str:
    """What a run's scores depend on besides its predictions: the references and costs, and the
    registered metrics and references (a new registration changes the key)."""
    payload = {
        "references": evaluation.references,
        "costs_bps": evaluation.costs_bps,
        "columns": metric_columns(evaluation.references),
        "metrics": {name: m.description for name, m in METRICS.items()},
        "registered": {name: r.description for name, r in REFERENCES.items()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def needs_rescore(record: Mapping[str, Any], key: str) -> bool:
    """A succeeded run with a model version, scored with something else than `key`."""
    return record.get("status") == "succeeded" and bool(record.get("model_version")) and record.get(SCORED_WITH) != key


def rescore_record(
    record: Mapping[str, Any], sweep: Path, frame: pd.DataFrame, fold: Fold, evaluation: EvaluationConfig, key: str
) -> dict[str, Any]:
    """The registered columns beyond the seed's of `record`, recomputed from its stored
    predictions, with `SCORED_WITH` and `SCORED_FROM`; a run without stored predictions keeps
    what it has and is marked as scored (so it is not looked for again)."""
    folder = version_folder(sweep, str(record["fold"]), str(record["model_version"]))
    kept = extra_scores(record)
    try:
        predictions = read_predictions(folder)
        if predictions is None:
            return {**kept, SCORED_WITH: key, SCORED_FROM: record.get(SCORED_FROM) or FROM_TRAINING}
        source = FROM_PREDICTIONS if (folder / PREDICTIONS_FILE).exists() else FROM_TEST_PREDICTIONS
        scores = evaluate(predictions, frame, fold, evaluation.references, evaluation.costs_bps)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:
        # A file that cannot be read or does not fit the dataset costs that run its new scores,
        # never the sweep its reports; it is marked, so it is not read again at every build.
        log.warning("run %s: predictions in %s not scored: %s", record.get("run_id"), folder.name, exc)
        return {**kept, SCORED_WITH: key, SCORED_FROM: FROM_UNREADABLE}
    fresh = extra_scores(scores)
    if source == FROM_TEST_PREDICTIONS:
        # Test rows alone say nothing of the validation window: what the run has there stays.
        fresh |= {k: v for k, v in kept.items() if k.startswith("val_") and v is not None}
    return {**fresh, SCORED_WITH: key, SCORED_FROM: source}


def rescore_records(
    records: Iterable[dict[str, Any]],
    sweep: Path,
    frame: pd.DataFrame,
    folds: Mapping[str, Fold],
    evaluation: EvaluationConfig,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Every record, with the stale ones rescored; and the new extra scores by run id (what a
    database records)."""
    key = scoring_key(evaluation)
    out: list[dict[str, Any]] = []
    changed: dict[int, dict[str, Any]] = {}
    for record in records:
        fold = folds.get(str(record.get("fold")))
        if fold is None or not needs_rescore(record, key):
            out.append(record)
            continue
        scores = rescore_record(record, sweep, frame, fold, evaluation, key)
        old = extra_scores(record)
        out.append({**{k: v for k, v in record.items() if k not in old}, **scores})
        changed[int(record["run_id"])] = scores
    return out, changed


def scored_from_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many succeeded runs were scored from full predictions, from test predictions only
    (runs made before predictions were kept: null validation metrics), by training alone (no
    stored predictions), or not at all (their predictions could not be read or do not fit the
    dataset)."""
    counts = Counter(str(r.get(SCORED_FROM) or FROM_TRAINING) for r in records if r.get("status") == "succeeded")
    sources = (FROM_PREDICTIONS, FROM_TEST_PREDICTIONS, FROM_TRAINING, FROM_UNREADABLE)
    return {name: counts.get(name, 0) for name in sources}
