"""Updates by name, for command lines and configuration files."""

from __future__ import annotations

import inspect
from typing import Any

from .a2m import A2M
from .base import ArchUpdate
from .first_order import FirstOrder
from .sam import SAM
from .usam import USAM

#: ``--optimizer`` names and their classes
UPDATES: dict[str, type[ArchUpdate]] = {"first-order": FirstOrder, "sam": SAM, "usam": USAM, "a2m": A2M}

_ALIASES = {"firstorder": "first-order", "first_order": "first-order", "darts": "first-order", "fo": "first-order"}


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names


def make_update(name: str, params: Any, **kwargs: Any) -> ArchUpdate:
    """Build an update by name (``first-order``, ``sam``, ``usam``, ``a2m``).

    Update-specific settings that the chosen update does not have (``rho`` and ``eps`` for
    first-order, ``eps``/``difference`` for SAM and USAM) are dropped, so one sweep
    configuration can drive every update. Any other
    unknown keyword is passed on to the inner optimizer.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in UPDATES:
        raise ValueError(f"unknown update {name!r}; choose one of: {', '.join(UPDATES)}")
    cls = UPDATES[key]
    accepted = _accepted(cls)
    update_only = {"rho", "eps", "hessian", "difference", "adaptive", "adaptive_eta"}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted or k not in update_only}
    return cls(params, **kwargs)
