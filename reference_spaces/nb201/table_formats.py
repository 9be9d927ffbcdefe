"""flatarch's two compact NAS-Bench-201 table files: the CSV and the ``.npz``.

Both hold, in benchmark index order, each cell and its 200-epoch test accuracy (percent, mean over
seeds) on the three datasets. Readers return ``(code_of_index, test_accuracy)`` arrays and raise
:class:`~.table_errors.BenchmarkTableError` naming the file, the line and the problem; writers are
atomic (a temporary file renamed over the target).

* CSV, header :data:`CSV_HEADER` (the layout of the NATS-Bench export), one row per cell; the
  ``UniqueString`` column is optional on reading. Floats are written in shortest round-trip form,
  so reading a written file back gives the same numbers bit for bit.
* ``.npz`` (no pickles): ``code_of_index`` int32 [15625] and ``test_accuracy`` float64 [15625, 3],
  plus ``datasets`` and a ``format``/``version`` tag.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence

import numpy as np

from flatarch.atomic_files import atomic_write

from .arch_strings import all_arch_strings, all_unique_strings, arch_string_code
from .datasets import DATASETS
from .encoding import NUM_ARCHS, code_to_arch
from .table_errors import BenchmarkTableError

#: Accuracy columns of the compact CSV, in :data:`~.datasets.DATASETS` order.
CSV_ACCURACY_COLUMNS: tuple[str, ...] = (
    "CIFAR10TestAccuracy200Epochs",
    "CIFAR100TestAccuracy200Epochs",
    "ImageNetTestAccuracy200Epochs",
)
CSV_ARCH_COLUMN = "ArchitectureString"
CSV_UNIQUE_COLUMN = "UniqueString"
CSV_HEADER: tuple[str, ...] = (*CSV_ACCURACY_COLUMNS, CSV_ARCH_COLUMN, CSV_UNIQUE_COLUMN)

NPZ_FORMAT = "flatarch-nb201-table"
NPZ_VERSION = 1
_NPZ_ARRAYS = ("format", "version", "datasets", "code_of_index", "test_accuracy")

Arrays = tuple[np.ndarray, np.ndarray]


# ------------------------------------------------------------------------------------------ CSV
def read_csv(path: str) -> Arrays:
    """``(code_of_index, test_accuracy)`` from the compact CSV at ``path``."""
    try:
        return _read_csv(path)
    except (csv.Error, UnicodeDecodeError) as err:
        raise BenchmarkTableError(f"not a readable CSV file ({err})", path) from None


def _read_csv(path: str) -> Arrays:
    codes = np.empty(NUM_ARCHS, dtype=np.int64)
    acc = np.empty((NUM_ARCHS, len(DATASETS)), dtype=np.float64)
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        columns = _csv_columns(path, next(reader, None))
        n = 0
        for line, row in _csv_rows(path, reader, columns):
            codes[n], acc[n] = _csv_cell(path, line, row, columns), _csv_accuracies(path, line, row, columns)
            n += 1
    if n != NUM_ARCHS:
        raise BenchmarkTableError(
            f"{n} data rows; a NAS-Bench-201 table has exactly {NUM_ARCHS} (one per cell, in benchmark index order)",
            path,
        )
    _check_csv_unique(path, codes)
    return codes, acc


def _csv_columns(path: str, header: list[str] | None) -> tuple[list[int], int, int]:
    """Positions of the accuracy columns and the arch column, and the header's width."""
    if not header or not any(h.strip() for h in header):
        raise BenchmarkTableError(f"empty file; expected the header {','.join(CSV_HEADER)}", path)
    header = [h.strip() for h in header]
    missing = [c for c in (*CSV_ACCURACY_COLUMNS, CSV_ARCH_COLUMN) if c not in header]
    if missing:
        raise BenchmarkTableError(
            f"line 1: header lacks column(s) {', '.join(missing)}; expected {','.join(CSV_HEADER)}", path
        )
    return [header.index(c) for c in CSV_ACCURACY_COLUMNS], header.index(CSV_ARCH_COLUMN), len(header)


def _csv_rows(path: str, reader, columns) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each data row; blank lines (e.g. a trailing one) carry no cell."""
    width, n = columns[2], 0
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != width:
            raise BenchmarkTableError(f"line {line}: {len(row)} fields, the header has {width}", path)
        if n == NUM_ARCHS:
            raise BenchmarkTableError(
                f"line {line}: more than {NUM_ARCHS} data rows; a NAS-Bench-201 table has exactly "
                f"{NUM_ARCHS} (one per cell)",
                path,
            )
        n += 1
        yield line, row


def _csv_cell(path: str, line: int, row: list[str], columns) -> int:
    try:
        return arch_string_code(row[columns[1]])
    except (ValueError, TypeError) as err:
        raise BenchmarkTableError(f"line {line}: bad {CSV_ARCH_COLUMN}: {err}", path) from None


def _csv_accuracies(path: str, line: int, row: list[str], columns) -> list[float]:
    values = []
    for name, col in zip(CSV_ACCURACY_COLUMNS, columns[0]):
        try:
            value = float(row[col])
        except ValueError:
            raise BenchmarkTableError(f"line {line}: {name} is {row[col]!r}, not a number", path) from None
        if not 0.0 <= value <= 100.0:
            raise BenchmarkTableError(
                f"line {line}: {name} is {row[col]!r}; accuracies are percent in [0, 100]", path
            )
        values.append(value)
    return values


def _check_csv_unique(path: str, codes: np.ndarray) -> None:
    """Every cell exactly once (rows are lines 2.. of the file)."""
    seen = np.full(NUM_ARCHS, -1, dtype=np.int64)
    for i, code in enumerate(codes.tolist()):
        if seen[code] >= 0:
            raise BenchmarkTableError(
                f"line {i + 2}: cell {code_to_arch(code)} already appeared on line {seen[code] + 2}; "
                "every cell must appear exactly once",
                path,
            )
        seen[code] = i


def write_csv(path: str | os.PathLike, code_of_index: Sequence[int], test_accuracy: np.ndarray) -> None:
    """Write the compact CSV, atomically, floats in shortest round-trip form."""

    def write(handle):
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        archs, uniques = all_arch_strings(), all_unique_strings()
        for code, row in zip(np.asarray(code_of_index).tolist(), np.asarray(test_accuracy).tolist()):
            writer.writerow([*(repr(x) for x in row), archs[code], uniques[code]])

    atomic_write(path, write)


# ------------------------------------------------------------------------------------------ npz
def read_npz(path: str) -> Arrays:
    """``(code_of_index, test_accuracy)`` from a flatarch ``.npz`` table at ``path``."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # zip/format errors come in several types
        raise BenchmarkTableError(f"not a readable .npz file ({err})", path) from None
    with data:
        missing = [k for k in _NPZ_ARRAYS if k not in data]
        if missing:
            raise BenchmarkTableError(
                f"not a flatarch NAS-Bench-201 table (missing arrays {', '.join(missing)}); "
                "write one with `flatarch nb201 export`",
                path,
            )
        _check_npz_tags(path, data)
        return data["code_of_index"], data["test_accuracy"]


def _check_npz_tags(path: str, data) -> None:
    if str(data["format"]) != NPZ_FORMAT or int(data["version"]) != NPZ_VERSION:
        raise BenchmarkTableError(
            f"format {str(data['format'])!r} version {int(data['version'])}; this flatarch reads "
            f"{NPZ_FORMAT!r} version {NPZ_VERSION}",
            path,
        )
    datasets = tuple(str(d) for d in data["datasets"])
    if datasets != DATASETS:
        raise BenchmarkTableError(f"datasets {datasets}, expected {DATASETS}", path)


def write_npz(path: str | os.PathLike, code_of_index: Sequence[int], test_accuracy: np.ndarray) -> None:
    """Write a flatarch ``.npz`` table (atomically, no pickles, float64 accuracies: lossless)."""

    def write(handle):
        np.savez_compressed(
            handle,
            format=np.array(NPZ_FORMAT),
            version=np.array(NPZ_VERSION),
            datasets=np.array(DATASETS),
            code_of_index=np.asarray(code_of_index).astype(np.int32),
            test_accuracy=np.asarray(test_accuracy, dtype=np.float64),
        )

    atomic_write(path, write, binary=True)
