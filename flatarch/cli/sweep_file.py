"""The sweep file of ``flatarch sweep FILE``: a TOML description of a grid of searches.

::

    [grid]        # lists, crossed: one search per combination
    space = ["nb201"]
    method = ["darts", "pcdarts"]
    optimizer = ["first-order", "a2m"]
    seed = [1, 2, 3, 4, 5]
    # dataset = ["cifar10", "cifar100"]   # where the search dataset varies

    [settings]    # every `flatarch search` option, by its long name, for every run
    dataset = "cifar10"
    data-dir = "data"
    epochs = 50

    [methods.pcdarts]   # optional: settings for the runs of one method only (they win over [settings])
    recipe = "original"

    [train]       # optional, DARTS-space runs: `flatarch train` of each found genotype
    datasets = ["cifar10", "cifar100"]
    data-dir = "data"

    [run]
    backend = "local"          # local | slurm | ray
    workers = 2
    root = "runs/table2"

A ``[settings]`` or ``[train]`` key is the option's long name without the dashes (``batch-size``),
the same with underscores (``batch_size``), or the setting it sets (``cells_per_stage`` for
``--cells``); ``key = value`` means ``--key value``, ``key = true`` a flag, ``key = false`` its
absence (``--no-key`` where the option has one), a list an option taking several values. The
options are those of the ``flatarch search`` and ``flatarch train`` parsers themselves, so every
option they have works here and is checked the same way. The grid axes may be set once in
``[settings]`` instead of ``[grid]``, not in both. ``[methods.NAME]`` holds settings for the runs of
method NAME only (a method's recipe, beta-DARTS' weights), winning over ``[settings]``. The sweep
chooses each run's folder and resumes it: ``out``, ``resume``, ``restart``, ``seeds`` and ``workers`` are not settings.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flatarch.reference_spaces.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLES = ("grid", "settings", "methods", "train", "run")
#: `flatarch search` options a sweep sets itself, and why
SEARCH_MANAGED = {
    "out": "each run's folder is ROOT/SPACE/METHOD-OPTIMIZER/seed-N",
    "resume": "a sweep resumes every unfinished run",
    "restart": "a sweep never discards a run; move its folder away to start it over",
    "seeds": "list the seeds in [grid] seed",
    "workers": "set workers in [run]",
}
TRAIN_MANAGED = {
    "genotype": "each run trains the genotype its search found",
    "dataset": "list the datasets in [train] datasets",
    "out": "each training's folder is RUN/train-DATASET",
    "resume": "a sweep resumes every unfinished training",
    "restart": "a sweep never discards a training; move its folder away to start it over",
}
RUN_KEYS = ("backend", "root", "workers")


class SweepFileError(UsageError):
    """The sweep file cannot be used as written; the message names the key and what to change."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of printing usage and exiting."""

    def error(self, message: str):
        raise SweepFileError(message)


def _subcommand_parser(module: Any, name: str) -> argparse.ArgumentParser:
    subparsers = _Parser(prog="flatarch").add_subparsers()
    module.register(subparsers)
    return subparsers.choices[name]


def _flags(action: argparse.Action) -> list[str]:
    """The action's long flags, without the ``--no-`` forms a boolean option adds."""
    negative = isinstance(action, argparse.BooleanOptionalAction)
    return [f for f in action.option_strings if f.startswith("--") and not (negative and f.startswith("--no-"))]


def _long_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every spelling a key may use -> the option's action."""
    names: dict[str, argparse.Action] = {}
    for action in parser._actions:  # the parser's own list of its options
        for flag in _flags(action):
            if flag != "--help":
                for spelling in (flag[2:], flag[2:].replace("-", "_"), action.dest):
                    names.setdefault(spelling, action)
    return names


def _argv(table: str, settings: Mapping[str, Any], options: dict[str, argparse.Action],
          managed: Mapping[str, str]) -> list[str]:
    """Command-line arguments meaning ``settings``."""
    argv: list[str] = []
    for key, value in settings.items():
        action = options.get(key)
        reason = managed.get(key) or (managed.get(action.dest) if action is not None else None)
        if reason:
            raise SweepFileError(f"[{table}] {key} is set by the sweep ({reason}); remove it")
        if action is None:
            valid = sorted({_flags(a)[0][2:] for a in options.values() if a.dest not in managed})
            raise SweepFileError(f"[{table}] {key} is not an option; valid: {', '.join(valid)}")
        flag = _flags(action)[0]
        if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
            if not isinstance(value, bool):
                raise SweepFileError(f"[{table}] {key} is a switch: write {key} = true or {key} = false")
            if value:
                argv.append(flag)
            elif isinstance(action, argparse.BooleanOptionalAction):
                argv.append("--no-" + flag[2:])
        elif action.nargs in (None, "?"):
            if isinstance(value, (list, dict)):
                raise SweepFileError(f"[{table}] {key} takes one value, got {value!r}")
            argv.append(f"{flag}={value}")
        else:
            values = value if isinstance(value, list) else [value]
            argv += [flag, *map(str, values)]
    return argv


def _table(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise SweepFileError(f"{name} must be a table: [{name}] followed by key = value lines")
    return dict(value)


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SweepFileError(f"cannot read the sweep file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepFileError(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        raise SweepFileError(f"{path}: unknown key {unknown[0]!r}; a sweep file has the tables "
                             f"{', '.join(f'[{t}]' for t in TABLES)}")
    return data


def _axes(options: dict[str, argparse.Action], axes: Sequence[str]) -> dict[str, str]:
    """Every spelling of an axis (``arch-lr``, ``arch_lr``, ``cells``...) -> the setting's name."""
    return {spelling: action.dest for spelling, action in options.items() if action.dest in axes}


def _grid(data: Mapping[str, Any], search_options: dict[str, argparse.Action],
          train_options: dict[str, argparse.Action]) -> dict[str, list[Any]]:
    """``[grid]``: axis -> its values, keyed as written; training settings as ``train.NAME``."""
    from flatarch.reference_spaces.sweep import AXES, TRAIN_AXIS

    grid = _table(data, "grid")
    if not grid:
        raise SweepFileError("the grid is empty; give [grid] lists of settings, e.g. seed = [1, 2, 3]")
    train = grid.pop("train", None)
    if train is not None:
        if not isinstance(train, dict):
            raise SweepFileError("[grid] train must be a table of training settings, e.g. train.cutout = [0, 16]")
        train_axes = _axes(train_options, [a.dest for a in train_options.values() if a.dest not in TRAIN_MANAGED])
        for key in train:
            if key not in train_axes:
                raise SweepFileError(f"[grid] train.{key} is not a training setting; the training axes are "
                                     f"{', '.join(sorted(set(train_axes.values())))}")
        if "train" not in data:
            raise SweepFileError("[grid] train.* varies the trainings of the genotypes, and the file has no [train] "
                                 "table; add [train] with datasets = [...]")
        grid.update({TRAIN_AXIS + key: values for key, values in train.items()})
    search_axes = _axes(search_options, AXES)
    for key, values in grid.items():
        if not key.startswith(TRAIN_AXIS) and key not in search_axes:
            raise SweepFileError(f"[grid] {key} is not a grid axis; the axes are the settings of flatarch search "
                                 f"({', '.join(sorted(set(search_axes.values())))}) and train.NAME for the settings "
                                 "of flatarch train")
        if not isinstance(values, list):
            raise SweepFileError(f"[grid] {key} must be a list, e.g. {key} = [{values!r}]; or set it in [settings]")
        if not values:
            raise SweepFileError(f"[grid] {key} is empty: the grid has no run; list at least one value")
        if len({repr(v) for v in values}) != len(values):
            raise SweepFileError(f"[grid] {key} lists a value twice: {values}")
    return grid


def _method_settings(data: Mapping[str, Any], methods: list[str], options: dict[str, argparse.Action],
                     grid: Mapping[str, Any]) -> dict[str, list[str]]:
    """``[methods.NAME]``: the extra arguments of each method's runs."""
    from flatarch.reference_spaces.sweep import GRID_KEYS

    out = {}
    for name, table in _table(data, "methods").items():
        if not isinstance(table, dict):
            raise SweepFileError(f"[methods] {name} must be a table: [methods.{name}] followed by key = value lines")
        if name not in methods:
            raise SweepFileError(f"[methods.{name}]: {name} is not a method of the sweep ({', '.join(methods)})")
        axes = sorted(k for k in table if k in GRID_KEYS or k in grid)
        if axes:
            raise SweepFileError(f"[methods.{name}] {axes[0]} is a grid axis; set it in [grid] or [settings]")
        out[name] = _argv(f"methods.{name}", table, options, SEARCH_MANAGED)
    return out


@dataclass
class GridPoints:
    """The grid's runs: each one's search settings, the values of its axes beyond the folder
    layout's (by setting name; training settings as ``train.NAME``) and its ``[train]`` table."""

    configs: list[Any]
    axes: list[dict[str, Any]]
    trains: list[dict[str, Any] | None]
    dataset_in_path: bool


def grid_points(data: Mapping[str, Any]) -> GridPoints:
    """Every grid point of the sweep file, its search settings parsed and checked as ``flatarch search``'s."""
    from flatarch.cli import search, train
    from flatarch.reference_spaces.engine import SearchConfig
    from flatarch.reference_spaces.sweep import GRID_KEYS, TRAIN_AXIS

    parser = _subcommand_parser(search, "search")
    options = _long_options(parser)
    grid, settings = _grid(data, options, _long_options(_subcommand_parser(train, "train"))), _table(data, "settings")
    names = {key: key if key.startswith(TRAIN_AXIS) else options[key].dest for key in grid}
    both = sorted(k for k in settings if k in grid or options.get(k) and options[k].dest in names.values())
    if both:
        raise SweepFileError(f"{both[0]} is in [grid] and in [settings]; keep one")
    common = _argv("settings", settings, options, SEARCH_MANAGED)
    methods = grid.get("method") or [settings.get("method", SearchConfig.method)]
    per_method = _method_settings(data, methods, options, grid)
    points = GridPoints([], [], [], "dataset" in names.values())
    for values in itertools.product(*grid.values()):
        chosen = dict(zip(grid, values))
        searched = {k: v for k, v in chosen.items() if not k.startswith(TRAIN_AXIS)}
        point = _argv("grid", searched, options, SEARCH_MANAGED)
        config = search.config_from_args(parser.parse_args([*common, *point, "--out=."]))
        if config.method in per_method:
            argv = [*common, *per_method[config.method], *point, "--out=."]
            config = search.config_from_args(parser.parse_args(argv))
        points.configs.append(config)
        points.axes.append({names[k]: v for k, v in chosen.items() if names[k] not in GRID_KEYS})
        trained = {k[len(TRAIN_AXIS):]: v for k, v in chosen.items() if k.startswith(TRAIN_AXIS)}
        points.trains.append({**_table(data, "train"), **trained} if "train" in data else None)
    return points


def train_spec(table: dict[str, Any]):
    """A ``[train]`` table (with a grid point's training axes) as a :class:`TrainSpec`."""
    from flatarch.cli import train
    from flatarch.reference_spaces.sweep import TrainSpec

    table = dict(table)
    datasets = table.pop("datasets", None)
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise SweepFileError("[train] needs datasets = [...], the datasets to train each genotype on")
    parser = _subcommand_parser(train, "train")
    args = parser.parse_args([*_argv("train", table, _long_options(parser), TRAIN_MANAGED), "--genotype=found"])
    own = train.invocation(args)  # (checked first, as flatarch train does)
    return TrainSpec(tuple(datasets), train.config_from_args(args), **own, seed_from_search="seed" not in table)


def run_table(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``[run]``: backend, root (default ``runs/FILE-STEM``), workers and the backend's options."""
    from flatarch.reference_spaces.sweep.backends import BACKENDS, check_options

    table = _table(data, "run")
    backend = table.pop("backend", "local")
    if backend not in BACKENDS:
        raise SweepFileError(f"[run] backend {backend!r} is unknown; choose one of: {', '.join(BACKENDS)}")
    root = table.pop("root", os.path.join("runs", os.path.splitext(os.path.basename(path))[0]))
    workers = table.pop("workers", None)
    if not isinstance(root, str) or not root:
        raise SweepFileError("[run] root must be a folder path, e.g. root = \"runs/table2\"")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SweepFileError(f"[run] workers must be a whole number >= 1, got {workers!r}")
    return {"backend": backend, "root": root, "workers": workers, "options": check_options(backend, table)}


def read_sweep_file(path: str):
    """The :class:`SweepPlan` of the sweep file at ``path``, every run's settings checked
    (nothing is written)."""
    from flatarch.reference_spaces.sweep import SweepPlan, plan_runs

    data = read_toml(path)
    run = run_table(data, path)
    points = grid_points(data)
    specs = {}  # one TrainSpec per distinct [train] table (a training axis makes several)
    for table in points.trains:
        if table is not None and repr(table) not in specs:
            specs[repr(table)] = train_spec(table)
    trains = [None if t is None else specs[repr(t)] for t in points.trains]
    runs = plan_runs(run["root"], points.configs, trains, points.dataset_in_path, points.axes)
    return SweepPlan(root=os.path.abspath(run["root"]), runs=runs, backend=run["backend"], workers=run["workers"],
                     options=run["options"])
