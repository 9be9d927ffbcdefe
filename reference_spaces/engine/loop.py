"""The first-order bi-level search loop shared by every method and every reference space.

Each iteration ``t`` of epoch ``e``, with a validation batch ``(x_v, y_v)`` and a training batch
``(x_t, y_t)`` (paper section 3; DARTS ``train_search.py``):

1. **alpha step** (from epoch ``warmup_epochs`` on) -- the ArchOptimizer (first-order, SAM, USAM or
   A2M) computes its direction ``G`` from ``L(alpha) = CE(f(x_v; w, alpha), y_v)`` plus the
   method's regulariser, which so enters every gradient evaluation (the perturbed ones too), and
   its inner Adam steps;
2. **weight step** -- ``w <- SGD(w, grad_w CE(f(x_t; w, A), y_t))``, the gradient norm clipped,
   ``A = softmax(alpha)`` unless the method's smoothing replaces it (SDARTS); a method's correction
   adds to the gradient before clipping (lambda-DARTS). With ``step_order`` ``weights-first`` it
   comes before the alpha step (lambda-DARTS' NAS-Bench-201 code).

The weight learning rate follows a cosine from ``lr`` to ``lr_min`` over the epochs. After each
epoch: the whole validation split in eval mode, a record (:mod:`.reporting`), a line on the
terminal, an atomic checkpoint; at the end the selected genotype (``--select``), its files and
the plot. A method with a projection phase (DARTS-PT, :mod:`.projection`) then tunes the supernet
while it projects, with the same iteration on the projected weights.

Files: the checkpoint is the one commit point of an epoch (weights, optimisers, random states and
every record). The log, the genotype files, the plot and ``result.json`` are derived from it and
written after it, ``result.json`` last (it marks a finished search), so a run killed at any
instant continues with ``--resume`` and ends as an uninterrupted run would; ``--resume`` of a
finished search rewrites its derived files when ``result.json`` does not match its checkpoint.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F

import flatarch
from flatarch.provenance import provenance
from flatarch.sync_batch_norm import convert_global_batch_norm

from ..data import BatchStream, DataError, ImageData, load_dataset, split_half
from ..data.image_folder import FolderData, FolderImages, LoaderStream, load_image_folder
from ..errors import DIVERGENCES, CheckpointError, DivergedError
from ..registry import get_space
from ..run_folder import RunFolder, assert_finite_state, checkpoint_settings, written_as
from ..space import NetworkOptions, compile_cells
from . import decision, hessian, reporting, trackers
from .checkpoint import write_json, write_json_lines
from .components import Context, mixing_weights, widened
from .config import DTYPES, IMAGENET, INVOCATION, PROJECTED, SearchConfig, SearchError, as_recorded_now, resolve_device
from .methods import get_method
from .projection import ProjectionState, check_schedule, schedule, topology_nodes, tune_epochs
from .ranks import Ranks, joined, rank_device

LOG_NAME = "search.jsonl"
RESULT_NAME = "result.json"
PLOT_NAME = "search.png"
CHECKPOINT_VERSION = 3  # 3: both supernets hold their parameters grouped by the node each edge reads
#: what a search writes into its folder (moved aside together by --restart)
RUN_FILES = (LOG_NAME, RESULT_NAME, PLOT_NAME, "genotype.json", "genotype.png", *trackers.TRACKER_FILES)
#: settings a checkpoint records since data parallelism came, and their value in older checkpoints;
#: they must match for --resume too
LATER_SETTINGS = {"world_size": 1, "sync_bn": False, "dtype": "float32", "image_size": None, "lr_warmup_epochs": 0}
#: settings that may differ on --resume and still decide what a finished search reports: which epoch
#: (``select``) and when it stops (``early_stop``, like a larger ``epochs``, may extend a run); a
#: result.json made with others is not the command's result (--resume rewrites or extends it)
REPORTING = ("select", "early_stop")
#: settings that may differ on --resume: how the command runs and shows the search, and :data:`REPORTING`
RESUME_MAY_CHANGE = (*INVOCATION, "data_dir", "device", "compile", "loader_workers", "tag", "log_to", "plot",
                     *REPORTING)
#: settings that must match for --resume to continue a checkpoint (epochs may grow): every other one
RESUME_KEYS = tuple(f.name for f in fields(SearchConfig) if f.name not in (*RESUME_MAY_CHANGE, *LATER_SETTINGS))


@dataclass
class SearchResult:
    """What one search found.

    ``genotype`` is the reported one (``selection`` says which: the paper's ``best-val-loss`` or
    ``final``), in the space's own form (NAS-Bench-201: the arch string); ``benchmark`` its
    accuracies where the space knows them. ``history`` has one record per epoch.
    """

    genotype: Any
    genotype_json: Any
    benchmark: dict[str, float]
    selection: str
    selected_epoch: int
    best_epoch: int | None
    best_genotype: Any
    final_genotype: Any
    final_benchmark: dict[str, float]
    history: list[dict[str, Any]]
    config: dict[str, Any]
    out: str | None = None
    seconds: float = 0.0
    seconds_per_iteration: float = 0.0
    stopped_early: bool = False
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the recipe's name and source and every setting it changed (``SearchConfig.recipe_changes``)
    recipe: dict[str, Any] = field(default_factory=dict)
    #: versions, device, command line, host, threads, commit (:func:`flatarch.provenance.provenance`)
    provenance: dict[str, Any] = field(default_factory=dict)
    #: per dataset, the parameters and FLOPs of ``genotype``'s evaluation network (:meth:`SearchSpace.profile`)
    profile: dict[str, dict[str, int]] = field(default_factory=dict)
    #: what a reader of the result must know (e.g. the reported genotype is the initial one)
    warnings: list[str] = field(default_factory=list)
    #: the first epoch with non-finite losses, or the one that could not be committed (``None``: it
    #: did not diverge); the reported genotype is then a finite epoch's (:mod:`.reporting`)
    diverged_epoch: int | None = None

    def to_json(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "genotype": self.genotype_json,
            "selection": self.selection,
            "selected_epoch": self.selected_epoch,
            "benchmark": self.benchmark,
            "profile": self.profile,
            "best_genotype": self.best_genotype,
            "best_epoch": self.best_epoch,
            "final_genotype": self.final_genotype,
            "final_benchmark": self.final_benchmark,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
            "diverged_epoch": self.diverged_epoch,
            "final": {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in last},
            "reference": self.reference,
            "seconds": self.seconds,
            "seconds_per_iteration": self.seconds_per_iteration,
            "config": self.config,
            "recipe": self.recipe,
            "provenance": self.provenance,
            "warnings": self.warnings,
        }


def _tqdm(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Searcher:
    def __init__(self, cfg: SearchConfig, data: ImageData | None = None, ranks: Ranks | None = None):
        ranks = ranks or Ranks()
        try:
            self.space = get_space(cfg.space, **cfg.space_options)
        except TypeError as exc:
            raise SearchError(f"--space {cfg.space} does not take these options: {exc}") from None
        self.recipe_changes = cfg.recipe_changes(self.space.defaults)
        self.cfg = cfg = cfg.resolved(self.space.defaults)
        self.ranks = ranks
        ranks.check_batch(cfg.batch_size)
        self.method = get_method(cfg.method)
        self.device = rank_device(resolve_device(cfg.device, cfg.amp), ranks)
        self.folder = RunFolder(cfg.out, files=RUN_FILES, finished=RESULT_NAME, log=LOG_NAME, resume=cfg.resume,
                                restart=cfg.restart, say=_say)
        if not ranks.writer:  # rank 0 alone has the run folder: the other ranks read and write nothing
            self.folder = RunFolder(None, files=RUN_FILES, finished=RESULT_NAME)
        checkpoint = ranks.from_writer(lambda: self.folder.check(self.settings(), RESUME_KEYS, as_recorded_now))
        trackers.check_installed(trackers.parse(cfg.log_to))
        self.trackers = trackers.Trackers((), None, {})
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self._build_data(data)
        self._build_model()
        self.start_epoch = 0
        self.records: list[dict[str, Any]] = []  # epoch records and DARTS-PT projection records, in order
        self.elapsed = 0.0
        self.iterations_done = 0
        self.projection: ProjectionState | None = None  # set when DARTS-PT's tuning phase starts
        self.blew_up: tuple[int, str] | None = None  # (epoch, why) when an epoch could not be committed
        self.tracker_ids: dict[str, str] = {}  # the W&B/MLflow runs of this search, continued by --resume
        self._plan_projection()
        if checkpoint is not None:
            self._check_later_settings(checkpoint["config"])
            self.restore(checkpoint)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The epoch records (search and tuning phases)."""
        return [r for r in self.records if "projection" not in r]

    def _plan_projection(self) -> None:
        """DARTS-PT: the topology nodes, the tuning length and a check that the schedule fits."""
        self.tune_epochs = 0
        if self.method.projection is None:
            return
        groups = list(self.net.alphas())
        self.nodes = topology_nodes(self.space, groups)
        edges = self.net.alphas()[groups[0]].shape[0]
        topology = max(len(n) for n in self.nodes.values())
        k = self.cfg.projection_interval
        self.tune_epochs = self.cfg.tune_epochs or tune_epochs(k, edges, topology)
        check_schedule(self.tune_epochs, k, edges, topology)
        self.rounds = dict(schedule(self.tune_epochs, k, edges))

    # --- set-up --------------------------------------------------------------------------------
    def _build_data(self, data: ImageData | None) -> None:
        cfg = self.cfg
        shard, dtype = (self.ranks.rank, self.ranks.world), DTYPES[cfg.dtype]
        if data is None and cfg.dataset == IMAGENET:
            self.data = folder = load_image_folder(cfg.data_dir)
            train_idx, val_idx = folder.split()

            def stream(indices, augment, stream_id):
                images = FolderImages(folder, cfg.image_size, augment, cfg.seed, stream_id)
                return LoaderStream(images, indices, cfg.batch_size, cfg.seed, stream_id, self.device, shard, dtype,
                                    cfg.loader_workers)

            self.train, self.valid = stream(train_idx, True, 0), stream(val_idx, cfg.val_augment, 1)
        else:
            if data is None:
                data = load_dataset(cfg.dataset, cfg.data_dir, cfg.download)
            data = data.subset(cfg.subset)
            if len(data.labels) < 4:
                raise SearchError(f"{cfg.dataset}: {len(data.labels)} images are too few to split and search")
            self.data = data
            train_idx, val_idx = split_half(len(data.labels))
            self.train = BatchStream(data, train_idx, cfg.batch_size, True, cfg.seed, 0, self.device, shard, dtype)
            self.valid = BatchStream(data, val_idx, cfg.batch_size, cfg.val_augment, cfg.seed, 1, self.device, shard,
                                     dtype)
        for split, stream in (("training", self.train), ("validation", self.valid)):
            self.ranks.check_batch(stream.batch_size, split)  # a split smaller than the batch makes smaller ones
        self.iters = min(len(self.train), len(self.valid))
        if cfg.max_batches:
            self.iters = min(self.iters, cfg.max_batches)

    def _build_model(self) -> None:
        cfg, method = self.cfg, self.method
        torch.manual_seed(cfg.seed)
        options = NetworkOptions(partial_channels=cfg.partial_channels or 1,
                                 edge_normalization=bool(cfg.edge_normalization),
                                 auxiliary_skip=method.network.auxiliary_skip, ops=cfg.ops,
                                 stem="imagenet" if isinstance(self.data, FolderData) else "cifar")
        try:
            net = self.space.build_network(num_classes=self.data.num_classes, in_channels=self.data.in_channels,
                                           options=options, channels=cfg.channels,
                                           cells_per_stage=cfg.cells_per_stage)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        self.net = net.to(self.device, DTYPES[cfg.dtype])
        if cfg.sync_bn and self.ranks.world > 1:
            convert_global_batch_norm(self.net, self.ranks.group)
        self.ranks.broadcast(list(self.net.state_dict().values()))  # every rank starts from rank 0's network
        # the seed fixes them, so a resumed search has them too: the cell's noise floor (decision.py)
        self.initial_alphas = {g: a.detach().clone() for g, a in self.net.alphas().items()}
        self.initial_arch = {k: widened(p.detach()).cpu().tolist() for k, p in self.net.arch_parameters().items()}
        self.noise_margin = decision.noise_margin(self.initial_alphas)
        if cfg.compile:
            compile_cells(self.net)
        self.arch = self.net.arch_parameters()
        self.weights = self.net.weight_parameters()
        self.arch_opt = flatarch.make_update(
            cfg.optimizer, self.arch, rho=cfg.rho, eps=cfg.eps, difference=cfg.difference,
            running_stats=cfg.running_stats,
            on_nonfinite=cfg.on_nonfinite, deferred_check=True, optimizer=torch.optim.Adam, lr=cfg.arch_lr,
            betas=tuple(cfg.arch_betas), weight_decay=cfg.arch_weight_decay, grad_reduce=self.ranks.reduce,
        )
        self.w_opt = torch.optim.SGD(self.weights, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, cfg.epochs, eta_min=cfg.lr_min)
        # the methods' randomness (SDARTS noise), on the CPU so CPU and GPU runs draw the same
        self.generator = torch.Generator().manual_seed(cfg.seed + 7919)
        self.ctx = Context(self.net, self.space, cfg, self.generator, self.autocast, self.ranks.reduce)

    # --- files ---------------------------------------------------------------------------------
    def path(self, name: str) -> str | None:
        return self.folder.path(name)

    def settings(self) -> dict[str, Any]:
        """The config as the checkpoint and ``result.json`` record it: without ``resume`` and ``restart``,
        which say what one command did, not how the search runs."""
        settings = self.cfg.to_json()
        for name in ("resume", "restart"):
            settings.pop(name)
        settings["world_size"] = self.ranks.world
        return settings

    def _check_later_settings(self, saved: dict[str, Any]) -> None:
        """The settings a checkpoint records since data parallelism came (older ones ran with
        :data:`LATER_SETTINGS`) must match too: the shards of every batch, and so the search, depend on
        the number of ranks."""
        now = self.settings()
        changes = [f"{key}: {saved.get(key, old)!r} -> {now[key]!r}" for key, old in LATER_SETTINGS.items()
                   if saved.get(key, old) != now[key]]
        if changes:
            raise CheckpointError(
                f"--resume: the checkpoint in {self.cfg.out} was made with other settings ({'; '.join(changes)}); "
                "rerun with the original settings (world_size: torchrun --nproc_per_node N), pass --restart to "
                "start over, or choose another --out")

    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,  # epochs completed
            "config": self.settings(),
            "network": self.net.state_dict(),
            "arch_optimizer": self.arch_opt.state_dict(),
            "weight_optimizer": self.w_opt.state_dict(),
            "scheduler": None if self.sched is None else self.sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state()},
            "records": self.records,
            "projection": None if self.projection is None else self.projection.to_json(),
            "elapsed": self.elapsed,
            "iterations_done": self.iterations_done,
            # what the recipe changed, as the run's first command resolved it (a resumed run's settings
            # all come from here, so the recipe would seem to change nothing)
            "recipe_changes": self.recipe_changes,
            "trackers": self.tracker_ids,
            # batch order and augmentation are functions of (seed, epoch): see data.batches
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        where = self.folder.checkpoint_path
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{where} was written by another flatarch version (checkpoint version "
                                  f"{ckpt.get('version')}, this one reads {CHECKPOINT_VERSION}); finish that search "
                                  "with the flatarch that started it, or pass --restart to start over")
        try:
            if ckpt["projection"] is not None:
                self._start_tuning(ProjectionState.from_json(ckpt["projection"]))
            self.net.load_state_dict(ckpt["network"])
            self.arch_opt.load_state_dict(ckpt["arch_optimizer"])
            self.w_opt.load_state_dict(ckpt["weight_optimizer"])
            if self.sched is not None:
                self.sched.load_state_dict(ckpt["scheduler"])
            self.generator.set_state(ckpt["rng"]["generator"])
            rng = ckpt["rng"]["torch"]
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{where} does not fit this search ({exc}); pass --restart to start over") from None
        self.records = list(ckpt["records"])
        if self.sched is not None:
            self.sched.T_max = self.cfg.epochs  # --resume --epochs N extends the cosine schedule to N epochs
        elif self.cfg.epochs != ckpt["config"]["epochs"]:
            raise CheckpointError(f"--resume: the search in {self.cfg.out} is in its projection phase; its supernet "
                                  f"search cannot be extended to {self.cfg.epochs} epochs")
        torch.set_rng_state(rng)
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        self.iterations_done = int(ckpt.get("iterations_done", 0))
        self.recipe_changes = ckpt.get("recipe_changes", self.recipe_changes)
        self.tracker_ids = dict(ckpt.get("trackers") or {})
        self.start_epoch = int(ckpt["epoch"])

    # --- one iteration -------------------------------------------------------------------------
    def autocast(self):
        if self.cfg.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def mixing(self, module) -> dict[str, torch.Tensor] | None:
        """The mixing weights the network runs with: DARTS-PT's projected ones in the tuning phase,
        else ``None`` (the network's own ``softmax(alpha)``)."""
        if self.projection is None:
            return None
        return self.projection.apply(mixing_weights(module))

    def arch_loss(self, batch, epoch: int, step: int = 0):
        """The functional validation loss handed to the ArchOptimizer (regulariser included) at
        iteration ``step`` of epoch ``epoch``."""
        regularizer = self.method.regularizer

        def compute(module, batch):
            x, y = batch
            with self.autocast():
                logits = module(x, self.mixing(module))
            loss = F.cross_entropy(widened(logits), y)
            term = regularizer.loss_term(self.ctx, module, epoch, step) if regularizer is not None else None
            return loss if term is None else loss + term

        return flatarch.module_loss(self.net, batch, list(self.arch), compute=compute)

    def weight_step(self, batch, epoch: int, sums: torch.Tensor) -> None:
        x, y = batch
        smoothing, correction = self.method.smoothing, self.method.correction
        weights = smoothing.weights(self.ctx, epoch, batch) if smoothing is not None else self.mixing(self.net)
        leaves: list[torch.Tensor] = []
        if correction is not None:
            weights, leaves, layout = correction.per_cell(self.ctx, weights or mixing_weights(self.net))
        self.w_opt.zero_grad(set_to_none=True)
        with self.autocast():
            logits = self.net(x, weights)
        loss = F.cross_entropy(widened(logits), y)
        loss.backward(inputs=self.weights + leaves)  # no gradient for alpha: it is not updated here
        self.ranks.average_grads(self.weights)  # the global batch's gradient
        if correction is not None:
            correction.correct(self.ctx, batch, weights, leaves, layout, self.weights, epoch)
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip)
        self.w_opt.step()
        sums += torch.stack([loss.detach().double() * len(y), (logits.detach().argmax(1) == y).sum().double(),
                             sums.new_full((), float(len(y)))])  # new_full: no host-to-device copy, no sync

    def iteration(self, train_batch, val_batch, epoch: int, sums: torch.Tensor,
                  step_stats: reporting.StepStats | None = None, step: int = 0) -> None:
        """Iteration ``step`` of epoch ``epoch``: the alpha step on a validation batch (from the end of
        the warm-up epochs on), then the weight step on a training batch, in the order of quark0/darts
        ``cnn/train_search.py`` ``train`` (L147), or the other way round (``step_order``
        ``weights-first``). Nothing in it waits for the device (tests/test_host_syncs.py)."""
        weights_first = self.cfg.step_order == "weights-first"
        if weights_first:
            self.weight_step(train_batch, epoch, sums)
        if epoch >= self.cfg.warmup_epochs:
            info = self.arch_opt.step(self.arch_loss(val_batch, epoch, step))
            if step_stats is not None:
                step_stats.add(info)
        if not weights_first:
            self.weight_step(train_batch, epoch, sums)

    # --- epochs --------------------------------------------------------------------------------
    def _sweep(self, epoch: int, weights: dict[str, torch.Tensor] | None) -> tuple[float, float]:
        """Loss and accuracy (%) on the whole validation split, no gradient, in the network's mode."""
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for x, y in self.valid.sweep(epoch):
                with self.autocast():
                    logits = self.net(x, weights)
                loss = F.cross_entropy(widened(logits), y, reduction="sum")
                sums += torch.stack([loss.double(), (logits.argmax(1) == y).sum().double(),
                                     sums.new_full((), float(len(y)))])
        loss_sum, correct, seen = self.ranks.sum(sums).tolist()
        return loss_sum / seen, 100.0 * correct / seen

    def validate(self, epoch: int) -> tuple[float, float]:
        """Loss and accuracy (%) on the whole validation split, eval mode (AsquaredM ``infer``)."""
        self.net.eval()
        try:
            return self._sweep(epoch, self.mixing(self.net))
        finally:
            self.net.train()

    def projection_accuracy(self, epoch: int) -> Callable[[dict[str, torch.Tensor]], float]:
        """DARTS-PT's score: validation accuracy at given weights, BatchNorm in train mode as in
        darts-pt's ``infer(..., eval=False)`` (its running statistics move, as there)."""
        return lambda weights: self._sweep(epoch, weights)[1]

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        for per_epoch in self.method.schedules:
            per_epoch.start_epoch(self.ctx, epoch)
        genotype_start = self.space.genotype(self.net, self.mixing(self.net))
        if epoch < cfg.lr_warmup_epochs and self.projection is None:
            # PC-DARTS' ImageNet warm-up (train_search_imagenet.py L150-158): lr (e + 1) / W instead of the cosine's
            for group in self.w_opt.param_groups:
                group["lr"] = cfg.lr * (epoch + 1) / cfg.lr_warmup_epochs
        self.net.train()
        step_stats = reporting.StepStats(self.device)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        lr = self.w_opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        batches = zip(range(self.iters), self.train.epoch(epoch), self.valid.epoch(epoch))
        bar = _tqdm(batches, cfg.progress, total=self.iters, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for t, train_batch, val_batch in bar:
            self.iteration(train_batch, val_batch, epoch, sums, step_stats, step=t)
            if cfg.progress and t % 10 == 9:  # a host sync every 10 iterations, only with a bar
                loss_sum, correct, seen = sums.tolist()
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%")
        self.arch_opt.check()  # the last alpha step's NaN/Inf check (deferred: read once per epoch, not per step)
        if not self.cfg.sync_bn:  # rank 0's BatchNorm statistics for validation (DDP's broadcast_buffers)
            self.ranks.broadcast(list(self.net.buffers()))
        if self.sched is not None:
            # the warm-up's rate is this epoch's only: torch's cosine computes the next rate from the one in place
            if epoch < cfg.lr_warmup_epochs:
                for group, rate in zip(self.w_opt.param_groups, self.sched.get_last_lr()):
                    group["lr"] = rate
            self.sched.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - t0
        val_loss, val_acc = self.validate(epoch)
        seconds = time.perf_counter() - t0
        self.elapsed += seconds
        self.iterations_done += self.iters
        loss_sum, correct, seen = self.ranks.sum(sums).tolist()
        genotype = self.space.genotype(self.net, self.mixing(self.net))
        figures = decision.figures(self.net.alphas(), self.noise_margin)
        return {
            "epoch": epoch + 1,
            "phase": "search" if self.projection is None else "tune",
            "genotype_start": self.space.genotype_to_json(genotype_start),
            "genotype": self.space.genotype_to_json(genotype),
            "train_loss": loss_sum / seen,
            "train_acc": 100.0 * correct / seen,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "step": step_stats.means(),
            "benchmark": self.space.evaluate(genotype),
            "lr": lr,
            "alphas": {k: widened(p.detach()).cpu().tolist() for k, p in self.arch.items()},
            **figures,
            "undecided": figures["decided_edges"] == 0,
            "seconds": seconds,  # the epoch, validation included
            "seconds_per_iteration": train_seconds / self.iters,  # alpha step + weight step
        }

    def search_records(self) -> list[dict[str, Any]]:
        return [r for r in self.history if r.get("phase", "search") == "search"]

    def search_finished(self) -> bool:
        done = self.search_records()
        return (len(done) >= self.cfg.epochs or reporting.should_stop(done, self.cfg.early_stop)
                or hessian.stop_epoch(done, self.cfg) is not None)

    def finished(self) -> bool:
        tuned = len(self.history) - len(self.search_records())
        return self.search_finished() and tuned >= self.tune_epochs

    def run(self) -> SearchResult:
        try:
            return self._run()
        finally:
            self.trackers.close()  # after the result's finish() nothing; a stopped or failed search ends its runs

    def _run(self) -> SearchResult:
        cfg = self.cfg
        self.folder.open()
        if self.records and self.finished():
            _say(f"--resume: the search in {cfg.out} is complete ({len(self.history)} epochs); nothing to run. "
                 "Pass a larger --epochs to extend it.")
            return self.result(write=bool(self.folder.out), only_if_stale=True)
        if self.records:
            _say(f"--resume: continuing the search in {cfg.out} after epoch {len(self.history)} of "
                 f"{cfg.epochs + self.tune_epochs}")
        # rank 0's, as the run folder
        self.trackers = trackers.Trackers(trackers.parse(cfg.log_to) if self.ranks.writer else (), cfg.out,
                                          self.settings(), self.tracker_ids)
        self.tracker_ids = {**self.tracker_ids, **self.trackers.ids()}
        bar = _tqdm(range(cfg.epochs + self.tune_epochs), cfg.progress, initial=len(self.history), desc="search")
        try:
            while not self.search_finished():
                self._epoch(len(self.history), bar)
                if reporting.should_stop(self.search_records(), cfg.early_stop):
                    self._print(f"early stop: more than {cfg.early_stop} epochs without a lower validation loss")
                if message := hessian.stop_message(self.search_records(), cfg):
                    self._print(message)
            if self.tune_epochs:
                self._tune(bar)
        except DIVERGENCES as exc:
            # an epoch that cannot be committed ends the search; an earlier finite epoch is still reported
            if cfg.select == PROJECTED or reporting.selected(self.history, cfg.select) is None:
                raise
            self.blew_up = (len(self.history) + 1, str(exc))
        return self.result(write=bool(self.folder.out))

    def _epoch(self, epoch: int, bar) -> None:
        """One epoch, its record and line, its checkpoint (the commit), then the log derived from it."""
        record = self.run_epoch(epoch)
        record.update(hessian.measure(self, epoch))
        assert_finite_state(self.net.state_dict(), epoch + 1, "Lower --lr or --arch-lr.")
        self.records.append(record)
        self._print(reporting.format_epoch(record, self.cfg.epochs + self.tune_epochs))
        if self.folder.out:  # the one condition on whether this process writes the run's files
            self.folder.save_checkpoint(self.state(epoch + 1))
            write_json_lines(self.records, self.path(LOG_NAME))
        self.trackers.log_record(record)  # after the commit: a tracker never shows an epoch a resume runs again
        if hasattr(bar, "update"):
            bar.update(1)

    def _start_tuning(self, state: ProjectionState) -> None:
        """DARTS-PT's tuning: a fresh SGD at a tenth of the learning rate, constant (darts-pt
        ``reset_optimizer(args.learning_rate / 10, ...)``)."""
        self.projection = state
        cfg = self.cfg
        self.w_opt = torch.optim.SGD(self.weights, cfg.lr / 10, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.sched = None

    def _tune(self, bar) -> None:
        if self.projection is None:
            self._start_tuning(ProjectionState.empty({g: a.shape[0] for g, a in self.net.alphas().items()}))
        searched = len(self.search_records())
        while len(self.history) - searched < self.tune_epochs:
            t = len(self.history) - searched
            if t in self.rounds and not self.projection.complete(self.nodes):
                self._project(self.rounds[t], len(self.history) + 1)
            self._epoch(len(self.history), bar)

    def _project(self, kind: str, epoch: int) -> None:
        with torch.no_grad():
            weights = mixing_weights(self.net)
        self.net.train()
        made = self.method.projection.round(kind, self.projection, weights, self.projection_accuracy(epoch),
                                            self.generator, self.net, self.nodes)
        self.records += [{"projection": {"epoch": epoch, **record}} for record in made]  # search.jsonl alone
        for line in reporting.projection_lines(made, self.nodes, self.net.edge_names):
            self._print(f"projection before epoch {epoch}: {line}")

    def _tagged(self, line: str) -> str:
        return f"[{self.cfg.tag}] {line}" if self.cfg.tag else line

    def _print(self, line: str) -> None:
        line = self._tagged(line)
        if self.cfg.progress:
            from tqdm.auto import tqdm

            tqdm.write(line)
        else:
            print(line, flush=True)

    def divergence(self) -> tuple[int, str] | None:
        """``(epoch, what)`` when the search diverged: an epoch had non-finite losses
        (:func:`.reporting.diverged_epoch`), or could not be committed (NaN/Inf weights or architecture step)."""
        epoch = reporting.diverged_epoch(self.history)
        if epoch is None and self.blew_up is not None:
            return self.blew_up
        if epoch is None:
            return None
        record = next(r for r in self.history if r["epoch"] == epoch)
        return epoch, f"training loss {record['train_loss']:.4g}, validation loss {record['val_loss']:.4g}"

    def result(self, write: bool, only_if_stale: bool = False) -> SearchResult:
        """The reported result; with ``write``, its files (derived from the checkpoint, ``result.json``
        last); ``only_if_stale``: only when ``result.json`` differs from what the checkpoint gives."""
        cfg, space = self.cfg, self.space
        diverged = self.divergence()
        chosen = reporting.selected(self.history, cfg.select)
        if chosen is None:
            epoch, what = diverged or (self.history[-1]["epoch"], "non-finite losses")
            raise DivergedError(f"the search diverged from epoch {epoch} ({what}) and no epoch has finite losses to "
                                "report; lower --lr or --arch-lr, or pass --restart with other settings")
        genotype_json, epoch = chosen
        selection = reporting.describe_selection(cfg.select, epoch, self.history)
        read_after = epoch - 1 if cfg.select == "best-val-loss" else epoch  # its genotype_start: the epoch before's
        if (stopped := hessian.selected(self.search_records(), cfg)) is not None:
            genotype_json, epoch, selection = stopped  # R-DARTS' rule reports an earlier epoch's genotype
            read_after = epoch
        if diverged is not None:
            selection += f"; the search diverged from epoch {diverged[0]} ({diverged[1]})"
        genotype = space.genotype_from_json(genotype_json)
        final = space.genotype_from_json(self.history[-1]["genotype"])
        best = reporting.best_record(self.search_records())
        result = SearchResult(
            genotype=genotype, genotype_json=genotype_json, benchmark=space.evaluate(genotype),
            selection=selection, selected_epoch=epoch,
            best_epoch=best and best["epoch"], best_genotype=best and best["genotype_start"],
            final_genotype=self.history[-1]["genotype"], final_benchmark=space.evaluate(final), history=self.history,
            config=self.settings(), out=cfg.out, seconds=self.elapsed,
            seconds_per_iteration=self.elapsed / max(1, self.iterations_done),
            stopped_early=len(self.search_records()) < cfg.epochs, reference=space.reference_accuracies(),
            recipe={"name": cfg.recipe, "source": self.method.recipe_source(cfg.recipe),
                    "changed": self.recipe_changes},
            provenance=provenance(self.device),
            warnings=self.warnings(genotype_json, epoch, diverged, None if cfg.select == PROJECTED else read_after),
            profile=space.profile(genotype), diverged_epoch=diverged and diverged[0],
        )
        for warning in result.warnings:
            _say(self._tagged(f"warning: {warning}"))
        if write:
            self._write_files(result, only_if_stale)
        return result

    def _write_files(self, result: SearchResult, only_if_stale: bool) -> None:
        """The files derived from the checkpoint: the genotype's, the plot, then ``result.json`` (the
        log follows every checkpoint; ``only_if_stale`` rewrites it too: a kill may have come between)."""
        cfg, record = self.cfg, result.to_json()
        path = self.path(RESULT_NAME)
        if only_if_stale:
            if written_as(path, record):
                return
            _say(f"--resume: {path} is missing or does not match the checkpoint; rewriting the search's files from it")
            write_json_lines(self.records, self.path(LOG_NAME))
        title = f"{cfg.space} {cfg.method} {cfg.optimizer} seed {cfg.seed}"
        self.space.save_genotype(result.genotype, self.folder.out, title=title)
        if cfg.plot:
            from .plot import plot_history

            plot_history(self.history, self.path(PLOT_NAME), title=title, labels=self.plot_labels(),
                         initial=self.initial_arch, reference=result.reference)
        write_json(record, path)
        self.trackers.finish(record)

    def warnings(self, genotype_json: Any, epoch: int, diverged: tuple[int, str] | None = None,
                 read_after: int | None = None) -> list[str]:
        """The search diverged, the reported genotype is the one the random initial alphas give, or some
        of its edges are undecided in the alphas it was read from, those after epoch ``read_after`` (0: the
        initial alphas; ``None``: DARTS-PT, whose projection chose the ops by their validation accuracy)."""
        found = []
        if diverged is not None:
            found.append(f"the search diverged from epoch {diverged[0]}; it reports epoch {epoch}, and a summary over "
                         "seeds or a sweep report does not count it")
        if genotype_json == self.history[0]["genotype_start"]:
            found.append(f"the reported genotype (epoch {epoch}) is the initial one, that of the random initial "
                         "alphas: the search has not changed it")
        figures = self._figures_after(read_after)
        undecided = figures.get("edges", 0) - figures.get("decided_edges", 0)  # records of older versions lack them
        if undecided:
            alphas = f"the alphas after epoch {read_after}" if read_after else "the initial alphas"
            found.append(f"{undecided} of the reported cell's {figures['edges']} edges "
                         f"{'is' if undecided == 1 else 'are'} undecided in {alphas}, which it was read from: the "
                         f"lead of the chosen op over the runner-up is at most {decision.NOISE_RATIO:g}x the largest "
                         f"lead among the random initial alphas ({self.noise_margin:.1e}), a choice a few more steps "
                         "could reverse; search longer or with a larger --arch-lr")
        return found

    def _figures_after(self, epoch: int | None) -> dict[str, Any]:
        """:func:`decision.figures` of the alphas after ``epoch`` (0: the initial ones; ``None``: none)."""
        if epoch is None:
            return {}
        if epoch == 0:
            return decision.figures(self.initial_alphas, self.noise_margin)
        return next(r for r in self.history if r["epoch"] == epoch)

    def plot_labels(self) -> dict[str, tuple[str, Any, Any]]:
        """Per architecture tensor name: its group, op names and edge names."""
        name_of = {id(p): n for n, p in self.arch.items()}
        return {name_of[id(alpha)]: (group, self.net.op_names[group], self.net.edge_names[group])
                for group, alpha in self.net.alphas().items()}


def settings_to_resume(recorded: dict[str, Any] | None, out: str, given: Iterable[str]) -> dict[str, Any] | None:
    """``recorded`` (a checkpoint's settings) for ``--resume`` without retyping; refused when there is
    no checkpoint yet and the command gives no setting either: the defaults would run in place of the
    search that was stopped before its first epoch ended (a CIFAR search would go on as the demo)."""
    if recorded is None and not set(given) - set(RESUME_MAY_CHANGE):
        raise SearchError(f"--resume: there is no checkpoint in {out} yet (the search stopped before its first epoch "
                          "ended, or never ran there), so nothing records its settings; run the original command "
                          "again, with --resume")
    return recorded


def resumed_config(cfg: SearchConfig, overrides: dict[str, Any]) -> SearchConfig:
    """``cfg`` (the defaults with ``overrides``) with every setting the overrides do not give as the
    checkpoint in ``out`` records it (``flatarch search --out X --resume``)."""
    return cfg.with_recorded(settings_to_resume(checkpoint_settings(cfg.out), cfg.out, overrides), overrides)


def search_one(config: SearchConfig | None = None, *, data: ImageData | None = None, **overrides: Any) -> SearchResult:
    """Run one search (one seed). Keyword arguments override fields of ``config``. To continue a
    search, ``search_one(out=X, resume=True)`` is enough: the settings not given come from its
    checkpoint (with a ``config``, all of its settings must match the checkpoint's).

    ``data``: search on these images instead of loading ``config.dataset`` (any
    :class:`~flatarch.reference_spaces.data.ImageData`, e.g. your own tensors); the
    dataset name is then only a label.

    Raises:
        flatarch.reference_spaces.errors.UsageError: settings, files or data that cannot work (the
            message says what to change); nothing on disk has changed then.
    """
    given = (config or SearchConfig()).replace(**overrides)
    with joined(resolve_device(given.device, given.amp)) as ranks:
        if config is None and given.resume and given.out:
            # rank 0 reads a resumed run's settings for every rank (the others need not see its folder)
            given = ranks.from_writer(lambda: resumed_config(given, overrides))
        return _Searcher(given, data, ranks).run()


__all__ = ["DataError", "SearchError", "SearchResult", "search_one"]
