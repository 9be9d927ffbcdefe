"""``flatarch sweep FILE``: a grid of searches (and trainings of their genotypes) on a process pool,
a SLURM cluster or a Ray cluster, resumable per run, and its table-2 report.

A thin layer over :mod:`flatarch.reference_spaces.sweep`; the file's format is described in
:mod:`flatarch.cli.sweep_file` and docs/reproduce.md.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of searches (spaces x methods x updates x seeds) and report it as the paper's table 2",
        description=(
            "Runs every search of the grid in FILE (TOML: [grid] lists crossed, [settings] flatarch search options, "
            "[methods.NAME] settings of one method's runs, [train] optional trainings of DARTS-space genotypes, "
            "[run] backend local | slurm | ray, workers, root), "
            "each in ROOT/SPACE/METHOD-OPTIMIZER/seed-N. Finished and diverged runs are skipped; failed, interrupted "
            "and missing ones run again and continue from their checkpoints. Example: flatarch sweep "
            "examples/table2-nb201.toml"
        ),
    )
    p.add_argument("file", metavar="FILE", help="the sweep file (TOML)")
    p.add_argument("--report", action="store_true", help="run nothing: print the table of whatever has finished "
                   "(mean ± std over seeds, with the count of failed, diverged and missing runs) and write "
                   "ROOT/report.md, ROOT/report.csv and a bar chart per table (default: off)")
    p.add_argument("--csv", action="store_true", help="with --report: print CSV instead of Markdown (default: off)")
    p.add_argument("--dry-run", action="store_true", help="run nothing: list every unit and whether it is finished, "
                   "diverged, failed, running or missing (default: off)")
    p.set_defaults(func=run)


def _dry_run(plan) -> None:
    from flatarch.reference_spaces.sweep import states

    now = states(plan.runs)
    for key, (_, state, detail) in now.items():
        print(f"{state:<9} {key}" + (f"  ({detail})" if detail else ""))
    counts: dict[str, int] = {}
    for _, state, _ in now.values():
        counts[state] = counts.get(state, 0) + 1
    print(f"{len(now)} units in {len(plan.runs)} runs: {', '.join(f'{n} {s}' for s, n in counts.items())}")


def _report(plan, as_csv: bool) -> None:
    import os

    from flatarch.reference_spaces.sweep import build_tables, csv_text, markdown, write_report

    if not any(os.path.exists(unit.folder) for run in plan.runs for unit in run.units):
        print(f"nothing to report yet: no run of the sweep has started under {plan.root}; run "
              "flatarch sweep FILE first", file=sys.stderr)
        return
    tables = build_tables(plan.runs)
    print(csv_text(tables) if as_csv else markdown(tables), end="")
    if os.path.isdir(plan.root):
        print(f"files: {', '.join(write_report(plan.root, tables))}", file=sys.stderr)


def _sweep(plan) -> int:
    from flatarch.reference_spaces.sweep import build_tables, make_backend, run_sweep, write_report

    backend = make_backend(plan.backend, root=plan.root, cwd=plan.cwd, workers=plan.workers, options=plan.options)
    counts = run_sweep(plan, backend)
    paths = write_report(plan.root, build_tables(plan.runs))
    print(f"units: {', '.join(f'{n} {state}' for state, n in counts.items())}; report: {', '.join(paths)}")
    return 1 if counts["failed"] else 0


def run(args: argparse.Namespace) -> int:
    from flatarch.cli.stops import stopped
    from flatarch.cli.sweep_file import read_sweep_file
    from flatarch.reference_spaces.errors import UsageError

    try:
        plan = read_sweep_file(args.file)
        if args.csv and not args.report:
            raise UsageError("--csv formats the --report; add --report")
        if args.report:
            _report(plan, args.csv)
            return 0
        if args.dry_run:
            _dry_run(plan)
            return 0
        return _sweep(plan)
    except UsageError as exc:
        print(f"flatarch sweep: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, OSError) as exc:
        return stopped("flatarch sweep", exc,
                       f"finished runs are kept. Run `flatarch sweep {args.file}` again to complete the rest")
