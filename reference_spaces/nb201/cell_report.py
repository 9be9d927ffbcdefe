"""One cell's place in the NAS-Bench-201 landscape: ``flatarch geometry nb201 --arch ARCH``.

For a given (e.g. the found) cell and each dataset of the benchmark table:

* its radius-r neighbourhoods (the cells at Hamming distance r, paper section 4.1.1): how many,
  their mean / min / max test accuracy, and how many of them are strictly better than the cell;
* the accuracy path and barrier (paper Eq. 9, both variants of :class:`~flatarch.geometry.AccuracyBarrier`)
  from the cell to the dataset's optimum (the most accurate cell; ties: the lowest code) along
  the path tree of paper section 4.1.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .benchmark import BenchmarkTable
from .encoding import code_to_arch
from .geometry import PathResult, neighbour_codes, path_between


@dataclass(frozen=True)
class NeighbourhoodSummary:
    """Test accuracies of a cell's radius-``radius`` neighbours on one dataset."""

    radius: int
    n: int
    mean: float
    min: float
    max: float
    better: int  # neighbours strictly more accurate than the cell


@dataclass(frozen=True)
class CellGeometry:
    """One cell on one dataset: its accuracy, neighbourhoods and the path to the optimum."""

    dataset: str
    accuracy: float
    neighbourhoods: list[NeighbourhoodSummary]
    optimum_code: int
    path_to_optimum: PathResult

    def to_dict(self, table: BenchmarkTable) -> dict:
        return {
            "accuracy": self.accuracy,
            "neighbourhoods": [asdict(n) for n in self.neighbourhoods],
            "optimum": _cell_dict(table, self.optimum_code, self.dataset),
            "path_to_optimum": self.path_to_optimum.to_dict(),
        }


def _cell_dict(table: BenchmarkTable, code: int, dataset: str) -> dict:
    return {
        "arch": code_to_arch(code),
        "index": int(table.index_of_code[code]),
        "code": int(code),
        "accuracy": table.accuracy(f"code:{code}", dataset),
    }


def neighbourhood_summary(acc: np.ndarray, code: int, radius: int) -> NeighbourhoodSummary:
    """Accuracies (``acc`` indexed by code) of the radius-``radius`` neighbours of ``code``."""
    nb = acc[neighbour_codes(int(code), radius)]
    return NeighbourhoodSummary(
        radius, int(nb.size), float(nb.mean()), float(nb.min()), float(nb.max()), int((nb > acc[code]).sum())
    )


def cell_geometry(acc: np.ndarray, code: int, dataset: str, radii: Sequence[int] = (1, 2, 3)) -> CellGeometry:
    """Neighbourhoods at ``radii`` and the path to the optimum of ``acc`` (indexed by code)."""
    optimum = int(np.argmax(acc))  # the first maximum: ties go to the lowest code
    return CellGeometry(
        dataset,
        float(acc[code]),
        [neighbourhood_summary(acc, code, r) for r in radii],
        optimum,
        path_between(acc, int(code), optimum),
    )


def cell_report(
    table: BenchmarkTable, code: int, datasets: Sequence[str], radii: Sequence[int] = (1, 2, 3)
) -> dict[str, CellGeometry]:
    """:func:`cell_geometry` of cell ``code`` on each of ``datasets``."""
    return {ds: cell_geometry(table.accuracies(ds), code, ds, radii) for ds in datasets}


def report_dict(table: BenchmarkTable, code: int, report: dict[str, CellGeometry]) -> dict:
    """JSON-ready: the cell (arch, index, code) and, per dataset, :meth:`CellGeometry.to_dict`."""
    return {
        "arch": code_to_arch(code),
        "index": int(table.index_of_code[code]),
        "code": int(code),
        "datasets": {ds: g.to_dict(table) for ds, g in report.items()},
    }


def report_lines(report: dict[str, CellGeometry]) -> list[str]:
    """A short table: per dataset and radius the neighbours' accuracies, then the barrier to the optimum."""
    lines = [f"{'dataset':<15}{'acc':>7}{'radius':>8}{'n':>6}{'mean':>8}{'min':>8}{'max':>8}{'better':>8}"]
    for ds, g in report.items():
        for i, n in enumerate(g.neighbourhoods):
            head = f"{ds:<15}{g.accuracy:>7.2f}" if i == 0 else " " * 22
            lines.append(f"{head}{n.radius:>8}{n.n:>6}{n.mean:>8.2f}{n.min:>8.2f}{n.max:>8.2f}{n.better:>8}")
    for ds, g in report.items():
        p, b = g.path_to_optimum, g.path_to_optimum.barrier
        lines.append(
            f"{ds}: to the optimum {p.accuracy_path[-1]:.2f} (distance {len(p.levels) - 1}): barrier "
            f"min-cell {b.raw_min_cell:.2f} (norm {b.normalised_min_cell:.4f}), "
            f"min-level-mean {b.raw_min_level_mean:.2f} (norm {b.normalised_min_level_mean:.4f})"
        )
    return lines
