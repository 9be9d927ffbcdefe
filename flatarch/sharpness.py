"""Hessian eigenvalues of an architecture loss: how sharp the landscape is at ``alpha``.

The dominant eigenvalue of ``H = d^2 L / d alpha^2`` is the measure of sharpness R-DARTS tracks
(Zela et al., "Understanding and Robustifying Differentiable Architecture Search", ICLR 2020):
it grows when a search heads for a sharp region, where discretising the architecture costs
most. A2M (the paper) is built to avoid such regions; these functions show whether it did.

* :func:`dominant_eigenvalue` -- the largest-magnitude eigenvalue and its eigenvector by power
  iteration, one Hessian-vector product per iteration;
* :func:`power_iteration` -- the same with the iteration count and whether it converged;
* :func:`top_eigenvalues` -- the ``k`` largest-magnitude eigenvalues by Lanczos
  (``scipy.sparse.linalg.eigsh``) over the same products.

The loss is taken as the updates take it (:class:`~flatarch.evaluation.GradientOracle`): a
functional ``loss_fn(alpha_tree)`` (e.g. a :func:`flatarch.module_loss`) or a closure
``loss_fn()`` over the live tensors. It is evaluated *once*, its gradient with
``create_graph=True``; every Hessian-vector product is a further backward pass through that
gradient (double backward, ``torch.autograd.grad``), which works with modules whose BatchNorm
tracks running statistics (``torch.func`` transforms refuse the in-place update of a captured
running mean). A measurement must not change the search it watches: the module's buffers (a
:func:`flatarch.module_loss`'s ``.module``) and torch's global random state are put back as they
were before the call (the oracle's ``keep_first_pass=False``), and ``alpha`` is never written. The
start vector comes from ``generator`` (default: a fixed seed), never from the global random state.

Data parallelism (``process_group=`` or ``grad_reduce=``, as the updates take them; see
:mod:`flatarch.distributed`): each rank's loss is the mean over its shard; the gradient and every
Hessian-vector product are the mean over the ranks, so every rank computes the global batch's
Hessian products, the same iterates and the same eigenvalues.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from . import tree
from .distributed import GradReduce, reducer
from .errors import NonFiniteError
from .evaluation import GradientOracle

Leaves = tuple[torch.Tensor, ...]


class PowerIteration(NamedTuple):
    """What :func:`power_iteration` found."""

    #: the eigenvalue estimate (the Rayleigh quotient of ``vector``)
    value: float
    #: unit-norm eigenvector estimate, a pytree shaped like ``alpha``
    vector: Any
    #: Hessian-vector products computed
    iterations: int
    #: the relative change of ``value`` fell below ``tol`` (or the Hessian maps the vector to 0)
    converged: bool


def _check_iters(iters: int) -> int:
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a whole number >= 1, got {iters!r}")
    return iters


def _check_tol(tol: float) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a finite number > 0, got {tol!r} (e.g. 1e-3: a 0.1% relative change)")
    return float(tol)


class _HessianProducts:
    """``v -> H v`` at ``alpha`` for leaves ``v``; a context manager that leaves the module's
    buffers and the random state as it found them."""

    def __init__(self, loss_fn: Callable[..., torch.Tensor], alpha: Any, reduce: GradReduce | None = None):
        leaves, self.spec, paths = tree.flatten(alpha)
        if not leaves:
            raise ValueError("alpha is empty: pass the architecture tensor(s), e.g. loss.arch_params")
        for path, leaf in zip(paths, leaves):
            if not isinstance(leaf, torch.Tensor) or not leaf.is_floating_point():
                kind = type(leaf).__name__ if not isinstance(leaf, torch.Tensor) else f"{leaf.dtype} tensor"
                raise TypeError(f"alpha leaf {path} is a {kind}, not a floating-point torch.Tensor")
        self.leaves: Leaves = tuple(leaves)
        self.oracle = GradientOracle(loss_fn, self.leaves, self.spec, paths, keep_first_pass=False, reduce=reduce)
        self.products = 0

    def __enter__(self) -> _HessianProducts:
        self.oracle.__enter__()
        try:
            loss, grads, inputs = self.oracle.evaluate(self.oracle.alpha, "alpha", create_graph=True)
            if not bool(self.oracle.finite_flags[-1]):
                raise NonFiniteError(f"the loss or its gradient at alpha is NaN/Inf (loss {float(loss)}); "
                                     "the Hessian there is undefined")
        except BaseException:
            self.oracle.__exit__(*sys.exc_info())
            raise
        # a gradient without a graph (a loss linear in that leaf) contributes nothing to H v
        self.pairs = [(g, i) for g, i in zip(grads, inputs) if g.requires_grad]
        self.inputs = tuple(inputs)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pairs = []  # free the double-backward graph
        self.oracle.__exit__(*exc)

    def __call__(self, vector: Sequence[torch.Tensor]) -> Leaves:
        self.products += 1
        if not self.pairs:
            return tuple(torch.zeros_like(x) for x in self.inputs)
        grads, inputs = zip(*self.pairs)
        by_input = {id(x): v for x, v in zip(self.inputs, vector)}
        hv = torch.autograd.grad(grads, self.inputs, grad_outputs=[by_input[id(x)] for x in inputs],
                                 retain_graph=True, allow_unused=True)
        hv = self.oracle.mean_across_ranks(
            [torch.zeros_like(x) if h is None else h.detach() for h, x in zip(hv, self.inputs)])
        if not bool(tree.all_finite(hv)):
            raise NonFiniteError(f"Hessian-vector product {self.products} is NaN/Inf: the loss is not twice "
                                 "differentiable at alpha, or its curvature overflows this dtype")
        return hv

    def random_unit(self, generator: torch.Generator | None) -> Leaves:
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        drawn = [torch.randn(x.shape, generator=generator, dtype=torch.float64, device=generator.device)
                 for x in self.leaves]
        return _normalized(tuple(d.to(dtype=x.dtype, device=x.device) for d, x in zip(drawn, self.leaves)))[0]


def _dot(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> float:
    """The dot product over all leaves, in float64, with one host synchronisation."""
    terms = [(x.double() * y.double()).sum() for x, y in zip(xs, ys)]
    return torch.stack([t.to(terms[0].device) for t in terms]).sum().item()


def _normalized(leaves: Sequence[torch.Tensor]) -> tuple[Leaves, float]:
    norm = math.sqrt(_dot(leaves, leaves))
    return (tuple(x / norm for x in leaves) if norm > 0 else tuple(leaves)), norm


def power_iteration(
    loss_fn: Callable[..., torch.Tensor],
    alpha: Any,
    *,
    iters: int = 20,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    process_group: Any = None,
    grad_reduce: GradReduce | None = None,
) -> PowerIteration:
    """The largest-magnitude Hessian eigenvalue of ``loss_fn`` at ``alpha`` by power iteration.

    Each iteration computes ``w = H v`` (one Hessian-vector product), the estimate
    ``lambda = v . w`` (the Rayleigh quotient) and the next ``v = w / |w|``. It stops after
    ``iters`` products or once ``|lambda_k - lambda_{k-1}| <= tol |lambda_k|``. Power iteration
    converges at the rate ``|lambda_2 / lambda_1|`` per product; with two eigenvalues of equal
    magnitude and opposite sign it does not converge (``converged`` is False).

    Args:
        loss_fn: ``loss_fn(alpha_tree) -> scalar`` (or a closure ``loss_fn()`` reading the live
            ``alpha``); a :func:`flatarch.module_loss` object: its module's buffers are left as
            they were.
        alpha: the point: a tensor or any pytree of floating-point tensors. Not changed.
        iters: the most Hessian-vector products (>= 1).
        tol: relative change of the estimate that counts as converged (> 0).
        generator: draws the random start vector (default: ``torch.Generator`` seeded 0).
        process_group, grad_reduce: data parallelism, as for the updates (module docstring).

    Raises:
        ValueError: ``iters`` < 1, ``tol`` <= 0 or not finite, an empty ``alpha``.
        flatarch.NonFiniteError: the loss, its gradient or a Hessian-vector product is NaN/Inf.
    """
    iters, tol = _check_iters(iters), _check_tol(tol)
    with _HessianProducts(loss_fn, alpha, reducer(process_group, grad_reduce)) as hvp:
        v = hvp.random_unit(generator)
        value, converged = float("nan"), False
        for _ in range(iters):
            vector = v  # the vector whose Rayleigh quotient `value` is
            w = hvp(vector)
            previous, value = value, _dot(vector, w)
            v, norm = _normalized(w)
            if norm == 0:  # H v = 0: v is an eigenvector with eigenvalue 0
                value, converged = 0.0, True
                break
            if abs(value - previous) <= tol * abs(value):
                converged = True
                break
        return PowerIteration(value, tree.unflatten(vector, hvp.spec), hvp.products, converged)


def dominant_eigenvalue(
    loss_fn: Callable[..., torch.Tensor],
    alpha: Any,
    *,
    iters: int = 20,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    process_group: Any = None,
    grad_reduce: GradReduce | None = None,
) -> tuple[float, Any]:
    """``(value, vector)``: the largest-magnitude eigenvalue of the Hessian of ``loss_fn`` at
    ``alpha`` (a Python float, negative where the most curved direction curves down) and its
    unit-norm eigenvector, a pytree shaped like ``alpha``. See :func:`power_iteration` for the
    arguments, the stopping rule and the errors.

    Example::

        loss = flatarch.module_loss(model, (x_val, y_val), ["alphas_normal", "alphas_reduce"])
        value, _ = flatarch.sharpness.dominant_eigenvalue(loss, loss.arch_params)
    """
    found = power_iteration(loss_fn, alpha, iters=iters, tol=tol, generator=generator, process_group=process_group,
                            grad_reduce=grad_reduce)
    return found.value, found.vector


def top_eigenvalues(
    loss_fn: Callable[..., torch.Tensor],
    alpha: Any,
    k: int,
    *,
    tol: float = 1e-6,
    maxiter: int | None = None,
    generator: torch.Generator | None = None,
    process_group: Any = None,
    grad_reduce: GradReduce | None = None,
) -> tuple[list[float], list[Any]]:
    """The ``k`` largest-magnitude Hessian eigenvalues (largest magnitude first) and their
    unit-norm eigenvectors (pytrees shaped like ``alpha``), by ``scipy.sparse.linalg.eigsh``
    (implicitly restarted Lanczos) on a ``LinearOperator`` of Hessian-vector products, computed
    in float64 on the host. ``k`` must be below the number of entries of ``alpha``; ``tol`` and
    ``maxiter`` are eigsh's. Same loss conventions, buffers rule, data parallelism and errors as
    :func:`power_iteration`.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    tol = _check_tol(tol)
    products = _HessianProducts(loss_fn, alpha, reducer(process_group, grad_reduce))
    sizes = [x.numel() for x in products.leaves]
    n = sum(sizes)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ValueError(f"k must be a whole number from 1 to {n - 1} (alpha has {n} entries), got {k!r}")
    with products as hvp:

        def split(flat) -> Leaves:
            chunks = torch.from_numpy(flat.reshape(-1)).split(sizes)
            return tuple(c.reshape(x.shape).to(dtype=x.dtype, device=x.device) for c, x in zip(chunks, hvp.leaves))

        def matvec(flat):
            return torch.cat([h.reshape(-1).double().cpu() for h in hvp(split(flat))]).numpy()

        start = torch.cat([x.reshape(-1).double().cpu() for x in hvp.random_unit(generator)]).numpy()
        operator = LinearOperator((n, n), matvec=matvec, dtype="float64")
        try:
            values, vectors = eigsh(operator, k=k, which="LM", tol=tol, maxiter=maxiter, v0=start)
        except ArpackNoConvergence as exc:
            raise ValueError(f"eigsh did not converge to {k} eigenvalues ({exc}); raise maxiter or tol, or "
                             "lower k") from None
        order = sorted(range(k), key=lambda i: -abs(values[i]))
        return ([float(values[i]) for i in order],
                [tree.unflatten(split(vectors[:, i].copy()), hvp.spec) for i in order])


__all__ = ["PowerIteration", "dominant_eigenvalue", "power_iteration", "top_eigenvalues"]
