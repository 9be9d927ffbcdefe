"""Settings of one search (:class:`SearchConfig`), their defaults and their validation.

Defaults are the paper's (tables 3 and 4): 50 epochs, batch 64, weights by SGD (momentum 0.9,
weight decay 3e-4, lr 0.025 cosine-annealed per epoch to 0.001, gradient norm clipped at 5),
alphas by DARTS' Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) fed the ArchOptimizer's
direction, the training set split 50/50 into weight and alpha halves. Every number is checked
up front (:meth:`SearchConfig.validate`), so a bad one is refused before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from flatarch.defaults import DARTS_ADAM_DEFAULTS
from flatarch.updates import RUNNING_STATS, UPDATES, canonical_update, update_settings

from .. import numbers
from ..errors import UsageError
from ..run_folder import recorded_fields
from .components import BETA_INDICES

#: The paper's common settings (tables 3 and 4), used where neither the user, nor a recipe, nor
#: the dataset's demo size, nor the space sets one.
PAPER_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 64,
    "lr": 0.025,
    "lr_min": 0.001,
    "momentum": 0.9,
    "weight_decay": 3e-4,
    "grad_clip": 5.0,
    "arch_lr": DARTS_ADAM_DEFAULTS["lr"],
    "arch_betas": DARTS_ADAM_DEFAULTS["betas"],
    "arch_weight_decay": DARTS_ADAM_DEFAULTS["weight_decay"],
    "warmup_epochs": 0,
    "lr_warmup_epochs": 0,
    "select": "best-val-loss",
    # the A2M authors' patience (AsquaredM train_search.py L239, L321-324)
    "early_stop": 10,
    "running_stats": "first-pass",
    "step_order": "alpha-first",
}

#: ``--step-order``: which step of an iteration comes first: the alpha step (quark0/darts
#: ``cnn/train_search.py`` ``train``, L147, and every method of the A2M authors' code) or the weight
#: step (lambda-DARTS' NAS-Bench-201 code, ``exps/algos/DARTS-V1.py`` L38-63)
STEP_ORDERS = ("alpha-first", "weights-first")

#: The offline ``digits`` default is a demo sized to finish in about a minute on one CPU core that
#: visibly decides its cell: 10 epochs of a narrow (C = 8), one-cell-per-stage network, the first 3
#: (none in a demo of fewer than 9 epochs) of weight steps only (as PC-DARTS' warm-up:
#: alphas then follow trained weights, not the start's noise) and an alpha learning rate of 0.1: at the
#: paper's 3e-4 the op probabilities stay within 0.005 of uniform over a demo's 100 alpha steps
#: (README.md has the margins measured with these settings). Explicit settings always win.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 10, "channels": 8, "cells_per_stage": 1, "warmup_epochs": 3, "arch_lr": 0.1},
}

#: fields that say what one command does, not how the search runs: never taken from a checkpoint
#: (``--resume`` takes every other setting the command does not give from there)
INVOCATION = ("out", "resume", "restart", "progress", "threads", "download")


def as_recorded_now(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A search's recorded settings (a checkpoint's or ``result.json``'s ``config``) as this version
    names what that search ran: a record made before ``running_stats``, ``step_order``,
    ``beta_index``, ``edge_normalization`` and ``partial_channels`` existed ran one BatchNorm update
    per alpha step, the alpha step first, beta-DARTS' coefficient from the epoch, PC-DARTS' edge
    normalisation on the DARTS space only and its K = 4; a DARTS-space record with no op set
    searched the 8 ops of ``darts``, the default before ``s5``. ``--resume`` and sweeps read older runs through it."""
    method, space = recorded.get("method"), recorded.get("space")
    before = {"running_stats": "first-pass", "step_order": "alpha-first",
              "beta_index": "epoch" if method == "betadarts" else None,
              "edge_normalization": space == "darts" if method == "pcdarts" else None,
              "partial_channels": 4 if method == "pcdarts" else None}
    now = {**before, **recorded}
    if space == "darts" and now.get("ops") is None:
        now["ops"] = "darts"
    return now


#: command-line flags whose name is not the field name with dashes
FLAGS: dict[str, str] = {"cells_per_stage": "--cells", "space_options": "--table", "lambda_coef": "--lambda"}


def flag(name: str) -> str:
    """The ``flatarch search`` flag of a :class:`SearchConfig` field."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


#: ``--select``: which epoch's genotype a search reports (DARTS-PT always reports its projection's)
SELECTIONS = ("best-val-loss", "final")
#: the dataset read from an ImageFolder tree, batch by batch (``data/image_folder.py``)
IMAGENET = "imagenet"
#: ``--dtype``: the floating-point type of the network, the batches and the steps
DTYPES = {"float32": torch.float32, "float64": torch.float64}
PROJECTED = "projection"


class SearchError(UsageError):
    """A search cannot start as asked (bad settings, an output folder in the way, no CUDA...);
    the message says what to change."""


@dataclass
class SearchConfig:
    """Everything that determines a search. ``None`` means "the default": the recipe's, then the
    dataset's demo size, then the space's, then the paper's (:data:`PAPER_DEFAULTS`)."""

    space: str = "nb201"
    method: str = "darts"
    optimizer: str = "a2m"
    recipe: str | None = None  # named settings of the method (None: the paper's common settings)
    rho: float | None = None  # space default (nb201: 1e-2); sam/usam/a2m only
    eps: float | None = None  # space default (1e-2); a2m only
    difference: str | None = None  # a2m only: central (paper, 4 evaluations, the default) | forward (3)
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None  # use only the first N training images (tests, demos)
    max_batches: int | None = None  # cap on iterations per epoch (tests, timing)
    out: str | None = None  # folder for log, checkpoint, plot; None: keep nothing on disk
    resume: bool = False
    restart: bool = False  # start over in an --out that holds a run (its files are moved aside)
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # bf16 autocast; needs CUDA
    compile: bool = False  # torch.compile each cell of the search network (measure it: benchmarks/gpu_suite.py)
    sync_bn: bool = False  # several ranks: BatchNorm statistics of the global batch (default: per rank, as DDP)
    dtype: str = "float32"  # float64: network, data and steps in double precision (e.g. to check a data-parallel setup)
    image_size: int | None = None  # --dataset imagenet: the training crop in pixels (default: 224, PC-DARTS')
    loader_workers: int | None = None  # --dataset imagenet: image-decoding processes per rank (default: 4)
    lr_warmup_epochs: int | None = None  # the weights' lr rises linearly over the first N epochs (default: 0)
    threads: int | None = None  # torch CPU threads (None: leave torch's setting); the CLI uses 1
    val_augment: bool | None = None  # None: the method's rule (paper appendix C.4)
    channels: int | None = None  # space default (nb201: 16; digits demo: 8)
    cells_per_stage: int | None = None  # space default (nb201: 5; digits demo: 1)
    ops: str | None = None  # candidate-op set (darts: s5 | darts); None: the method's or the space's
    running_stats: str | None = None  # BatchNorm running statistics in a multi-pass alpha step: first-pass | every-pass
    step_order: str | None = None  # alpha-first | weights-first (STEP_ORDERS)
    lr: float | None = None
    lr_min: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    arch_lr: float | None = None
    arch_betas: tuple[float, float] | None = None
    arch_weight_decay: float | None = None
    warmup_epochs: int | None = None  # epochs of weight steps only, before the first alpha step
    smoothing_epsilon: float | None = None  # SDARTS: the largest smoothing radius
    lambda_coef: float | None = None  # lambda-DARTS: the regulariser's final strength lambda
    lambda_eps0: float | None = None  # lambda-DARTS: the finite-difference radius
    lambda_corr: str | None = None  # lambda-DARTS: corr | signcorr
    beta_index: str | None = None  # beta-DARTS: what its coefficient 0.5 t counts: epoch | batch
    edge_normalization: bool | None = None  # PC-DARTS: edge normalisation (DARTS space)
    partial_channels: int | None = None  # PC-DARTS: K, the mixed ops see 1/K of the channels
    projection_interval: int | None = None  # DARTS-PT: tuning epochs between projections
    tune_epochs: int | None = None  # DARTS-PT: tuning epochs (default: the repository's schedule)
    select: str | None = None  # which epoch's genotype is reported: best-val-loss | final
    early_stop: int | None = None  # stop once more than N epochs passed without a new best (0: off)
    on_nonfinite: str = "raise"  # a NaN/Inf architecture step: raise (stop) or skip it
    hessian_every: int = 0  # measure the Hessian's dominant eigenvalue every K epochs (0: off); engine/hessian.py
    hessian_stop: float | None = None  # R-DARTS' early stop when its local mean grows by this ratio (None: off)
    space_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"table": path} for nb201
    progress: bool = True  # tqdm bars
    tag: str | None = None  # prefix of every line the search prints (a multi-seed run's: "seed N")
    log_to: str | None = None  # experiment trackers, e.g. "tensorboard,wandb,mlflow" (engine/trackers.py)
    plot: bool = True  # PNG of alphas and accuracies in ``out``

    def replace(self, **changes: Any) -> SearchConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise SearchError(f"unknown search setting(s) {', '.join(unknown)}; see SearchConfig for the settings")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.arch_betas is not None:
            d["arch_betas"] = list(self.arch_betas)
        return d

    def with_recorded(self, recorded: dict[str, Any] | None, given: Iterable[str]) -> SearchConfig:
        """This config with every setting that is not among ``given`` (nor an :data:`INVOCATION` field)
        as ``recorded`` (a checkpoint's settings) has it: ``--resume`` without retyping the options."""
        if recorded is None:
            return self
        taken = recorded_fields(SearchConfig, as_recorded_now(recorded), skip=(*given, *INVOCATION))
        if taken.get("arch_betas") is not None:
            taken["arch_betas"] = tuple(taken["arch_betas"])
        return self.replace(**taken)

    def validate(self) -> SearchConfig:
        """Refuse, with one line naming the flag, every setting that cannot work: non-finite or
        out-of-range numbers, and update settings the chosen update does not have."""
        numbers.check(dataclasses.asdict(self), _RULES, flag, SearchError)
        try:
            takes = update_settings(self.optimizer)
        except ValueError:
            raise SearchError(f"unknown --optimizer {self.optimizer!r}; choose one of: {', '.join(UPDATES)}") from None
        for name in ("rho", "eps", "difference"):
            if getattr(self, name) is not None and name not in takes:
                raise SearchError(
                    f"{flag(name)} does not apply to --optimizer {self.optimizer} (it takes "
                    f"{', '.join(flag(s) for s in takes if s in ('rho', 'eps', 'difference')) or 'none of them'}); "
                    f"drop {flag(name)}"
                )
        if self.difference is not None and self.difference not in ("central", "forward"):
            raise SearchError(f"--difference must be central or forward, got {self.difference!r}")
        if self.select is not None and self.select not in (*SELECTIONS, PROJECTED):
            raise SearchError(f"--select must be one of {', '.join(SELECTIONS)}, got {self.select!r}")
        for name, choices in (("lambda_corr", ("corr", "signcorr")), ("running_stats", tuple(RUNNING_STATS)),
                              ("step_order", STEP_ORDERS), ("beta_index", BETA_INDICES)):
            if getattr(self, name) is not None and getattr(self, name) not in choices:
                raise SearchError(f"{flag(name)} must be {' or '.join(choices)}, got {getattr(self, name)!r}")
        if self.dtype not in DTYPES:
            raise SearchError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name, value in (("image_size", self.image_size), ("loader_workers", self.loader_workers)):
            if value is not None and self.dataset != IMAGENET:
                raise SearchError(f"{flag(name)} applies to --dataset {IMAGENET} (images read from folders); drop it")
        if self.dataset == IMAGENET and self.subset is not None:
            raise SearchError(f"--subset takes the first images of an in-memory dataset; --dataset {IMAGENET} "
                              "searches PC-DARTS' 10% and 2.5% subsets of --data-dir/train: drop --subset")
        if self.amp and self.dtype != "float32":
            raise SearchError(f"--amp computes in bf16; it does not combine with --dtype {self.dtype}: drop one")
        if self.on_nonfinite not in ("raise", "skip"):
            raise SearchError(f"--on-nonfinite must be raise or skip, got {self.on_nonfinite!r}")
        _check_hessian_stop(self)
        from .trackers import parse

        if parse(self.log_to) and not self.out:
            raise SearchError("--log-to writes the trackers' files beside the run's; give --out (Python: out=...)")
        return self

    def resolved(self, space_defaults: dict[str, Any]) -> SearchConfig:
        """Validate, then fill every ``None`` default: the recipe's, the method's (its demo settings
        first on the demo dataset), the dataset's demo size, the space's, the paper's. Settings the
        update or the method does not take stay ``None``, so the config records what ran."""
        from .methods import METHOD_SETTINGS, get_method

        self.validate()
        try:
            method = get_method(self.method)
            recipe = method.recipe(self.recipe, self.space, canonical_update(self.optimizer))
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        for name in sorted(METHOD_SETTINGS - set(method.settings)):
            if getattr(self, name) is not None:
                raise SearchError(f"{flag(name)} does not apply to --method {self.method}; drop it")
        for name, fixed in method.fixed.items():
            if getattr(self, name) not in (None, fixed):
                raise SearchError(f"--method {self.method} always runs with {flag(name)} {fixed} (its only valid "
                                  f"choice: {_fixed_reason.get(name, fixed)}), not {getattr(self, name)}; drop "
                                  f"{flag(name)}")
        takes = update_settings(self.optimizer)
        demo = DATASET_DEFAULTS.get(self.dataset, {})
        sources = (recipe, method.fixed, method.demo if demo else {}, method.defaults.for_space(self.space), demo,
                   space_defaults, PAPER_DEFAULTS, {"val_augment": self.space not in method.val_augment_off})

        def default(name: str) -> Any:
            value = getattr(self, name)
            for source in sources:
                if value is not None:
                    break
                value = source.get(name)
            return value

        names = (*PAPER_DEFAULTS, *METHOD_SETTINGS, "channels", "cells_per_stage", "ops", "val_augment")
        filled = {name: default(name) if name not in METHOD_SETTINGS or name in method.settings else None
                  for name in names}
        if self.warmup_epochs is None and all("warmup_epochs" not in s for s in sources[:4]) and demo:
            # the demo warms up only when it runs three times as long: a short one (--epochs 2) steps its
            # alphas from the start, and extending a run (--resume --epochs) keeps its warm-up
            if filled["epochs"] < 3 * filled["warmup_epochs"]:
                filled["warmup_epochs"] = 0
        resolved = self.replace(
            **filled,
            optimizer=canonical_update(self.optimizer),
            recipe=self.recipe or "paper",
            rho=default("rho") if "rho" in takes else None,
            eps=default("eps") if "eps" in takes else None,
            difference=(self.difference or "central") if "difference" in takes else None,
            **(_folder_defaults(self) if self.dataset == IMAGENET else {}),
        )
        return resolved.validate()

    def recipe_changes(self, space_defaults: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``{setting: {"value": v, "default": d}}`` for every setting the recipe set to another value
        than this search would have without it (settings the user gave are the user's)."""
        from .methods import get_method

        ran = self.resolved(space_defaults)
        without = self.replace(recipe=None).resolved(space_defaults)
        named = get_method(self.method).recipe(ran.recipe, self.space, ran.optimizer)
        return {name: {"value": getattr(ran, name), "default": getattr(without, name)} for name in sorted(named)
                if getattr(ran, name) != getattr(without, name)}


#: why a method's fixed setting is the only one it can take
_fixed_reason = {"select": "it reports the genotype its projection phase picks, not an epoch's"}

_RULES: dict[str, numbers.Rule] = {
    **numbers.COMMON,
    "subset": (lambda v: numbers.whole(v) and v >= 4, "a whole number of images >= 4"),
    "max_batches": numbers.AT_LEAST_ONE,
    "channels": numbers.AT_LEAST_ONE,
    "rho": numbers.NOT_NEGATIVE,
    "eps": numbers.POSITIVE,
    "arch_lr": numbers.POSITIVE,
    "arch_weight_decay": numbers.NOT_NEGATIVE,
    "arch_betas": (lambda v: len(v) == 2 and all(numbers.FRACTION[0](b) for b in v), "two numbers in [0, 1)"),
    "warmup_epochs": numbers.NOT_NEGATIVE_WHOLE,
    "lr_warmup_epochs": numbers.NOT_NEGATIVE_WHOLE,
    "image_size": (lambda v: numbers.whole(v) and v >= 16, "a whole number of pixels >= 16"),
    "loader_workers": numbers.NOT_NEGATIVE_WHOLE,
    "smoothing_epsilon": numbers.NOT_NEGATIVE,
    "lambda_coef": numbers.NOT_NEGATIVE,
    "lambda_eps0": numbers.POSITIVE,
    "projection_interval": numbers.AT_LEAST_ONE,
    "partial_channels": numbers.AT_LEAST_ONE,
    "tune_epochs": numbers.AT_LEAST_ONE,
    "early_stop": (numbers.NOT_NEGATIVE_WHOLE[0], "a whole number >= 0 (0 = off)"),
    "hessian_every": (numbers.NOT_NEGATIVE_WHOLE[0], "a whole number of epochs >= 0 (0 = off)"),
    "hessian_stop": (lambda v: numbers.finite(v) and v > 1, "a finite ratio > 1 (R-DARTS: 1.3)"),
}


def _folder_defaults(cfg: SearchConfig) -> dict[str, int]:
    from ..data import image_folder

    return {"image_size": cfg.image_size or image_folder.IMAGE_SIZE,
            "loader_workers": image_folder.LOADER_WORKERS if cfg.loader_workers is None else cfg.loader_workers}


def _check_hessian_stop(cfg: SearchConfig) -> None:
    if cfg.hessian_stop is None:
        return
    if not cfg.hessian_every:
        raise SearchError("--hessian-stop watches the eigenvalue that --hessian-every measures; add --hessian-every K "
                          "(e.g. 1: every epoch)")
    if cfg.select == PROJECTED:
        raise SearchError(f"--method {cfg.method} reports its projection's genotype, not an epoch's; "
                          "drop --hessian-stop")


def resolve_device(name: str, amp: bool = False) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error, and so is
    ``amp`` (bf16 autocast) on a CPU."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif name.startswith("cuda") and not torch.cuda.is_available():
        raise SearchError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    elif name != "cpu" and not name.startswith("cuda"):
        raise SearchError(f"unknown device {name!r}; use auto, cpu or cuda")
    else:
        device = torch.device(name)
    if amp and device.type != "cuda":
        raise SearchError("--amp (bf16 mixed precision) needs a CUDA device; drop --amp on CPU")
    return device
