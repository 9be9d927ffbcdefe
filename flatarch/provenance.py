"""Where a result came from: the one ``"provenance"`` object of every ``result.json``,
``report.json``, ``summary.json`` and sweep report.

Keys: ``flatarch`` and ``torch`` (versions), ``device`` (the device that ran, named as a person
would: ``"cpu"`` or ``"cuda:0 NVIDIA H100 80GB HBM3"``), ``argv`` (the command line), ``host``,
``threads`` (torch's CPU threads), ``git_commit`` (of the flatarch checkout that ran, ``None`` for
an installed copy) and, when the device is a GPU, ``cuda`` and ``cudnn`` (the versions torch uses).
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


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout flatarch runs from, or ``None`` (an installed copy, no git)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        done = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


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
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        record["cuda"] = torch.version.cuda
        record["cudnn"] = torch.backends.cudnn.version()
    return record
