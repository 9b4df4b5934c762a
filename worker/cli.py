"""The `tftsweep` command line: the guide's commands and flags over the same core services.

Subcommands import what they need when they run, so `tftsweep plan` never pays for torch.
Exit codes: 0 success, 1 a run or sweep failed, 2 bad input (config, data, flags), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import SweepConfig, load_sweep_config
from core.errors import DatasetError, InvalidSweepConfig, MergeRejected, SweepExists, TftsweepError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(TftsweepError):
    """Bad flags or files on the command line (exit 2)."""


def read_config_file(path: str, field: str = "--config-json") -> SweepConfig:
    return load_sweep_config(read_text_file(path, field))


def read_text_file(path: str, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{field}: file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UsageError(f"{field}: cannot read {path}: {exc}") from None


def cmd_plan(args: argparse.Namespace) -> int:
    from core.merge import validate_merge
    from core.plan import expand_sweep

    config = read_config_file(args.config_json)
    if args.merge_with:
        old = read_config_file(args.merge_with, "--merge-with")
        try:
            result = validate_merge(old, config)
        except MergeRejected as exc:
            if args.json:
                print(json.dumps({"runs": [], "violations": [v.to_dict() for v in exc.violations]}, indent=2))
            else:
                _print_violations(exc)
            return EXIT_USAGE
        plan, runs = result.plan, result.new_runs
    else:
        plan = expand_sweep(config)
        runs = plan.runs
    if args.json:
        print(json.dumps({"runs": [r.to_dict() for r in runs], "violations": []}, indent=2))
        return EXIT_OK
    print(f"output_subdir: {config.output_subdir}")
    print(f"configs ({len(plan.configs)}): {', '.join(c.config_id for c in plan.configs)}")
    print(f"folds ({len(plan.folds)}): {', '.join(f.name for f in plan.folds)}")
    print(f"seeds ({len(plan.seeds)}): {', '.join(str(s) for s in plan.seeds)}")
    print(f"runs: {len(plan.runs)}")
    if args.merge_with:
        print(f"new runs after merge: {len(runs)}")
        for run in runs:
            print(f"  {run.config_id}  fold={run.fold}  seed={run.seed}  {run.run_key}")
    return EXIT_OK


def _print_violations(exc: MergeRejected) -> None:
    print(f"error: merge refused, {len(exc.violations)} violation(s):", file=sys.stderr)
    for v in exc.violations:
        print(f"  {v}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tftsweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="validate a sweep config and print its OFAT plan")
    p.add_argument("--config-json", required=True, help="sweep config JSON file")
    p.add_argument("--merge-with", help="stored effective config to merge into (checks the merge rules)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_plan)

    return parser


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
    except (UsageError, DatasetError, SweepExists) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
