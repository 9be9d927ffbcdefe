"""``flatarch nb201``: look cells up in the NAS-Bench-201 table and export tables from the official files.

* ``flatarch nb201 lookup ARCH [ARCH...] [--table PATH] [--json]``: without ``--table`` (or
  ``$FLATARCH_NB201_TABLE``) the table shipped with flatarch is used;
* ``flatarch nb201 export --from PATH --out TABLE.csv|TABLE.npz [--overwrite]`` (an existing
  ``--out`` is refused unless ``--overwrite`` says to replace it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from flatarch.reference_spaces.errors import UsageError
from flatarch.reference_spaces.nb201.benchmark import (
    ARCH_SPELLINGS,
    DATASETS,
    TABLE_ENV,
    BenchmarkTable,
    code_of_argument,
    load_official,
    load_table,
    read_table,
)

TABLE_HELP = (
    f"benchmark table: compact CSV, flatarch .npz or official NAS-Bench-201 / NATS-Bench file "
    f"(default: ${TABLE_ENV} if set, else the table shipped with flatarch)"
)


def guarded(prog: str, run):
    """``run(args)``, printing bad input (a :class:`UsageError`, or the ``ValueError`` of a bad
    setting) as one line ``PROG: error: MESSAGE`` and returning 2; nothing is written before the
    input is checked."""

    def call(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ValueError as err:  # UsageError is a ValueError
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2

    return call


def _lookup_row(table: BenchmarkTable, given: str, profiled: Sequence[str]) -> dict:
    """One cell's row, with the profile of its networks for the ``profiled`` datasets."""
    from flatarch.reference_spaces.nb201.evaluation_network import cell_profile

    code = code_of_argument(table, given, "ARCH")
    index = int(table.index_of_code[code])
    arch = table.arch_at(index)
    return {"arch": arch, "index": index, "code": code, "test_accuracy": table.lookup(f"code:{code}"),
            "profile": cell_profile(arch, profiled)}


def _table_lines(rows: list[dict]) -> list[str]:
    """Aligned columns: arch (left), index, the three accuracies (2 decimals), then the CIFAR-10
    network's parameters and multiply-adds in millions (NATS-Bench's "params" and "FLOPs")."""
    headers = ["arch", "index", *DATASETS, "params(M)", "FLOPs(M)"]
    body = [[r["arch"], str(r["index"]), *(f"{r['test_accuracy'][d]:.2f}" for d in DATASETS),
             f"{r['profile']['cifar10']['params'] / 1e6:.3f}", f"{r['profile']['cifar10']['macs'] / 1e6:.2f}"]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in [headers, *body]
    ]


def _lookup(args: argparse.Namespace) -> int:
    table = load_table(args.table)
    profiled = DATASETS if args.json else ("cifar10",)  # the table shows the CIFAR-10 network's (NATS-Bench's)
    rows = [_lookup_row(table, given, profiled) for given in args.archs]
    print(json.dumps(rows, indent=2) if args.json else "\n".join(_table_lines(rows)))
    return 0


def _progress(quiet: bool):
    if quiet:
        return None
    from tqdm import tqdm

    return lambda it: tqdm(it, desc="reading official API", unit="cell", file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    if os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is a folder; give the path of the table file to write")
    if os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out} exists; choose another path, or pass --overwrite to replace it")
    compact = args.source.lower().endswith((".csv", ".npz"))  # the rest goes through the official APIs
    table = read_table(args.source) if compact else load_official(args.source, progress=_progress(args.quiet))
    try:
        table.save(args.out)
    except OSError as err:
        raise UsageError(f"--out {args.out}: cannot be written ({err.strerror or err})") from None
    if not args.quiet:
        print(f"wrote {len(table)} cells to {args.out}", file=sys.stderr)
    return 0


def _add_lookup(sub) -> None:
    lookup = sub.add_parser(
        "lookup",
        help="test accuracy of cells on CIFAR-10, CIFAR-100 and ImageNet16-120",
        description="Print the 200-epoch test accuracy (mean over seeds) of each ARCH, and the parameters and "
        "FLOPs (multiply-adds, as NATS-Bench counts them) of its CIFAR-10 network (C = 16, N = 5, 32x32); --json "
        "gives them per dataset, with torch's FLOP count (2 per multiply-add).",
    )
    lookup.add_argument("archs", nargs="+", metavar="ARCH", help=ARCH_SPELLINGS)
    lookup.add_argument("--table", default=None, metavar="PATH", help=TABLE_HELP)
    lookup.add_argument("--json", action="store_true", help="machine-readable output, full precision (default: off)")
    lookup.set_defaults(func=guarded("flatarch nb201", _lookup))


def _add_export(sub) -> None:
    export = sub.add_parser(
        "export",
        help="write a compact table (CSV or .npz) from the official benchmark files",
        description="Read the official NAS-Bench-201 .pth or NATS-Bench topology file/archive through its "
        "official API (or a compact table) and write a compact CSV (or .npz when OUT ends in .npz).",
    )
    export.add_argument(
        "--from", dest="source", required=True, metavar="PATH",
        help="official NAS-Bench-201 .pth, NATS-Bench topology .pickle.pbz2 or archive folder, or a compact table",
    )
    export.add_argument("--out", required=True, metavar="PATH", help="output table: .npz, anything else is CSV")
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: off, an "
                        "existing file is refused)")
    export.add_argument("--quiet", action="store_true", help="no progress output (default: off)")
    export.set_defaults(func=guarded("flatarch nb201", _export))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nb201",
        help="NAS-Bench-201 benchmark table: lookup and export",
        description="Look up NAS-Bench-201 cells in the benchmark table, or export a compact table "
        "from the official files.",
    )
    sub = parser.add_subparsers(dest="nb201_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    _add_lookup(sub)
    _add_export(sub)
