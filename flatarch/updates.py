"""Updates by name, for command lines, adapters and configuration files.

The names, their aliases and which update-specific settings each update takes are defined
here once; the CLI's choices and the adapters' argument lists are generated from them.
"""

from __future__ import annotations

import inspect
from typing import Any

from .a2m import A2M
from .base import UPDATE_SETTINGS, ArchUpdate
from .first_order import FirstOrder
from .sam import SAM
from .usam import USAM

#: ``--optimizer`` names and their classes
UPDATES: dict[str, type[ArchUpdate]] = {"first-order": FirstOrder, "sam": SAM, "usam": USAM, "a2m": A2M}

#: other spellings accepted for the names above
ALIASES: dict[str, str] = {"firstorder": "first-order", "first_order": "first-order", "darts": "first-order",
                           "fo": "first-order"}


#: ``running_stats``, what the passes of one step do to the BatchNorm running statistics, by name
#: (the value is the updates' ``protect_buffers``): ``first-pass`` keeps them as the step's first
#: pass left them (flatarch's default: a step of any update changes them as one first-order pass
#: would); ``every-pass`` lets every pass update them, as the A2M authors' ``Architect`` does (its
#: four passes all run in train mode: AsquaredM ``optimizers/darts/architect.py`` L298-364).
RUNNING_STATS: dict[str, bool] = {"first-pass": True, "every-pass": False}


def canonical_update(name: str) -> str:
    """The :data:`UPDATES` key for ``name`` or one of its :data:`ALIASES` (``ValueError`` if none)."""
    key = ALIASES.get(name.lower().replace("_", "-"), name.lower().replace("_", "-"))
    key = ALIASES.get(key, key)
    if key not in UPDATES:
        raise ValueError(f"unknown update {name!r}; choose one of: {', '.join(UPDATES)}")
    return key


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= set(inspect.signature(klass.__init__).parameters)
    return names


def update_settings(name: str) -> tuple[str, ...]:
    """The update-specific settings (:data:`UPDATE_SETTINGS`) that update ``name`` takes, e.g.
    ``()`` for first-order, ``("rho", "hessian", ...)`` for SAM."""
    accepted = _accepted(UPDATES[canonical_update(name)])
    return tuple(s for s in UPDATE_SETTINGS if s in accepted)


def make_update(name: str, params: Any, **kwargs: Any) -> ArchUpdate:
    """Build an update by name (``first-order``, ``sam``, ``usam``, ``a2m``).

    Update-specific settings that the chosen update does not have (``rho`` and ``eps`` for
    first-order, ``eps``/``difference`` for SAM and USAM) are dropped, so one sweep
    configuration can drive every update. ``running_stats`` (a :data:`RUNNING_STATS` name) sets
    ``protect_buffers``. Any other unknown keyword is passed on to the inner optimizer.
    """
    cls = UPDATES[canonical_update(name)]
    takes = update_settings(name)
    kwargs = {k: v for k, v in kwargs.items() if k in takes or k not in UPDATE_SETTINGS}
    if "running_stats" in kwargs:
        rule = kwargs.pop("running_stats")
        if rule not in RUNNING_STATS:
            raise ValueError(f"running_stats must be one of {', '.join(RUNNING_STATS)}; got {rule!r}")
        kwargs["protect_buffers"] = RUNNING_STATS[rule]
    return cls(params, **kwargs)
