"""The NAS-Bench-201 benchmark table: test accuracy of all 15,625 cells on three datasets.

Evaluating a NAS-Bench-201 cell is a lookup of its 200-epoch test accuracy (mean over seeds) on
CIFAR-10 (``ori-test``), CIFAR-100 and ImageNet16-120 (``x-test``). A :class:`BenchmarkTable`
holds those numbers in the benchmark's own row order ("index") and maps between that index and
flatarch's base-5 "code" (:func:`~flatarch.reference_spaces.nb201.encoding.sequence_to_code`),
so whole-space analyses can work on plain arrays::

    table = load_table()                       # --table path, else $FLATARCH_NB201_TABLE, else shipped
    table.lookup("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    acc = table.accuracies("cifar10")          # float64 [15625], acc[code]

flatarch ships the NATS-Bench topology table (``data/nb201_table.npz``, see ``data/README.md``).
:func:`read_table` reads any other: the compact CSV or ``.npz`` (:mod:`.table_formats`), or the
official files through the official APIs (:mod:`.official`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import UsageError
from .arch_strings import arch_string_code
from .datasets import DATASETS, OFFICIAL_DATASET_NAMES, canonical_dataset
from .encoding import NUM_ARCHS, NUM_EDGES, OPS, code_to_arch, sequence_to_code
from .official import OFFICIAL_SUFFIXES, open_official_api, read_api, read_official
from .table_errors import BenchmarkTableError
from .table_formats import CSV_ACCURACY_COLUMNS, CSV_HEADER, read_csv, read_npz, write_csv, write_npz

__all__ = [
    "ARCH_SPELLINGS",
    "CSV_HEADER",
    "DATASETS",
    "OFFICIAL_DATASET_NAMES",
    "PACKAGED_TABLE",
    "TABLE_ENV",
    "BenchmarkTable",
    "BenchmarkTableError",
    "canonical_dataset",
    "code_of_argument",
    "find_table",
    "load_official",
    "load_table",
    "open_official_api",
    "read_table",
]

#: Environment variable naming the table to use when no path is given.
TABLE_ENV = "FLATARCH_NB201_TABLE"
#: The table shipped with flatarch, relative to this package.
PACKAGED_TABLE = "data/nb201_table.npz"

_PACKAGED_ORIGIN = "the flatarch package"
_TABLE_KINDS = "a compact CSV, a flatarch .npz, or an official NAS-Bench-201 / NATS-Bench topology file"
#: Where a table path came from -> how to fix a table that cannot be used.
_FIXES = {
    "--table": f"give --table {_TABLE_KINDS}, or leave --table out to use the table shipped with flatarch",
    f"${TABLE_ENV}": f"point ${TABLE_ENV} at {_TABLE_KINDS}, or unset it to use the table shipped with flatarch",
    _PACKAGED_ORIGIN: f"reinstall flatarch, or give --table (or set ${TABLE_ENV}) another table",
}


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _check_codes(codes: np.ndarray, source: str) -> np.ndarray:
    """``code_of_index`` as int64, a permutation of ``0..15624``; returns its inverse ``index_of_code``."""
    if codes.shape != (NUM_ARCHS,):
        raise BenchmarkTableError(
            f"a NAS-Bench-201 table has {NUM_ARCHS} cells, got {codes.shape[0] if codes.ndim else 0}", source
        )
    if not np.issubdtype(codes.dtype, np.integer):
        raise BenchmarkTableError(f"cell codes must be integers, got dtype {codes.dtype}", source)
    if codes.min() < 0 or codes.max() >= NUM_ARCHS:
        bad = int(np.flatnonzero((codes < 0) | (codes >= NUM_ARCHS))[0])
        raise BenchmarkTableError(f"index {bad} has code {codes[bad]}, outside [0, {NUM_ARCHS})", source)
    index_of_code = np.full(NUM_ARCHS, -1, dtype=np.int64)
    index_of_code[codes] = np.arange(NUM_ARCHS)
    if (index_of_code < 0).any():
        missing = int(np.flatnonzero(index_of_code < 0)[0])
        first = np.flatnonzero(np.bincount(codes, minlength=NUM_ARCHS) > 1)[0]
        raise BenchmarkTableError(
            f"cell {code_to_arch(int(first))} appears at indexes {np.flatnonzero(codes == first).tolist()} "
            f"and cell {code_to_arch(missing)} is missing; every cell must appear exactly once",
            source,
        )
    return index_of_code


def _check_accuracies(acc: np.ndarray, source: str) -> None:
    if acc.shape != (NUM_ARCHS, len(DATASETS)):
        raise BenchmarkTableError(
            f"test accuracies must have shape ({NUM_ARCHS}, {len(DATASETS)}), got {acc.shape}", source
        )
    bad = ~((acc >= 0.0) & (acc <= 100.0))  # also catches NaN
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise BenchmarkTableError(
            f"index {i} ({DATASETS[j]}) has accuracy {acc[i, j]!r}; accuracies are percent in [0, 100]", source
        )


def _parse_sequence_text(text: str) -> tuple[int, ...] | None:
    """``'333333'`` or ``'3,3,3,3,3,3'`` -> the sequence; ``None`` when the text is not of that form."""
    digits = text.replace(",", " ").split()
    if len(digits) == 1 and digits[0].isdigit() and len(digits[0]) == NUM_EDGES:
        digits = list(digits[0])
    if len(digits) != NUM_EDGES or not all(d.isdigit() for d in digits):
        return None
    return tuple(int(d) for d in digits)


def _parse_numbered(text: str) -> tuple[str, int] | None:
    """``'index:N'`` / ``'code:N'`` -> ``(kind, N)`` (range-checked); ``None`` for other text."""
    kind, sep, number = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("index", "code"):
        return None
    try:
        value = int(number)
    except ValueError:
        raise ValueError(f"{text!r}: {kind} must be followed by an integer") from None
    if not 0 <= value < NUM_ARCHS:
        raise ValueError(f"{text!r}: {kind} must be in [0, {NUM_ARCHS - 1}]")
    return kind, value


class BenchmarkTable:
    """Test accuracy of all NAS-Bench-201 cells, in benchmark index order.

    Args:
        code_of_index: int array [15625], the base-5 code of the cell at each benchmark index
            (a permutation of ``0..15624``).
        test_accuracy: float array [15625, 3], accuracy in percent per index and dataset
            (columns in :data:`DATASETS` order).
        source: where the numbers came from (shown in error messages).
    """

    def __init__(
        self, code_of_index: Sequence[int] | np.ndarray, test_accuracy: np.ndarray, source: str = "<memory>"
    ):
        self.source = str(source)
        codes = np.asarray(code_of_index)
        acc = np.array(test_accuracy, dtype=np.float64)  # copy: the table owns its numbers
        index_of_code = _check_codes(codes, self.source)
        _check_accuracies(acc, self.source)
        self.code_of_index: np.ndarray = _read_only(codes.astype(np.int64))
        self.index_of_code: np.ndarray = _read_only(index_of_code)
        self.test_accuracy: np.ndarray = _read_only(acc)
        # One contiguous row per dataset, indexed by code, for vectorised whole-space analyses.
        self._by_code = _read_only(np.ascontiguousarray(acc[index_of_code].T))

    # ---------------------------------------------------------------- reading and writing
    @classmethod
    def load(cls, path: str | os.PathLike) -> BenchmarkTable:
        """The table at ``path``, in any format :func:`read_table` reads."""
        return read_table(path)

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> BenchmarkTable:
        """Read the compact CSV (:func:`~.table_formats.read_csv`)."""
        return cls(*read_csv(os.fspath(path)), source=os.fspath(path))

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> BenchmarkTable:
        """Read flatarch's compact binary table (:func:`~.table_formats.read_npz`)."""
        return cls(*read_npz(os.fspath(path)), source=os.fspath(path))

    @classmethod
    def from_api(
        cls,
        api: Any,
        *,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
        source: str = "<official API>",
    ) -> BenchmarkTable:
        """Read every cell from an official API object (:func:`~.official.read_api`)."""
        return cls(*read_api(api, progress=progress, source=source), source=source)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the compact CSV, atomically; reading it back gives the same table."""
        write_csv(path, self.code_of_index, self.test_accuracy)

    def to_npz(self, path: str | os.PathLike) -> None:
        """Write flatarch's compact binary table (atomically, no pickles)."""
        write_npz(path, self.code_of_index, self.test_accuracy)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` when the path ends so, else the compact CSV."""
        (self.to_npz if os.fspath(path).lower().endswith(".npz") else self.to_csv)(path)

    # ---------------------------------------------------------------- queries
    def __len__(self) -> int:
        return NUM_ARCHS

    def __repr__(self) -> str:
        return f"BenchmarkTable({NUM_ARCHS} cells from {self.source})"

    def code_of(self, arch: Any) -> int:
        """Base-5 code of ``arch``: an arch string, a 6-op sequence (ints or text like ``'333333'`` /
        ``'3,3,3,3,3,3'``), ``'index:N'`` (benchmark index), ``'code:N'``, or an object with ``tostr()``."""
        if isinstance(arch, (bool, int, np.integer)):
            raise TypeError(
                f"ambiguous architecture {arch!r}: an int could be a benchmark index or a code; "
                "pass 'index:N' / 'code:N', or use arch_at(index) / code_to_arch(code)"
            )
        if hasattr(arch, "tostr") and not isinstance(arch, str):
            arch = arch.tostr()
        if isinstance(arch, str):
            return self._code_of_text(arch.strip())
        if isinstance(arch, (Sequence, np.ndarray)):
            return sequence_to_code(arch)
        raise TypeError(f"cannot read a NAS-Bench-201 architecture from {type(arch).__name__}: {arch!r}")

    def _code_of_text(self, text: str) -> int:
        numbered = _parse_numbered(text)
        if numbered is not None:
            kind, value = numbered
            return int(self.code_of_index[value]) if kind == "index" else value
        seq = _parse_sequence_text(text)
        if seq is not None:
            return sequence_to_code(seq)
        if text and set(text) <= set("0123456789, "):
            raise ValueError(
                f"a NAS-Bench-201 op sequence has {NUM_EDGES} op indices in [0, {len(OPS) - 1}] "
                f"(like 333333 or 3,3,3,3,3,3), got {text!r}"
            )
        return arch_string_code(text)

    def index_of(self, arch: Any) -> int:
        """Benchmark row index of ``arch`` (any form :meth:`code_of` accepts)."""
        return int(self.index_of_code[self.code_of(arch)])

    def arch_at(self, index: int) -> str:
        """Arch string of the cell at benchmark row ``index``."""
        index = int(index)
        if not 0 <= index < NUM_ARCHS:
            raise IndexError(f"benchmark index {index} outside [0, {NUM_ARCHS - 1}]")
        return code_to_arch(int(self.code_of_index[index]))

    def accuracy(self, arch: Any, dataset: str) -> float:
        """200-epoch test accuracy (percent, mean over seeds) of ``arch`` on ``dataset``."""
        return float(self._by_code[DATASETS.index(canonical_dataset(dataset)), self.code_of(arch)])

    def lookup(self, arch: Any) -> dict[str, float]:
        """``{dataset: test accuracy}`` for the three datasets, in :data:`DATASETS` order."""
        code = self.code_of(arch)
        return {d: float(self._by_code[j, code]) for j, d in enumerate(DATASETS)}

    def accuracies(self, dataset: str) -> np.ndarray:
        """Read-only float64 array [15625]: test accuracy on ``dataset`` indexed by base-5 code."""
        return self._by_code[DATASETS.index(canonical_dataset(dataset))]


#: How a command-line ARCH may be spelled (every form :meth:`BenchmarkTable.code_of` reads from text).
ARCH_SPELLINGS = (
    "arch string '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', 6-digit op sequence (333333 or 3,3,3,3,3,3), "
    "index:N (benchmark index) or code:N (base-5 code)"
)


def code_of_argument(table: BenchmarkTable, text: str, option: str) -> int:
    """:meth:`BenchmarkTable.code_of` of a command-line value; a bad one raises a one-line
    :class:`~flatarch.reference_spaces.errors.UsageError` starting with ``option``."""
    try:
        return table.code_of(text)
    except (ValueError, TypeError) as err:
        raise UsageError(f"{option}: {err}") from None


# -------------------------------------------------------------------- reading a table from a path
def _format_of(path: str) -> str:
    """``'official'``, ``'npz'`` or ``'csv'``: by what ``path`` is, its suffix, else its first bytes."""
    lower = path.lower()
    if os.path.isdir(path) or lower.endswith(OFFICIAL_SUFFIXES):
        return "official"
    if lower.endswith(".npz"):
        return "npz"
    if lower.endswith(".csv"):
        return "csv"
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head.startswith(CSV_ACCURACY_COLUMNS[0].encode()) or head.lstrip().startswith(b"CIFAR"):
        return "csv"
    raise BenchmarkTableError(
        "not a NAS-Bench-201 table flatarch can read. Expected a compact CSV (.csv), a flatarch "
        ".npz, a NAS-Bench-201 .pth, or a NATS-Bench topology .pickle.pbz2 file or archive directory",
        path,
    )


def read_table(path: str | os.PathLike) -> BenchmarkTable:
    """The table at ``path``: a compact CSV, a flatarch ``.npz`` or an official file (through its API).

    Raises :class:`BenchmarkTableError` (``PATH: PROBLEM``) for a path that is missing, unreadable
    or not a valid table, or an official file whose API package is not installed.
    """
    path = os.fspath(path)
    try:
        if not os.path.exists(path):
            raise BenchmarkTableError("does not exist", path)
        kind = _format_of(path)
        if kind == "official":
            return BenchmarkTable(*read_official(path), source=path)
        return BenchmarkTable(*(read_npz if kind == "npz" else read_csv)(path), source=path)
    except OSError as err:
        raise BenchmarkTableError(f"cannot be read ({err.strerror or err})", path) from None


def load_official(path: str | os.PathLike, *, progress=None) -> BenchmarkTable:
    """Read an official benchmark file into a :class:`BenchmarkTable` (see :func:`open_official_api`)."""
    return BenchmarkTable(*read_official(path, progress=progress), source=os.fspath(path))


# -------------------------------------------------------------------- which table to use
def _configured(explicit: str | os.PathLike | None) -> tuple[str, str] | None:
    """``(path, origin)`` of the table asked for: ``explicit`` (``--table``), else ``$FLATARCH_NB201_TABLE``."""
    if explicit is not None:
        return os.fspath(explicit), "--table"
    path = os.environ.get(TABLE_ENV, "").strip()
    return (path, f"${TABLE_ENV}") if path else None


def find_table(explicit: str | os.PathLike | None = None) -> str | None:
    """Path of the table asked for: ``explicit`` if given, else ``$FLATARCH_NB201_TABLE``, else ``None``
    (then :func:`load_table` uses the table shipped with flatarch).

    A path that is given but does not exist raises :class:`BenchmarkTableError` naming where it came from.
    """
    configured = _configured(explicit)
    if configured is None:
        return None
    path, origin = configured
    if not os.path.exists(path):
        raise BenchmarkTableError("does not exist", path, origin, _FIXES[origin])
    return path


def load_table(path: str | os.PathLike | None = None) -> BenchmarkTable:
    """The benchmark table: ``path`` if given (``--table``), else ``$FLATARCH_NB201_TABLE``, else the
    table shipped with flatarch (read once per process).

    Raises :class:`BenchmarkTableError`, one line naming the path, where it came from and the fix.
    """
    configured = _configured(path)
    if configured is None:
        return packaged_table()
    return _read_from(*configured)


def _read_from(path: str, origin: str) -> BenchmarkTable:
    try:
        return read_table(path)
    except BenchmarkTableError as err:
        raise err.located(origin, _FIXES[origin]) from None


@cache
def packaged_table() -> BenchmarkTable:
    """The NATS-Bench topology table shipped with flatarch (``data/nb201_table.npz``), read once."""
    with resources.as_file(resources.files(__package__).joinpath(PACKAGED_TABLE)) as path:
        return _read_from(str(path), _PACKAGED_ORIGIN)
