"""The small protocol through which a discrete architecture space plugs into the geometry tools.

The geometry of paper section 4.1 needs only three things from a space:

* **moves**: every radius-1 modification of an architecture, each tagged with the *sites* (the
  elements of the encoding) it touches. The neighbour tree forbids a move touching a site an earlier
  move touched, which is what "no move undoes an earlier one" and "modifications applied to
  distinct elements" mean;
* **path moves**: the radius-1 modifications that bring an architecture one move closer to a target;
* **distance**: the minimal number of moves between two architectures.

Architectures must be hashable values (tuples), so that levels can be de-duplicated. Spaces live
outside this package (``flatarch.reference_spaces.nb201.geometry.NB201Space``,
``flatarch.reference_spaces.darts.geometry.DartsSpace``); this package never imports them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Move:
    """One radius-1 modification: the architecture it leads to and the sites it touches."""

    arch: Hashable
    sites: frozenset


@runtime_checkable
class Space(Protocol):
    """A discrete architecture space with radius-1 moves (see the module docstring)."""

    def moves(self, arch: Hashable) -> Iterable[Move]:
        """All radius-1 modifications of ``arch``."""

    def path_moves(self, arch: Hashable, target: Hashable) -> Iterable[Hashable]:
        """The architectures one move from ``arch`` and one move closer to ``target``."""

    def distance(self, a: Hashable, b: Hashable) -> int:
        """Minimal number of moves from ``a`` to ``b``."""
