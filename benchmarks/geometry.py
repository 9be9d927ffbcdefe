"""Speed of the NAS-Bench-201 geometry analyses.

Usage::

    python benchmarks/geometry.py [TABLE] [--dataset cifar10] [--repeats 3] [--scan-cells N]

TABLE defaults to ``$FLATARCH_NB201_TABLE``, else the table shipped with flatarch. Reports, with the thread count:

1. the whole-space radius-1..3 neighbourhood analysis (every cell's neighbour mean/min/max and
   mean |acc difference|) on one dataset, computed (a) by combinatorial generation of the radius-r
   codes (flatarch) and (b) by scanning all 15,625 cells per cell for those at Hamming distance r,
   and the ratio (b)/(a) in the same run. ``--scan-cells N`` times the scan on the first N cells
   and extrapolates (default: all cells, no extrapolation); results of the two are compared;
2. the full three-dataset table-8 analysis (tiers, pooled neighbourhoods at radius 1..3, KS
   tests, |difference| distributions against random pairs, A/B/C paths and barriers), excluding
   the table load and the plots, which are timed separately. Target: under 10 s on CPU.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread: the machines are shared

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from flatarch.reference_spaces.nb201.benchmark import DATASETS, load_table  # noqa: E402
from flatarch.reference_spaces.nb201.encoding import NUM_ARCHS  # noqa: E402
from flatarch.reference_spaces.nb201.geometry import (  # noqa: E402
    codes_to_digits,
    neighbourhood_stats,
)
from flatarch.reference_spaces.nb201.geometry_report import (  # noqa: E402
    NB201Report,
    analyse_dataset,
    paper_tiers,
    write_report,
)
from threadpoolctl import threadpool_info  # noqa: E402


def _threads() -> str:
    pools = threadpool_info()
    blas = ", ".join(f"{p['internal_api']}={p['num_threads']}" for p in pools) or "no BLAS pool loaded"
    return f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; {blas}"


def scan_stats(acc: np.ndarray, cells: np.ndarray, radii=(1, 2, 3)) -> dict[int, np.ndarray]:
    """Baseline: per cell, scan all 15,625 cells for those at Hamming distance r (same statistics)."""
    all_digits = codes_to_digits(np.arange(NUM_ARCHS))
    out = {r: np.empty((len(cells), 4)) for r in radii}
    for i, code in enumerate(cells):
        ham = (all_digits != all_digits[code]).sum(-1)
        for r in radii:
            nb = acc[ham == r]
            out[r][i] = nb.mean(), nb.min(), nb.max(), np.abs(nb - acc[code]).mean()
    return out


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="?")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scan-cells", type=int, default=NUM_ARCHS)
    args = parser.parse_args()
    print(f"threads: {_threads()}")
    start = time.perf_counter()
    table = load_table(args.table)
    print(f"table load: {time.perf_counter() - start:.2f} s ({table.source})")

    acc = table.accuracies(args.dataset)
    fast_s, stats = best_of(lambda: neighbourhood_stats(acc, (1, 2, 3)), args.repeats)
    cells = np.arange(min(args.scan_cells, NUM_ARCHS))
    start = time.perf_counter()
    scanned = scan_stats(acc, cells)
    scan_s = (time.perf_counter() - start) * NUM_ARCHS / len(cells)
    for s in stats:
        fast = np.stack([s.mean, s.min, s.max, s.mean_abs_diff], 1)[cells]
        assert np.allclose(fast, scanned[s.radius]), f"radius {s.radius}: fast and scan disagree"
    note = "" if len(cells) == NUM_ARCHS else f" (extrapolated from {len(cells)} cells)"
    print(
        f"whole-space radius-1..3 analysis on {args.dataset}: combinatorial {fast_s:.3f} s (best of "
        f"{args.repeats}), scan {scan_s:.2f} s{note}; ratio scan/combinatorial = {scan_s / fast_s:.1f}x; "
        "results identical"
    )

    def table8():
        report = NB201Report()
        for ds in DATASETS:
            report.datasets[ds] = analyse_dataset(
                table.accuracies(ds), ds, paper_tiers(ds), np.asarray(table.code_of_index)
            )
        return report

    t8_s, report = best_of(table8, args.repeats)
    print(
        f"table-8 analysis, three datasets (radius 1..3, KS, differences, A/B/C barriers): {t8_s:.2f} s "
        f"(best of {args.repeats}; target < 10 s)"
    )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        write_report(report, out, make_plots=True)
        print(f"writing tables, JSON and 9 PNG plots: {time.perf_counter() - start:.2f} s")
    print(f"threads: {_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
