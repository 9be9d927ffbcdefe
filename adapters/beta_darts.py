"""Drop-in ``Architect`` for the beta-DARTS repository (``optimizers/darts/architect.py``).

Change the import in the training script (``nasbench201/train_search.py``, ``sota/cnn/...``)::

    from flatarch.adapters.beta_darts import Architect  # was: from optimizers.darts.architect import Architect

Every gradient evaluation of the update (A2M's four, SAM's two, ...) differentiates the
beta-DARTS objective at the point it evaluates::

    L(alpha) = model._loss(x_val, y_val) + lambda(epoch) * sum_k w_k * mean_e logsumexp_o alpha_k[e, o]
    lambda(epoch) = start + (end - start) * epoch / epochs     # defaults 0, 50, 100: epoch / 2

as the original's ``_backward_step`` does for first-order DARTS. ``alpha_k`` are the op-choice
tensors among ``arch_parameters()`` (those with two or more dimensions: the single ``[6, 5]``
parameter on NAS-Bench-201, ``alphas_normal`` and ``alphas_reduce`` on the DARTS space, where
the original code fails because it applies ``logsumexp`` to the list); PC-DARTS' 1-D
edge-normalisation ``betas`` are not regularised. The weights ``w_k`` (one per op-choice
tensor, default 1 each) give the per-cell-type weighting of the A2M paper's appendix C.5.

Extra knobs (besides :mod:`flatarch.adapters._architect`'s):

========================= ===================================================================
``beta_decay_weights``    ``w_k``: a number for all, or one per op-choice tensor in
                          ``arch_parameters()`` order, e.g. ``(w_normal, w_reduce)``; a
                          comma-separated string works too (default 1 each)
``beta_decay_start``      ``lambda`` at epoch 0 (0)
``beta_decay_end``        ``lambda`` at ``beta_decay_epochs`` (50)
``beta_decay_epochs``     the epoch at which ``lambda`` reaches ``beta_decay_end`` (100; the
                          original's constant, independent of ``args.epochs``)
========================= ===================================================================

Call shapes: the original is ``step(input_train, target_train, input_valid, target_valid,
eta, network_optimizer, epoch, unrolled)``. Its scripts also call it with ``unrolled`` as the
seventh positional argument, with ``unrolled=`` only, or with neither; all of these work here.
Without an epoch in the call the latest epoch given (to ``step`` or to :meth:`Architect.set_epoch`)
is used; with none ever given, ``lambda`` is 0 and a warning says so once.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import torch

from flatarch import regularizers
from flatarch.step_info import StepInfo

from ._architect import FlatArchitect

_MISSING: Any = object()


def _parse_weights(value: Any, count: int) -> list[float]:
    if value is None:
        return [1.0] * count
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, numbers.Real):
        return [float(value)] * count
    weights = [float(v) for v in value]
    if len(weights) == 1:
        return weights * count
    if len(weights) != count:
        raise ValueError(
            f"beta_decay_weights has {len(weights)} values but the model has {count} op-choice alpha tensor(s) "
            "(arch_parameters() entries with 2 or more dimensions); give one weight per tensor, e.g. "
            "(w_normal, w_reduce) on the DARTS space"
        )
    return weights


def _check_epoch(epoch: Any) -> float:
    if isinstance(epoch, bool) or not isinstance(epoch, (numbers.Real, torch.Tensor)):
        raise TypeError(f"epoch must be a number (the current search epoch), got {epoch!r}")
    value = float(epoch)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"epoch must be a finite number >= 0, got {epoch!r}")
    return value


class Architect(FlatArchitect):
    """``Architect(model, args)`` as in beta-DARTS; see the module docstring for the objective.

    Attributes (beyond :class:`flatarch.adapters._architect.FlatArchitect`'s):
        epoch: the epoch the regulariser weight is computed from (``None`` until known).
        beta_decay_weights: ``w_k`` per op-choice tensor.
    """

    def __init__(self, model: Any, args: Any = None, **overrides: Any):
        super().__init__(model, args, **overrides)
        arch = list(self.update.leaves)
        self._regularized = [t for t in arch if t.dim() >= 2]
        if not self._regularized:
            raise ValueError(
                "beta-DARTS regularises op-choice alphas ([edges, ops] tensors), but every tensor in "
                "arch_parameters() is 1-D"
            )
        self.beta_decay_weights = _parse_weights(self.knobs.get("beta_decay_weights"), len(self._regularized))
        self.beta_decay_start = float(self.knobs.get("beta_decay_start", 0.0))
        self.beta_decay_end = float(self.knobs.get("beta_decay_end", 50.0))
        self.beta_decay_epochs = float(self.knobs.get("beta_decay_epochs", 100.0))
        # fails early on a bad schedule
        regularizers.beta_decay_weight(0, start=self.beta_decay_start, end=self.beta_decay_end,
                                       epochs=self.beta_decay_epochs)
        self.epoch: float | None = None
        self._warned_no_epoch = False

    def set_epoch(self, epoch: float) -> None:
        """Tell the architect the current epoch, for loops that do not pass it to ``step``."""
        self.epoch = _check_epoch(epoch)

    def beta_decay_lambda(self, epoch: float | None = None) -> float:
        """``lambda(epoch)``; ``epoch`` defaults to the latest one known (0 when none is)."""
        epoch = self.epoch if epoch is None else _check_epoch(epoch)
        if epoch is None:
            return 0.0
        return regularizers.beta_decay_weight(
            epoch, start=self.beta_decay_start, end=self.beta_decay_end, epochs=self.beta_decay_epochs
        )

    def regularizer(self) -> torch.Tensor:
        """``sum_k w_k * mean_e logsumexp_o alpha_k[e, o]`` at the live alphas (without ``lambda``)."""
        return regularizers.beta_decay(self._regularized, self.beta_decay_weights)

    def _objective(self, input_valid: Any, target_valid: Any):
        lam = self.beta_decay_lambda()
        if lam == 0.0:
            return super()._objective(input_valid, target_valid)
        # the closure reads the live alphas, so the perturbed points see the regulariser too
        return lambda: self._val_loss(input_valid, target_valid) + lam * self.regularizer()

    def step(
        self,
        input_train: Any,
        target_train: Any,
        input_valid: Any,
        target_valid: Any,
        eta: float | None = None,
        network_optimizer: Any = None,
        epoch: Any = _MISSING,
        unrolled: Any = _MISSING,
    ) -> StepInfo:
        """One architecture step at the beta-DARTS objective; see the module docstring for call shapes."""
        if isinstance(epoch, bool):
            # `step(..., lr, optimizer, args.unrolled)`: a DARTS-style call, the bool is `unrolled`.
            if unrolled is not _MISSING:
                raise TypeError(
                    f"step() got a bool ({epoch}) where the epoch goes and unrolled={unrolled!r} as well; pass the "
                    "epoch as a number: step(..., lr, optimizer, epoch, unrolled=args.unrolled)"
                )
            epoch, unrolled = _MISSING, epoch
        if unrolled is _MISSING:
            unrolled = False
        self._check_unrolled(unrolled)
        if epoch is not _MISSING and epoch is not None:
            self.set_epoch(epoch)
        elif self.epoch is None and not self._warned_no_epoch:
            self._warned_no_epoch = True
            warnings.warn(
                "beta-DARTS adapter: no epoch known (step() got none and set_epoch() was not called), so the "
                "beta-decay weight lambda(epoch) is 0; pass the epoch to step() or call architect.set_epoch(epoch) "
                "at the start of every epoch",
                stacklevel=2,
            )
        return self._arch_step(input_valid, target_valid, unrolled)
