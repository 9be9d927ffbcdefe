"""Architecture steps that never wait for the device: the NaN/Inf check read back one step late.

Before its inner optimizer steps, an update checks every loss and gradient of the step for
NaN/Inf (:mod:`flatarch.base`). Deciding that on the host needs the device's answer, one
synchronisation per step, which stalls a GPU the host could otherwise keep fed. With
``deferred_check=True``:

1. the check stays on the device, as a flag ``ok``;
2. the inner optimizer steps with ``where(ok, G, 0)``, and then every parameter and every tensor
   of the optimizer's state is set to ``where(ok, new, old)``: a step that met NaN/Inf changes
   nothing, bit for bit, and the device decides it;
3. the flags travel to the host without waiting (pinned memory and an event) and are read at the
   start of a later step once they have arrived (the step after next waits for them at the
   latest), or when :meth:`~flatarch.ArchUpdate.check`, the step counters or ``state_dict`` are
   called: ``on_nonfinite="raise"`` then raises for that step, ``"skip"`` counts it.

Where the state cannot be masked on the device (the first step, when the optimizer has no state
yet; state on another device, as torch's Adam keeps its step count on the CPU unless built with
``capturable=True``; state that is not a tensor), :func:`masked_step` declines and the step
checks on the host, as without deferral.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch


def first_failed(labels: Sequence[str], flags: Sequence[bool]) -> str | None:
    """The label of the first false flag, or None."""
    return next((label for label, ok in zip(labels, flags) if not ok), None)


class PendingCheck:
    """The finiteness flags of step number ``step`` (one per evaluation, then the direction's) on
    their way to the host."""

    def __init__(self, flags: torch.Tensor, labels: Sequence[str], step: int):
        self.labels = list(labels)
        self.step = step
        self.event = None
        if flags.device.type == "cuda":
            self.host = torch.empty(flags.shape, dtype=flags.dtype, pin_memory=True)
            self.host.copy_(flags, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = flags

    def ready(self) -> bool:
        """Whether the flags have reached the host (never waits)."""
        return self.event is None or self.event.query()

    def first_bad(self) -> str | None:
        """The label of the first non-finite evaluation, ``"the final direction"``, or None (waits for the copy)."""
        if self.event is not None and not self.event.query():
            self.event.synchronize()
        return first_failed(self.labels, self.host.tolist())


def masked_step(optimizer: torch.optim.Optimizer, leaves: Sequence[torch.Tensor],
                direction: Sequence[torch.Tensor], ok: torch.Tensor) -> bool:
    """Step ``optimizer`` with ``direction`` in ``.grad`` if ``ok`` (a 0-dim bool tensor), else
    leave the parameters and the optimizer state as they were, deciding on the device.

    Returns False, having changed nothing, when that cannot be done without the host knowing ``ok``.
    """
    states = [optimizer.state.get(leaf) for leaf in leaves]
    if not all(states):
        return False
    slots = [(state, key) for state in states for key in state]
    if not all(isinstance(state[key], torch.Tensor) and state[key].device == ok.device for state, key in slots):
        return False
    if not all(leaf.device == ok.device for leaf in leaves):
        return False
    with torch.no_grad():
        saved_leaves = [leaf.detach().clone() for leaf in leaves]
        saved_state = [state[key].clone() for state, key in slots]
    for leaf, g in zip(leaves, direction):
        leaf.grad = torch.where(ok, g.detach(), 0).to(dtype=leaf.dtype)
    optimizer.step()
    with torch.no_grad():
        for leaf, old in zip(leaves, saved_leaves):
            leaf.copy_(torch.where(ok, leaf, old))
        for (state, key), old in zip(slots, saved_state):
            state[key].copy_(torch.where(ok, state[key], old))
    return True


def accepts_capturable(optimizer_class: type) -> bool:
    """Whether ``optimizer_class(params, capturable=True)`` is accepted (Adam, AdamW, ...)."""
    try:
        return "capturable" in inspect.signature(optimizer_class.__init__).parameters
    except (TypeError, ValueError):
        return False
