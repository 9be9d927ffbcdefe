"""A sweep's runs: one search per grid point, in a folder named after it, with its trainings.

Folders under the root (deterministic, so that a rerun finds every run where it left it)::

    ROOT/SPACE/METHOD-OPTIMIZER/seed-SEED/                 the search (result.json, checkpoint.pt, ...)
    ROOT/SPACE/METHOD-OPTIMIZER/seed-SEED/train-DATASET/   its training on DATASET (DARTS space)

with a ``DATASET/`` level after ``SPACE/`` when the search dataset is one of the grid's axes, and
one ``NAME-VALUE/`` level per further axis (any search setting, e.g. ``rho-0.01/``; a training
setting as ``train.NAME-VALUE/``) before ``seed-SEED/``, in the grid's order.
``OPTIMIZER`` is the update's canonical name (``fo`` and ``first-order`` are one folder).

Every run's settings are checked here, before anything runs or is written: the search's by
:meth:`SearchConfig.resolved` with its space's defaults, the training's by :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
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

#: the settings every run's folder is named after (the layout of table 2); any other search setting
#: (:data:`AXES`) or training setting may be a grid axis too, with a folder level of its own
GRID_KEYS: tuple[str, ...] = ("space", "dataset", "method", "optimizer", "seed")
#: search settings a sweep sets itself or that do not change a result: never an axis
NOT_AXES: tuple[str, ...] = ("out", "resume", "restart", "progress", "plot", "tag", "log_to", "space_options")
#: every search setting a grid may vary: the :class:`SearchConfig` fields but :data:`NOT_AXES`
AXES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SearchConfig) if f.name not in NOT_AXES)
#: the prefix of a training setting as an axis (``train.drop_path_prob``)
TRAIN_AXIS = "train."
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

    @property
    def axes(self) -> dict[str, Any]:
        """The values of the axes beyond :data:`GRID_KEYS` (``{"rho": 0.01}``), in the grid's order."""
        return {k: v for k, v in self.point.items() if k not in GRID_KEYS}


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


def axis_value(value: Any) -> str:
    """An axis value as a folder name and report label: ``0.01``, ``1e-05``, ``true``, ``0.5x0.999``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "x".join(axis_value(v) for v in value)
    return str(value).replace(os.sep, "_")


def run_key(config: SearchConfig, dataset_in_path: bool = False, axes: Mapping[str, Any] | None = None) -> str:
    """``SPACE/[DATASET/]METHOD-OPTIMIZER/[NAME-VALUE/...]seed-SEED``; ``axes``: the further axes' values."""
    parts = [config.space, *([config.dataset] if dataset_in_path else []),
             f"{config.method}-{canonical_update(config.optimizer)}",
             *(f"{name}-{axis_value(value)}" for name, value in (axes or {}).items()), f"seed-{config.seed}"]
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


def plan_runs(root: str, configs: Sequence[SearchConfig], train: TrainSpec | Sequence[TrainSpec | None] | None = None,
              dataset_in_path: bool = False, axes: Sequence[Mapping[str, Any]] | None = None) -> tuple[Run, ...]:
    """The runs of ``configs`` (one search each) under ``root``, every setting checked;
    ``train``: the trainings of each DARTS-space run's genotype (one spec, or one per config when
    a training setting is an axis); ``axes``: per config, the values of the axes beyond
    :data:`GRID_KEYS` (search settings by field name, training settings as ``train.NAME``)."""
    root = os.path.abspath(root)
    if not configs:
        raise SweepError("the grid is empty: give [grid] at least one value for each key it lists")
    trains = list(train) if isinstance(train, Sequence) else [train] * len(configs)
    axes = list(axes) if axes is not None else [{}] * len(configs)
    for spec in {id(t): t for t in trains if t is not None}.values():
        _check_train(spec, configs)
    defaults = _SpaceDefaults()
    runs: dict[str, Run] = {}
    for config, spec, extra in zip(configs, trains, axes):
        key = run_key(config, dataset_in_path, extra)
        if key in runs:
            raise SweepError(f"two runs of the grid share the folder {key}; list each value once")
        folder = os.path.join(root, *key.split("/"))
        config = config.replace(out=folder, resume=False, restart=False, progress=False)
        try:
            resolved = config.resolved(defaults(config))
        except UsageError as exc:
            raise SweepError(f"run {key}: {exc}") from None
        search = SearchUnit(key, folder, config, resolved)
        trainings = tuple(TrainUnit(f"{key}/train-{d}", os.path.join(folder, f"train-{d}"), folder, d,
                                    spec.for_search(config.seed))
                          for d in (spec.datasets if spec and config.space in TRAINABLE_SPACES else ()))
        point = {**{name: getattr(config, name) for name in GRID_KEYS}, **extra}
        point["optimizer"] = canonical_update(config.optimizer)
        runs[key] = Run(key, point, search, trainings)
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
