"""The options a command generates from a settings dataclass: ``(field, flag, argparse keywords,
help)`` rows (``flatarch search``'s and ``flatarch train``'s ``_options()``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

Option = tuple[str, str, dict[str, Any], str]


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """One ``--flag`` per row, its value in ``args.FIELD`` (``None`` when not given)."""
    for field_name, flag, kwargs, text in options:
        metavar = {} if "action" in kwargs or "choices" in kwargs or "metavar" in kwargs else {
            "metavar": flag[2:].upper().replace("-", "_")}
        parser.add_argument(flag, dest=field_name, help=text, default=None, **metavar, **kwargs)


def given_fields(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """The fields the command line gave."""
    return {name: getattr(args, name) for name, *_ in options if getattr(args, name) is not None}
