"""Smoothing of the architecture weights for the weight step (SDARTS, Chen & Hsieh 2020).

SDARTS trains the supernet weights at architecture weights *near* the current ones, so the
weights become good for a neighbourhood of the architecture, which flattens the validation
loss in alpha. Both variants act on the mixing *probabilities* ``p = softmax(alpha)`` (rows
along the last dimension), and the weight step's forward uses the result as it is, with no
second softmax; the alpha step is untouched (xiangning-chen/SmoothDARTS,
``nasbench201/train_search.py`` L227-248, ``attacker/perturb.py``).

* :func:`random_smoothing` (SDARTS-RS): ``p + U(-e, e)`` elementwise, then back onto the simplex.
* :func:`adversarial_smoothing` (SDARTS-ADV): a 7-step PGD ascent of the training loss over
  ``p`` in the L-inf ball of radius ``e``.

Back onto the simplex, per row (``model.clip()`` in SmoothDARTS ``nasbench201/model.py``
L229-235): clamp to ``[0, 1]``; a row that sums to 0 becomes one-hot at its argmax taken before
the clamp; divide by the row sum.

The radius grows over the search, ``e_t = 0.03 + (e_max - 0.03) * epoch / epochs`` with
``e_max = 0.3`` (SmoothDARTS ``train_search.py`` L169-171): :func:`smoothing_radius`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import tree
from .distributed import GradReduce, reduce_with, reducer
from .transfer import to_device


def smoothing_radius(epoch: int, epochs: int, *, start: float = 0.03, end: float = 0.3) -> float:
    """``e_t = start + (end - start) * epoch / epochs`` (0-based ``epoch``; set once per epoch)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return start + (end - start) * epoch / epochs


def project_rows(p: torch.Tensor) -> torch.Tensor:
    """Clamp to ``[0, 1]``, one-hot at the pre-clamp argmax where a row sums to 0, renormalise."""
    # scatter, not one_hot: one_hot checks its indices on the host on a CPU
    fallback = torch.zeros_like(p).scatter_(-1, p.argmax(dim=-1, keepdim=True), 1.0)
    clamped = p.clamp(0.0, 1.0)
    clamped = torch.where(clamped.sum(dim=-1, keepdim=True) == 0, fallback, clamped)
    return clamped / clamped.sum(dim=-1, keepdim=True)


def _check(probs: torch.Tensor, epsilon: float) -> None:
    if not isinstance(probs, torch.Tensor) or probs.ndim < 1:
        raise TypeError("probs must be a tensor of probability rows (rows along the last dimension)")
    if not (isinstance(epsilon, (int, float)) and epsilon >= 0 and epsilon == epsilon and epsilon != float("inf")):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")


def _uniform(like: torch.Tensor, epsilon: float, generator: torch.Generator | None) -> torch.Tensor:
    # drawn on the generator's device (CPU by default), so CPU and GPU runs see the same noise
    device = generator.device if generator is not None else like.device
    noise = torch.rand(like.shape, generator=generator, device=device, dtype=like.dtype)
    return to_device(noise.mul_(2 * epsilon).sub_(epsilon), like.device)


def random_smoothing(probs: torch.Tensor, epsilon: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """SDARTS-RS: ``project_rows(probs + U(-epsilon, epsilon))``, a new tensor (``probs`` is not
    changed). Draw once per group of rows: SmoothDARTS perturbs normal and reduce independently.

    Args:
        probs: mixing probabilities, rows along the last dimension (e.g. ``[edges, ops]``).
        epsilon: the noise amplitude ``e_t`` (see :func:`smoothing_radius`).
        generator: the random source (a CPU generator gives the same noise on every device).
    """
    _check(probs, epsilon)
    probs = probs.detach()
    return project_rows(probs + _uniform(probs, epsilon, generator))


def adversarial_smoothing(
    loss_fn: Callable[[Any], torch.Tensor],
    probs: Any,
    epsilon: float,
    *,
    steps: int = 7,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    process_group: Any = None,
    grad_reduce: GradReduce | None = None,
) -> Any:
    """SDARTS-ADV: PGD ascent of ``loss_fn`` over the probabilities (SmoothDARTS
    ``attacker/perturb.py`` ``Linf_PGD_alpha``)::

        p = project_rows(clean + U(-e, e))                 # random start
        repeat steps times:
            p = p + step_size * sign(grad_p loss_fn(p))    # ascent (step_size = 2 e / steps)
            p = project_rows(clean + clamp(p - clean, -e, e))
        return p if loss_fn(p) >= loss_fn(clean) else clean

    Args:
        loss_fn: the training loss at given probabilities (a pytree like ``probs``); run the
            network in eval mode, as SmoothDARTS does, so the attack leaves BatchNorm alone.
        probs: the clean probabilities: a tensor or a pytree of them (normal and reduce are
            attacked jointly); not changed.
        epsilon: the L-inf radius ``e_t``.
        process_group, grad_reduce: data parallelism (:mod:`flatarch.distributed`; each rank's loss
            the mean over its shard): every gradient of the ascent and both losses compared at its end
            are the means over the ranks, so every rank attacks the global batch's loss and ends at the
            same point (draw the random start from a generator seeded alike on every rank).

    Returns the perturbed probabilities, detached, shaped like ``probs``. Only ``probs`` is
    differentiated: no ``.grad`` of any parameter is touched.
    """
    leaves, spec, _ = tree.flatten(probs)
    for leaf in leaves:
        _check(leaf, epsilon)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    step = 2 * epsilon / steps if step_size is None else float(step_size)
    clean = [leaf.detach() for leaf in leaves]
    reduce = reducer(process_group, grad_reduce)

    def loss_at(points):
        return loss_fn(tree.unflatten(points, spec))

    def global_loss(points):
        return reduce_with(reduce, [loss_at(points).detach()])[0]

    with torch.no_grad():
        loss_clean = global_loss(clean)
    points = [project_rows(c + _uniform(c, epsilon, generator)) if random_start else c for c in clean]
    for _ in range(steps):
        points = [p.detach().requires_grad_(True) for p in points]
        grads = torch.autograd.grad(loss_at(points), points, allow_unused=True)
        grads = reduce_with(reduce, [torch.zeros_like(p) if g is None else g for p, g in zip(points, grads)])
        points = [project_rows(c + (p.detach() + step * g.sign() - c).clamp(-epsilon, epsilon))
                  for c, p, g in zip(clean, points, grads)]
    with torch.no_grad():
        loss_attacked = global_loss(points)
    # the attack did not raise the loss: keep the clean weights (decided on the device, no host sync)
    keep_clean = loss_clean > loss_attacked
    return tree.unflatten([torch.where(keep_clean, c, p.detach()) for c, p in zip(clean, points)], spec)
