"""Training a genotype from scratch (DARTS evaluation protocol, paper table 5).

Per step: ``objective = CE(logits, y) + w_aux * CE(aux_logits, y)``, gradients clipped to norm 5,
SGD with momentum and weight decay; the learning rate follows a cosine from ``lr`` to ``lr_min``
over ``epochs`` (one scheduler step per epoch) and the drop-path probability rises linearly,
``p_e = drop_path_prob * e / epochs``.

Exact resume: the state after each epoch (weights, optimiser, scheduler, history) is written
atomically to ``checkpoint.pt``, and every epoch starts by reseeding the random generators from
``(seed, epoch, rank)``, so shuffling, augmentation and drop-path masks of epoch ``e`` do not depend
on whether the run was interrupted before it. The output folder follows the rules of
:mod:`flatarch.reference_spaces.run_folder` (``resume``/``restart``, checks before any write). The
checkpoint is the commit point: ``genotype.json`` follows the first one, and at the end
``learning_curve.png`` then ``report.json`` (last: it marks a finished training) are derived from
the last one; ``--resume`` of a finished training rewrites them when ``report.json`` does not match
it. ``--resume`` takes every setting the command does not give from the checkpoint
(:func:`from_checkpoint`).

Works on one device or under ``torchrun`` (``torch.distributed``, NCCL on CUDA, gloo on CPU):
gradients are averaged by DDP, metrics are summed over processes, only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from flatarch import distributed
from flatarch.atomic_files import atomic_write
from flatarch.provenance import provenance

from .. import numbers
from ..errors import UsageError
from ..recipes import AUTHORS_RECIPE, PAPER_RECIPE
from ..run_folder import RunFolder, assert_finite_state, checkpoint_settings, recorded_fields, written_as

REPORT_NAME = "report.json"
CURVE_NAME = "learning_curve.png"
GENOTYPE_NAME = "genotype.json"
#: what a training writes into its folder (moved aside together by --restart)
RUN_FILES = (REPORT_NAME, CURVE_NAME, GENOTYPE_NAME)
CHECKPOINT_VERSION = 2

#: paper table 5 (the original DARTS ``train.py`` for ``lr_min = 0``, see docs/darts-space.md)
PAPER_DEFAULTS: dict[str, Any] = {
    "epochs": 600, "batch_size": 96, "lr": 0.025, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3e-4,
    "grad_clip": 5.0, "auxiliary_weight": 0.4, "drop_path_prob": 0.2, "cutout": 16, "channels": 36,
    "cells_per_stage": 6,
}
#: the offline ``digits`` demo: a narrow network for a few minutes on one CPU core
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 10, "batch_size": 64, "cutout": 0, "channels": 8, "cells_per_stage": 1},
}
PAPER_SOURCE = "the A2M paper's table 5 (the original DARTS evaluation protocol)"
#: ``--recipe``: settings per dataset where a table's trainings ran otherwise than the paper's table 5
#: (``paper``, the default, changes nothing): (where it comes from, {dataset: {setting: value}})
TRAIN_RECIPES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    AUTHORS_RECIPE: (
        "AI-Tech-Research-Lab/AsquaredM sota/cnn/train.py L174-175: ImageNet16-120 images through "
        "optimizers/darts/utils.py _data_transforms_imagenet16 (L139-156), which appends no Cutout (the CIFAR "
        "transforms do, L108-110, L129-131), so the --cutout of scripts/darts-train.sh (L26) does nothing there",
        {"imagenet16-120": {"cutout": 0}}),
}
#: settings that may differ on --resume: where the data lie, the device and how it is fed, and when the run
#: evaluates or stops early (epochs may also grow)
NOT_COMPARED = ("eval_every", "stop_train_loss", "data_dir", "device", "loader_workers", "threads", "channels_last",
                "device_data")
#: :func:`train_genotype`'s arguments that its checkpoint records besides the :class:`TrainConfig`
RECORDED_ARGUMENTS = ("genotype", "dataset", "data_dir", "device")


class TrainError(UsageError):
    """A training cannot run as asked; the message says what to change."""


_RULES: dict[str, numbers.Rule] = {
    **numbers.COMMON,
    "channels": (lambda v: numbers.whole(v) and v >= 2 and v % 2 == 0, "an even whole number >= 2"),
    "auxiliary_weight": (numbers.NOT_NEGATIVE[0], "a finite number >= 0 (0 = no auxiliary head)"),
    "drop_path_prob": (numbers.FRACTION[0], "a number in [0, 1)"),
    "cutout": (numbers.NOT_NEGATIVE_WHOLE[0], "a whole number of pixels >= 0 (0 = off)"),
    "stop_train_loss": (numbers.finite, "a finite number"),
    "eval_every": numbers.AT_LEAST_ONE,
    "loader_workers": numbers.NOT_NEGATIVE_WHOLE,
}


def _flag(name: str) -> str:
    return "--cells" if name == "cells_per_stage" else "--" + name.replace("_", "-")


@dataclass
class TrainConfig:
    """Everything that determines a training; ``None`` means the default: the dataset's demo size
    (``digits``), else the paper's (:data:`PAPER_DEFAULTS`). Numbers are checked on construction."""

    epochs: int | None = None
    batch_size: int | None = None  # images per step per process
    lr: float | None = None
    lr_min: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    auxiliary_weight: float | None = None
    drop_path_prob: float | None = None
    cutout: int | None = None
    channels: int | None = None  # C of the first cells
    cells_per_stage: int | None = None  # normal cells between reductions: 3N + 2 cells in all
    seed: int = 0
    #: bf16 mixed precision (CUDA only). Off by default: at the paper's size (C=36, 20 cells, batch
    #: 96) an H200 trained 943 images/s in fp32 and 654 with bf16 (benchmarks/gpu_suite.py)
    amp: bool = False
    #: channels-last memory format. Off by default: 587 images/s with bf16, slower still (same run)
    channels_last: bool = False
    #: batches made on the device (loaders.DeviceLoader) instead of by DataLoader workers; None = on
    #: exactly when on CUDA
    device_data: bool | None = None
    #: stop after the first epoch whose mean training objective (cross-entropy plus the weighted
    #: auxiliary loss, the "train loss" the original DARTS script logs) is <= this (None = never)
    stop_train_loss: float | None = None
    #: evaluate on the test set every this many epochs (and always after the last one)
    eval_every: int = 1
    loader_workers: int = 2  # data-loading processes
    recipe: str | None = None  # a TRAIN_RECIPES name (None: the paper's settings)

    def __post_init__(self) -> None:
        numbers.check(dataclasses.asdict(self), _RULES, _flag, TrainError)
        if self.recipe not in (None, PAPER_RECIPE, *TRAIN_RECIPES):
            raise TrainError(f"--recipe {self.recipe!r} is not a training recipe; choose one of: "
                             f"{', '.join([PAPER_RECIPE, *TRAIN_RECIPES])}")
        if self.recipe == PAPER_RECIPE:  # the default, recorded as such (a resume may name it or not)
            self.recipe = None

    def recipe_settings(self, dataset: str | None) -> dict[str, Any]:
        """What the recipe sets for ``dataset`` (before the settings the command gives)."""
        return dict(TRAIN_RECIPES[self.recipe][1].get(dataset or "", {})) if self.recipe in TRAIN_RECIPES else {}

    def resolved(self, dataset: str | None = None) -> TrainConfig:
        """Every ``None`` default filled (the recipe's for the dataset, the dataset's demo size, then
        the paper's)."""
        recipe, demo = self.recipe_settings(dataset), DATASET_DEFAULTS.get(dataset or "", {})
        filled = {k: getattr(self, k) if getattr(self, k) is not None else recipe.get(k, demo.get(k, v))
                  for k, v in PAPER_DEFAULTS.items()}
        return dataclasses.replace(self, **filled)

    @property
    def layers(self) -> int:
        return 3 * self.cells_per_stage + 2


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    final_test_acc: float = float("nan")
    final_test_loss: float = float("nan")
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0


def _rank_world() -> tuple[int, int]:
    return distributed.rank(), distributed.world_size()


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    s = (seed * 1_000_003 + epoch * 1_009 + rank) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def _sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _set_loader_epoch(loader: Iterable, epoch: int) -> None:
    for owner in (loader, getattr(loader, "sampler", None)):  # a DeviceLoader, a DistributedSampler
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)
            return


def _logits(output: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux_logits)`` of a model returning either, or logits alone."""
    if isinstance(output, tuple):
        return output[0], output[1] if len(output) > 1 else None
    return output, None


def evaluate(model: nn.Module, loader: Iterable, device: torch.device, amp: bool = False,
             channels_last: bool = False) -> tuple[float, float]:
    """``(loss, accuracy %)`` of ``model`` over ``loader`` (summed over processes when distributed)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits, _ = _logits(model(x))
            sums += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                                 (logits.argmax(1) == y).sum().double(), sums.new_full((), float(y.numel()))])
    model.train(was_training)
    loss_sum, correct, total = _sum_over_processes(sums.tolist(), device)
    if total == 0:
        raise TrainError("the test loader yielded no samples")
    return loss_sum / total, 100.0 * correct / total


def _train_epoch(net: nn.Module, model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                 config: TrainConfig, device: torch.device, amp: bool, channels_last: bool) -> list[float]:
    """One pass over ``loader``; returns ``[loss sum, correct, objective sum, images]`` over processes.
    Running sums stay on the device: no host sync per step."""
    net.train()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits, aux_logits = _logits(net(x))
        loss = F.cross_entropy(logits.float(), y)
        objective = loss
        if aux_logits is not None and config.auxiliary_weight:
            objective = loss + config.auxiliary_weight * F.cross_entropy(aux_logits.float(), y)
        objective.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        n = sums.new_full((), float(y.numel()))  # new_full: no upload from the host, no sync
        sums += torch.stack([loss.detach().double() * n, (logits.argmax(1) == y).sum().double(),
                             objective.detach().double() * n, n])
    return _sum_over_processes(sums.tolist(), device)


def recorded_settings(config: TrainConfig, extra: dict[str, Any], world: int) -> dict[str, Any]:
    """What the checkpoint and ``report.json`` record and ``--resume`` compares."""
    return {**dataclasses.asdict(config), **extra, "world_size": world}


def resume_keys(settings: dict[str, Any]) -> list[str]:
    """The recorded settings that must match for ``--resume`` (the others do not change the result)."""
    return [k for k in settings if k not in NOT_COMPARED]


@dataclass
class _Run:
    """A training's moving parts, built once, restored from a checkpoint when resuming."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    result: TrainResult
    start_epoch: int = 0

    def state(self, epoch: int, settings: dict[str, Any], stopped: bool) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "epoch": epoch,
                "history": self.result.history, "stopped_early": stopped, "config": settings}

    def restore(self, state: dict[str, Any], path: str, epochs: int) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise TrainError(f"{path} was written by another flatarch version; pass --restart to start over")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise TrainError(f"{path} does not fit this model ({exc}); pass --restart to start over") from None
        self.scheduler.T_max = epochs  # a larger --epochs extends the cosine schedule
        self.result.history = list(state["history"])
        self.start_epoch = self.result.resumed_from_epoch = int(state["epoch"])
        self.result.stopped_early = bool(state.get("stopped_early", False))


def from_checkpoint(out_dir: str | None, arguments: dict[str, Any], fields: dict[str, Any],
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--resume`` without retyping: ``(arguments, fields)`` completed from the checkpoint in
    ``out_dir``, if there is one: the :data:`RECORDED_ARGUMENTS` of :func:`train_genotype` and the
    :class:`TrainConfig` fields the command does not give."""
    recorded = checkpoint_settings(out_dir)
    if recorded is None:
        return arguments, fields
    taken = {k: recorded[k] for k in RECORDED_ARGUMENTS if recorded.get(k) is not None}
    return {**taken, **arguments}, {**recorded_fields(TrainConfig, recorded), **fields}


def _write_report(out_dir: str, result: TrainResult, settings: dict[str, Any], device: torch.device,
                  only_if_stale: bool = False) -> None:
    """The curve, then ``report.json`` (last); ``only_if_stale``: only when ``report.json`` differs."""
    recipe = settings.get("recipe") or PAPER_RECIPE
    source = TRAIN_RECIPES[recipe][0] if recipe in TRAIN_RECIPES else PAPER_SOURCE
    report = {"final_test_acc": result.final_test_acc, "final_test_loss": result.final_test_loss,
              "epochs_run": result.epochs_run, "stopped_early": result.stopped_early, "config": settings,
              "recipe": {"name": recipe, "source": source},
              "device": str(device), "provenance": provenance(device), "history": result.history}
    text = json.dumps(report, indent=2, default=_json_default) + "\n"
    path = os.path.join(out_dir, REPORT_NAME)
    if only_if_stale:
        if written_as(path, report):
            return
        _notice(f"--resume: {path} is missing or does not match the checkpoint; rewriting the report from it")
    from .plots import plot_learning_curve

    plot_learning_curve(result.history, os.path.join(out_dir, CURVE_NAME))
    atomic_write(path, lambda f: f.write(text))


def _say_on_rank0(log: Callable[[str], None] | None, rank: int) -> Callable[[str], None]:
    return log if (log is not None and rank == 0) else (lambda _msg: None)


def _notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _open_folder(config: TrainConfig, device: torch.device, extra: dict[str, Any], out_dir: str | None,
                 resume: bool, restart: bool) -> tuple[RunFolder, dict[str, Any] | None, dict[str, Any]]:
    """``(folder, checkpoint or None, recorded settings)``, after every check that can refuse the
    run and before anything is written (rank 0 owns the folder)."""
    rank, world = _rank_world()
    if config.amp and device.type != "cuda":
        raise TrainError("--amp (bf16 mixed precision) needs a CUDA device; leave --amp out on CPU")
    settings = recorded_settings(config, extra, world)
    folder = RunFolder(out_dir if rank == 0 else None, files=RUN_FILES, finished=REPORT_NAME, resume=resume,
                       restart=restart, say=_say_on_rank0(_notice, rank))
    return folder, folder.check(settings, resume_keys(settings)), settings


def train(model: nn.Module, train_loader: Iterable, test_loader: Iterable, config: TrainConfig,
          device: torch.device | str = "cpu", out_dir: str | None = None, resume: bool = False,
          restart: bool = False, log: Callable[[str], None] | None = print,
          extra_state: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` from the state it is in or, with ``resume``, from the checkpoint in ``out_dir``.

    ``model`` returns logits or ``(logits, aux_logits)`` (an
    :class:`~flatarch.reference_spaces.darts.evaluation_network.EvaluationNetwork`: the auxiliary
    logits in training mode); a ``drop_path_prob`` attribute, where it has one, follows the ramp.
    ``train_loader``/``test_loader`` yield ``(images, labels)`` batches (a ``DistributedSampler``
    gets ``set_epoch``). Writes ``checkpoint.pt`` every epoch and ``report.json`` and
    ``learning_curve.png`` at the end into ``out_dir`` (rank 0 only; nothing when ``None``).
    ``extra_state`` (e.g. the genotype) is recorded and must match on ``resume``.

    Raises:
        TrainError (a :class:`~flatarch.reference_spaces.errors.UsageError`): bad settings, an
            ``out_dir`` in the way, a checkpoint of another run; nothing is written then.
    """
    device = torch.device(device)
    config = config.resolved()
    folder, checkpoint, settings = _open_folder(config, device, extra_state or {}, out_dir, resume, restart)
    return _run(model, train_loader, test_loader, config, device, folder, checkpoint, settings, log)


def _run(model: nn.Module, train_loader: Iterable, test_loader: Iterable, config: TrainConfig, device: torch.device,
         folder: RunFolder, checkpoint: dict[str, Any] | None, settings: dict[str, Any],
         log: Callable[[str], None] | None, after_commit: Callable[[], None] | None = None) -> TrainResult:
    """The epochs still to run; ``after_commit`` (rank 0) writes files derived from each checkpoint."""
    rank, world = _rank_world()
    say = _say_on_rank0(log, rank)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr_min)
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    run = _Run(model, net, optimizer, scheduler, TrainResult())
    if checkpoint is not None:
        run.restore(checkpoint, folder.checkpoint_path, config.epochs)
        say(f"resumed from {folder.checkpoint_path} after epoch {run.start_epoch}")
    folder.open()
    commit = after_commit if after_commit is not None and rank == 0 else (lambda: None)
    if run.result.stopped_early or run.start_epoch >= config.epochs:
        _say_on_rank0(_notice, rank)(f"--resume: the training in {folder.out} is complete ({run.start_epoch} "
                                     "epochs); nothing to run. Pass a larger --epochs to extend it.")
        commit()
        return _finish(run, config, folder, settings, device, write=rank == 0, only_if_stale=True)
    for epoch in range(run.start_epoch, config.epochs):
        record = _epoch(run, epoch, train_loader, test_loader, config, device)
        say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        assert_finite_state(model.state_dict(), epoch + 1, "Lower --lr.")
        if rank == 0:
            folder.save_checkpoint(run.state(epoch + 1, settings, run.result.stopped_early))
            commit()
        if run.result.stopped_early:
            say(f"training objective {record['train_objective']:.4f} <= {config.stop_train_loss}: "
                f"stopping after epoch {epoch + 1}")
            break
    return _finish(run, config, folder, settings, device, write=rank == 0)


def _epoch(run: _Run, epoch: int, train_loader: Iterable, test_loader: Iterable, config: TrainConfig,
           device: torch.device) -> dict[str, Any]:
    rank, _ = _rank_world()
    _seed_epoch(config.seed, epoch, rank)
    _set_loader_epoch(train_loader, epoch)
    drop_path = config.drop_path_prob * epoch / config.epochs
    if hasattr(run.model, "drop_path_prob"):
        run.model.drop_path_prob = drop_path
    lr = run.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    loss_sum, correct, objective_sum, total = _train_epoch(run.net, run.model, train_loader, run.optimizer, config,
                                                           device, config.amp, config.channels_last)
    run.scheduler.step()
    if total == 0:
        raise TrainError("the training loader yielded no samples")
    objective = objective_sum / total
    stop = config.stop_train_loss is not None and objective <= config.stop_train_loss
    record = {"epoch": epoch + 1, "lr": lr, "drop_path_prob": drop_path, "train_loss": loss_sum / total,
              "train_objective": objective, "train_acc": 100.0 * correct / total,
              "seconds": time.perf_counter() - t0}
    if stop or epoch + 1 >= config.epochs or (epoch + 1) % config.eval_every == 0:
        record["test_loss"], record["test_acc"] = evaluate(run.model, test_loader, device, config.amp,
                                                           config.channels_last)
    run.result.history.append(record)
    run.result.stopped_early = stop
    return record


def _finish(run: _Run, config: TrainConfig, folder: RunFolder, settings: dict[str, Any], device: torch.device,
            write: bool, only_if_stale: bool = False) -> TrainResult:
    result = run.result
    result.epochs_run = len(result.history)
    tested = [h for h in result.history if "test_acc" in h]
    if tested:
        result.final_test_acc, result.final_test_loss = tested[-1]["test_acc"], tested[-1]["test_loss"]
    if write and folder.out:
        _write_report(folder.out, result, settings, device, only_if_stale)
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def init_distributed(device: str = "auto") -> tuple[torch.device, int, int]:
    """Join the process group ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); without it, a single process. Returns
    ``(device, rank, world_size)``; NCCL on CUDA, gloo on CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise TrainError(f"unknown device {device!r}; use auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise TrainError("--device cuda requested but CUDA is not available; use --device cpu or auto")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = distributed.rank()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local), rank, world
    return torch.device("cpu"), rank, world


def train_genotype(genotype: Any, dataset: str = "cifar10", *, config: TrainConfig | None = None,
                   data_dir: str | None = None, download: bool = False, device: str = "auto",
                   out_dir: str | None = None, resume: bool = False, restart: bool = False,
                   log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``genotype`` (a :class:`Genotype`, a known name like ``"DARTS_V2"``, or a genotype
    file) from scratch on ``dataset`` (``digits``, ``cifar10``, ``cifar100``, ``imagenet16-120``) with
    the paper's evaluation protocol; what :command:`flatarch train` runs. Joins the ``torchrun``
    process group when there is one (see :func:`init_distributed`). The initial weights depend on
    ``config.seed`` only. Writes ``genotype.json`` besides :func:`train`'s files into ``out_dir``.

    Everything that can refuse the run (settings, genotype, the output folder, a checkpoint of
    another run) is checked before anything is written.
    """
    from . import genotype as G
    from . import loaders
    from .evaluation_network import EvaluationNetwork, count_parameters

    config = (config or TrainConfig()).resolved(dataset)
    if not isinstance(genotype, G.Genotype):
        try:
            genotype = G.from_json(genotype) if isinstance(genotype, dict) else G.load(genotype)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
    genotype = G.validate(genotype)
    dev, rank, world = init_distributed(device)
    say = _say_on_rank0(log, rank)
    device_data = config.device_data if config.device_data is not None else dev.type == "cuda"
    extra = {"genotype": G.to_json(genotype), "dataset": dataset, "device_data": device_data, "data_dir": data_dir,
             "device": device}
    folder, checkpoint, settings = _open_folder(config, dev, extra, out_dir, resume, restart)
    load_cfg = loaders.LoaderConfig(dataset=dataset, data_dir=data_dir, batch_size=config.batch_size,
                                    cutout=config.cutout, workers=config.loader_workers, download=download,
                                    device_data=device_data, device=str(dev), seed=config.seed)
    train_set, test_set, num_classes = loaders.datasets_for(load_cfg)
    sample = train_set[0][0]
    torch.manual_seed(config.seed)  # identical initial weights in every process
    model = EvaluationNetwork(genotype, num_classes=num_classes, C=config.channels, layers=config.layers,
                              auxiliary=config.auxiliary_weight > 0, in_channels=int(sample.shape[0]),
                              input_size=int(sample.shape[-1]))
    train_loader, test_loader = loaders.make_loaders(load_cfg, train_set, test_set)
    say(f"genotype: {G.to_literal(genotype)}")
    say(f"parameters: {count_parameters(model):,} (without auxiliary head); device {dev}, processes {world}, "
        f"torch threads {torch.get_num_threads()}")

    def save_genotype() -> None:  # after the first checkpoint, and again if it went missing
        if folder.out and not os.path.exists(os.path.join(folder.out, GENOTYPE_NAME)):
            G.save(genotype, os.path.join(folder.out, GENOTYPE_NAME))

    return _run(model, train_loader, test_loader, config, dev, folder, checkpoint, settings, log,
                after_commit=save_genotype)

