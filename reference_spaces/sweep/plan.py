"""A sweep's runs: one search per grid point, in a folder named after it, with its trainings.

Folders under the root (deterministic, so that a rerun finds every run where it left it)::

    ROOT/SPACE/METHOD-OPTIMIZER/seed-SEED/                 the search (result.json, checkpoint.pt, ...)
    ROOT/SPACE/METHOD-OPTIMIZER/seed-SEED/train-DATASET/   its training on DATASET (DARTS space)

with a ``DATASET/`` level after ``SPACE/`` when the search dataset is one of the grid's axes.
``OPTIMIZER`` is the update's canonical name (``fo`` and ``first-order`` are one folder).

Every run's settings are checked here, before anything runs or is written: the search's by
:meth:`SearchConfig.resolved` with its space's defaults, the training's by :class:`TrainConfig`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flatarch.updates import canonical_update

from ..data import DATASETS
from ..engine.config import SearchConfig, SearchError
from ..errors import UsageError
from ..registry import get_space
from .units import SearchUnit, TrainSpec, TrainUnit

#: the settings a grid crosses (``[grid]`` keys); each run's folder is named after them
GRID_KEYS: tuple[str, ...] = ("space", "dataset", "method", "optimizer", "seed")
#: spaces whose genotypes ``flatarch train`` trains (:func:`~flatarch.reference_spaces.darts.train.train_genotype`)
TRAINABLE_SPACES: tuple[str, ...] = ("darts",)


class SweepError(UsageError):
    """A sweep cannot run as described; the message says what to change."""


@dataclass(frozen=True)
class Run:
    """One grid point: its search and the trainings of the genotype it finds."""

    key: str
    point: Mapping[str, Any]
    search: SearchUnit
    trains: tuple[TrainUnit, ...] = ()

    @property
    def units(self) -> tuple[SearchUnit | TrainUnit, ...]:
        return (self.search, *self.trains)


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep needs: its runs, where they live, and the engine that runs them."""

    root: str
    runs: tuple[Run, ...]
    backend: str = "local"
    workers: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the working directory relative settings (``data_dir``, tables) are relative to
    cwd: str = field(default_factory=os.getcwd)


def run_key(config: SearchConfig, dataset_in_path: bool = False) -> str:
    parts = [config.space, *([config.dataset] if dataset_in_path else []),
             f"{config.method}-{canonical_update(config.optimizer)}", f"seed-{config.seed}"]
    return "/".join(parts)


class _SpaceDefaults:
    """Each space's defaults, built once per (space, options): a table is read once, not per run."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, Any]] = {}

    def __call__(self, config: SearchConfig) -> dict[str, Any]:
        key = json.dumps([config.space, config.space_options], sort_keys=True, default=str)
        if key not in self._cache:
            try:
                self._cache[key] = dict(get_space(config.space, **config.space_options).defaults)
            except TypeError as exc:
                raise SearchError(f"--space {config.space} does not take these options: {exc}") from None
        return self._cache[key]


def plan_runs(root: str, configs: Sequence[SearchConfig], train: TrainSpec | None = None,
              dataset_in_path: bool = False) -> tuple[Run, ...]:
    """The runs of ``configs`` (one search each) under ``root``, every setting checked;
    ``train``: the trainings of each DARTS-space run's genotype."""
    root = os.path.abspath(root)
    if not configs:
        raise SweepError("the grid is empty: give [grid] at least one value for each key it lists")
    if train is not None:
        _check_train(train, configs)
    defaults = _SpaceDefaults()
    runs: dict[str, Run] = {}
    for config in configs:
        key = run_key(config, dataset_in_path)
        if key in runs:
            raise SweepError(f"two runs of the grid share the folder {key}; list each value once")
        folder = os.path.join(root, *key.split("/"))
        config = config.replace(out=folder, resume=False, restart=False, progress=False)
        try:
            resolved = config.resolved(defaults(config))
        except UsageError as exc:
            raise SweepError(f"run {key}: {exc}") from None
        search = SearchUnit(key, folder, config, resolved)
        trains = tuple(TrainUnit(f"{key}/train-{d}", os.path.join(folder, f"train-{d}"), folder, d,
                                 train.for_search(config.seed))
                       for d in (train.datasets if train and config.space in TRAINABLE_SPACES else ()))
        point = {name: getattr(config, name) for name in GRID_KEYS}
        point["optimizer"] = canonical_update(config.optimizer)
        runs[key] = Run(key, point, search, trains)
    return tuple(runs.values())


def _check_train(train: TrainSpec, configs: Sequence[SearchConfig]) -> None:
    if not train.datasets:
        raise SweepError("[train] datasets is empty; list the datasets to train on, e.g. datasets = [\"cifar10\"]")
    unknown = [d for d in train.datasets if d not in DATASETS]
    if unknown:
        raise SweepError(f"[train] dataset {unknown[0]!r} is unknown; choose from: {', '.join(DATASETS)}")
    if len(set(train.datasets)) != len(train.datasets):
        raise SweepError(f"[train] datasets lists a dataset twice: {list(train.datasets)}")
    if not any(c.space in TRAINABLE_SPACES for c in configs):
        raise SweepError(f"[train] trains genotypes of the {', '.join(TRAINABLE_SPACES)} space, and the grid has "
                         "no such run; drop [train] or add space = \"darts\"")
    for dataset in train.datasets:
        train.config.resolved(dataset)
