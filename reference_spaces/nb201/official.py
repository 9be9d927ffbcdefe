"""Reading the official NAS-Bench-201 / NATS-Bench files through their own APIs.

* NAS-Bench-201 ``*.pth`` (Dong & Yang, ICLR 2020): ``nas_201_api.NASBench201API(path)``;
* NATS-Bench topology search space (Dong et al., TPAMI 2021), same 15,625 cells: a ``fast_mode``
  archive directory, or a ``*.pickle.pbz2`` file, through ``nats_bench.create(path, 'tss')``.

Neither package is a dependency of flatarch: users who hold the files install it. The accuracy is
the official ``get_more_info(index, dataset, hp='200', is_random=False)['test-accuracy']``: 200-epoch
training, mean over seeds, CIFAR-10 on ``ori-test`` and the others on ``x-test``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .arch_strings import arch_string_code
from .datasets import DATASETS, OFFICIAL_DATASET_NAMES
from .encoding import NUM_ARCHS
from .table_errors import BenchmarkTableError

#: Path endings of the official benchmark files (directories are NATS-Bench archives).
OFFICIAL_SUFFIXES = (".pth", ".pbz2", ".pickle")


def read_api(
    api: Any, *, progress: Callable[[Iterable[int]], Iterable[int]] | None = None, source: str = "<official API>"
) -> tuple[np.ndarray, np.ndarray]:
    """``(code_of_index, test_accuracy)`` of every cell from an official API object.

    ``api`` is a ``nas_201_api.NASBench201API`` or a ``nats_bench`` topology API (``len(api)``,
    ``api.arch(index)``, ``api.get_more_info(index, dataset, hp='200', is_random=False)``). Older
    NAS-Bench-201 APIs without ``hp`` take ``use_12epochs_result=False`` for the 200-epoch runs.
    ``progress`` wraps the index range (e.g. ``tqdm``).
    """
    if len(api) != NUM_ARCHS:
        raise BenchmarkTableError(f"the API lists {len(api)} architectures, expected {NUM_ARCHS}", source)
    params = inspect.signature(api.get_more_info).parameters
    epochs_kw = {"hp": "200"} if "hp" in params else {"use_12epochs_result": False}
    codes = np.empty(NUM_ARCHS, dtype=np.int64)
    acc = np.empty((NUM_ARCHS, len(DATASETS)), dtype=np.float64)
    for index in progress(range(NUM_ARCHS)) if progress is not None else range(NUM_ARCHS):
        codes[index] = _api_code(api, index, source)
        acc[index] = [_api_accuracy(api, index, dataset, epochs_kw, source) for dataset in DATASETS]
    return codes, acc


def _api_code(api: Any, index: int, source: str) -> int:
    try:
        return arch_string_code(api.arch(index))
    except (ValueError, TypeError) as err:
        raise BenchmarkTableError(f"index {index}: bad architecture string: {err}", source) from None


def _api_accuracy(api: Any, index: int, dataset: str, epochs_kw: dict, source: str) -> float:
    name = OFFICIAL_DATASET_NAMES[dataset]
    info = api.get_more_info(index, name, is_random=False, **epochs_kw)
    if "test-accuracy" not in info:
        raise BenchmarkTableError(f"index {index} has no 200-epoch test accuracy on {name}", source)
    return float(info["test-accuracy"])


def _import_official(module: str, pip_name: str):
    try:
        return __import__(module)
    except ImportError:
        raise BenchmarkTableError(
            f"reading it needs the official `{module}` package, which is not installed; install it with "
            f"`pip install {pip_name}`, or use a compact CSV / .npz table exported elsewhere with "
            "`flatarch nb201 export`"
        ) from None


def open_official_api(path: str | os.PathLike) -> Any:
    """Open an official benchmark file through its own API.

    * ``*.pth`` -> ``nas_201_api.NASBench201API(path, verbose=False)`` (NAS-Bench-201);
    * a directory -> ``nats_bench.create(path, 'tss', fast_mode=True, verbose=False)`` (NATS-Bench archive);
    * ``*.pickle.pbz2`` / ``*.pickle`` -> ``nats_bench.create(path, 'tss', fast_mode=False, verbose=False)``.
    """
    path = os.fspath(path)
    try:
        return _open_api(path)
    except BenchmarkTableError as err:
        raise BenchmarkTableError(err.problem, path) from None


def _open_api(path: str) -> Any:
    if not os.path.exists(path):
        raise BenchmarkTableError("does not exist")
    if os.path.isdir(path) or path.lower().endswith((".pbz2", ".pickle")):
        return _import_official("nats_bench", "nats_bench").create(
            path, "tss", fast_mode=os.path.isdir(path), verbose=False
        )
    if path.lower().endswith(".pth"):
        return _import_official("nas_201_api", "nas-bench-201").NASBench201API(path, verbose=False)
    raise BenchmarkTableError(
        "not an official benchmark file (expected NAS-Bench-201 .pth, or a NATS-Bench topology "
        ".pickle.pbz2 file or fast-mode archive directory)"
    )


def read_official(path: str | os.PathLike, *, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(code_of_index, test_accuracy)`` read from an official benchmark file (:func:`open_official_api`)."""
    return read_api(open_official_api(path), progress=progress, source=os.fspath(path))
