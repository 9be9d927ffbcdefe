"""Atomic files: a crash mid-write leaves the previous version intact.

Each write goes to a temporary file in the same folder, is flushed and fsync'ed, then
``os.replace``-d over the target (atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def _atomic_write(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """``torch.save(state)`` to ``path`` atomically."""
    _atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(obj: Any, path: str) -> None:
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def write_json_lines(records: list[dict[str, Any]], path: str) -> None:
    """The whole log rewritten atomically (a resumed search never leaves duplicate epochs)."""
    _atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in records).encode()))
