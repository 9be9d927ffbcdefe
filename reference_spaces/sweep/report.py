"""What a sweep has found so far, in the layout of the paper's table 2.

One table per space and search dataset: one row per method, for every evaluation dataset one
column per architecture update ("standard" = the method's own first-order update, "A2" = A2M,
then any other update of the grid). A cell is the mean ± population std over the seeds whose
units finished (the protocol of :mod:`flatarch.reference_spaces.engine.multiseed`), with the count
of seeds it covers and of failed, diverged, running and missing ones whenever that is not all of
them; a cell with no finished seed says so, and is never filled from another. A seed whose search
diverged (its ``result.json`` names a ``diverged_epoch``, or it has none: no epoch had finite
losses, :mod:`.status`) is not a result: it is counted as diverged, as are the trainings of its
genotype.

Values: on a space with trainings (DARTS), each training's ``final_test_acc`` from its
``report.json``; otherwise the search's ``result.json`` ``benchmark`` (NAS-Bench-201: the
benchmark's test accuracies of the reported genotype).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flatarch.atomic_files import atomic_save_figure, atomic_write_text, remove_temporaries
from flatarch.provenance import provenance

from ..engine.multiseed import PROTOCOL
from .driver import states
from .plan import Run, axis_value
from .status import DIVERGED, FAILED, FINISHED, RUNNING

#: column names of the updates the paper compares; other updates keep their own name
UPDATE_LABELS = {"first-order": "standard", "a2m": "A2"}
REPORT_NAME = "report"  # ROOT/report.md, ROOT/report.csv, ROOT/report-SPACE-DATASET.png
SEARCH_SOURCE = "the benchmark accuracies of each search's reported genotype (result.json)"
TRAIN_SOURCE = "the final test accuracy of each training of the found genotype (report.json)"
#: axes whose values the report plots the accuracy against (A2M's perturbation radius and step)
SENSITIVITY_AXES = ("rho", "eps")
#: the one column of a table none of whose runs has a value yet (it still counts their states)
NO_VALUES = "(no values yet)"


@dataclass
class Cell:
    """The seeds of one (method, update, dataset): their values and what became of the others."""

    seeds: int = 0
    values: list[float] = field(default_factory=list)
    failed: int = 0
    running: int = 0
    #: finished, but without this value (a NAS-Bench-201 search without a benchmark table)
    empty: int = 0
    diverged: int = 0

    @property
    def missing(self) -> int:
        return self.seeds - len(self.values) - self.failed - self.running - self.empty - self.diverged

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values)) if self.values else math.nan

    def text(self) -> str:
        counts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.diverged, DIVERGED),
                                                 (self.running, "running"), (self.missing, "missing"),
                                                 (self.empty, "without a value")) if n]
        if not self.values:
            return f"— (0/{self.seeds}: {', '.join(counts)})"
        value = f"{self.mean:.2f} ± {self.std:.2f}"
        return value if not counts else f"{value} ({len(self.values)}/{self.seeds}; {', '.join(counts)})"


@dataclass
class Table:
    space: str
    search_dataset: str
    source: str
    #: per row (a method, with the values of the grid's further axes: ``darts rho=0.01``), in the
    #: grid's order: its method and the values of the further axes (:attr:`Run.axes`)
    rows: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    updates: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    optimum: dict[str, float] = field(default_factory=dict)
    #: where the finished searches ran (:func:`run_provenance`) -> how many
    provenance: dict[str, int] = field(default_factory=dict)
    #: the finished searches whose result warns about its cell (the initial one, undecided edges):
    #: unit key -> each warning's gist, so that a table of such cells does not read as findings
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """The rows' labels, in order."""
        return list(self.rows)

    @property
    def title(self) -> str:
        return f"{self.space}, searched on {self.search_dataset}"

    def columns(self) -> list[tuple[str, str]]:
        return [(d, u) for d in self.datasets for u in self.updates]


def label(update: str) -> str:
    return UPDATE_LABELS.get(update, update)


def _add(seq: list[str], item: str) -> None:
    if item not in seq:
        seq.append(item)


def _run_values(run: Run, now: dict[str, tuple[Any, str, str]],
                result: dict[str, Any]) -> dict[str, tuple[str, float | None]]:
    """``{dataset: (state, value)}`` of one run whose search's ``result.json`` holds ``result``
    (empty unless the search finished)."""
    _, search_state, _ = now[run.search.key]
    if result.get("diverged_epoch") is not None:
        search_state = DIVERGED
    if run.trains:
        out = {}
        for unit in run.trains:
            state = now[unit.key][1] if search_state == FINISHED else search_state
            value = (unit.result() or {}).get("final_test_acc") if state == FINISHED else None
            out[unit.dataset] = (state, value)
        return out
    if search_state != FINISHED:
        return {d: (search_state, None) for d in result.get("benchmark") or {}}
    return {d: (FINISHED, v) for d, v in (result.get("benchmark") or {}).items()}


def row_label(run: Run) -> str:
    """The run's row of its table: its method and the values of the further axes."""
    return " ".join([run.point["method"], *(f"{k}={axis_value(v)}" for k, v in run.axes.items())])


def _table_for(tables: dict[tuple[str, str], Table], run: Run) -> Table:
    key = (run.point["space"], run.point["dataset"])
    if key not in tables:
        tables[key] = Table(*key, source=TRAIN_SOURCE if run.trains else SEARCH_SOURCE)
    table = tables[key]
    table.rows.setdefault(row_label(run), (run.point["method"], run.axes))
    _add(table.updates, run.point["optimizer"])
    return table


def _count(table: Table, run: Run, values: dict[str, tuple[str, float | None]], search_state: str) -> None:
    """Add one run (one seed) to its cells of ``table``."""
    for d in table.datasets:
        cell = table.cells.setdefault((row_label(run), run.point["optimizer"], d), Cell())
        cell.seeds += 1
        state, value = values.get(d, (search_state, None))
        if state == FINISHED and value is not None:
            cell.values.append(float(value))
        cell.empty += state == FINISHED and value is None
        cell.failed += state == FAILED
        cell.diverged += state == DIVERGED
        cell.running += state == RUNNING


def build_tables(runs: Sequence[Run]) -> list[Table]:
    """The tables of ``runs`` from their folders as they are now."""
    now = states(tuple(runs))
    tables: dict[tuple[str, str], Table] = {}
    per_run = []
    for run in runs:
        table = _table_for(tables, run)
        finished = now[run.search.key][1] == FINISHED
        result = (run.search.result() or {}) if finished else {}
        values = _run_values(run, now, result)
        for d in [u.dataset for u in run.trains] + list(values):
            _add(table.datasets, d)
        per_run.append((table, run, values))
        if finished:
            where = run_provenance(result.get("provenance") or {})
            table.provenance[where] = table.provenance.get(where, 0) + 1
            if result.get("warnings"):
                table.warnings[run.search.key] = [gist(w) for w in result["warnings"]]
            if not table.optimum and not run.trains:
                table.optimum = dict((result.get("reference") or {}).get("optimum", {}))
    for table in tables.values():
        table.datasets = table.datasets or [NO_VALUES]
        table.updates.sort(key=lambda u: list(UPDATE_LABELS).index(u) if u in UPDATE_LABELS else len(UPDATE_LABELS))
    for table, run, values in per_run:
        _count(table, run, values, now[run.search.key][1])
    return list(tables.values())


def gist(warning: str) -> str:
    """A search's warning up to its explanation (the text before the first colon or semicolon)."""
    return re.split(r"[:;]", warning, maxsplit=1)[0].strip()


def run_provenance(record: dict[str, Any]) -> str:
    """``flatarch 0.1.0, torch 2.5.1, cpu, commit 1a2b3c4d`` of a result's provenance."""
    if not record:
        return "no provenance recorded"
    commit = record.get("git_commit")
    return (f"flatarch {record.get('flatarch')}, torch {record.get('torch')}, {record.get('device')}, "
            + (f"commit {commit[:10]}" if commit else "no git checkout"))


def markdown(tables: Sequence[Table]) -> str:
    parts = []
    for t in tables:
        head = "| method | " + " | ".join(f"{d} {label(u)}" for d, u in t.columns()) + " |"
        rows = [head, "|" + "---|" * (len(t.columns()) + 1)]
        for m in t.methods:
            rows.append(f"| {m} | " + " | ".join(t.cells.get((m, u, d), Cell()).text() for d, u in t.columns()) + " |")
        parts.append(f"## {t.title}\n\nValues: {t.source}.\n\n" + "\n".join(rows))
        if any(c.empty for c in t.cells.values()) and t.source == SEARCH_SOURCE:
            parts[-1] += ("\n\nRuns without a value finished without benchmark accuracies: on NAS-Bench-201 give "
                          "the benchmark table (table = PATH in [settings], or $FLATARCH_NB201_TABLE) before they run.")
        if t.optimum:
            parts[-1] += "\n\noptimal cell: " + ", ".join(f"{d} {v:.2f}" for d, v in t.optimum.items())
        if t.provenance:
            parts[-1] += "\n\nSearches ran on: " + "; ".join(f"{where} ({n})" for where, n in t.provenance.items())
        if t.warnings:
            parts[-1] += (f"\n\nWarnings of {len(t.warnings)} finished search(es) about the cell they report (each "
                          "result.json says more):\n" + "\n".join(f"- {key}: {'; '.join(gists)}"
                                                                  for key, gists in t.warnings.items()))
    parts.append(f"Cells: {PROTOCOL}; (k/n): k of the grid's n seeds have a value.")
    mine = provenance("cpu")  # the report's own process: its command, host, versions and commit
    parts.append(f"Report written by `{' '.join(mine['argv'])}` on {mine['host']} with flatarch {mine['flatarch']}, "
                 f"torch {mine['torch']}, commit {mine['git_commit'] or 'none (no git checkout)'}.")
    return "\n\n".join(parts) + "\n"


def csv_text(tables: Sequence[Table]) -> str:
    """One row per table and method; per dataset and update: mean, std, n (seeds with a value),
    failed, diverged and seeds (the grid's)."""
    columns = []
    for t in tables:
        for d, u in t.columns():
            for what in ("mean", "std", "n", "failed", "diverged", "seeds"):
                _add(columns, f"{d} {label(u)} {what}")
    axes: list[str] = []
    for t in tables:
        for _, values in t.rows.values():
            for name in values:
                _add(axes, name)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["space", "search_dataset", "method", *axes, *columns])
    for t in tables:
        for m in t.methods:
            method, values = t.rows[m]
            row: dict[str, Any] = {}
            for d, u in t.columns():
                cell = t.cells.get((m, u, d), Cell())
                name = f"{d} {label(u)}"
                row.update({f"{name} mean": _number(cell.mean), f"{name} std": _number(cell.std),
                            f"{name} n": len(cell.values), f"{name} failed": cell.failed,
                            f"{name} diverged": cell.diverged, f"{name} seeds": cell.seeds})
            writer.writerow([t.space, t.search_dataset, method, *(values.get(a, "") for a in axes),
                             *(row.get(c, "") for c in columns)])
    return buffer.getvalue()


def _number(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.4f}"


def plot(table: Table, path: str) -> None:
    """Bars of every method per dataset, one bar per update, error bars the std over seeds."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(table.datasets)), figsize=(4 + 2.2 * len(table.methods),
                                                                       3.6), squeeze=False)
    width = 0.8 / max(1, len(table.updates))
    x = np.arange(len(table.methods))
    for ax, d in zip(axes[0], table.datasets):
        for k, u in enumerate(table.updates):
            cells = [table.cells.get((m, u, d), Cell()) for m in table.methods]
            ax.bar(x + (k - (len(table.updates) - 1) / 2) * width, [c.mean for c in cells], width,
                   yerr=[0 if math.isnan(c.std) else c.std for c in cells], capsize=3, label=label(u))
        ax.set_xticks(x, table.methods, rotation=30, ha="right")
        ax.set_title(d)
        ax.set_ylabel("test accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize="small")
    fig.suptitle(f"{table.title}: mean ± std over seeds")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)


def sensitivity_axes(table: Table) -> list[str]:
    """The axes of :data:`SENSITIVITY_AXES` that take several values in ``table``."""
    return [a for a in SENSITIVITY_AXES if len({values.get(a) for _, values in table.rows.values()} - {None}) > 1]


def plot_sensitivity(table: Table, axis: str, path: str) -> None:
    """Accuracy against ``axis`` (rho, eps): one panel per dataset, one line per method, update and
    value of the other axes, error bars the std over seeds."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[float, Cell]]] = {}
    fig, axes = plt.subplots(1, len(table.datasets), figsize=(4.5 * len(table.datasets), 3.8), squeeze=False)
    for ax, d in zip(axes[0], table.datasets):
        lines.clear()
        for row, (method, values) in table.rows.items():
            others = " ".join(f"{k}={axis_value(v)}" for k, v in values.items() if k != axis)
            for u in table.updates:
                cell = table.cells.get((row, u, d))
                if cell is not None and cell.values and axis in values:
                    lines.setdefault(" ".join(filter(None, [method, label(u), others])), []).append(
                        (float(values[axis]), cell))
        for name, points in lines.items():
            points.sort(key=lambda p: p[0])
            ax.errorbar([x for x, _ in points], [c.mean for _, c in points], yerr=[c.std for _, c in points],
                        marker="o", capsize=3, label=name)
        if all(x > 0 for points in lines.values() for x, _ in points):
            ax.set_xscale("log")
        ax.set(title=d, xlabel=axis, ylabel="test accuracy (%)")
        if lines:
            ax.legend(fontsize="small")
    fig.suptitle(f"{table.title}: sensitivity to {axis}, mean ± std over seeds")
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)


def write_report(root: str, tables: Sequence[Table]) -> list[str]:
    """``ROOT/report.md``, ``ROOT/report.csv``, a bar chart per table and, where rho or eps vary,
    a sensitivity plot per such axis (the temporary files a killed write of them left are removed
    first); returns the paths."""
    charts = []
    for t in tables:
        if t.datasets != [NO_VALUES]:
            stem = os.path.join(root, f"{REPORT_NAME}-{t.space}-{t.search_dataset}")
            charts.append((functools.partial(plot, t), f"{stem}.png"))
            charts += [(functools.partial(plot_sensitivity, t, axis), f"{stem}-{axis}.png")
                       for axis in sensitivity_axes(t)]
    paths = [os.path.join(root, f"{REPORT_NAME}.md"), os.path.join(root, f"{REPORT_NAME}.csv"), *(p for _, p in charts)]
    remove_temporaries(root, [os.path.basename(p) for p in paths])
    atomic_write_text(paths[0], markdown(tables))
    atomic_write_text(paths[1], csv_text(tables))
    for draw, path in charts:
        draw(path)
    return paths
