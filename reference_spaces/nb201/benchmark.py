"""The NAS-Bench-201 benchmark table: test accuracy of all 15,625 cells on three datasets.

Evaluating a NAS-Bench-201 cell is a lookup of its 200-epoch test accuracy (mean over seeds) on
CIFAR-10 (``ori-test``), CIFAR-100 and ImageNet16-120 (``x-test``). A :class:`BenchmarkTable`
holds those numbers in the benchmark's own row order ("index") and maps between that index and
flatarch's base-5 "code" (:func:`~flatarch.reference_spaces.nb201.encoding.sequence_to_code`),
so whole-space analyses can work on plain arrays::

    table = BenchmarkTable.load(find_table())
    table.lookup("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    acc = table.accuracies("cifar10")          # float64 [15625], acc[code]

Formats (:meth:`BenchmarkTable.load` dispatches on the path):

* compact CSV, header ``CIFAR10TestAccuracy200Epochs, CIFAR100TestAccuracy200Epochs,
  ImageNetTestAccuracy200Epochs, ArchitectureString, UniqueString``, one row per cell in
  benchmark index order (the ``UniqueString`` column is optional on reading);
* flatarch's ``.npz`` (no pickles): ``code_of_index`` int32 [15625] and ``test_accuracy``
  float64 [15625, 3] in index order, plus ``datasets`` and a ``format``/``version`` tag;
* the official files, through the official APIs when installed: NAS-Bench-201 ``.pth``
  (``nas_201_api``) and NATS-Bench topology ``.pickle.pbz2`` files or ``fast_mode`` archive
  directories (``nats_bench``).
"""

from __future__ import annotations

import csv
import inspect
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from flatarch.atomic_files import atomic_write

from .encoding import NUM_ARCHS, NUM_EDGES, OPS, arch_to_sequence, code_to_arch, sequence_to_code
from .isomorphism import unique_string_of_sequence

#: Canonical dataset names, in column order.
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "imagenet16-120")

#: Header of the compact CSV (the layout of the NATS-Bench export the project ships with).
CSV_ACCURACY_COLUMNS: tuple[str, ...] = (
    "CIFAR10TestAccuracy200Epochs",
    "CIFAR100TestAccuracy200Epochs",
    "ImageNetTestAccuracy200Epochs",
)
CSV_ARCH_COLUMN = "ArchitectureString"
CSV_UNIQUE_COLUMN = "UniqueString"
CSV_HEADER: tuple[str, ...] = (*CSV_ACCURACY_COLUMNS, CSV_ARCH_COLUMN, CSV_UNIQUE_COLUMN)

#: Dataset names the official APIs use, per canonical name.
OFFICIAL_DATASET_NAMES: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "imagenet16-120": "ImageNet16-120",
}

#: Environment variable naming the table :func:`find_table` falls back to.
TABLE_ENV = "FLATARCH_NB201_TABLE"

NPZ_FORMAT = "flatarch-nb201-table"
NPZ_VERSION = 1

_DATASET_ALIASES: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "c10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "c100": "cifar100",
    "imagenet16-120": "imagenet16-120",
    "imagenet16": "imagenet16-120",
    "imagenet": "imagenet16-120",
    "imagenet16_120": "imagenet16-120",
    "in16": "imagenet16-120",
    "in16-120": "imagenet16-120",
}


class BenchmarkTableError(ValueError):
    """A benchmark table file is malformed (the message names the file, row and problem)."""


def canonical_dataset(name: str) -> str:
    """``'ImageNet16-120'``, ``'imagenet'``, ``'CIFAR-10'``... -> the canonical name in :data:`DATASETS`."""
    key = str(name).strip().lower()
    if key not in _DATASET_ALIASES:
        raise ValueError(f"unknown NAS-Bench-201 dataset {name!r}; use one of {', '.join(DATASETS)}")
    return _DATASET_ALIASES[key]


def _all_arch_strings() -> list[str]:
    """Arch string of every code, in code order (a fixed template: much faster than parsing)."""
    return [
        f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|" for a, b, c, d, e, f in itertools.product(OPS, repeat=6)
    ]


_ARCH_TO_CODE: dict[str, int] | None = None
_UNIQUE_STRINGS: list[str] | None = None


def _all_unique_strings() -> list[str]:
    """Unique (isomorphism) string of every code, in code order; computed once."""
    global _UNIQUE_STRINGS
    if _UNIQUE_STRINGS is None:
        _UNIQUE_STRINGS = [
            unique_string_of_sequence(s) for s in itertools.product(range(len(OPS)), repeat=NUM_EDGES)
        ]
    return _UNIQUE_STRINGS


def _arch_to_code_map() -> dict[str, int]:
    global _ARCH_TO_CODE
    if _ARCH_TO_CODE is None:
        _ARCH_TO_CODE = {arch: code for code, arch in enumerate(_all_arch_strings())}
    return _ARCH_TO_CODE


def _fast_arch_to_code(arch: str) -> int:
    """Code of a benchmark arch string; the strict parser explains anything non-canonical."""
    code = _arch_to_code_map().get(arch)
    if code is None:
        code = sequence_to_code(arch_to_sequence(arch))
    return code


def _parse_sequence_text(text: str) -> tuple[int, ...] | None:
    """``'333333'`` or ``'3,3,3,3,3,3'`` -> the sequence; ``None`` when the text is not of that form."""
    digits = text.replace(",", " ").split()
    if len(digits) == 1 and digits[0].isdigit() and len(digits[0]) == NUM_EDGES:
        digits = list(digits[0])
    if len(digits) != NUM_EDGES or not all(d.isdigit() for d in digits):
        return None
    return tuple(int(d) for d in digits)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


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
        if codes.shape != (NUM_ARCHS,):
            raise BenchmarkTableError(
                f"{self.source}: a NAS-Bench-201 table has {NUM_ARCHS} cells, "
                f"got {codes.shape[0] if codes.ndim else 0}"
            )
        if acc.shape != (NUM_ARCHS, len(DATASETS)):
            raise BenchmarkTableError(
                f"{self.source}: test accuracies must have shape ({NUM_ARCHS}, {len(DATASETS)}), "
                f"got {acc.shape}"
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise BenchmarkTableError(f"{self.source}: cell codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        if codes.min() < 0 or codes.max() >= NUM_ARCHS:
            bad = int(np.flatnonzero((codes < 0) | (codes >= NUM_ARCHS))[0])
            raise BenchmarkTableError(
                f"{self.source}: index {bad} has code {codes[bad]}, outside [0, {NUM_ARCHS})"
            )
        index_of_code = np.full(NUM_ARCHS, -1, dtype=np.int64)
        index_of_code[codes] = np.arange(NUM_ARCHS)
        if (index_of_code < 0).any():
            missing = int(np.flatnonzero(index_of_code < 0)[0])
            first = np.flatnonzero(np.bincount(codes, minlength=NUM_ARCHS) > 1)[0]
            dups = np.flatnonzero(codes == first)
            raise BenchmarkTableError(
                f"{self.source}: cell {code_to_arch(int(first))} appears at indexes {dups.tolist()} "
                f"and cell {code_to_arch(missing)} is missing; every cell must appear exactly once"
            )
        bad = ~((acc >= 0.0) & (acc <= 100.0))  # also catches NaN
        if bad.any():
            i, j = (int(x) for x in np.argwhere(bad)[0])
            raise BenchmarkTableError(
                f"{self.source}: index {i} ({DATASETS[j]}) has accuracy {acc[i, j]!r}; "
                "accuracies are percent in [0, 100]"
            )
        self.code_of_index: np.ndarray = _read_only(codes)
        self.index_of_code: np.ndarray = _read_only(index_of_code)
        self.test_accuracy: np.ndarray = _read_only(acc)
        # One contiguous row per dataset, indexed by code, for vectorised whole-space analyses.
        self._by_code = _read_only(np.ascontiguousarray(acc[index_of_code].T))

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> BenchmarkTable:
        """Load a table, dispatching on what ``path`` is (see the module docstring)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            return load_official(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"NAS-Bench-201 table not found: {path}")
        lower = path.lower()
        if lower.endswith(".npz"):
            return cls.from_npz(path)
        if lower.endswith(".csv"):
            return cls.from_csv(path)
        if lower.endswith((".pth", ".pbz2", ".pickle")):
            return load_official(path)
        with open(path, "rb") as handle:
            head = handle.read(64)
        if head.startswith(b"PK\x03\x04"):
            return cls.from_npz(path)
        if head.startswith(CSV_ACCURACY_COLUMNS[0].encode()) or head.lstrip().startswith(b"CIFAR"):
            return cls.from_csv(path)
        raise BenchmarkTableError(
            f"{path}: not a NAS-Bench-201 table flatarch can read. Expected a compact CSV (.csv), a flatarch "
            ".npz, a NAS-Bench-201 .pth, or a NATS-Bench topology .pickle.pbz2 file or archive directory"
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> BenchmarkTable:
        """Read the compact CSV; errors name the file, the line and what is wrong."""
        path = os.fspath(path)
        codes = np.empty(NUM_ARCHS, dtype=np.int64)
        acc = np.empty((NUM_ARCHS, len(DATASETS)), dtype=np.float64)
        arch_map = _arch_to_code_map()
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise BenchmarkTableError(f"{path}: empty file; expected the header {','.join(CSV_HEADER)}")
            header = [h.strip() for h in header]
            missing = [c for c in (*CSV_ACCURACY_COLUMNS, CSV_ARCH_COLUMN) if c not in header]
            if missing:
                raise BenchmarkTableError(
                    f"{path}: line 1: header lacks column(s) {', '.join(missing)}; "
                    f"expected {','.join(CSV_HEADER)}"
                )
            acc_cols = [header.index(c) for c in CSV_ACCURACY_COLUMNS]
            arch_col = header.index(CSV_ARCH_COLUMN)
            width = len(header)
            n = 0
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue  # blank lines (e.g. a trailing one) carry no cell
                if len(row) != width:
                    raise BenchmarkTableError(
                        f"{path}: line {line}: {len(row)} fields, the header has {width}"
                    )
                if n >= NUM_ARCHS:
                    raise BenchmarkTableError(
                        f"{path}: line {line}: more than {NUM_ARCHS} data rows; "
                        "a NAS-Bench-201 table has exactly "
                        f"{NUM_ARCHS} (one per cell)"
                    )
                arch = row[arch_col]
                code = arch_map.get(arch)
                if code is None:
                    try:
                        code = sequence_to_code(arch_to_sequence(arch))
                    except (ValueError, TypeError) as err:
                        raise BenchmarkTableError(
                            f"{path}: line {line}: bad {CSV_ARCH_COLUMN}: {err}"
                        ) from None
                codes[n] = code
                for j, col in enumerate(acc_cols):
                    try:
                        acc[n, j] = float(row[col])
                    except ValueError:
                        raise BenchmarkTableError(
                            f"{path}: line {line}: {CSV_ACCURACY_COLUMNS[j]} is {row[col]!r}, not a number"
                        ) from None
                    if not 0.0 <= acc[n, j] <= 100.0:
                        raise BenchmarkTableError(
                            f"{path}: line {line}: {CSV_ACCURACY_COLUMNS[j]} is {row[col]!r}; accuracies are "
                            "percent in [0, 100]"
                        )
                n += 1
        if n != NUM_ARCHS:
            raise BenchmarkTableError(
                f"{path}: {n} data rows; a NAS-Bench-201 table has exactly {NUM_ARCHS} (one per cell, in "
                "benchmark index order)"
            )
        seen = np.full(NUM_ARCHS, -1, dtype=np.int64)
        for i, code in enumerate(codes.tolist()):
            if seen[code] >= 0:
                raise BenchmarkTableError(
                    f"{path}: line {i + 2}: cell {code_to_arch(code)} already appeared "
                    f"on line {seen[code] + 2}; "
                    "every cell must appear exactly once"
                )
            seen[code] = i
        return cls(codes, acc, source=path)

    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> BenchmarkTable:
        """Read flatarch's compact binary table (written by :meth:`to_npz`)."""
        path = os.fspath(path)
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as err:  # zip/format errors come in several types
            raise BenchmarkTableError(f"{path}: not a readable .npz file ({err})") from None
        with data:
            missing = [
                k
                for k in ("format", "version", "datasets", "code_of_index", "test_accuracy")
                if k not in data
            ]
            if missing:
                raise BenchmarkTableError(
                    f"{path}: not a flatarch NAS-Bench-201 table (missing arrays {', '.join(missing)}); "
                    "write one with `flatarch nb201 export`"
                )
            if str(data["format"]) != NPZ_FORMAT or int(data["version"]) != NPZ_VERSION:
                raise BenchmarkTableError(
                    f"{path}: format {str(data['format'])!r} version {int(data['version'])}; "
                    "this flatarch reads "
                    f"{NPZ_FORMAT!r} version {NPZ_VERSION}"
                )
            datasets = tuple(str(d) for d in data["datasets"])
            if datasets != DATASETS:
                raise BenchmarkTableError(f"{path}: datasets {datasets}, expected {DATASETS}")
            codes, acc = data["code_of_index"], data["test_accuracy"]
        return cls(codes, acc, source=path)

    @classmethod
    def from_api(
        cls,
        api: Any,
        *,
        progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
        source: str = "<official API>",
    ) -> BenchmarkTable:
        """Read the 200-epoch test accuracy (mean over seeds) of every cell from an official API object.

        ``api`` is a ``nas_201_api.NASBench201API`` or a ``nats_bench`` topology API (``len(api)``,
        ``api.arch(index)``, ``api.get_more_info(index, dataset, hp='200', is_random=False)``). Older
        NAS-Bench-201 APIs without ``hp`` take ``use_12epochs_result=False`` for the 200-epoch runs.
        The accuracy is ``'test-accuracy'``: CIFAR-10 ``ori-test``, the others ``x-test``.
        ``progress`` wraps the index range (e.g. ``tqdm``).
        """
        n = len(api)
        if n != NUM_ARCHS:
            raise BenchmarkTableError(f"{source}: the API lists {n} architectures, expected {NUM_ARCHS}")
        params = inspect.signature(api.get_more_info).parameters
        epochs_kw = {"hp": "200"} if "hp" in params else {"use_12epochs_result": False}
        codes = np.empty(NUM_ARCHS, dtype=np.int64)
        acc = np.empty((NUM_ARCHS, len(DATASETS)), dtype=np.float64)
        indexes: Iterable[int] = range(NUM_ARCHS)
        if progress is not None:
            indexes = progress(indexes)
        for index in indexes:
            arch = api.arch(index)
            try:
                codes[index] = _fast_arch_to_code(arch)
            except (ValueError, TypeError) as err:
                raise BenchmarkTableError(
                    f"{source}: index {index}: bad architecture string: {err}"
                ) from None
            for j, dataset in enumerate(DATASETS):
                info = api.get_more_info(index, OFFICIAL_DATASET_NAMES[dataset], is_random=False, **epochs_kw)
                if "test-accuracy" not in info:
                    raise BenchmarkTableError(
                        f"{source}: index {index} has no 200-epoch test accuracy "
                        f"on {OFFICIAL_DATASET_NAMES[dataset]}"
                    )
                acc[index, j] = float(info["test-accuracy"])
        return cls(codes, acc, source=source)

    # ---------------------------------------------------------------- writing
    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the compact CSV, atomically.

        Floats are written in shortest round-trip form, so reading the file back gives the same table.
        """

        def write(handle):
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            archs, uniques = _all_arch_strings(), _all_unique_strings()
            for code, row in zip(self.code_of_index.tolist(), self.test_accuracy.tolist()):
                writer.writerow([*(repr(x) for x in row), archs[code], uniques[code]])

        atomic_write(path, write)

    def to_npz(self, path: str | os.PathLike) -> None:
        """Write flatarch's compact binary table (atomically, no pickles)."""

        def write(handle):
            np.savez_compressed(
                handle,
                format=np.array(NPZ_FORMAT),
                version=np.array(NPZ_VERSION),
                datasets=np.array(DATASETS),
                code_of_index=self.code_of_index.astype(np.int32),
                test_accuracy=self.test_accuracy,
            )

        atomic_write(path, write, binary=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write ``.npz`` when the path ends so, else the compact CSV."""
        if os.fspath(path).lower().endswith(".npz"):
            self.to_npz(path)
        else:
            self.to_csv(path)

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
            text = arch.strip()
            kind, sep, number = text.partition(":")
            if sep and kind.strip().lower() in ("index", "code"):
                try:
                    value = int(number)
                except ValueError:
                    raise ValueError(
                        f"bad architecture {arch!r}: {kind} must be followed by an integer"
                    ) from None
                if not 0 <= value < NUM_ARCHS:
                    raise ValueError(f"bad architecture {arch!r}: {kind} must be in [0, {NUM_ARCHS - 1}]")
                return int(self.code_of_index[value]) if kind.strip().lower() == "index" else value
            seq = _parse_sequence_text(text)
            if seq is not None:
                return sequence_to_code(seq)
            if text and set(text) <= set("0123456789, "):
                raise ValueError(
                    f"a NAS-Bench-201 op sequence has {NUM_EDGES} op indices in [0, {len(OPS) - 1}] "
                    f"(like 333333 or 3,3,3,3,3,3), got {text!r}"
                )
            return _fast_arch_to_code(text)
        if isinstance(arch, (Sequence, np.ndarray)):
            return sequence_to_code(arch)
        raise TypeError(f"cannot read a NAS-Bench-201 architecture from {type(arch).__name__}: {arch!r}")

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


# -------------------------------------------------------------------- official files
def _import_official(module: str, pip_name: str, path: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"reading {path} needs the official `{module}` package, which is not installed. Install it with "
            f"`pip install {pip_name}`, or read a compact CSV / .npz table exported elsewhere with "
            "`flatarch nb201 export`"
        ) from None


def open_official_api(path: str | os.PathLike) -> Any:
    """Open an official benchmark file through its own API.

    * ``*.pth`` -> ``nas_201_api.NASBench201API(path, verbose=False)`` (NAS-Bench-201);
    * a directory -> ``nats_bench.create(path, 'tss', fast_mode=True, verbose=False)`` (NATS-Bench archive);
    * ``*.pickle.pbz2`` / ``*.pickle`` -> ``nats_bench.create(path, 'tss', fast_mode=False, verbose=False)``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"official benchmark file not found: {path}")
    if os.path.isdir(path) or path.lower().endswith((".pbz2", ".pickle")):
        nats_bench = _import_official("nats_bench", "nats_bench", path)
        return nats_bench.create(path, "tss", fast_mode=os.path.isdir(path), verbose=False)
    if path.lower().endswith(".pth"):
        nas_201_api = _import_official("nas_201_api", "nas-bench-201", path)
        return nas_201_api.NASBench201API(path, verbose=False)
    raise BenchmarkTableError(
        f"{path}: not an official benchmark file (expected NAS-Bench-201 .pth, or a NATS-Bench topology "
        ".pickle.pbz2 file or fast-mode archive directory)"
    )


def load_official(path: str | os.PathLike, *, progress=None) -> BenchmarkTable:
    """Read an official benchmark file into a :class:`BenchmarkTable` (see :func:`open_official_api`)."""
    return BenchmarkTable.from_api(open_official_api(path), progress=progress, source=os.fspath(path))


def find_table(explicit: str | os.PathLike | None = None) -> str | None:
    """Path of the table to use: ``explicit`` if given, else ``$FLATARCH_NB201_TABLE``, else ``None``.

    A path that is given but does not exist raises :class:`FileNotFoundError` naming where it came from.
    """
    if explicit is not None:
        path, origin = os.fspath(explicit), "the given path"
    else:
        path, origin = os.environ.get(TABLE_ENV, "").strip(), f"${TABLE_ENV}"
        if not path:
            return None
    if not os.path.exists(path):
        raise FileNotFoundError(f"NAS-Bench-201 table {path} (from {origin}) does not exist")
    return path
