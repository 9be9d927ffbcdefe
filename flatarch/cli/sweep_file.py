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
from collections.abc import Mapping
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


def _grid(data: Mapping[str, Any]) -> dict[str, list[Any]]:
    from flatarch.reference_spaces.sweep import GRID_KEYS

    grid = _table(data, "grid")
    if not grid:
        raise SweepFileError(f"the grid is empty; give [grid] lists of {', '.join(GRID_KEYS)}, e.g. seed = [1, 2, 3]")
    for key, values in grid.items():
        if key not in GRID_KEYS:
            raise SweepFileError(f"[grid] {key} is not a grid axis; the axes are {', '.join(GRID_KEYS)} (other "
                                 "settings go in [settings])")
        if not isinstance(values, list):
            raise SweepFileError(f"[grid] {key} must be a list, e.g. {key} = [{values!r}]; or set it in [settings]")
        if not values:
            raise SweepFileError(f"[grid] {key} is empty: the grid has no run; list at least one value")
        if len({repr(v) for v in values}) != len(values):
            raise SweepFileError(f"[grid] {key} lists a value twice: {values}")
    return grid


def _method_settings(data: Mapping[str, Any], methods: list[str], options: dict[str, argparse.Action],
                     ) -> dict[str, list[str]]:
    """``[methods.NAME]``: the extra arguments of each method's runs."""
    from flatarch.reference_spaces.sweep import GRID_KEYS

    out = {}
    for name, table in _table(data, "methods").items():
        if not isinstance(table, dict):
            raise SweepFileError(f"[methods] {name} must be a table: [methods.{name}] followed by key = value lines")
        if name not in methods:
            raise SweepFileError(f"[methods.{name}]: {name} is not a method of the sweep ({', '.join(methods)})")
        axes = sorted(set(table) & set(GRID_KEYS))
        if axes:
            raise SweepFileError(f"[methods.{name}] {axes[0]} is a grid axis; set it in [grid] or [settings]")
        out[name] = _argv(f"methods.{name}", table, options, SEARCH_MANAGED)
    return out


def search_configs(data: Mapping[str, Any]) -> tuple[list[Any], bool]:
    """The :class:`SearchConfig` of every grid point, and whether the search dataset is an axis."""
    from flatarch.cli import search

    grid, settings = _grid(data), _table(data, "settings")
    both = sorted(set(grid) & set(settings))
    if both:
        raise SweepFileError(f"{both[0]} is in [grid] and in [settings]; keep one")
    parser = _subcommand_parser(search, "search")
    options = _long_options(parser)
    common = _argv("settings", settings, options, SEARCH_MANAGED)
    methods = grid.get("method") or [settings.get("method", parser.get_default("method"))]
    per_method = _method_settings(data, methods, options)
    configs = []
    for values in itertools.product(*grid.values()):
        point = _argv("grid", dict(zip(grid, values)), options, SEARCH_MANAGED)
        args = parser.parse_args([*common, *point, "--out=."])
        if args.method in per_method:
            args = parser.parse_args([*common, *per_method[args.method], *point, "--out=."])
        configs.append(search.config_from_args(args))
    return configs, "dataset" in grid


def train_spec(data: Mapping[str, Any]):
    """The ``[train]`` table as a :class:`TrainSpec`, or ``None``."""
    from flatarch.cli import train
    from flatarch.reference_spaces.sweep import TrainSpec

    if "train" not in data:
        return None
    table = _table(data, "train")
    datasets = table.pop("datasets", None)
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise SweepFileError("[train] needs datasets = [...], the datasets to train each genotype on")
    parser = _subcommand_parser(train, "train")
    args = parser.parse_args([*_argv("train", table, _long_options(parser), TRAIN_MANAGED), "--genotype=found"])
    return TrainSpec(tuple(datasets), train.config_from_args(args), data_dir=args.data_dir, download=args.download,
                     device=args.device, threads=args.threads, seed_from_search="seed" not in table)


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
    configs, dataset_in_path = search_configs(data)
    runs = plan_runs(run["root"], configs, train_spec(data), dataset_in_path)
    return SweepPlan(root=os.path.abspath(run["root"]), runs=runs, backend=run["backend"], workers=run["workers"],
                     options=run["options"])
