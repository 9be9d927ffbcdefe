"""The bi-level search loop shared by every reference space (SPEC section 3).

Each iteration ``t`` of epoch ``e``, with a validation batch ``(x_v, y_v)`` and a training
batch ``(x_t, y_t)``:

1. **alpha step** -- the ArchOptimizer (first-order, SAM, USAM or A2M) computes its direction
   ``G`` from ``L(alpha) = CE(f(x_v; w, alpha), y_v) [+ lambda(e) * L_beta(alpha)]`` and its inner
   Adam steps. The beta-DARTS term sits inside the loss given to the optimizer, so it enters
   every gradient evaluation (the perturbed ones too).
2. **weight step** -- SDARTS-RS first adds ``U[-a, a]`` noise to alpha (restored afterwards);
   then ``w <- SGD(w, grad_w CE(f(x_t; w, alpha), y_t))`` with the gradient norm clipped.

DARTS- gets the search progress ``(e + t/T) / E`` before each iteration (auxiliary skip weight
``1 - progress``); PC-DARTS lives entirely in the network. The weight learning rate follows a
cosine from ``lr`` to ``lr_min`` over the epochs. After each epoch: a JSON-lines record, an
atomic checkpoint, and (optionally) the plot.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..data import BatchStream, DataError, ImageData, load_dataset, split_half
from ..errors import CheckpointError
from ..registry import get_space
from ..run_folder import RunFolder, assert_finite_state
from ..space import Method
from .checkpoint import write_json, write_json_lines
from .config import SearchConfig, SearchError, resolve_device

LOG_NAME = "search.jsonl"
RESULT_NAME = "result.json"
PLOT_NAME = "search.png"
CHECKPOINT_VERSION = 1
#: what a search writes into its folder (moved aside together by --restart)
RUN_FILES = (LOG_NAME, RESULT_NAME, PLOT_NAME, "genotype.json", "genotype.png")
#: settings that must match for --resume to continue a checkpoint
_RESUME_KEYS = ("space", "method", "optimizer", "rho", "eps", "difference", "epochs", "batch_size", "seed",
                "dataset", "subset", "max_batches", "val_augment", "channels", "cells_per_stage", "lr", "lr_min",
                "momentum", "weight_decay", "grad_clip", "arch_lr", "arch_betas", "arch_weight_decay", "amp",
                "on_nonfinite", "space_options")


@dataclass
class SearchResult:
    """What one search found: ``genotype`` (the space's own form; NAS-Bench-201: the arch
    string), its JSON form, the benchmark accuracies where the space knows them, one record per
    epoch, and where the files are (None without ``out``)."""

    genotype: Any
    genotype_json: Any
    benchmark: dict[str, float]
    history: list[dict[str, Any]]
    config: dict[str, Any]
    out: str | None = None
    seconds: float = 0.0
    seconds_per_iteration: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "genotype": self.genotype_json,
            "benchmark": self.benchmark,
            "final": {k: self.history[-1][k] for k in ("train_acc", "val_acc", "train_loss", "val_loss")}
            if self.history
            else {},
            "seconds": self.seconds,
            "seconds_per_iteration": self.seconds_per_iteration,
            "config": self.config,
        }


def _tqdm(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


class _Searcher:
    def __init__(self, cfg: SearchConfig, data: ImageData | None = None):
        import flatarch  # the core; imported here so the space modules stay importable without it

        self.flatarch = flatarch
        try:
            self.space = get_space(cfg.space, **cfg.space_options)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        self.cfg = cfg = cfg.resolved(self.space.defaults)
        self.method = Method.from_name(cfg.method)
        self.device = resolve_device(cfg.device, cfg.amp)
        self.amp = cfg.amp
        self.folder = RunFolder(cfg.out, files=RUN_FILES, finished=RESULT_NAME, resume=cfg.resume,
                                restart=cfg.restart)
        checkpoint = self.folder.check(self.settings(), _RESUME_KEYS)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

        if data is None:
            data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
        data = data.subset(cfg.subset)
        if len(data.labels) < 4:
            raise SearchError(f"{cfg.dataset}: {len(data.labels)} images are too few to split and search")
        self.data_name = data.name
        train_idx, val_idx = split_half(len(data.labels))
        self.train = BatchStream(data, train_idx, cfg.batch_size, True, cfg.seed, 0, self.device)
        self.valid = BatchStream(data, val_idx, cfg.batch_size, cfg.val_augment, cfg.seed, 1, self.device)
        self.iters = min(len(self.train), len(self.valid))
        if cfg.max_batches:
            self.iters = min(self.iters, cfg.max_batches)

        torch.manual_seed(cfg.seed)
        net = self.space.build_network(
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            method=self.method,
            channels=cfg.channels,
            cells_per_stage=cfg.cells_per_stage,
        )
        self.net = net.to(self.device)
        self.arch = self.net.arch_parameters()
        self.arch_names = list(self.arch)
        self.weights = self.net.weight_parameters()
        self.arch_opt = flatarch.make_update(
            cfg.optimizer,
            self.arch,
            rho=cfg.rho,
            eps=cfg.eps,
            difference=cfg.difference,
            on_nonfinite=cfg.on_nonfinite,
            optimizer=torch.optim.Adam,
            lr=cfg.arch_lr,
            betas=tuple(cfg.arch_betas),
            weight_decay=cfg.arch_weight_decay,
        )
        self.w_opt = torch.optim.SGD(self.weights, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, cfg.epochs, eta_min=cfg.lr_min)
        self.noise = torch.Generator().manual_seed(cfg.seed + 7919)  # SDARTS-RS noise, CPU for determinism
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.iterations_done = 0
        if checkpoint is not None:
            self.restore(checkpoint)

    # --- files ---------------------------------------------------------------------------------
    def path(self, name: str) -> str | None:
        return os.path.join(self.cfg.out, name) if self.cfg.out else None

    def settings(self) -> dict[str, Any]:
        """The config as the checkpoint records it (the benchmark table path does not change a search)."""
        settings = self.cfg.to_json()
        settings["space_options"] = {k: v for k, v in self.cfg.space_options.items() if k != "table"}
        return settings

    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,  # epochs completed
            "config": self.settings(),
            "network": self.net.state_dict(),
            "arch_optimizer": self.arch_opt.state_dict(),
            "weight_optimizer": self.w_opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "noise": self.noise.get_state()},
            "history": self.history,
            "elapsed": self.elapsed,
            "iterations_done": self.iterations_done,
            # batch order and augmentation are functions of (seed, epoch): see data.batches
            "data_order": {"seed": self.cfg.seed, "next_epoch": epoch},
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        where = self.folder.checkpoint_path
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{where}: unknown checkpoint version {ckpt.get('version')}; "
                                  "pass --restart to start over")
        try:
            self.net.load_state_dict(ckpt["network"])
            self.arch_opt.load_state_dict(ckpt["arch_optimizer"])
            self.w_opt.load_state_dict(ckpt["weight_optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            self.noise.set_state(ckpt["rng"]["noise"])
            rng = ckpt["rng"]["torch"]
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{where} does not fit this search ({exc}); pass --restart to start over") from None
        self.sched.T_max = self.cfg.epochs  # --resume --epochs N extends the cosine schedule to N epochs
        torch.set_rng_state(rng)
        self.history = list(ckpt["history"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self.iterations_done = int(ckpt.get("iterations_done", 0))
        self.start_epoch = int(ckpt["epoch"])

    # --- one iteration -------------------------------------------------------------------------
    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def arch_loss(self, batch, epoch: int, stats: dict[str, torch.Tensor]):
        """The functional validation loss handed to the ArchOptimizer."""
        flatarch, space, method = self.flatarch, self.space, self.method
        # beta-DARTS' own schedule, lambda = 50 * epoch / 100 (0 -> 24.5 over a 50-epoch search)
        beta_weight = flatarch.regularizers.beta_decay_weight(epoch) if method.beta_decay else 0.0
        first = [True]

        def compute(module, batch):
            x, y = batch
            with self.autocast():
                logits = module(x)
            loss = F.cross_entropy(logits.float(), y)
            if first[0]:  # the first evaluation is at the unperturbed alpha: its statistics are the val ones
                first[0] = False
                stats["val_loss"] += loss.detach()
                stats["val_correct"] += (logits.detach().argmax(1) == y).sum()
            if beta_weight:
                # per-cell-type weights where the space has them (DARTS: normal / reduce, paper C.5)
                loss = loss + beta_weight * flatarch.regularizers.beta_decay(
                    space.beta_decay_groups(module), getattr(space, "beta_decay_weights", None))
            return loss

        return flatarch.module_loss(self.net, batch, self.arch_names, compute=compute)

    def weight_step(self, batch, stats: dict[str, torch.Tensor]) -> None:
        x, y = batch
        amplitude = self.method.random_smoothing
        saved = None
        if amplitude:
            saved = {k: p.detach().clone() for k, p in self.arch.items()}
            with torch.no_grad():
                for p in self.arch.values():
                    noise = torch.rand(p.shape, generator=self.noise, dtype=p.dtype).mul_(2 * amplitude)
                    p.add_(noise.sub_(amplitude).to(p.device))
        self.w_opt.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.net(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward(inputs=self.weights)  # no gradient for alpha: it is not updated here
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip)
        self.w_opt.step()
        if saved is not None:
            with torch.no_grad():
                for k, p in self.arch.items():
                    p.copy_(saved[k])
        stats["train_loss"] += loss.detach()
        stats["train_correct"] += (logits.detach().argmax(1) == y).sum()

    # --- epochs --------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.net.train()
        zero = torch.zeros((), device=self.device)
        stats = {k: zero.clone() for k in ("train_loss", "train_correct", "val_loss", "val_correct")}
        seen_t = seen_v = 0
        lr = self.w_opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        batches = zip(range(self.iters), self.train.epoch(epoch), self.valid.epoch(epoch))
        bar = _tqdm(batches, cfg.progress, total=self.iters, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for t, train_batch, val_batch in bar:
            self.net.set_progress((epoch + t / self.iters) / cfg.epochs)
            self.arch_opt.step(self.arch_loss(val_batch, epoch, stats))
            self.weight_step(train_batch, stats)
            seen_t += len(train_batch[1])
            seen_v += len(val_batch[1])
        self.sched.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        self.elapsed += seconds
        self.iterations_done += self.iters
        genotype = self.space.genotype(self.net)
        return {
            "epoch": epoch + 1,
            "train_loss": float(stats["train_loss"]) / self.iters,
            "train_acc": 100.0 * float(stats["train_correct"]) / seen_t,
            "val_loss": float(stats["val_loss"]) / self.iters,
            "val_acc": 100.0 * float(stats["val_correct"]) / seen_v,
            "lr": lr,
            "alphas": {k: p.detach().float().cpu().tolist() for k, p in self.arch.items()},
            "genotype": self.space.genotype_to_json(genotype),
            "benchmark": self.space.evaluate(genotype, dataset=self.data_name),
            "seconds": seconds,
            "seconds_per_iteration": seconds / self.iters,
        }

    def run(self) -> SearchResult:
        cfg = self.cfg
        self.folder.open()
        epochs = range(self.start_epoch, cfg.epochs)
        for epoch in _tqdm(epochs, cfg.progress, total=cfg.epochs, initial=self.start_epoch, desc="search"):
            self.history.append(self.run_epoch(epoch))
            assert_finite_state(self.net.state_dict(), epoch + 1, "Lower --lr or --arch-lr.")
            if cfg.out:
                write_json_lines(self.history, self.path(LOG_NAME))
                self.folder.save_checkpoint(self.state(epoch + 1))
        genotype = self.space.genotype(self.net)
        result = SearchResult(
            genotype=genotype,
            genotype_json=self.space.genotype_to_json(genotype),
            benchmark=self.space.evaluate(genotype, dataset=self.data_name),
            history=self.history,
            config=cfg.to_json(),
            out=cfg.out,
            seconds=self.elapsed,
            seconds_per_iteration=self.elapsed / max(1, self.iterations_done),
        )
        if cfg.out:
            write_json(result.to_json(), self.path(RESULT_NAME))
            save_genotype = getattr(self.space, "save_genotype", None)  # DARTS: genotype.json + cell picture
            if save_genotype is not None:
                save_genotype(genotype, cfg.out, title=f"{cfg.space} {cfg.method} {cfg.optimizer} seed {cfg.seed}")
            if cfg.plot and self.history:
                from .plot import plot_history

                plot_history(self.history, self.path(PLOT_NAME), title=f"{cfg.space} {cfg.method} {cfg.optimizer}",
                             op_names=getattr(self.space, "op_names", None))
        return result


def search_one(config: SearchConfig | None = None, *, data: ImageData | None = None, **overrides: Any) -> SearchResult:
    """Run one search (one seed). Keyword arguments override fields of ``config``.

    ``data``: search on these images instead of loading ``config.dataset`` (any
    :class:`~flatarch.reference_spaces.data.ImageData`, e.g. your own tensors); the
    dataset name is then only a label.

    Raises:
        DataError: the dataset is missing or corrupt.
        SearchError: settings that cannot work (message says what to change).
    """
    cfg = (config or SearchConfig()).replace(**overrides)
    return _Searcher(cfg, data).run()


__all__ = ["DataError", "SearchError", "SearchResult", "search_one"]
