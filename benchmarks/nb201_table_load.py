"""Time and memory of loading the NAS-Bench-201 table from the compact CSV and from flatarch's .npz.

Usage::

    python benchmarks/nb201_table_load.py [TABLE.csv] [--repeats 5]

TABLE defaults to ``$FLATARCH_NB201_TABLE``. The .npz is written to a temporary directory from the
CSV. Each format is loaded ``--repeats`` times in this process (best time reported; the first
CSV load includes building the arch-string lookup, which later loads reuse), then once more under
tracemalloc for the peak Python allocation. Peak RSS is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
import tracemalloc

import numpy as np
from flatarch.reference_spaces.nb201.benchmark import BenchmarkTable, find_table


def _time_loads(loader, path: str, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loader(path)
        times.append(time.perf_counter() - start)
    return times[0], min(times)


def _peak_alloc(loader, path: str) -> int:
    tracemalloc.start()
    loader(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", nargs="?", default=None, help="compact CSV (default: $FLATARCH_NB201_TABLE)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    path = find_table(args.table)
    if path is None:
        print("give a compact CSV table or set FLATARCH_NB201_TABLE", file=sys.stderr)
        return 2

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    csv_first, csv_best = _time_loads(BenchmarkTable.from_csv, path, args.repeats)
    rss_after_csv = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "table.npz")
        table = BenchmarkTable.from_csv(path)
        table.to_npz(npz)
        npz_first, npz_best = _time_loads(BenchmarkTable.from_npz, npz, args.repeats)
        assert np.array_equal(BenchmarkTable.from_npz(npz).test_accuracy, table.test_accuracy)
        csv_peak = _peak_alloc(BenchmarkTable.from_csv, path)
        npz_peak = _peak_alloc(BenchmarkTable.from_npz, npz)
        sizes = os.path.getsize(path), os.path.getsize(npz)

    mib = 1024 * 1024
    print(f"table: {path}")
    print(f"threads: {threading.active_count()} (pure Python + numpy; no BLAS, no torch)")
    print(
        f"csv: first {csv_first * 1e3:.1f} ms, best of {args.repeats} {csv_best * 1e3:.1f} ms, "
        f"peak alloc {csv_peak / mib:.1f} MiB, file {sizes[0] / mib:.2f} MiB"
    )
    print(
        f"npz: first {npz_first * 1e3:.1f} ms, best of {args.repeats} {npz_best * 1e3:.1f} ms, "
        f"peak alloc {npz_peak / mib:.1f} MiB, file {sizes[1] / mib:.2f} MiB"
    )
    print(f"csv/npz load time ratio (best): {csv_best / npz_best:.1f}x")
    # ru_maxrss is KiB on Linux.
    print(
        f"peak RSS: {rss_before / 1024:.1f} MiB after imports, "
        f"{rss_after_csv / 1024:.1f} MiB after CSV loads, "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB at end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
