"""The output folder of one run (a search, a training): what may be done with it is decided
before any work starts, so that a refused command leaves every file as it was.

Rules, the same for ``flatarch search`` and ``flatarch train``:

* ``--out`` naming a file, or a folder that cannot be written, is refused before anything runs.
* A folder that already holds a run is refused unless the command says what to do with it:
  ``--resume`` continues it from its checkpoint; ``--restart`` starts over and moves the old
  run's files into ``OUT/replaced-<time>/`` (never deleted).
* ``--resume`` refuses a checkpoint made with other settings, naming each difference; only
  ``epochs`` may grow (the run is extended). ``--resume`` where there is no run yet starts one
  and says so.
* The checkpoint is a run's one commit point: every other file of the run is derived from it and
  written after it, so ``--resume`` continues from any instant a kill can stop a run at. A folder
  whose run files are only those of a first epoch that never reached its checkpoint (an older
  flatarch wrote its log first) holds nothing the rerun does not rewrite: ``--resume`` starts the
  run there and says so. Temporary files of a killed write are removed when the run opens.
* A damaged checkpoint is named, with what to do; it is never deleted.

:class:`RunFolder` does the checks (:meth:`RunFolder.check`) separately from the first write
(:meth:`RunFolder.open`), so callers can build and validate everything in between.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from flatarch.atomic_files import atomic_write, remove_temporaries

from .errors import CheckpointError, DivergedError, RunFolderError

CHECKPOINT_NAME = "checkpoint.pt"
#: settings that may differ on --resume: a run may be extended to more epochs
EXTENDABLE = ("epochs",)
#: keys of nested settings that say where results are looked up, not how the run runs (a benchmark
#: table's path): never compared
LOOKUPS = ("table",)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def check_writable(out: str) -> None:
    """Refuse an ``--out`` that is a file or lies where nothing can be written (read-only mount,
    no permission), by creating and removing a probe file in the nearest existing folder."""
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunFolderError(f"--out {out} is a file, not a folder; choose a folder path for the run")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunFolderError(f"--out {out} lies under {existing}, which is a file; choose a folder path for the run")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".flatarch-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunFolderError(
            f"--out {out} cannot be written ({exc.strerror or exc} in {existing}); choose a writable folder"
        ) from None


def read_checkpoint(path: str, mmap: bool = False) -> dict[str, Any]:
    """``torch.load`` of a checkpoint (tensors and plain data only), or a :class:`CheckpointError`
    naming the file and what to do; ``mmap``: the tensors are read only when used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # a truncated zip, a foreign pickle, an unreadable file: all the same to the user
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is damaged or not a flatarch checkpoint ({detail[:160]}); start over with --restart "
            "(the damaged file is moved aside, not deleted) or restore the file from a copy"
        ) from None
    if not isinstance(state, dict) or "config" not in state or "epoch" not in state:
        raise CheckpointError(
            f"{path} is not a flatarch checkpoint (no config or epoch in it); start over with --restart "
            "(the file is moved aside, not deleted) or choose another --out"
        )
    return state


def checkpoint_settings(out: str | None) -> dict[str, Any] | None:
    """The settings the checkpoint in ``out`` records (what ``--resume`` takes where the command gives
    none), or ``None`` when there is no checkpoint."""
    path = os.path.join(out, CHECKPOINT_NAME) if out else None
    if path is None or not os.path.exists(path):
        return None
    return dict(read_checkpoint(path, mmap=True)["config"])


def recorded_fields(cls: type, recorded: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of the dataclass ``cls`` that ``recorded`` (a checkpoint's settings) holds, but for ``skip``."""
    skip = set(skip)
    return {f.name: recorded[f.name] for f in dataclasses.fields(cls) if f.name in recorded and f.name not in skip}


def written_as(path: str, content: Mapping[str, Any]) -> bool:
    """Whether the JSON file at ``path`` (a result or report derived from the checkpoint) holds
    ``content``, its ``provenance`` aside: that names the command that wrote it, not what it holds.
    ``False`` for a missing or damaged file."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return False

    def text(obj: Mapping[str, Any]) -> str:
        return json.dumps({**obj, "provenance": None}, default=str)

    return isinstance(saved, dict) and text(saved) == text(json.loads(json.dumps(content, default=str)))


def setting_differences(saved: Mapping[str, Any], now: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """``"key: saved -> now"`` for every key whose value differs (``epochs`` may only grow)."""
    changes = []
    for key in keys:
        old, new = saved.get(key), now.get(key)
        if key in EXTENDABLE and old is not None and new is not None and new >= old:
            continue
        if _normalise(old) != _normalise(new):
            changes.append(f"{key}: {old!r} -> {new!r}")
    return changes


def _normalise(value: Any) -> Any:
    # JSON round trips turn tuples into lists; both mean the same setting
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items() if k not in LOOKUPS}
    return value


def assert_finite_state(tensors: Mapping[str, torch.Tensor], epoch: int, hint: str) -> None:
    """Raise :class:`DivergedError` when any floating-point tensor holds NaN/Inf (one host sync),
    so that a checkpoint never stores diverged weights."""
    named = [(n, t) for n, t in tensors.items() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not named:
        return
    flags = torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named]).tolist()
    if not all(flags):
        bad = next(name for (name, _), ok in zip(named, flags) if not ok)
        raise DivergedError(
            f"the weights became NaN/Inf in epoch {epoch} (first: {bad}); nothing was saved for that epoch "
            f"and the last good checkpoint is kept. {hint}"
        )


class RunFolder:
    """One run's output folder.

    Args:
        out: the folder (``None``: the run keeps nothing on disk, every check passes).
        files: names of the files and folders the run writes there (moved aside by ``restart``).
        finished: the file a finished run leaves (``result.json``, ``report.json``).
        log: the run's JSON-lines log, one line per epoch, if it keeps one.
        resume, restart: what the command asked for (at most one).
        say: where notices go (stderr by default).
    """

    def __init__(self, out: str | None, *, files: Sequence[str], finished: str, log: str | None = None,
                 resume: bool = False, restart: bool = False, say: Callable[[str], None] = _stderr):
        if resume and restart:
            raise RunFolderError("--resume continues a run and --restart starts it over; give one of them")
        if (resume or restart) and not out:
            flag = "--resume" if resume else "--restart"
            raise RunFolderError(f"{flag} needs --out, the folder of the run")
        self.out = out
        self.files = tuple(files)
        self.finished = finished
        self.log = log
        self.resume = resume
        self.restart = restart
        self.say = say
        self._existing: list[str] = []

    def path(self, name: str) -> str | None:
        return os.path.join(self.out, name) if self.out else None

    @property
    def checkpoint_path(self) -> str | None:
        return self.path(CHECKPOINT_NAME)

    def check(self, settings: Mapping[str, Any], keys: Iterable[str],
              as_now: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict) -> dict[str, Any] | None:
        """Everything that can refuse the run, before anything is written. Returns the checkpoint to
        resume from (its ``config``, read by ``as_now``, matching ``settings`` on ``keys``), or ``None``
        to start fresh."""
        if not self.out:
            return None
        check_writable(self.out)
        self._existing = [n for n in (*self.files, CHECKPOINT_NAME) if os.path.exists(os.path.join(self.out, n))]
        if not self._existing:
            if self.resume:
                self.say(f"--resume: no run in {self.out} yet; starting a new one there")
            return None
        if self.restart:
            return None
        if not self.resume:
            raise RunFolderError(
                f"{self.out} already holds a run; pass --resume to continue it, --restart to start over (the old "
                "files are moved aside), or choose another --out"
            )
        if not os.path.exists(self.checkpoint_path):
            return self._uncommitted()
        state = read_checkpoint(self.checkpoint_path)
        changes = setting_differences(as_now(state["config"]), settings, keys)
        if changes:
            raise CheckpointError(
                f"--resume: the checkpoint in {self.out} was made with other settings ({'; '.join(changes)}); "
                "rerun with the original settings, pass --restart to start over, or choose another --out"
            )
        saved_epochs, epochs = state["config"].get("epochs"), settings.get("epochs")
        if saved_epochs is not None and epochs is not None and epochs > saved_epochs:
            self.say(f"--resume: extending the run in {self.out} from {saved_epochs} to {epochs} epochs "
                     f"(the cosine learning-rate schedule now runs over {epochs} epochs)")
        return state

    def _uncommitted(self) -> None:
        """``--resume`` of a folder with run files and no checkpoint: start the run there when the files
        can only be those of a first epoch that never reached its checkpoint, else refuse."""
        lines = 0
        if self.log and os.path.exists(os.path.join(self.out, self.log)):
            with open(os.path.join(self.out, self.log), "rb") as f:
                lines = sum(1 for line in f if line.strip())
        if self.finished in self._existing or lines > 1:
            raise RunFolderError(
                f"--resume: {self.out} holds a run ({', '.join(self._existing)}) but no {CHECKPOINT_NAME} to continue "
                "from; pass --restart to start over (the old files are moved aside) or choose another --out"
            )
        self.say(f"--resume: {self.out} holds {', '.join(self._existing)} but no {CHECKPOINT_NAME}: its first epoch "
                 "never reached a checkpoint, and this run rewrites those files; starting the run there")
        return None

    def open(self) -> None:
        """Create the folder; with ``restart``, move the old run's files into ``replaced-<time>/``;
        remove the temporary files a killed write of this run left."""
        if not self.out:
            return
        os.makedirs(self.out, exist_ok=True)
        if removed := remove_temporaries(self.out, (*self.files, CHECKPOINT_NAME)):
            self.say(f"removed {len(removed)} incomplete temporary file(s) of a write that was cut short "
                     f"({', '.join(os.path.basename(p) for p in removed)})")
        if self.restart and self._existing:
            aside = os.path.join(self.out, time.strftime("replaced-%Y%m%d-%H%M%S"))
            suffix = 1
            while os.path.exists(aside):
                suffix += 1
                aside = os.path.join(self.out, time.strftime("replaced-%Y%m%d-%H%M%S") + f"-{suffix}")
            os.makedirs(aside)
            for name in self._existing:
                os.replace(os.path.join(self.out, name), os.path.join(aside, name))
            self.say(f"--restart: the previous run's files are in {aside}")
            self._existing = []

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint atomically (a crash mid-write keeps the previous one)."""
        if self.out:
            atomic_write(self.checkpoint_path, lambda f: torch.save(state, f), binary=True)
