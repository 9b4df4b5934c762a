"""The `tftsweep` command line: sweeps, studies, reports and the server, over the service layer and core.

Subcommands import what they need when they run, so `tftsweep plan` never pays for torch.
Exit codes: 0 success, 1 a run or sweep failed, 2 bad input (config, data, flags), 130 interrupted.

One job, the entry points: each subcommand is a short adapter over core and app; the length is
the count of the commands and their flags, kept in one parser.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from core.config import SweepConfig, first_message, load_sweep_config, parse_json_text, validate_sweep_config
from core.errors import (
    DatasetError,
    DatasetExists,
    InvalidSweepConfig,
    MergeRejected,
    NothingToCompare,
    StoreError,
    SweepExists,
    SweepFolderError,
    TftsweepError,
    UnsafePath,
)

if TYPE_CHECKING:
    from app.settings import Settings
    from core.store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(TftsweepError):
    """Bad flags or files on the command line (exit 2)."""


def config_text(path: str | None, default: str) -> str:
    """The text of `--config-json`, or of the shipped config `default` when the flag is left
    out; says on stderr which file it used."""
    if path:
        return read_text_file(path, "--config-json")
    from core.shipped import shipped_config

    label, text = shipped_config(default)
    print(f"no --config-json: using the default config {label}", file=sys.stderr)
    return text


def read_merge_with(path: str) -> SweepConfig:
    """`--merge-with`: a sweep config, or a sweep folder's `analysis_config.json` (or the folder)."""
    from core.sweep_folder import ANALYSIS_CONFIG, FOLDER_KEYS

    target = Path(path) / ANALYSIS_CONFIG if Path(path).is_dir() else Path(path)
    data = parse_json_text(read_text_file(str(target), "--merge-with"))
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in FOLDER_KEYS}
    return validate_sweep_config(data)


def read_text_file(path: str, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{field}: file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UsageError(f"{field}: cannot read {path}: {exc}") from None


def cmd_plan(args: argparse.Namespace) -> int:
    from app.service.submission import plan_sweep
    from core.dataset_folds import check_dataset_for_sweep
    from core.datasets import check_asset, dataset_fingerprint
    from core.dry_run import dry_run_lines, dry_run_report
    from core.plan import check_plan_size
    from core.sweep_folder import effective_folds

    config = load_sweep_config(config_text(args.config_json, "sweep"))
    current = settings()
    check_plan_size(config, current.max_runs)  # arithmetic, before the dataset is read
    fingerprint = None
    if args.asset:
        current.store().fetch_dataset(check_asset(args.asset))
        check_dataset_for_sweep(current.data_root, args.asset, config)
        fingerprint = dataset_fingerprint(current.data_root, args.asset)
    stored = read_merge_with(args.merge_with) if args.merge_with else None
    try:
        planned = plan_sweep(config, stored, max_runs=current.max_runs)
    except MergeRejected as exc:
        if args.json:
            print(json.dumps({"runs": [], "violations": [v.to_dict() for v in exc.violations]}, indent=2))
        else:
            _print_violations(exc)
        return EXIT_USAGE
    plan, runs, effective = planned.plan, planned.new_runs, planned.config
    report = dry_run_report(args.asset or "", plan, runs, effective.stats.alpha, _past_runs(current))
    folds = effective_folds(effective, fingerprint)
    if args.json:
        extra = {k: report[k] for k in ("plan", "estimate", "estimate_reason", "detectability")}
        print(
            json.dumps(
                {"runs": [r.to_dict() for r in runs], "violations": [], **extra, "effective_folds": folds}, indent=2
            )
        )
        return EXIT_OK
    print(f"output_subdir: {config.output_subdir}")
    print(f"configs ({len(plan.configs)}): {', '.join(c.config_id for c in plan.configs)}")
    print(f"folds ({len(plan.folds)}): {', '.join(f.name for f in plan.folds)}")
    print(f"seeds ({len(plan.seeds)}): {', '.join(str(s) for s in plan.seeds)}")
    print(f"runs: {len(plan.runs)}")
    if args.asset:
        print(f"dataset {args.asset}: every fold has rows for every config")
    for fold in folds or []:
        cut = ", ".join(fold["clipped"]) or "nothing"
        windows = "  ".join(f"{p} {fold[p + '_start']}..{fold[p + '_end']}" for p in ("train", "val", "test"))
        print(f"  fold {fold['name']} cut to the data ({cut} clipped): {windows}")
    if args.merge_with:
        print(f"new runs after merge: {len(runs)}")
        for run in runs:
            print(f"  {run.config_id}  fold={run.fold}  seed={run.seed}  {run.run_key}")
    for line in dry_run_lines(report):
        print(line)
    return EXIT_OK


def _past_runs(current: Settings) -> list[Any] | None:
    """The succeeded runs of this machine's database, when there is one to read (None if not:
    `plan` never creates or migrates a database)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.db.session import make_engine, make_session_factory, session_scope
    from app.db.sweeps import past_runs

    url = current.db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    engine = make_engine(url, pooled=False)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return list(past_runs(session))
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def read_top_k(hpo_dir: str) -> list[dict[str, Any]]:
    """The `configs` a sweep gets from an Optuna study folder (`optuna_top_k_configs.json`)."""
    path = Path(hpo_dir) / "optuna_top_k_configs.json"
    data = json.loads(read_text_file(str(path), "--from-hpo"))
    if not isinstance(data, list) or not data:
        raise UsageError(f"--from-hpo: {path} lists no complete trial yet")
    return data


def cmd_dataset_import(args: argparse.Namespace) -> int:
    from core.datasets import import_ohlcv_csv, import_to_store

    if not Path(args.csv).is_file():
        raise UsageError(f"--csv: file not found: {args.csv}")
    origin = str(Path(args.csv).resolve())
    info = import_to_store(
        settings().store(),
        args.asset,
        lambda root: import_ohlcv_csv(root, args.asset, Path(args.csv), origin=origin, replace=args.replace),
    )
    _print_dataset(info.to_dict())
    return EXIT_OK


def cmd_dataset_example(args: argparse.Namespace) -> int:
    from core.datasets import build_example_dataset, import_to_store

    _print_dataset(import_to_store(settings().store(), "MSFT", build_example_dataset).to_dict())
    return EXIT_OK


def cmd_dataset_list(args: argparse.Namespace) -> int:
    from core.datasets import list_stored_datasets

    for info in list_stored_datasets(settings().store()):
        print(f"{info.asset}\t{info.rows} rows\t{info.first_date}..{info.last_date}\t{info.path}")
    return EXIT_OK


def _print_dataset(info: dict[str, object]) -> None:
    print(f"dataset {info['asset']}: {info['rows']} rows, {info['first_date']}..{info['last_date']}")
    print(f"  {info['path']}")


def settings() -> Settings:
    """The settings of this command, read from the environment now (tests run several commands in one process)."""
    from app.settings import Settings

    return Settings()


def cmd_sweep(args: argparse.Namespace) -> int:
    from worker.local_sweep import LocalSetup, run_local_sweep

    config = load_sweep_config(config_text(args.config_json, "sweep"))
    overrides: dict[str, Any] = {}
    if args.output_subdir and args.output_subdir != config.output_subdir:
        overrides["output_subdir"] = args.output_subdir
    if args.from_hpo:
        overrides["configs"] = read_top_k(args.from_hpo)
    if args.no_reuse:
        overrides["reuse_runs"] = False
    if overrides:
        config = load_sweep_config(json.dumps({**config.to_json_dict(), **overrides}))
    if args.workers < 1:
        raise UsageError("--workers: must be at least 1")
    current = settings()
    outcome = run_local_sweep(
        current.data_root,
        args.asset,
        config,
        merge=args.merge_tests,
        continue_on_error=args.continue_on_error,
        workers=args.workers,
        setup=LocalSetup.from_settings(current, args.workers),
    )
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items() if v)
    if outcome.summary is not None and outcome.ranking is not None:
        from core.summary import ranking_text

        print(ranking_text(outcome.ranking, outcome.summary["significance"]["sentence"], outcome.summary["rank_by"]))
    print(f"sweep {args.asset}/{config.output_subdir} (id {outcome.sweep_id}): {outcome.status}; runs: {counts}")
    print(f"  trained here: {outcome.trained}; recorded from the run cache: {outcome.cached}")
    print(f"  {outcome.sweep_dir}")
    return EXIT_OK if outcome.status == "succeeded" else EXIT_FAILED


def _sweep_dir_arg(value: str, current: Settings, flag: str = "--sweep-dir") -> Path:
    """A sweep folder on the disk, or `s3://...` under the store (fetched to the data root first)."""
    from core.store import SWEEP_INPUT_FILES

    path = _fetched_sweep(value, flag, current.store()) if "://" in value else Path(value)
    for name in SWEEP_INPUT_FILES:
        if not (path / name).is_file():
            raise UsageError(f"{flag}: {path} is not a sweep folder (no {name})")
    return path.resolve()


def _fetched_sweep(url: str, flag: str, store: Store) -> Path:
    """The local copy (in the data root) of the sweep folder at `url` in the object store:
    its inputs and what a report build reads of its model versions."""
    from core.paths import sweep_at, sweep_dir

    if not store.remote:
        raise UsageError(f"{flag}: {url} is in an object store; set TFTSWEEP_STORE_URL to the store that holds it")
    base = f"{store.url}/"
    if not url.startswith(base):
        raise UsageError(f"{flag}: {url} is not under the store {store.url} (TFTSWEEP_STORE_URL)")
    sweep = sweep_at(PurePosixPath(url[len(base) :].strip("/")))
    inputs = sweep is not None and store.fetch_sweep_inputs(*sweep)
    versions = sweep is not None and store.fetch_versions(*sweep)
    if sweep is None or not (inputs or versions):
        raise UsageError(f"{flag}: {url} holds no published sweep folder")
    return sweep_dir(store.root, *sweep)


def _data_root(args: argparse.Namespace, current: Settings) -> Path:
    """`--data-dir` when given, else the settings' data root (`TFTSWEEP_DATA_DIR`)."""
    return Path(args.data_dir).resolve() if getattr(args, "data_dir", None) else current.data_root


def _evaluation_args(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluation keys `regenerate` was given (`--rank-by`, `--references`, `--costs-bps`)."""
    given: dict[str, Any] = {}
    if args.rank_by is not None:
        given["rank_by"] = args.rank_by
    if args.references is not None:
        given["references"] = [name.strip() for name in args.references.split(",") if name.strip()]
    if args.costs_bps is not None:
        given["costs_bps"] = args.costs_bps
    return given


def cmd_regenerate(args: argparse.Namespace) -> int:
    from core.paths import sweep_at
    from core.reports import DEFAULT_RANK_BY
    from core.sweep_folder import read_analysis_config
    from core.sweep_report import regenerate_sweep

    if args.alpha is not None and not 0 < args.alpha < 1:
        raise UsageError(f"--alpha: must be between 0 and 1, got {args.alpha}")
    evaluation = _evaluation_args(args)
    current = settings()
    store = current.store()
    stored = "://" in args.sweep_dir
    sweep = _sweep_dir_arg(args.sweep_dir, current)
    root = _data_root(args, current)
    # A sweep from the store: its dataset comes from there, and its reports go back there.
    names = sweep_at(PurePosixPath(sweep.relative_to(store.root).as_posix())) if stored else None
    if names is not None:
        store.fetch_dataset(read_analysis_config(sweep).asset)
    try:
        summary = regenerate_sweep(
            sweep, root, drift=not args.no_drift, plots=not args.no_plots, alpha=args.alpha, evaluation=evaluation
        )
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"] if exc.errors() else ()
        flag = {"rank_by": "--rank-by", "references": "--references", "costs_bps": "--costs-bps"}
        raise UsageError(f"{flag.get(str(loc[0]) if loc else '', '--rank-by')}: {first_message(exc)}") from None
    except DatasetError as exc:
        raise UsageError(
            f"{exc} (data root {root}); give the data root that holds it with --data-dir, "
            "or rebuild without drift with --no-drift"
        ) from None
    if names is not None:
        store.publish_sweep_reports(*names)
    best = summary["best_config"]
    print(f"reports rebuilt in {args.sweep_dir if stored else sweep} ({len(summary['plots'])} plots)")
    if not summary["drift"]["available"]:
        print(f"  drift: {summary['drift']['reason']}")
    if best:
        rank_by = summary["rank_by"]
        ranked = "" if rank_by == DEFAULT_RANK_BY else f"  rank_score ({rank_by})={best['rank_score']:.6g}"
        print(f"  best config: {best['config_id']}  robust_score={best['robust_score']:.6g}{ranked}")
        print(f"  {summary['significance']['sentence']}")
    return EXIT_OK


def cmd_adopt(args: argparse.Namespace) -> int:
    """Record a sweep folder the database does not know; a folder outside the data root is
    copied to its place there first."""
    import shutil

    from app.service.submission import adopt_folder
    from core.files import publish_dir_atomic
    from core.paths import sweep_dir
    from core.sweep_folder import read_analysis_config
    from worker.local_sweep import open_database

    current = settings()
    source = _sweep_dir_arg(args.sweep_dir, current)
    analysis = read_analysis_config(source, args.asset)
    target = sweep_dir(current.data_root, analysis.asset, analysis.config.output_subdir)
    if target.resolve() != source:
        if target.exists():
            raise UsageError(f"--sweep-dir: {target} already holds a sweep folder; adopt that one or remove it")
        with publish_dir_atomic(target) as staging:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        print(f"copied {source} to {target}")
    adopted = adopt_folder(open_database(current.data_root, current.db_url), target, analysis.asset)
    if adopted is None:
        print(f"sweep {analysis.asset}/{analysis.config.output_subdir} is already in the database")
        return EXIT_OK
    counts = ", ".join(f"{k} {v}" for k, v in adopted.counts.items() if v)
    print(f"adopted sweep {analysis.asset}/{analysis.config.output_subdir} (id {adopted.sweep_id}); runs: {counts}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from core.compare import write_compare

    if len(args.sweep_dir) < 2:
        raise UsageError("--sweep-dir: give at least two sweeps to compare")
    current = settings()
    sweeps = [_sweep_dir_arg(s, current) for s in args.sweep_dir]
    out = Path(args.out) if args.out else Path.cwd() / "compare"
    table, report = write_compare(sweeps, out, args.alpha)
    print(report["sentence"])  # across assets: the transfer, first
    if report["kind"] == "transfer":
        _print_transfer(report)
        print(f"  {out / 'compare_transfer.csv'}, {out / 'compare_mcs.csv'}, {out / 'compare.csv'}")
        return EXIT_OK
    common = report["common"]
    print(
        f"compared {', '.join(report['sweeps'])} on {len(common['folds'])} folds, {len(common['seeds'])} seeds, "
        f"{len(common['configs'])} configs"
    )
    for label, gone in report["left_out"].items():
        if gone["runs_left_out"]:
            print(
                f"  left out of {label}: {gone['runs_left_out']} runs (folds {gone['folds']}, seeds {gone['seeds']}, "
                f"configs {gone['configs']})"
            )
    print(table.head(10).to_string(index=False))
    print(f"against {report['sweeps'][0]} on the same config, fold and seed (alpha {report['alpha']:g}):")
    for row in report["significance"]:
        interval = "" if row["ci95_low"] is None else f" [{row['ci95_low']:.2e}, {row['ci95_high']:.2e}]"
        p = "-" if row["holm_pvalue"] is None else f"{row['holm_pvalue']:.2g}"
        print(
            f"  {row['sweep']}  {row['config_id']}: {row['mean_delta']:+.2e}{interval} over {row['n_pairs']} pairs, "
            f"Holm p {p}: {row['verdict']}"
        )
    print(f"  {out / 'compare.csv'}, {out / 'compare_significance.csv'}")
    return EXIT_OK


def _print_transfer(report: dict[str, Any]) -> None:
    """Each shared variant's delta against its own sweep's baseline, on each side, and whether they agree."""
    for found in report["transfer"]:
        print(f"{found['reference']} -> {found['sweep']} ({found['metric']}, variant - own baseline, relative):")
        for row in found["rows"]:
            sides = ["-" if row[f"rel_delta_{s}"] is None else f"{row[f'rel_delta_{s}']:+.2%}" for s in ("a", "b")]
            same = {True: "same sign", False: "opposite signs", None: "not paired in both"}[row["same_sign"]]
            mcs = {True: "in", False: "out", None: "-"}
            print(
                f"  {row['config_id']}: {sides[0]} / {sides[1]} ({same}); MCS {mcs[row['in_mcs_a']]} / "
                f"{mcs[row['in_mcs_b']]}"
            )


def cmd_hpo(args: argparse.Namespace) -> int:
    from app.service.studies import ReusedRuns
    from core.datasets import check_asset
    from core.hpo import run_stored_study
    from core.hpo_config import load_hpo_config
    from core.paths import hpo_dir
    from worker.local_sweep import open_database

    config = load_hpo_config(config_text(args.config_json, "hpo"))
    if args.output_subdir and args.output_subdir != config.output_subdir:
        config = load_hpo_config(json.dumps({**config.to_json_dict(), "output_subdir": args.output_subdir}))
    check_asset(args.asset)
    current = settings()
    out = hpo_dir(current.data_root, args.asset, config.output_subdir)
    progress = TrialProgress(config.n_trials)
    summary = run_stored_study(
        current.store(),
        args.asset,
        config,
        out,
        storage_url=current.hpo_storage_url(config.storage),
        on_trial=progress.trial_done,
        reuse=ReusedRuns(open_database(current.data_root, current.database_url)),
    )
    best = summary["best"]
    counts = summary["n_trials"]
    print(
        f"study {args.asset}/{config.output_subdir}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed"
    )
    if best:
        print(f"  best trial {best['number']}: {config.objective}={best['value']:.6g}")
        print(f"  params {json.dumps(best['params'])}")
    comparison = summary.get("comparison") or {}
    if comparison.get("sentence"):
        print(f"  {comparison['sentence']}")
    print(f"  top-{config.top_k} configs for a sweep: {out / 'optuna_top_k_configs.json'}")
    return EXIT_OK if best else EXIT_FAILED


class TrialProgress:
    """One line per finished trial: its state and value, the best so far, trials done/total."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()

    def trial_done(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        value = f"{trial.value:.6g}" if trial.value is not None else "-"
        try:
            best = f"{study.best_value:.6g}"
        except ValueError:  # no complete trial yet
            best = "-"
        print(
            f"trial {trial.number} {trial.state.name.lower()} value={value}  best={best}  "
            f"[{done}/{self.total} done, {time.monotonic() - self.started:.0f}s]",
            file=sys.stderr,
            flush=True,
        )


def cmd_serve(args: argparse.Namespace) -> int:
    from app.serve import serve
    from worker.supervisor import WorkerSupervisor

    def embedded(current: Settings, give_up: Callable[[str], None]) -> WorkerSupervisor:
        return WorkerSupervisor(current, args.concurrency, args.log_level.upper(), give_up)

    return serve(args.host, args.port, args.log_level, worker=None if args.no_worker else embedded)


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.supervisor import run_workers

    gpus = [g for g in args.gpus.split(",") if g] if args.gpus else []
    queues = [q for q in args.queues.split(",") if q]
    return run_workers(args.concurrency, queues, gpus, args.log_level)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from app.db.migrate import upgrade_database

    url = settings().db_url
    upgrade_database(url)
    print(f"database is at the newest schema: {url}")
    return EXIT_OK


def _print_violations(exc: MergeRejected) -> None:
    print(f"error: merge refused, {len(exc.violations)} violation(s):", file=sys.stderr)
    for v in exc.violations:
        print(f"  {v}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tftsweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sweep_commands(sub)
    _add_server_commands(sub)
    _add_data_commands(sub)
    return parser


def _add_sweep_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="validate a sweep config and print its OFAT plan")
    p.add_argument("--config-json", help="sweep config JSON file (default: the shipped model_analysis.default.json)")
    p.add_argument("--asset", help="also check every fold against this asset's dataset")
    p.add_argument("--merge-with", help="the stored config to merge into: a config file or a sweep folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("sweep", help="run a whole sweep in this process (resumable)")
    p.add_argument("--asset", required=True, help="asset symbol, e.g. AAPL")
    p.add_argument("--config-json", help="sweep config JSON file (default: the shipped model_analysis.default.json)")
    p.add_argument("--output-subdir", help="override the config's output_subdir")
    p.add_argument("--merge-tests", action="store_true", help="add the config's new runs to the existing sweep")
    p.add_argument("--continue-on-error", action="store_true", help="keep going after a failed run")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--from-hpo", metavar="DIR", help="evaluate an Optuna study's top-k configs (its output folder)")
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="train every run, even one with a succeeded twin in another sweep (sets reuse_runs: false)",
    )
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("hpo", help="run (or continue) an Optuna study in this process")
    p.add_argument("--asset", required=True)
    p.add_argument("--config-json", help="HPO config JSON file (default: the shipped default_tft_optuna_sweep.json)")
    p.add_argument("--output-subdir", help="override the config's output_subdir")
    p.set_defaults(handler=cmd_hpo)

    p = sub.add_parser("regenerate", help="rebuild a sweep's reports and plots from what its folder stores")
    p.add_argument("--sweep-dir", required=True, help="a sweep folder, anywhere, e.g. data/models/AAPL/sweeps/X")
    p.add_argument("--data-dir", help="the data root holding the sweep's dataset (default TFTSWEEP_DATA_DIR)")
    p.add_argument("--no-plots", action="store_true", help="CSV/JSON reports only")
    p.add_argument(
        "--no-drift", action="store_true", help="without the dataset: drop the drift files (summary.json says why)"
    )
    p.add_argument("--alpha", type=float, help="significance level of the verdicts (recorded in the folder)")
    p.add_argument("--rank-by", help="rank configs by this val_ metric, e.g. val_dir_acc (recorded in the folder)")
    p.add_argument("--references", help="reference forecasts, comma-separated, e.g. mean,ar1 (naive always)")
    p.add_argument("--costs-bps", type=float, help="sign-strategy costs per unit of position change, in bps")
    p.set_defaults(handler=cmd_regenerate)

    p = sub.add_parser("adopt", help="record a sweep folder the database does not know (its runs are kept)")
    p.add_argument("--sweep-dir", required=True, help="a sweep folder; copied under the data root if it lies elsewhere")
    p.add_argument("--asset", help="the asset, for folders written before analysis_config.json recorded it")
    p.set_defaults(handler=cmd_adopt)

    p = sub.add_parser(
        "compare",
        help="compare sweeps: on one asset on their common folds, seeds and configs; across assets by transfer",
    )
    p.add_argument("--sweep-dir", action="append", default=[], required=True, help="a sweep folder (repeat)")
    p.add_argument("--out", help="output folder (default ./compare)")
    p.add_argument("--alpha", type=float, help="significance level (default: the first sweep's)")
    p.set_defaults(handler=cmd_compare)


def _add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the API with an embedded worker (SQLite + filesystem broker by default)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--concurrency", type=int, default=1, help="concurrent runs in the embedded worker")
    p.add_argument("--no-worker", action="store_true", help="the API alone; workers run elsewhere (tftsweep worker)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("worker", help="run Celery workers (one process per GPU with --gpus)")
    p.add_argument("--concurrency", type=int, default=1, help="concurrent runs per worker process (runs per GPU)")
    p.add_argument("--queues", default="gpu,cpu", help="queues to consume (default gpu,cpu)")
    p.add_argument("--gpus", default="", help="comma-separated GPU ids, e.g. 0,1: one worker process each")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=cmd_worker)


def _add_data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dataset = sub.add_parser("dataset", help="build and list datasets").add_subparsers(
        dest="dataset_command", required=True, metavar="ACTION"
    )
    p = dataset.add_parser("import", help="build a dataset from a daily OHLCV CSV")
    p.add_argument("--asset", required=True)
    p.add_argument("--csv", required=True, help="CSV with Date, Open, High, Low, Close, Volume[, Adj Close]")
    p.add_argument("--replace", action="store_true", help="replace the asset's dataset if it has one")
    p.set_defaults(handler=cmd_dataset_import)
    p = dataset.add_parser("example", help="build MSFT from the prices shipped with pmdarima")
    p.set_defaults(handler=cmd_dataset_example)
    p = dataset.add_parser("list", help="list stored datasets")
    p.set_defaults(handler=cmd_dataset_list)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    p = db.add_parser("upgrade", help="apply migrations up to the newest schema")
    p.set_defaults(handler=cmd_db_upgrade)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except InvalidSweepConfig as exc:
        print(f"error: invalid config ({len(exc.errors)} problem(s)):", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return EXIT_USAGE
    except MergeRejected as exc:
        _print_violations(exc)
        return EXIT_USAGE
    except (
        UsageError,
        DatasetError,
        DatasetExists,
        NothingToCompare,
        SweepExists,
        SweepFolderError,
        UnsafePath,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ValidationError as exc:  # a setting from the environment (TFTSWEEP_*) that cannot be used
        print(f"error: invalid settings ({exc.error_count()} problem(s); TFTSWEEP_* variables):", file=sys.stderr)
        for problem in exc.errors():
            print(f"  {'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
