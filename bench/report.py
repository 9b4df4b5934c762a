"""Render docs/benchmarks.md from bench/results/*.json.

.venv/bin/python -m bench.report
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import racing_bench, run_cache_bench
from bench.common import RESULTS

DOC = Path("docs/benchmarks.md")


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _machine(results: list[dict[str, Any] | None]) -> list[str]:
    found = next((r for r in results if r), None)
    if not found:
        return []
    m = found["machine"]
    return [
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Python {m['python']}, {m['platform']}; no GPU.",
        "",
    ]


def _overhead(o: dict[str, Any]) -> list[str]:
    b = o["breakdown_median_s"]
    return [
        f"Command: `{o['command']}` ({o['date']}). The example sweep, {o['runs']} runs, 2 torch threads.",
        "",
        "| | wall (s) |",
        "|---|---|",
        f"| plain script (`bench/plain_reference.py`, imports included) | {o['plain_script_s']['median']:.1f} |",
        f"| server, 1 worker, submit → last run | {o['server_1_worker_s']['median']:.1f} |",
        f"| ratio | **{o['ratio']:.2f}** ({verdict(o['ratio'] <= o['target_ratio'])}) |",
        "",
        "Where the server's time goes (medians):",
        "",
        "| part | s |",
        "|---|---|",
        f"| submit → first run starts (queue latency, worker's first imports) | {b['first_start_s']:.1f} |",
        f"| training (seed, model, fit; summed over runs) | {b['training_s']:.1f} |",
        f"| inside runs but not training (datasets, predictions, checkpoint publishing, recording) | "
        f"{b['in_run_not_training_s']:.1f} |",
        f"| between runs (queue, claim) | {b['between_runs_s']:.1f} |",
        f"| reports and plots after the last run (not in the wall time above) | {b['reports_s']:.1f} |",
        "",
    ]


def _scaling(s: dict[str, Any]) -> list[str]:
    return [
        f"Command: `{s['command']}` ({s['date']}).",
        "",
        "| setup | wall (s) | runs per hour |",
        "|---|---|---|",
        f"| 1 worker × 2 threads | {s['one_worker_two_threads_s']['median']:.1f} | {s['runs_per_hour_1x2']:.0f} |",
        f"| 2 workers × 1 thread | {s['two_workers_one_thread_s']['median']:.1f} | {s['runs_per_hour_2x1']:.0f} |",
        f"| speed-up | **{s['speedup']:.2f}×** ({verdict(s['speedup'] >= s['target_speedup'])}) | |",
        "",
    ]


def _dataset_reuse(d: dict[str, Any]) -> list[str]:
    return [
        f"Command: `{d['command']}` ({d['date']}). Building the fold datasets of the example's {d['runs']} runs:",
        "",
        "| | total (s) | per run (ms) | builds |",
        "|---|---|---|---|",
        f"| without the cache | {d['without_cache_s']:.2f} | {d['per_run_without_ms']:.0f} | {d['runs']} |",
        f"| with the per-fold cache | {d['with_cache_s']:.2f} | {d['per_run_with_ms']:.0f} | "
        f"{d['builds_with_cache']} |",
        "",
    ]


def _reports(r: dict[str, Any]) -> list[str]:
    big, plots = r["reports_100k_runs_s"], r["reports_and_plots_1k_runs_s"]
    return [
        f"Command: `{r['command']}` ({r['date']}). {r['note']}.",
        "",
        "| | median (s) | target (s) | |",
        "|---|---|---|---|",
        f"| CSV/JSON reports, 100,000 runs, every metric column ({r.get('metric_columns', '-')}) filled | "
        f"{big['median']:.2f} | {big['target']} | {verdict(big['median'] < 3)} |",
        *(
            [
                f"| the same runs with the seed's columns only (as trained before metrics were kept) | "
                f"{seed['median']:.2f} | {seed['target']} | {verdict(seed['median'] < 3)} |"
            ]
            if (seed := r.get("reports_100k_runs_seed_columns_s"))
            else []
        ),
        f"| reports + plots, 1,000 runs | {plots['median']:.2f} | {plots['target']} | "
        f"{verdict(plots['median'] < 15)} |",
        "",
    ]


def _api(a: dict[str, Any]) -> list[str]:
    p = a["post_5000_run_plan_s"]
    lines = [
        f"Command: `{a['command']}` ({a['date']}); SQLite, embedded broker, no worker, uvicorn with the HTTP "
        "settings of `tftsweep serve` (read deadline, keep-alive, concurrency limit). "
        f"{a['connections']} keep-alive connections for {a['seconds']:.0f} s per row, in 3 rounds "
        "(p50 and p95: medians of the rounds; the rounds' p95 in brackets) "
        f"(`bench/http_load.py`), half the requests to each path; the sweep has "
        f"{a['runs_in_sweep']:,} runs, {a['finished_runs_at_start']:,} of them finished with metrics. "
        "*Live*: the same load while one run finishes every 2 s (each change rebuilds the ranking).",
        "",
        "| uvicorn | load | request | requests | p50 (ms) | p95 (ms) | target p95 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for setup, label in (("one_process", "1 process"), ("two_processes", "2 processes (`--workers 2`)")):
        for load_name, rows in (("static", a[setup]), ("live", a[setup]["live"])):
            for key, path in (("get_ranking", "GET /sweeps/{id}/ranking"), ("get_sweep", "GET /sweeps/{id}")):
                row = rows[key]
                lines.append(
                    f"| {label} | {load_name} | {path} | {row['requests']} | {row['p50_ms']} | "
                    f"{row['p95_ms']} ({', '.join(map(str, row['p95_ms_rounds']))}) | "
                    f"< {row.get('target_p95_ms', 50)} ({verdict(row['p95_ms'] < row.get('target_p95_ms', 50))}) |"
                )
    return [
        *lines,
        "",
        "| request | median (ms) | all (ms) | |",
        "|---|---|---|---|",
        f"| POST /sweeps, 5,000-run plan, idle server | {1000 * p['median']:.0f} | "
        f"{', '.join(f'{1000 * t:.0f}' for t in p['all'])} | {verdict(p['median'] < 1)} |",
        "",
    ]


def _store(s: dict[str, Any]) -> list[str]:
    per_run = s["fetch_per_run_ms"] + s["upload_per_run_ms"]
    return [
        f"Command: `{s['command']}` ({s['date']}). The example sweep ({s['runs']} real runs, "
        f"{s['train_per_run_s']:.1f} s of training each) on the local disk and with `TFTSWEEP_STORE_URL`; "
        f"{s['note']}.",
        "",
        "| | local disk | object store |",
        "|---|---|---|",
        f"| dataset fetch per run (cached: its manifest only) | 0 | {s['fetch_per_run_ms']:.0f} ms |",
        f"| model version upload per run ({s['version_bytes'] / 1e3:.0f} kB) | 0 | {s['upload_per_run_ms']:.0f} ms "
        f"({min(s['upload_per_run_ms_all']):.0f}-{max(s['upload_per_run_ms_all']):.0f}) |",
        f"| store cost per run, against its training | - | {per_run:.0f} ms "
        f"({100 * per_run / 1000 / s['train_per_run_s']:.1f}%) |",
        f"| the whole sweep, wall (s) | {s['local_wall_s']:.1f} | {s['store_wall_s']:.1f} |",
        f"| a new machine: the dataset's first download | - | {s['dataset_first_download_ms']:.0f} ms |",
        f"| a report build reading the sweep's published versions | - | {s['sweep_versions_fetch_s']:.2f} s |",
        f"| uploading the sweep's reports and plots | - | {s['reports_upload_s']:.2f} s |",
        "",
        "The two walls differ by training's own run-to-run variation (either sweep can be the slower one); "
        "the per-run figures are measured around the store calls themselves.",
        "",
    ]


def _run_parts(r: dict[str, Any]) -> list[str]:
    sums = r["sum_s"]
    train = sums["train_seconds"]
    rows = [
        ("the fold's datasets (built once per process and fold)", "dataset_seconds"),
        ("training (seed, model, fit)", "train_seconds"),
        ("predicting both windows", "predict_seconds"),
        ("reference forecasts and every metric", "evaluate_seconds"),
        ("writing predictions.parquet", "write_predictions_seconds"),
        ("publishing the model version (checkpoint, files, predictions)", "publish_seconds"),
        ("the whole run, as the trainer times it", "total_seconds"),
    ]
    share = r["predictions_and_metrics_share"]
    return [
        f"Command: `{r['command']}` ({r['date']}). The example sweep, {r['runs']} real runs in one process, "
        "2 torch threads; each run's parts timed by the trainer.",
        "",
        "| part | summed over runs (s) | median per run (ms) | of training |",
        "|---|---|---|---|",
        *(
            f"| {label} | {sums[key]:.2f} | {r['median_ms'][key]:.0f} | {100 * sums[key] / train:.1f}% |"
            for label, key in rows
        ),
        "",
        f"Predictions and metrics (evaluate + write): **{100 * share:.2f}%** of training "
        f"(target ≤ {100 * r['target_share']:.0f}%: {verdict(share <= r['target_share'])}). "
        f"Inside runs but not training: {r['outside_training_s']:.1f} s over the sweep.",
        "",
    ]


def _gpu_packing(g: dict[str, Any]) -> list[str]:
    return [json.dumps(g, indent=2), ""]


GPU_NOT_MEASURED = (
    "Not measured: no GPU was lent to the session that built the benchmarks. "
    "`bench/gpu_packing.py` is ready (one command, under 10 minutes); until it has run, "
    "`--concurrency` (runs per GPU) stays at 1."
)

NOT_MEASURED = "Not measured yet."
# (result file, section title, how its rows read, what stands there without a result)
SECTIONS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[str]], str], ...] = (
    ("overhead", "## 1. Overhead per run (target: server ≤ 1.10 × plain script)", _overhead, NOT_MEASURED),
    ("scaling", "## 2. Scaling with workers (target: ≥ 1.4× runs per hour)", _scaling, NOT_MEASURED),
    ("dataset_reuse", "## 3. Dataset reuse", _dataset_reuse, NOT_MEASURED),
    (
        "reports",
        "## 4. Reports (targets: 100,000 runs < 3 s without plots; 1,000 runs with plots < 15 s)",
        _reports,
        NOT_MEASURED,
    ),
    (
        "api",
        "## 5. API (targets: p95 < 50 ms with 10,000 runs, cached GETs < 20 ms on one process; "
        "POST of a 5,000-run plan < 1 s)",
        _api,
        NOT_MEASURED,
    ),
    ("gpu_packing", "## 6. GPU packing", _gpu_packing, GPU_NOT_MEASURED),
    ("store", "## 7. Object store (cost per run against the local disk)", _store, NOT_MEASURED),
    (
        "run_parts",
        "## 8. Inside a run (target: predictions and metrics ≤ 2% of training)",
        _run_parts,
        NOT_MEASURED,
    ),
    (
        "run_cache",
        "## 9. Run cache (a second sweep repeating most of a first trains only its new runs)",
        run_cache_bench.render,
        NOT_MEASURED,
    ),
    (
        "racing",
        "## 10. Racing (a planted, clearly worse variant over 3 folds × 4 seeds)",
        racing_bench.render,
        NOT_MEASURED,
    ),
)


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench.report` from `bench/results/*.json` "
        "(`make bench` runs every benchmark, then this). Medians of the repeats shown; every figure beside "
        "its target and the reference measured in the same run.",
        "",
    ]
    results = {name: load(name) for name, *_ in SECTIONS}
    lines += _machine(list(results.values()))
    for name, title, render, missing in SECTIONS:
        result = results[name]
        lines += [title, "", *(render(result) if result else [missing, ""])]
    notes = Path("bench/NOTES.md")
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
