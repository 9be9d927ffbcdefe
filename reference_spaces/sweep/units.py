"""The units of work of a sweep: one search, or one training of a search's genotype.

A unit knows its folder, how to run itself (the engine's own resume rules: a unit started again
continues from its checkpoint) and whether it has finished *with its settings*: a search is
finished when its ``result.json`` records the settings the sweep asks for (the settings the
engine compares on ``--resume``, and those that decide what it reports: ``select``,
``early_stop``), a training when its ``report.json`` does. Changing a setting in the sweep file
therefore makes the affected runs unfinished; running them again extends them (more epochs) or
rewrites their result from the checkpoint (another ``select``). A change ``--resume`` would
refuse (:meth:`SearchUnit.conflicts`) is refused for the whole sweep before anything runs, naming
the run and the settings.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.config import SearchConfig, as_recorded_now
from ..errors import CheckpointError
from ..run_folder import checkpoint_settings, setting_differences

#: the file a training unit reads the searched genotype from (what the DARTS space writes)
GENOTYPE_NAME = "genotype.json"


def _read_record(path: str) -> dict[str, Any] | None:
    """A run's result file (``result.json``, ``report.json``), or ``None`` while it has none that
    records its settings."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("config"), dict) else None


def differences(saved: Mapping[str, Any], expected: Mapping[str, Any], keys: Sequence[str],
                stopped_early: bool) -> list[str]:
    """Settings of a finished run that differ from the expected ones. ``epochs`` must be equal,
    except that a run which stopped early is final for any larger ``epochs`` (the engine does not
    continue it)."""
    changes = setting_differences(saved, expected, [k for k in keys if k != "epochs"])
    old, new = saved.get("epochs"), expected.get("epochs")
    if "epochs" in keys and old != new and not (stopped_early and old is not None and new is not None
                                                 and old <= new):
        changes.append(f"epochs: {old!r} -> {new!r}")
    return changes


def _conflicts(folder: str, expected: Mapping[str, Any], keys: Sequence[str],
               as_now: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict) -> list[str]:
    """The settings in which the checkpoint in ``folder`` (read by ``as_now``, as ``RunFolder.check``
    reads it) differs from ``expected`` as ``--resume`` refuses them (``epochs`` may grow); ``[]``
    without a readable checkpoint (a damaged one fails its unit when it runs, naming the file)."""
    try:
        recorded = checkpoint_settings(folder)
    except CheckpointError:
        return []
    return [] if recorded is None else setting_differences(as_now(recorded), expected, keys)


@dataclass(frozen=True)
class SearchUnit:
    """One search. ``config`` is what runs (``out`` = ``folder``); ``resolved`` the same with every
    default filled, as ``result.json`` records it."""

    key: str
    folder: str
    config: SearchConfig
    resolved: SearchConfig

    kind = "search"

    def run(self) -> None:
        from ..engine.loop import search_one

        search_one(self.config.replace(out=self.folder, resume=True, restart=False, progress=False))

    def result(self) -> dict[str, Any] | None:
        from ..engine.loop import RESULT_NAME

        return _read_record(os.path.join(self.folder, RESULT_NAME))

    def changed(self) -> list[str] | None:
        """``None`` while there is no result; else the settings in which it differs from this unit's (those
        ``--resume`` compares, and those that decide what it reports: running it again rewrites the result)."""
        from ..engine.loop import REPORTING, RESUME_KEYS

        result = self.result()
        if result is None:
            return None
        return differences(as_recorded_now(result["config"]), self.resolved.to_json(), (*RESUME_KEYS, *REPORTING),
                           bool(result.get("stopped_early")))

    def conflicts(self) -> list[str]:
        """The settings in which this run's checkpoint differs from the unit's as ``--resume`` refuses them."""
        from ..engine.loop import RESUME_KEYS

        return _conflicts(self.folder, self.resolved.to_json(), RESUME_KEYS, as_recorded_now)


@dataclass(frozen=True)
class TrainSpec:
    """The ``flatarch train`` of every DARTS-space genotype a sweep finds: on each of ``datasets``,
    with ``config``, data from ``data_dir``; ``threads`` torch threads. ``seed_from_search``: each
    training takes its search's seed (a genotype of seed S trained with seed S), not ``config.seed``."""

    datasets: tuple[str, ...]
    config: Any  # TrainConfig
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"
    threads: int = 1
    seed_from_search: bool = True

    def for_search(self, seed: int) -> TrainSpec:
        if not self.seed_from_search:
            return self
        return dataclasses.replace(self, config=dataclasses.replace(self.config, seed=seed))


@dataclass(frozen=True)
class TrainUnit:
    """One training of the genotype in ``run_folder`` on ``dataset``, written to ``folder``."""

    key: str
    folder: str
    run_folder: str
    dataset: str
    spec: TrainSpec

    kind = "train"

    @property
    def genotype_path(self) -> str:
        return os.path.join(self.run_folder, GENOTYPE_NAME)

    def run(self) -> None:
        import torch

        from ..darts.train import train_genotype

        torch.set_num_threads(self.spec.threads)
        train_genotype(self.genotype_path, self.dataset, config=self.spec.config, data_dir=self.spec.data_dir,
                       download=self.spec.download, device=self.spec.device, out_dir=self.folder, resume=True)

    def result(self) -> dict[str, Any] | None:
        from ..darts.train import REPORT_NAME

        return _read_record(os.path.join(self.folder, REPORT_NAME))

    def _expected(self, **extra: Any) -> tuple[dict[str, Any], list[str]]:
        """The settings this training records (with ``extra``) and those a resume compares."""
        from ..darts.train import recorded_settings, resume_keys

        expected = recorded_settings(self.spec.config.resolved(self.dataset), {**extra, "dataset": self.dataset}, 1)
        return expected, resume_keys(expected)

    def changed(self) -> list[str] | None:
        from ..darts import genotype as G

        report = self.result()
        if report is None:
            return None
        try:
            genotype = G.to_json(G.load(self.genotype_path))
        except (OSError, ValueError):
            return ["genotype: the search's genotype.json is missing or unreadable"]
        expected, keys = self._expected(genotype=genotype)
        return differences(report["config"], expected, keys, bool(report.get("stopped_early")))

    def conflicts(self) -> list[str]:
        """As :meth:`SearchUnit.conflicts`, but for the genotype: that is what its search finds, not a setting."""
        return _conflicts(self.folder, *self._expected())


Unit = SearchUnit | TrainUnit
