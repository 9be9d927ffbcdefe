"""Training a genotype from scratch (DARTS evaluation protocol, paper table 5).

Per step: ``objective = CE(logits, y) + w_aux * CE(aux_logits, y)``, gradients clipped to norm 5,
SGD with momentum and weight decay; the learning rate follows a cosine from ``lr`` to ``lr_min``
over ``epochs`` (one scheduler step per epoch) and the drop-path probability rises linearly,
``p_e = drop_path_prob * e / epochs``.

Exact resume: the state after each epoch (weights, optimiser, scheduler, AMP scaler, history)
is written atomically to ``checkpoint.pt``, and every epoch starts by reseeding the random
generators from ``(seed, epoch, rank)``, so shuffling, augmentation and drop-path masks of epoch
``e`` do not depend on whether the run was interrupted before it.

Works on one device or under ``torchrun`` (``torch.distributed``, NCCL on CUDA, gloo on CPU):
gradients are averaged by DDP, metrics are summed over processes, only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from flatarch.atomic_files import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
REPORT_NAME = "report.json"
CURVE_NAME = "learning_curve.png"


@dataclass
class TrainConfig:
    """Hyperparameters of training from scratch; defaults are the paper's (table 5)."""

    epochs: int = 600
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    seed: int = 0
    #: mixed precision (float16 autocast + gradient scaling); None = on exactly when on CUDA
    amp: bool | None = None
    #: channels-last memory format; None = on exactly when on CUDA
    channels_last: bool | None = None
    #: stop after the first epoch whose mean training objective (cross-entropy plus the weighted
    #: auxiliary loss, the "train loss" the original DARTS script logs) is <= this (None = never)
    stop_train_loss: float | None = None
    #: evaluate on the test set every this many epochs (and always after the last one)
    eval_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0.0 <= self.drop_path_prob < 1.0:
            raise ValueError(f"drop_path_prob must lie in [0, 1), got {self.drop_path_prob}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    final_test_acc: float = float("nan")
    final_test_loss: float = float("nan")
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def evaluate(model: nn.Module, loader: Iterable, device: torch.device, amp: bool = False,
             channels_last: bool = False) -> tuple[float, float]:
    """``(loss, accuracy %)`` of ``model`` over ``loader`` (summed over processes when distributed)."""
    was_training = model.training
    model.eval()
    loss_sum = correct = total = 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits, _ = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            total += y.numel()
    model.train(was_training)
    loss_sum, correct, total = _sum_over_processes([loss_sum, correct, total], device)
    if total == 0:
        raise ValueError("the test loader yielded no samples")
    return loss_sum / total, 100.0 * correct / total


def train(model: nn.Module, train_loader: Iterable, test_loader: Iterable, config: TrainConfig,
          device: torch.device | str = "cpu", out_dir: str | None = None, resume: bool = True,
          log: Callable[[str], None] | None = print,
          extra_state: dict[str, Any] | None = None) -> TrainResult:
    """Train ``model`` (an :class:`EvaluationNetwork`, returning ``(logits, aux_logits)``) from the
    state it is in or, with ``resume`` and a checkpoint in ``out_dir``, from that checkpoint.

    ``train_loader``/``test_loader`` yield ``(images, labels)`` batches (a ``DistributedSampler``
    gets ``set_epoch``). Writes ``checkpoint.pt`` every epoch, and ``report.json`` and
    ``learning_curve.png`` at the end, into ``out_dir`` (rank 0 only; nothing when ``None``).
    ``extra_state`` (e.g. the genotype) is stored in the checkpoint and report.
    """
    device = torch.device(device)
    rank, world = _rank_world()
    amp = config.amp if config.amp is not None else device.type == "cuda"
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    if amp and device.type != "cuda":
        raise ValueError("mixed precision (amp) needs a CUDA device; use --amp off (amp=False) on CPU")
    say = log if (log is not None and rank == 0) else (lambda _msg: None)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr_min)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    result = TrainResult()

    ckpt_path = os.path.join(out_dir, CHECKPOINT_NAME) if out_dir else None
    start_epoch = 0
    if resume and ckpt_path and os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["config"]["epochs"] != config.epochs:
            raise ValueError(
                f"{ckpt_path} was written for {state['config']['epochs']} epochs, not {config.epochs}: "
                "pass the same --epochs to resume, or another output directory (or --no-resume) to start over"
            )
        saved_extra = state.get("extra") or {}
        changed = sorted(k for k in (extra_state or {}) if k in saved_extra and saved_extra[k] != extra_state[k])
        if changed:
            raise ValueError(
                f"{ckpt_path} belongs to another run ({', '.join(changed)} differ): choose another output "
                "directory, or pass --no-resume to overwrite it"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        result.history = list(state["history"])
        start_epoch = result.resumed_from_epoch = int(state["epoch"])
        result.stopped_early = bool(state.get("stopped_early", False))
        say(f"resumed from {ckpt_path} after epoch {start_epoch}")

    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    epoch = start_epoch
    done = result.stopped_early or start_epoch >= config.epochs
    while not done:
        _seed_epoch(config.seed, epoch, rank)
        _set_loader_epoch(train_loader, epoch)
        model.drop_path_prob = config.drop_path_prob * epoch / config.epochs
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        net.train()
        # running sums stay on the device: no host sync per step
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        seen = 0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits, aux_logits = net(x)
                loss = F.cross_entropy(logits.float(), y)
                total_loss = loss
                if aux_logits is not None and config.auxiliary_weight:
                    total_loss = loss + config.auxiliary_weight * F.cross_entropy(aux_logits.float(), y)
            scaler.scale(total_loss).backward()
            if config.grad_clip and config.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            sums += torch.stack([loss.detach().double() * y.numel(), (logits.argmax(1) == y).sum().double(),
                                 total_loss.detach().double() * y.numel()])
            seen += y.numel()
        scheduler.step()
        loss_sum, correct, objective_sum, total = _sum_over_processes(sums.tolist() + [float(seen)], device)
        if total == 0:
            raise ValueError("the training loader yielded no samples")
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch + 1}; lower --lr or check the data")
        train_loss, train_acc, objective = loss_sum / total, 100.0 * correct / total, objective_sum / total
        epoch += 1
        stop = config.stop_train_loss is not None and objective <= config.stop_train_loss
        last = stop or epoch >= config.epochs
        record = {"epoch": epoch, "lr": lr, "drop_path_prob": model.drop_path_prob,
                  "train_loss": train_loss, "train_objective": objective, "train_acc": train_acc,
                  "seconds": time.perf_counter() - t0}
        if last or epoch % config.eval_every == 0:
            record["test_loss"], record["test_acc"] = evaluate(model, test_loader, device, amp, channels_last)
        result.history.append(record)
        result.stopped_early = stop
        say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if ckpt_path and rank == 0:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                     "epoch": epoch, "history": result.history, "stopped_early": stop,
                     "config": dataclasses.asdict(config), "extra": extra_state or {}}
            atomic_write(ckpt_path, lambda f, s=state: torch.save(s, f), binary=True)
        if stop:
            say(f"training objective {objective:.4f} <= {config.stop_train_loss}: stopping after epoch {epoch}")
        done = last

    result.epochs_run = epoch
    tested = [h for h in result.history if "test_acc" in h]
    if tested:
        result.final_test_acc, result.final_test_loss = tested[-1]["test_acc"], tested[-1]["test_loss"]
    if out_dir and rank == 0:
        report = {"final_test_acc": result.final_test_acc, "final_test_loss": result.final_test_loss,
                  "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
                  "config": dataclasses.asdict(config), "world_size": world, "device": str(device),
                  "extra": extra_state or {}, "history": result.history}
        atomic_write(os.path.join(out_dir, REPORT_NAME),
                     lambda f: f.write(json.dumps(report, indent=2, default=_json_default) + "\n"))
        from .plots import plot_learning_curve

        plot_learning_curve(result.history, os.path.join(out_dir, CURVE_NAME))
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def init_distributed(device: str = "auto") -> tuple[torch.device, int, int]:
    """Join the process group ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``); without it, a single process. Returns
    ``(device, rank, world_size)``; NCCL on CUDA, gloo on CPU."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but CUDA is not available; use --device cpu or auto")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local), rank, world
    return torch.device("cpu"), rank, world


def train_genotype(genotype: Any, dataset: str = "cifar10", *, config: TrainConfig | None = None,
                   data_dir: str | None = None, download: bool = False, batch_size: int = 96, cutout: int = 16,
                   workers: int = 2, init_channels: int = 36, layers: int = 20, device: str = "auto",
                   out_dir: str | None = None, resume: bool = True,
                   log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``genotype`` (a :class:`Genotype`, a known name like ``"DARTS_V2"``, or a genotype
    file) from scratch on ``dataset`` (``cifar10``, ``cifar100``, ``imagenet16-120``) with the
    paper's evaluation protocol; what :command:`flatarch train` runs. Joins the ``torchrun``
    process group when there is one (see :func:`init_distributed`). The initial weights depend
    on ``config.seed`` only. Writes ``genotype.json`` besides :func:`train`'s files into ``out_dir``.

    Raises:
        ValueError: unknown genotype or dataset, or a checkpoint of another run in ``out_dir``.
        flatarch.reference_spaces.data.DataError: the dataset is missing or corrupt.
    """
    from . import genotype as G
    from . import loaders
    from .evaluation_network import EvaluationNetwork, count_parameters

    config = config or TrainConfig()
    if not isinstance(genotype, G.Genotype):
        genotype = G.load(genotype)
    genotype = G.validate(genotype)
    dev, rank, world = init_distributed(device)
    say = log if (log is not None and rank == 0) else (lambda _msg: None)
    load_cfg = loaders.LoaderConfig(dataset=dataset, data_dir=data_dir, batch_size=batch_size, cutout=cutout,
                                    workers=workers, download=download)
    train_set, test_set, num_classes = loaders.datasets_for(load_cfg)
    input_size = int(train_set[0][0].shape[-1])
    torch.manual_seed(config.seed)  # identical initial weights in every process
    model = EvaluationNetwork(genotype, num_classes=num_classes, C=init_channels, layers=layers,
                              auxiliary=config.auxiliary_weight > 0, input_size=input_size)
    train_loader, test_loader = loaders.make_loaders(load_cfg, train_set, test_set)
    n_params = count_parameters(model)
    if out_dir and rank == 0:
        os.makedirs(out_dir, exist_ok=True)
        G.save(genotype, os.path.join(out_dir, "genotype.json"))
    say(f"genotype: {G.to_literal(genotype)}")
    say(f"parameters: {n_params:,} (without auxiliary head); device {dev}, processes {world}, "
        f"torch threads {torch.get_num_threads()}")
    extra = {"genotype": G.to_json(genotype), "dataset": dataset, "parameters": n_params,
             "init_channels": init_channels, "layers": layers}
    return train(model, train_loader, test_loader, config, device=dev, out_dir=out_dir, resume=resume, log=log,
                 extra_state=extra)
