"""The record an architecture step returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepInfo:
    """What one :meth:`ArchOptimizer.step` measured.

    Values are detached 0-dim tensors on the parameters' device, so logging them costs no
    host synchronisation until you read them (``float(info.loss)``, :meth:`as_dict`).

    Attributes:
        loss: ``L(alpha)``, the validation loss at the current architecture.
        perturbed_loss: ``L(alpha + e)`` at the update's perturbed point (``== loss`` for
            first-order DARTS). ``perturbed_loss - loss`` is the sharpness estimate.
        grad_norm: ``||g(alpha)||``, the global 2-norm of the plain alpha gradient.
        evaluations: how many loss (and alpha-gradient) evaluations the step made.
        skipped: the inner optimizer did not step (non-finite values; see ``found_inf``). A 0-dim
            bool tensor on the device when the update has ``deferred_check`` (read it only when
            you need it: that waits for the device).
        found_inf: a loss or gradient was NaN/Inf (with a grad scale: an fp16 overflow); a
            tensor like ``skipped`` with ``deferred_check``.
    """

    loss: torch.Tensor
    perturbed_loss: torch.Tensor
    grad_norm: torch.Tensor
    evaluations: int
    skipped: bool | torch.Tensor = False
    found_inf: bool | torch.Tensor = False

    @property
    def sharpness(self) -> torch.Tensor:
        """``L(alpha + e) - L(alpha)``: how much the loss rises at the perturbed point."""
        return self.perturbed_loss - self.loss

    def as_dict(self) -> dict[str, float | int | bool]:
        """Plain Python numbers, e.g. for a JSON log line (synchronises with the device)."""
        return {
            "loss": float(self.loss),
            "perturbed_loss": float(self.perturbed_loss),
            "sharpness": float(self.sharpness),
            "grad_norm": float(self.grad_norm),
            "evaluations": self.evaluations,
            "skipped": bool(self.skipped),
            "found_inf": bool(self.found_inf),
        }
