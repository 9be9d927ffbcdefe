"""The ``--space`` registry: space name -> factory building a
:class:`~flatarch.reference_spaces.space.SearchSpace`.

Built-in spaces are listed as ``"module:attribute"`` strings and imported on first use, so
listing the names costs nothing and one space's import errors do not break another.
A new built-in space adds one line to :data:`_BUILTIN`; code outside the package calls
:func:`register_space`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import UsageError
from .space import SearchSpace

_BUILTIN: dict[str, str] = {
    "nb201": "flatarch.reference_spaces.nb201.space:NB201Space",
    "darts": "flatarch.reference_spaces.darts.space:DartsSpace",
}
_REGISTERED: dict[str, Callable[..., SearchSpace]] = {}


def register_space(name: str, factory: Callable[..., SearchSpace]) -> None:
    """Make ``factory(**options)`` the space called ``name`` (replaces an earlier one)."""
    _REGISTERED[name] = factory


def available_spaces() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_space(name: str, **options: Any) -> SearchSpace:
    """Build the space called ``name`` with its ``options`` (e.g. ``table=`` for nb201)."""
    if name in _REGISTERED:
        factory = _REGISTERED[name]
    elif name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        raise UsageError(f"unknown search space {name!r}; available: {', '.join(available_spaces())}")
    return factory(**options)
