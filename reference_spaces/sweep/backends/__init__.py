"""The engines a sweep runs on (``[run] backend``), by name.

Each backend hands units to an existing engine and reports their outcomes; none schedules by
itself. ``local``: a process pool on this machine (the pool ``flatarch search --workers`` uses);
``slurm``: SLURM job arrays through submitit; ``ray``: tasks on a Ray cluster. A backend's
library is imported when the backend starts, so the others need not be installed.

A backend object has ``start()``, ``submit(units) -> handles``, ``wait(handles, timeout) ->
[(handle, outcome)]`` (the ones that ended; an outcome as
:func:`~flatarch.reference_spaces.sweep.execute.execute` returns it), ``cancel(handles)`` and
``close()``; its class declares its ``[run]`` options in ``OPTIONS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError

_BACKENDS: dict[str, str] = {
    "local": "flatarch.reference_spaces.sweep.backends.local:LocalBackend",
    "slurm": "flatarch.reference_spaces.sweep.backends.slurm:SlurmBackend",
    "ray": "flatarch.reference_spaces.sweep.backends.ray_cluster:RayBackend",
}
BACKENDS: tuple[str, ...] = tuple(_BACKENDS)


class BackendError(UsageError):
    """A backend cannot start as asked (its library missing, bad options, no cluster)."""


@dataclass(frozen=True)
class Option:
    """A backend's ``[run]`` option: the types it accepts, its default, one line of help."""

    types: tuple[type, ...]
    help: str
    default: Any = None


def backend_class(name: str) -> type:
    if name not in _BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module, _, attr = _BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def check_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against backend ``name``'s ``OPTIONS``, defaults filled."""
    known: Mapping[str, Option] = backend_class(name).OPTIONS
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(sorted(known)) or "none"
        raise BackendError(f"[run] {unknown[0]} is not an option of backend {name} (its options: {valid})")
    for key, value in options.items():
        types = known[key].types
        if value is not None and not _fits(value, types):
            need = " or ".join(t.__name__ for t in types)
            raise BackendError(f"[run] {key} must be a {need}, got {value!r}")
    return {key: option.default if options.get(key) is None else options[key] for key, option in known.items()}


def make_backend(name: str, *, root: str, cwd: str, workers: int | None, options: Mapping[str, Any]):
    return backend_class(name)(root=root, cwd=cwd, workers=workers, **check_options(name, options))


def missing_library(backend: str, module: str, extra: str) -> BackendError:
    return BackendError(f"backend {backend} needs the {module} package; install it with "
                        f"pip install 'flatarch[{extra}]'")
