"""The ``flatarch`` command line: a thin layer over the Python API.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``func`` (called with the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order `flatarch --help` lists them.
_COMMAND_MODULES: list[str] = [
    "flatarch.cli.search",
    "flatarch.cli.nb201",
    "flatarch.cli.train",
    "flatarch.cli.sweep",
    "flatarch.cli.geometry",
]


def _version() -> str:
    import torch

    import flatarch

    return f"flatarch {flatarch.__version__} (torch {torch.__version__})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flatarch",
        description="Flat-minima differentiable architecture search (A2M, SAM, USAM, first-order DARTS).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version(), help="print flatarch's and torch's "
                        "versions and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .stops import sigterm_interrupts

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with sigterm_interrupts():
        return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
