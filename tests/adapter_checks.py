"""Helpers shared by the adapter tests: the original scripts' args, batches, a spy on the
architecture optimizer, and flatarch's own direction computed independently on a copy."""

from __future__ import annotations

import copy
from argparse import Namespace

import torch

import flatarch


def original_args(**changes) -> Namespace:
    """The defaults of the original train_search.py argparse (the knobs the adapters read)."""
    args = Namespace(
        momentum=0.9,
        weight_decay=3e-4,
        learning_rate=0.025,
        arch_learning_rate=3e-4,
        arch_weight_decay=1e-3,
        unrolled=False,
        grad_clip=5,
    )
    for k, v in changes.items():
        setattr(args, k, v)
    return args


def make_batch(seed: int, n: int = 4, classes: int = 3, size: int = 8, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g).to(dtype=dtype, device=device)
    y = torch.randint(0, classes, (n,), generator=g).to(device)
    return x, y


def weight_sgd(model, params=None, lr=0.025):
    params = list(model.parameters()) if params is None else list(params)
    return torch.optim.SGD(params, lr, momentum=0.9, weight_decay=3e-4)


class StepSpy:
    """Records ``tensors`` and their ``.grad`` at the moment ``optimizer.step`` runs."""

    def __init__(self, optimizer, tensors):
        self.tensors = list(tensors)
        self.calls = []
        self._inner = optimizer.step
        optimizer.step = self._step  # instance attribute shadows the method

    def _step(self, *args, **kwargs):
        self.calls.append(
            {
                "alphas": [p.detach().clone() for p in self.tensors],
                "grads": [None if p.grad is None else p.grad.detach().clone() for p in self.tensors],
            }
        )
        return self._inner(*args, **kwargs)


class OptimizerSpy(StepSpy):
    """A :class:`StepSpy` on ``architect.optimizer`` over the architect's alphas."""

    def __init__(self, architect):
        self.architect = architect
        super().__init__(architect.optimizer, architect.update.leaves)


def reference_direction(model, names, batch, update="a2m", compute=None, **kwargs):
    """flatarch's direction for ``model``'s alphas, computed on a deep copy in the functional
    convention (``flatarch.module_loss``): an independent route from the adapter's closure."""
    clone = copy.deepcopy(model)
    if compute is None:

        def compute(m, b):
            return m._loss(*b)

    loss = flatarch.module_loss(clone, batch, names, compute=compute)
    params = loss.arch_params
    opt = flatarch.make_update(update, params, **kwargs)
    direction, _ = opt.direction(loss)
    return [direction[name] for name in names]


def independent_a2m(alphas, loss, rho, eps, before_each=None):
    """A2M's direction by the paper's formula, with torch.autograd only (no flatarch code)::

        G = g1 + rho * (g(a_t + eps g1) - g(a_t - eps g1)) / (2 eps),  g1 = g(a_t),  a_t = alpha + rho g(alpha)

    ``alphas`` are the leaf tensors that ``loss()`` reads (those of a copy of the model: each
    point is written into them, and their values are put back at the end); ``before_each()``
    runs before every evaluation (e.g. to reset the random state).
    """
    start = [a.detach().clone() for a in alphas]

    def g(point):
        with torch.no_grad():
            for a, p in zip(alphas, point):
                a.copy_(p)
        if before_each is not None:
            before_each()
        return [d.detach() for d in torch.autograd.grad(loss(), alphas)]

    try:
        g0 = g(start)
        a_t = [a + rho * d for a, d in zip(start, g0)]
        g1 = g(a_t)
        plus = g([a + eps * d for a, d in zip(a_t, g1)])
        minus = g([a - eps * d for a, d in zip(a_t, g1)])
        return [d + rho * (p - m) / (2 * eps) for d, p, m in zip(g1, plus, minus)]
    finally:
        with torch.no_grad():
            for a, s in zip(alphas, start):
                a.copy_(s)


def adam_step_reference(alphas, grads, lr=3e-4, weight_decay=1e-3):
    """What one step of the original architecture Adam does to ``alphas`` given ``grads``."""
    copies = [a.detach().clone().requires_grad_(True) for a in alphas]
    adam = torch.optim.Adam(copies, lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay)
    for c, g in zip(copies, grads):
        c.grad = g.clone()
    adam.step()
    return [c.detach() for c in copies]


def assert_bitwise_equal(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y), f"max abs diff {(x - y).abs().max().item()}"
