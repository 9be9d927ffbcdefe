"""Where a result came from: the one ``"provenance"`` object of every ``result.json``,
``report.json``, ``summary.json`` and sweep report.

Keys: ``flatarch`` and ``torch`` (versions), ``device`` (the device that ran, named as a person
would: ``"cpu"`` or ``"cuda:0 NVIDIA H100 80GB HBM3"``), ``argv`` (the command line), ``host``,
``threads`` (torch's CPU threads), ``git_commit`` (of the flatarch checkout that ran, ``None`` for
an installed copy), ``git_dirty`` (whether that checkout's tracked files differed from the commit,
so the commit alone does not name the code that ran; ``None`` for an installed copy) and, when the
device is a GPU, ``cuda`` and ``cudnn`` (the versions torch uses).
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from typing import Any

import torch

from . import __version__


def device_name(device: torch.device | str) -> str:
    """``"cpu"``, or ``"cuda:INDEX NAME"`` for a GPU (the index torch addresses it by)."""
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def _git(folder: str, *args: str) -> str | None:
    """``git -C folder ARGS``'s output, or ``None`` (no git, not a checkout, an error)."""
    try:
        done = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_commit(folder: str | None = None) -> str | None:
    """The commit of the flatarch checkout that runs (``folder``: this package's), or ``None``: an
    installed copy, also one inside another project's repository (a ``.venv`` in a checkout: git
    would name that project's commit), where this file is not one git tracks."""
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    if _git(folder, "ls-files", "--error-unmatch", os.path.basename(__file__)) is None:
        return None
    return _git(folder, "rev-parse", "HEAD") or None


@functools.cache
def git_dirty(folder: str | None = None) -> bool | None:
    """Whether the flatarch checkout that runs has changes to tracked files that are not committed;
    ``None`` where :func:`git_commit` is ``None``."""
    if git_commit(folder) is None:
        return None
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def provenance(device: torch.device | str, argv: list[str] | None = None) -> dict[str, Any]:
    """The provenance of a run on ``device`` started by ``argv`` (default: this process's)."""
    device = torch.device(device)
    record: dict[str, Any] = {
        "flatarch": __version__,
        "torch": torch.__version__,
        "device": device_name(device),
        "argv": list(sys.argv if argv is None else argv),
        "host": socket.gethostname(),
        "threads": torch.get_num_threads(),
        # (None,) as git_dirty calls git_commit: one cache entry, so git runs once for both
        "git_commit": git_commit(None),
        "git_dirty": git_dirty(None),
    }
    if device.type == "cuda":
        record["cuda"] = torch.version.cuda
        record["cudnn"] = torch.backends.cudnn.version()
    return record
