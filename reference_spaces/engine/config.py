"""Settings of one search (:class:`SearchConfig`) and their defaults (SPEC section 3)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

#: The paper's settings apply to every dataset except the offline ``digits`` default, which is a
#: demo sized to finish in about a minute on one CPU core: 5 epochs of a narrow (C = 8),
#: one-cell-per-stage network. Explicit settings always win.
DATASET_DEFAULTS: dict[str, dict[str, int]] = {"digits": {"epochs": 5, "channels": 8, "cells_per_stage": 1}}
PAPER_EPOCHS = 50


class SearchError(Exception):
    """A search cannot start as asked (bad settings, an output folder in the way, no CUDA...);
    the message says what to change."""


@dataclass
class SearchConfig:
    """Everything that determines a search. ``None`` means "the default for this space/dataset".

    Paper defaults (SPEC section 3): 50 epochs, batch 64, weights by SGD (momentum 0.9,
    weight decay 3e-4, lr 0.025 cosine-annealed per epoch to 0.001, gradient norm clipped at 5),
    alphas by Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) fed the ArchOptimizer's
    direction, training set split 50/50 into weight and alpha halves.
    """

    space: str = "nb201"
    method: str = "darts"
    optimizer: str = "a2m"
    rho: float | None = None  # space default (nb201: 1e-2)
    eps: float | None = None  # space default (nb201: 1e-2)
    difference: str = "central"  # A2M finite differences: central (paper, 4 evaluations) | forward (3)
    epochs: int | None = None  # 50 (digits demo: 5)
    batch_size: int = 64
    seed: int = 0
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    subset: int | None = None  # use only the first N training images (tests, demos)
    max_batches: int | None = None  # cap on iterations per epoch (tests, timing)
    out: str | None = None  # folder for log, checkpoint, plot; None: keep nothing on disk
    resume: bool = False
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # bf16 autocast on CUDA
    threads: int | None = None  # torch CPU threads (None: leave torch's setting); the CLI uses 1
    val_augment: bool | None = None  # None: off for DARTS, on for the other methods (paper C.4)
    channels: int | None = None  # space default (nb201: 16; digits demo: 8)
    cells_per_stage: int | None = None  # space default (nb201: 5; digits demo: 1)
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    space_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"table": path} for nb201
    progress: bool = True  # tqdm bars
    plot: bool = True  # PNG of alphas and accuracies in ``out``

    def replace(self, **changes: Any) -> SearchConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["arch_betas"] = list(self.arch_betas)
        return d

    def resolved(self, space_defaults: dict[str, Any]) -> SearchConfig:
        """Fill the ``None`` defaults (rho, eps, epochs, network size, validation augmentation)."""
        if self.batch_size < 1:
            raise SearchError(f"--batch-size must be positive, got {self.batch_size}")
        demo = DATASET_DEFAULTS.get(self.dataset, {})
        epochs = self.epochs if self.epochs is not None else demo.get("epochs", PAPER_EPOCHS)
        if epochs < 1:
            raise SearchError(f"--epochs must be positive, got {epochs}")
        return self.replace(
            rho=self.rho if self.rho is not None else space_defaults.get("rho", 1e-2),
            eps=self.eps if self.eps is not None else space_defaults.get("eps", 1e-2),
            epochs=epochs,
            channels=self.channels or demo.get("channels") or space_defaults.get("channels"),
            cells_per_stage=(
                self.cells_per_stage or demo.get("cells_per_stage") or space_defaults.get("cells_per_stage")
            ),
            val_augment=self.val_augment if self.val_augment is not None else self.method != "darts",
        )


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SearchError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise SearchError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)
