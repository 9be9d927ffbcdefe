"""Command-line options for the adapters' knobs, for scripts that want them on their argparse parser.

One optional line after the script builds its parser::

    flatarch.adapters.add_arguments(parser)                       # DARTS, PC-DARTS
    flatarch.adapters.add_arguments(parser, style="beta-darts")   # adds the beta-decay options

Every option defaults to ``None``, which the adapters read as "use the documented default", so
adding them changes nothing until one is given. Options the parser already has are left alone.
"""

from __future__ import annotations

import argparse

from flatarch.defaults import EPS, RHO_BY_SPACE
from flatarch.updates import UPDATES

from .patch import STYLES


def _options(style: str) -> list[tuple[str, dict]]:
    options: list[tuple[str, dict]] = [
        ("--arch_update", {"type": str, "choices": list(UPDATES), "help": "architecture update (default a2m)"}),
        ("--rho", {"type": float, "help": f"perturbation radius (default {RHO_BY_SPACE['nb201']} with one op-choice "
                                          f"alpha tensor, else {RHO_BY_SPACE['darts']})"}),
        ("--eps", {"type": float, "help": f"A2M finite-difference step (default {EPS})"}),
        ("--hessian", {"type": str, "choices": ["fd", "exact", "none"],
                       "help": "Hessian term: A2M fd|exact, SAM/USAM none|exact (default: the update's own)"}),
        ("--difference", {"type": str, "choices": ["central", "forward"],
                          "help": "A2M finite difference (default central)"}),
    ]
    if style == "beta-darts":
        options += [
            ("--beta_decay_weights", {"type": float, "nargs": "+",
                                      "help": "beta-decay weight per op-choice alpha tensor, e.g. normal reduce "
                                              "(default 1 each)"}),
            ("--beta_decay_start", {"type": float, "help": "lambda at epoch 0 (default 0)"}),
            ("--beta_decay_end", {"type": float, "help": "lambda at beta_decay_epochs (default 50)"}),
            ("--beta_decay_epochs", {"type": float, "help": "epoch where lambda reaches its end value (default 100)"}),
        ]
    return options


def add_arguments(parser: argparse.ArgumentParser, style: str = "darts") -> argparse.ArgumentParser:
    """Add the adapters' options (all ``default=None``) to ``parser``; returns it."""
    key = style.lower().replace("_", "-")
    if key not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")
    existing = set(parser._option_string_actions)
    for flag, kwargs in _options(key):
        if flag not in existing:
            parser.add_argument(flag, default=None, **kwargs)
    return parser
