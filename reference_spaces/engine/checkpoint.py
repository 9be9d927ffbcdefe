"""Atomic files: a crash mid-write leaves the previous version intact.

Each write goes to a temporary file in the same folder, is flushed and fsync'ed, then
``os.replace``-d over the target (atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from flatarch.atomic_files import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """``torch.save(state)`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(state, f), binary=True)


def load_checkpoint(path: str) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(obj: Any, path: str) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"))


def write_json_lines(records: list[dict[str, Any]], path: str) -> None:
    """The whole log rewritten atomically (a resumed search never leaves duplicate epochs)."""
    atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records)))
