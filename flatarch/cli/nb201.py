"""``flatarch nb201``: look cells up in the NAS-Bench-201 table and export tables from the official files.

* ``flatarch nb201 lookup ARCH [ARCH...] [--table PATH] [--json]``
* ``flatarch nb201 export --from PATH --out TABLE.csv|TABLE.npz``
"""

from __future__ import annotations

import argparse
import json
import sys

from flatarch.reference_spaces.nb201.benchmark import (
    DATASETS,
    TABLE_ENV,
    BenchmarkTable,
    BenchmarkTableError,
    find_table,
    load_official,
)

NO_TABLE_HELP = f"""\
flatarch nb201: no NAS-Bench-201 table given.
Point flatarch at one with --table PATH or the environment variable {TABLE_ENV}=PATH. It reads:
  * a compact CSV (header CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,
    ImageNetTestAccuracy200Epochs,ArchitectureString,UniqueString; one row per cell in benchmark order),
  * a flatarch .npz table,
  * the official NAS-Bench-201 .pth or NATS-Bench topology files (needs their official package installed).
Export a compact table once from the official files (see docs/nb201-benchmark.md):
  flatarch nb201 export --from NATS-tss-v1_0-3ffb9-simple --out nb201.csv
  flatarch nb201 export --from NAS-Bench-201-v1_1-096897.pth --out nb201.csv"""


def _error(message: str) -> int:
    print(f"flatarch nb201: error: {message}", file=sys.stderr)
    return 2


def _load_table(explicit: str | None) -> BenchmarkTable | int:
    """The table, or an exit code after printing why there is none."""
    try:
        path = find_table(explicit)
    except FileNotFoundError as err:
        return _error(str(err))
    if path is None:
        print(NO_TABLE_HELP, file=sys.stderr)
        return 2
    try:
        return BenchmarkTable.load(path)
    except (OSError, ImportError, BenchmarkTableError) as err:
        return _error(str(err))


def _lookup(args: argparse.Namespace) -> int:
    table = _load_table(args.table)
    if isinstance(table, int):
        return table
    rows = []
    for given in args.archs:
        try:
            code = table.code_of(given)
        except (ValueError, TypeError) as err:
            return _error(f"bad architecture {given!r}: {err}")
        index = int(table.index_of_code[code])
        accuracy = table.lookup(f"code:{code}")
        rows.append({"arch": table.arch_at(index), "index": index, "code": code, "test_accuracy": accuracy})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ["arch", "index", *DATASETS]
    body = [[r["arch"], str(r["index"]), *(f"{r['test_accuracy'][d]:.2f}" for d in DATASETS)] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    for b in body:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))
    return 0


def _export(args: argparse.Namespace) -> int:
    source = args.source
    progress = None
    if not args.quiet:
        from tqdm import tqdm

        def progress(it):
            return tqdm(it, desc="reading official API", unit="cell", file=sys.stderr)

    try:
        if _is_compact(source):
            table = BenchmarkTable.load(source)
        else:
            table = load_official(source, progress=progress)
        table.save(args.out)
    except (OSError, ImportError, BenchmarkTableError) as err:
        return _error(str(err))
    if not args.quiet:
        print(f"wrote {len(table)} cells to {args.out}", file=sys.stderr)
    return 0


def _is_compact(path: str) -> bool:
    """Compact tables (CSV/.npz) convert directly; everything else goes through the official APIs."""
    return path.lower().endswith((".csv", ".npz"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nb201",
        help="NAS-Bench-201 benchmark table: lookup and export",
        description="Look up NAS-Bench-201 cells in the benchmark table, or export a compact table "
        "from the official files.",
    )
    sub = parser.add_subparsers(dest="nb201_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    lookup = sub.add_parser(
        "lookup",
        help="test accuracy of cells on CIFAR-10, CIFAR-100 and ImageNet16-120",
        description="Print the 200-epoch test accuracy (mean over seeds) of each ARCH.",
    )
    lookup.add_argument(
        "archs",
        nargs="+",
        metavar="ARCH",
        help="arch string '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', 6-digit op sequence "
        "(333333 or 3,3,3,3,3,3), "
        "index:N (benchmark index) or code:N (base-5 code)",
    )
    lookup.add_argument("--table", default=None, help=f"table path (default: ${TABLE_ENV})")
    lookup.add_argument("--json", action="store_true", help="machine-readable output")
    lookup.set_defaults(func=_lookup)

    export = sub.add_parser(
        "export",
        help="write a compact table (CSV or .npz) from the official benchmark files",
        description="Read the official NAS-Bench-201 .pth or NATS-Bench topology file/archive "
        "through its official "
        "API (or a compact table) and write a compact CSV (or .npz when OUT ends in .npz).",
    )
    export.add_argument(
        "--from", dest="source", required=True, metavar="PATH", help="official file, archive dir or table"
    )
    export.add_argument("--out", required=True, metavar="PATH", help="output table (.csv, or .npz)")
    export.add_argument("--quiet", action="store_true", help="no progress output")
    export.set_defaults(func=_export)
