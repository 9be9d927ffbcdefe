"""The NAS-Bench-201 geometry report behind ``flatarch geometry nb201``.

For each dataset of a benchmark table: tiers A/B/C, the locality analysis at radii 1..3 (KS table in
paper table 8 layout, difference distributions against random pairs), accuracy paths and barriers
for the A/B/C pairs, the plots, and optionally every cell's neighbourhood statistics.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from flatarch.geometry import plots
from flatarch.geometry.locality import Tier, tiers_around, tiers_from_thresholds
from flatarch.geometry.report import (
    KSRow,
    atomic_write_json,
    atomic_write_text,
    ks_table_csv,
    ks_table_markdown,
)

from .encoding import NUM_ARCHS, code_to_arch
from .geometry import (
    PAPER_PAIRS,
    PAPER_REFERENCE_ACCURACIES,
    Locality,
    PathResult,
    auto_pair,
    locality,
    neighbourhood_stats,
    paper_pair_codes,
    path_between,
)


@dataclass
class DatasetGeometry:
    dataset: str
    tiers: list[Tier]
    locality: Locality
    paths: dict[str, PathResult]
    pair_source: str
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class NB201Report:
    datasets: dict[str, DatasetGeometry] = field(default_factory=dict)

    @property
    def ks_rows(self) -> list[KSRow]:
        return [row for g in self.datasets.values() for row in g.locality.ks_rows(g.dataset)]


def paper_tiers(dataset: str, window: float = 0.5) -> list[Tier]:
    """Tiers ``[ref - window, ref + window]`` around the paper's A/B/C reference accuracies."""
    if dataset not in PAPER_REFERENCE_ACCURACIES:
        raise ValueError(
            f"no paper reference accuracies for {dataset!r} ({', '.join(PAPER_REFERENCE_ACCURACIES)}); "
            "give tiers with --tier-refs or --tier-thresholds"
        )
    return tiers_around(PAPER_REFERENCE_ACCURACIES[dataset], window)


def make_tiers(
    acc: np.ndarray,
    dataset: str,
    refs: Mapping[str, float] | None = None,
    thresholds: tuple[float, float] | None = None,
    window: float = 0.5,
) -> list[Tier]:
    """Tiers from explicit reference accuracies, from (high, low) thresholds, or the paper's references."""
    if refs is not None and thresholds is not None:
        raise ValueError("give tier reference accuracies or thresholds, not both")
    if thresholds is not None:
        return tiers_from_thresholds(acc, *thresholds)
    if refs is not None:
        return tiers_around(refs, window)
    return paper_tiers(dataset, window)


def _pair_codes(
    acc: np.ndarray, dataset: str, tiers: Sequence[Tier], code_of_index, pairs: str, radius: int, tolerance: float
) -> dict[str, tuple[int, int]]:
    """Path endpoints per tier: the paper's index pairs, or ``auto`` ones (see :func:`analyse_dataset`)."""
    if pairs == "paper":
        if code_of_index is None or dataset not in PAPER_PAIRS:
            raise ValueError(f"paper pairs need the benchmark's index order and one of {', '.join(PAPER_PAIRS)}")
        return paper_pair_codes(code_of_index, dataset)
    if pairs == "auto":
        return {t.name: auto_pair(acc, (t.low + t.high) / 2, radius, tolerance) for t in tiers}
    raise ValueError(f"pairs must be 'paper' or 'auto', got {pairs!r}")


def _pair_warnings(dataset: str, paths: dict[str, PathResult], radius: int, tolerance: float) -> list[str]:
    """Pairs that are not a radius-``radius`` neighbour within ``tolerance`` points (e.g. a table whose
    rows are not in the benchmark's index order, which the paper's pairs assume)."""
    return [
        f"{dataset} pair {name}: distance {len(p.levels) - 1}, accuracy gap "
        f"{abs(p.accuracy_path[0] - p.accuracy_path[-1]):.2f} (expected a radius-{radius} neighbour "
        f"within {tolerance} points; is the table in the benchmark's index order?)"
        for name, p in paths.items()
        if len(p.levels) - 1 != radius or abs(p.accuracy_path[0] - p.accuracy_path[-1]) > tolerance
    ]


def analyse_dataset(
    acc: np.ndarray,
    dataset: str,
    tiers: Sequence[Tier],
    code_of_index: np.ndarray | None = None,
    pairs: str = "paper",
    radii: Sequence[int] = (1, 2, 3),
    n_random_pairs: int = 100_000,
    seed: int = 0,
    path_radius: int = 3,
    path_tolerance: float = 1.0,
) -> DatasetGeometry:
    """Locality (KS, differences) and A/B/C paths for one dataset's code-indexed accuracies.

    ``pairs="paper"`` uses the authors' benchmark-index pairs (needs ``code_of_index``);
    ``pairs="auto"`` picks, per tier, the cell closest to the tier's centre that has a
    radius-``path_radius`` neighbour within ``path_tolerance`` points, and that neighbour.
    """
    start = time.perf_counter()
    loc = locality(acc, tiers, radii, n_random_pairs, seed)
    codes = _pair_codes(acc, dataset, tiers, code_of_index, pairs, path_radius, path_tolerance)
    paths = {name: path_between(acc, a, b) for name, (a, b) in codes.items()}
    warnings = _pair_warnings(dataset, paths, path_radius, path_tolerance)
    return DatasetGeometry(dataset, list(tiers), loc, paths, pairs, time.perf_counter() - start, warnings)


def cell_stats_csv(acc: np.ndarray, radii: Sequence[int] = (1, 2, 3)) -> str:
    """Every cell's radius-r neighbourhood statistics as CSV (one row per code)."""
    stats = neighbourhood_stats(acc, radii)
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["code", "arch", "accuracy"]
    for s in stats:
        header += [f"r{s.radius}_mean", f"r{s.radius}_min", f"r{s.radius}_max", f"r{s.radius}_mean_abs_diff"]
    writer.writerow(header)
    for code in range(NUM_ARCHS):
        row = [code, code_to_arch(code), f"{acc[code]:.4f}"]
        for s in stats:
            row += [
                f"{s.mean[code]:.4f}",
                f"{s.min[code]:.4f}",
                f"{s.max[code]:.4f}",
                f"{s.mean_abs_diff[code]:.4f}",
            ]
        writer.writerow(row)
    return out.getvalue()


def _write_tables(report: NB201Report, path_of) -> None:
    """ks_table.csv / .md, barriers.json and locality.json."""
    rows = report.ks_rows
    atomic_write_text(path_of("ks_table.csv"), ks_table_csv(rows))
    atomic_write_text(path_of("ks_table.md"), ks_table_markdown(rows))
    barriers = {
        ds: {"pairs": g.pair_source, "warnings": g.warnings, "paths": {n: p.to_dict() for n, p in g.paths.items()}}
        for ds, g in report.datasets.items()
    }
    atomic_write_json(path_of("barriers.json"), barriers)
    atomic_write_json(path_of("locality.json"), {ds: g.locality.summary() for ds, g in report.datasets.items()})


def _write_plots(ds: str, g: DatasetGeometry, path_of) -> None:
    """neighbours_<ds>.png (paper fig. 4), differences_<ds>.png (fig. 5) and paths_<ds>.png (fig. 7)."""
    loc = g.locality
    panels = {(c.tier.name, c.radius): (c.neighbour_acc, (c.tier.low, c.tier.high)) for c in loc.cells}
    plots.neighbour_histograms(
        path_of(f"neighbours_{ds}.png"), loc.acc, panels, f"{ds}: neighbour accuracies vs whole space"
    )
    diffs = {r: {c.tier.name: c.abs_diff for c in loc.cells if c.radius == r} for r in loc.radii}
    plots.difference_distributions(
        path_of(f"differences_{ds}.png"), diffs, loc.random_abs_diff, f"{ds}: |acc(ref) - acc(neighbour)|"
    )
    paths = {name: (p.level_accs, p.barrier.to_dict()) for name, p in g.paths.items()}
    plots.accuracy_paths(path_of(f"paths_{ds}.png"), paths, f"{ds}: accuracy paths ({g.pair_source} pairs)")


def write_report(
    report: NB201Report,
    out_dir: str,
    make_plots: bool = True,
    cell_stats: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Write KS table (CSV, Markdown), barriers.json, locality.json, plots; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def path_of(name: str) -> str:
        written.append(os.path.join(out_dir, name))
        return written[-1]

    _write_tables(report, path_of)
    for ds, g in report.datasets.items() if make_plots else ():
        _write_plots(ds, g, path_of)
    for ds, acc in (cell_stats or {}).items():
        atomic_write_text(path_of(f"cell_stats_{ds}.csv"), cell_stats_csv(acc))
    return written
