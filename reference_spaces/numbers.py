"""Checks of numeric settings, shared by the search and the training configs: each setting names
what it must be, and a bad one is refused with that phrase before anything runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Rule = tuple[Callable[[Any], bool], str]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


AT_LEAST_ONE: Rule = (lambda v: whole(v) and v >= 1, "a whole number >= 1")
NOT_NEGATIVE_WHOLE: Rule = (lambda v: whole(v) and v >= 0, "a whole number >= 0")
POSITIVE: Rule = (lambda v: finite(v) and v > 0, "a finite number > 0")
NOT_NEGATIVE: Rule = (lambda v: finite(v) and v >= 0, "a finite number >= 0")
FRACTION: Rule = (lambda v: finite(v) and 0 <= v < 1, "a finite number in [0, 1)")

#: settings the search and the training both have, with what they must be
COMMON: dict[str, Rule] = {
    "epochs": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "seed": NOT_NEGATIVE_WHOLE,
    "threads": AT_LEAST_ONE,
    "cells_per_stage": AT_LEAST_ONE,
    "lr": POSITIVE,
    "lr_min": NOT_NEGATIVE,
    "momentum": FRACTION,
    "weight_decay": NOT_NEGATIVE,
    "grad_clip": (NOT_NEGATIVE[0], "a finite number >= 0 (0 = off)"),
}


def first_violation(values: Mapping[str, Any], rules: Mapping[str, Rule]) -> tuple[str, Any, str] | None:
    """``(name, value, what it must be)`` of the first set value that breaks its rule, else None."""
    for name, (ok, need) in rules.items():
        value = values.get(name)
        if value is not None and not ok(value):
            return name, value, need
    return None


def lr_min_above_lr(values: Mapping[str, Any]) -> bool:
    lr, lr_min = values.get("lr"), values.get("lr_min")
    return lr is not None and lr_min is not None and lr_min > lr


def check(values: Mapping[str, Any], rules: Mapping[str, Rule], flag: Callable[[str], str],
          error: Callable[[str], Exception], names: Iterable[str] = ()) -> None:
    """Raise ``error`` naming the flag of the first bad number, or a ``lr_min`` above ``lr``."""
    bad = first_violation(values, rules)
    if bad is not None:
        name, value, need = bad
        raise error(f"{flag(name)} must be {need}, got {value!r}")
    if lr_min_above_lr(values):
        raise error(f"--lr-min ({values['lr_min']}) must not exceed --lr ({values['lr']}): the schedule anneals "
                    "down to it")
