"""The error a NAS-Bench-201 table raises when it cannot be used."""

from __future__ import annotations

from ..errors import UsageError


class BenchmarkTableError(UsageError):
    """A benchmark table is missing, unreadable or malformed.

    The message is one line: ``PATH (from ORIGIN): PROBLEM; FIX``, where ``ORIGIN`` says where the
    path came from (``--table``, ``$FLATARCH_NB201_TABLE``, ...) and ``FIX`` what to do; both are
    left out when unknown (a table read directly by path: ``PATH: PROBLEM``).
    """

    def __init__(self, problem: str, path: str | None = None, origin: str | None = None, fix: str | None = None):
        self.problem, self.path, self.origin, self.fix = problem, path, origin, fix
        where = "" if path is None else f"{path} (from {origin}): " if origin else f"{path}: "
        super().__init__(where + problem + (f"; {fix}" if fix else ""))

    def located(self, origin: str, fix: str) -> BenchmarkTableError:
        """The same problem, saying where the path came from and how to fix it."""
        return BenchmarkTableError(self.problem, self.path, origin, fix)
