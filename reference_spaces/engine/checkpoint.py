"""JSON files of a search, written atomically (a crash mid-write leaves the previous version)."""

from __future__ import annotations

import json
from typing import Any

from flatarch.atomic_files import atomic_write


def write_json(obj: Any, path: str) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"))


def write_json_lines(records: list[dict[str, Any]], path: str) -> None:
    """The whole log rewritten atomically (a resumed search never leaves duplicate epochs)."""
    atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records)))
