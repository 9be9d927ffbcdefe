"""Evaluating ``L`` and ``g = grad_alpha L`` at arbitrary points, for one architecture step.

A :class:`GradientOracle` hides the loss conventions from the updates. Every update asks it for
``(loss, grads)`` at ``alpha`` and at perturbed points; the oracle

* calls the user's loss in one of two conventions:

  - *functional*, ``loss_fn(alpha_tree)``: the point is passed in as fresh leaf tensors, so the
    user's tensors are never written;
  - *closure*, ``loss_fn()``: the point is written into the live parameters in place and the
    original values are restored bit for bit when the step ends, also when the loss raises;

* differentiates with respect to alpha only (``torch.autograd.grad``), so the weights' ``.grad``
  are never touched and no weight gradients are computed;
* replays the random state of the first evaluation for every later one (``same_randomness``):
  a finite difference of two *different* random functions (other dropout masks, other
  sampled paths) is noise divided by ``eps``;
* keeps the model buffers (BatchNorm running statistics) as the first pass left them
  (``protect_buffers``), so an update with four evaluations leaves the model exactly as
  first-order DARTS with one would; a measurement (``keep_first_pass=False``, e.g.
  :mod:`flatarch.sharpness`) leaves buffers and random state as they were before it;
* scales the loss by a ``GradScaler``-style factor before differentiating and unscales the
  gradients (fp16 mixed precision);
* with data parallelism (``reduce``, see :mod:`flatarch.distributed`), hands back the global
  batch's loss and gradient at every point: the mean over the ranks of the local ones;
* checks what the loss returns and names the offending leaf when a gradient is missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from . import tree
from .buffers import BufferSnapshot, frozen_running_statistics, module_buffers
from .deferred import first_failed
from .distributed import GradReduce, reduce_with

Convention = str  # "functional" | "closure"


class FoundInf(Exception):
    """Internal: a scaled (fp16) step overflowed; the step is skipped, not raised."""


def detect_convention(loss_fn: Callable[..., Any]) -> Convention:
    """``closure`` when ``loss_fn`` can be called with no argument, else ``functional``."""
    try:
        signature = inspect.signature(loss_fn)
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return "functional"
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    required = [p for p in positional if p.kind != p.VAR_POSITIONAL and p.default is p.empty]
    if required or any(p.kind == p.VAR_POSITIONAL for p in positional):
        return "functional"
    return "functional" if positional else "closure"


def resolve_grad_scale(grad_scale: Any) -> float | torch.Tensor | None:
    """A number, a tensor, or an object with ``get_scale()`` (``torch.amp.GradScaler``)."""
    if grad_scale is None:
        return None
    if hasattr(grad_scale, "get_scale"):
        if hasattr(grad_scale, "is_enabled") and not grad_scale.is_enabled():
            return None
        return float(grad_scale.get_scale())
    if isinstance(grad_scale, torch.Tensor):
        return grad_scale.detach()
    scale = float(grad_scale)
    if not scale > 0 or scale != scale:
        raise ValueError(f"grad_scale must be a positive number, got {grad_scale!r}")
    return scale


class RandomState:
    """A snapshot of torch's CPU generator and the CUDA generators of ``devices``; ``restore()``
    puts them back. Python's ``random``, NumPy and explicit ``torch.Generator`` objects are not
    included."""

    def __init__(self, devices: Sequence[torch.device]):
        self.cuda_devices = sorted({d.index or 0 for d in devices if d.type == "cuda"})
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(i) for i in self.cuda_devices]

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        for i, state in zip(self.cuda_devices, self.cuda):
            torch.cuda.set_rng_state(state, i)


class GradientOracle:
    """Loss and alpha-gradient evaluations for one step. Use as a context manager.

    Args:
        loss_fn: the user's loss (see module docstring for the conventions).
        params: the live architecture leaves, in flattened order.
        spec, paths: the pytree spec and a readable name per leaf (for error messages).
        convention: ``"auto"``, ``"functional"`` or ``"closure"``.
        returns_grad: ``loss_fn`` returns ``(loss, grads)`` itself, grads shaped like the params.
        grad_scale: loss scale for fp16 (number, tensor or ``GradScaler``).
        module: an ``nn.Module`` whose buffers the extra passes must not change.
        protect_buffers, same_randomness: see the module docstring.
        keep_first_pass: on leaving, buffers and random state as the first evaluation left them
            (an update, like first-order DARTS' single pass); ``False``: as they were on entering (a
            measurement that must not change the search).
        snapshots: storage for the buffer copies before the step and after the first pass,
            kept by the caller from step to step (fresh storage when ``None``).
        reduce: the mean over data-parallel ranks (:func:`flatarch.distributed.reducer`), applied
            to the loss and gradients of every evaluation; ``None`` on one device.
    """

    def __init__(
        self,
        loss_fn: Callable[..., Any],
        params: Sequence[torch.Tensor],
        spec: Any,
        paths: Sequence[str],
        *,
        convention: Convention = "auto",
        returns_grad: bool = False,
        grad_scale: Any = None,
        module: nn.Module | None = None,
        protect_buffers: bool = True,
        same_randomness: bool = True,
        keep_first_pass: bool = True,
        snapshots: tuple[BufferSnapshot, BufferSnapshot] | None = None,
        reduce: GradReduce | None = None,
    ):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if convention == "auto":
            convention = detect_convention(loss_fn)
        if convention not in ("functional", "closure"):
            raise ValueError(f"convention must be 'auto', 'functional' or 'closure', got {convention!r}")
        self.loss_fn = loss_fn
        self.params = tuple(params)
        self.spec = spec
        self.paths = list(paths)
        self.convention = convention
        self.returns_grad = returns_grad
        self.scale = resolve_grad_scale(grad_scale)
        self.module = module if module is not None else getattr(loss_fn, "module", None)
        if self.module is not None and not isinstance(self.module, nn.Module):
            self.module = None
        self.protect_buffers = protect_buffers
        self.same_randomness = same_randomness
        self.keep_first_pass = keep_first_pass
        self.reduce = reduce
        #: the point ``alpha`` itself; updates pass it back to mean "at the current params"
        self.alpha: tuple[torch.Tensor, ...] = tuple(p.detach() for p in self.params)
        self.evaluations = 0
        self.labels: list[str] = []
        self.finite_flags: list[torch.Tensor] = []
        self._originals: tuple[torch.Tensor, ...] | None = None
        self._live_is_alpha = True
        self._rng_before: RandomState | None = None
        self._rng_after: RandomState | None = None
        self._before, self._after = snapshots or (BufferSnapshot(), BufferSnapshot())
        self._buffers: list[torch.Tensor] = []
        self._after_taken = False

    # -- context ---------------------------------------------------------------------------
    def __enter__(self) -> GradientOracle:
        if self.convention == "closure":
            self._originals = tuple(p.detach().clone() for p in self.params)
        if self.protect_buffers and self.module is not None:
            self._buffers = module_buffers(self.module)
            if self._buffers:
                self._before.take(self._buffers)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        succeeded = exc_type is None or exc_type is FoundInf
        if self._originals is not None and not self._live_is_alpha:
            self._write(self._originals)
            self._live_is_alpha = True
        if self._rng_after is not None:
            # Later evaluations replayed the first one's randomness; continue from where the
            # first left the generators, as a single-evaluation update would.
            (self._rng_after if self.keep_first_pass else self._rng_before).restore()
        if not self._buffers:
            return
        if not succeeded or not self.keep_first_pass:
            self._before.put_back()
        elif self._after_taken:
            self._after.put_back()

    def _write(self, values: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip(self.params, values):
                p.copy_(v)

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(
        self, point: Sequence[torch.Tensor], label: str, *, create_graph: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """``(loss, grads, inputs)`` at ``point``; ``inputs`` are the tensors the gradient was
        taken with respect to (differentiate through them when ``create_graph``)."""
        first = self.evaluations == 0
        self._before_evaluation()
        if self.convention == "functional":
            inputs = tuple(x.detach().requires_grad_(True) for x in point)
            call = lambda: self.loss_fn(tree.unflatten(inputs, self.spec))  # noqa: E731
        else:
            at_alpha = point is self.alpha
            if at_alpha and not self._live_is_alpha:
                self._write(self._originals)
            elif not at_alpha:
                self._write(point)
            self._live_is_alpha = at_alpha
            inputs = self.params
            call = self.loss_fn

        if self.returns_grad:
            if create_graph:
                raise ValueError("hessian='exact' differentiates through the loss; it cannot be used with "
                                 "returns_grad=True (a loss_fn that computes its own gradients)")
            loss, grads = self._split_loss_and_grads(call())
        else:
            loss = self._check_loss(call())
            grads = self._grad(loss, inputs, create_graph)

        loss, grads = self._across_ranks(loss, grads)
        loss = self._record(label, loss, grads)
        if first:
            if self.same_randomness:
                self._rng_after = RandomState([p.device for p in self.params])
            if self.scale is not None and not bool(self.finite_flags[-1]):
                # fp16: check before any perturbation is built from an overflowed gradient.
                raise FoundInf
        return loss, grads, inputs

    def evaluate_pair(
        self, first_point: Sequence[torch.Tensor], second_point: Sequence[torch.Tensor], labels: tuple[str, str]
    ) -> tuple[tuple[torch.Tensor, tuple[torch.Tensor, ...]], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
        """``(loss, grads)`` at two points from one pass over both (``torch.func.vmap`` over the
        stacked points): half the kernel launches of two evaluations, the same values. Needs the
        functional convention and a loss that returns the loss alone; not the first evaluation of
        a step. The module's BatchNorm layers use batch statistics as always but do not update
        their running statistics in this pass (later passes must not change them anyway)."""
        if self.convention != "functional" or self.returns_grad:
            raise ValueError(
                "batch_pair=True evaluates the two difference points in one vmapped pass, which needs a functional "
                "loss_fn(alpha) that returns the loss (e.g. flatarch.module_loss); use batch_pair=False with a "
                "closure or with returns_grad=True"
            )
        if self.evaluations == 0:
            raise RuntimeError("evaluate_pair cannot be a step's first evaluation")
        self._before_evaluation()
        stacked = tuple(torch.stack([a.detach(), b.detach()]) for a, b in zip(first_point, second_point))
        scale = self.scale

        def loss_at(*leaves: torch.Tensor) -> torch.Tensor:
            loss = self.loss_fn(tree.unflatten(leaves, self.spec)).reshape(())
            return loss if scale is None else loss * scale

        value_and_grads = torch.func.grad_and_value(loss_at, argnums=tuple(range(len(stacked))))
        with frozen_running_statistics(self.module):
            grads, losses = torch.func.vmap(value_and_grads, randomness="same")(*stacked)
        if scale is not None:
            losses, grads = losses / scale, tuple(g / scale for g in grads)
        losses, *grads = self.mean_across_ranks((losses, *grads))
        return tuple(  # type: ignore[return-value]
            (self._record(label, losses[i], tuple(g[i] for g in grads)), tuple(g[i] for g in grads))
            for i, label in enumerate(labels)
        )

    def _before_evaluation(self) -> None:
        if self.evaluations == 1 and self._buffers:
            # the buffers as the first pass left them, copied only when a second pass follows
            self._after.take(self._buffers)
            self._after_taken = True
        if self.evaluations == 0:
            if self.same_randomness:
                self._rng_before = RandomState([p.device for p in self.params])
        elif self._rng_before is not None:
            self._rng_before.restore()

    def mean_across_ranks(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The global batch's value of quantities linear in the local loss (gradients, vector-Jacobian
        products): their mean over the ranks; as given on one device."""
        return reduce_with(self.reduce, tensors)

    def _across_ranks(self, loss: torch.Tensor, grads: Sequence[torch.Tensor]
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The global batch's loss and gradients. A gradient with a graph (``create_graph``) keeps
        its local graph under the global value: differentiating it gives the local Jacobian, whose
        products the caller reduces in turn (:meth:`mean_across_ranks`)."""
        if self.reduce is None:
            return loss, tuple(grads)
        mean_loss, *means = self.mean_across_ranks((loss.detach(), *(g.detach() for g in grads)))
        return mean_loss, tuple(g + (m - g).detach() if g.requires_grad else m for g, m in zip(grads, means))

    def _record(self, label: str, loss: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """Count the evaluation, keep its finiteness flag; the loss detached, at least float32."""
        self.evaluations += 1
        self.labels.append(label)
        self.finite_flags.append(tree.all_finite((loss.detach(), *grads)))
        loss = loss.detach()
        if loss.dtype in (torch.float16, torch.bfloat16):
            loss = loss.float()
        return loss

    def _check_loss(self, loss: Any) -> torch.Tensor:
        if not isinstance(loss, torch.Tensor):
            hint = " (did you call .item()?)" if isinstance(loss, (int, float)) else ""
            raise TypeError(f"loss_fn must return a scalar torch.Tensor, got {type(loss).__name__}{hint}")
        if loss.numel() != 1:
            raise ValueError(
                f"loss_fn must return a scalar tensor, got shape {list(loss.shape)}; reduce it first "
                "(e.g. loss.mean())"
            )
        if not loss.requires_grad:
            raise ValueError(
                "the loss does not depend on any architecture parameter (it has no gradient path to "
                f"{', '.join(self.paths)}); "
                + (
                    "a functional loss_fn must compute the loss from the alpha it is given"
                    if self.convention == "functional"
                    else "a closure must read the live architecture tensors"
                )
            )
        return loss.reshape(())

    def _grad(
        self, loss: torch.Tensor, inputs: Sequence[torch.Tensor], create_graph: bool
    ) -> tuple[torch.Tensor, ...]:
        scaled = loss if self.scale is None else loss * self.scale
        grads = torch.autograd.grad(scaled, inputs, allow_unused=True, create_graph=create_graph)
        missing = [path for path, g in zip(self.paths, grads) if g is None]
        if missing:
            raise ValueError(
                f"architecture parameter(s) {', '.join(missing)} have no gradient path from the loss; "
                "remove them from the optimizer's parameters or make the loss use them"
            )
        if self.scale is not None:
            grads = tuple(g / self.scale for g in grads)
        return tuple(grads)

    def _split_loss_and_grads(self, out: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("with returns_grad=True, loss_fn must return a (loss, grads) pair")
        loss, grads = out
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("with returns_grad=True, the first element must be a scalar loss tensor")
        leaves, spec, _ = tree.flatten(grads)
        if spec != self.spec and not _same_sequence(spec, self.spec):
            raise ValueError(
                f"loss_fn returned gradients of another structure than the architecture parameters: "
                f"expected {self.spec}, got {spec}"
            )
        for path, g, p in zip(self.paths, leaves, self.params):
            if not isinstance(g, torch.Tensor) or g.shape != p.shape:
                got = list(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
                raise ValueError(
                    f"gradient for {path} returned by loss_fn has shape {got}, expected {list(p.shape)}"
                )
        grads = tuple(g.detach().to(dtype=p.dtype, device=p.device) for g, p in zip(leaves, self.params))
        if self.scale is not None:
            grads = tuple(g / self.scale for g in grads)
        return loss.detach().reshape(()), grads

    # -- after the direction is computed ---------------------------------------------------
    def finite_flags_with(self, direction: Sequence[torch.Tensor]) -> torch.Tensor:
        """A bool tensor on the device (no host sync): one flag per evaluation, whether its loss
        and gradients were finite, then one for ``direction``; labelled by :meth:`check_labels`."""
        checks = [*self.finite_flags, tree.all_finite(direction)]
        return torch.stack([f.to(checks[0].device) for f in checks])

    def check_labels(self) -> list[str]:
        return [*self.labels, "the final direction"]

    def first_nonfinite(self, direction: Sequence[torch.Tensor]) -> str | None:
        """The label of the first evaluation with a non-finite loss or gradient, else
        ``"the final direction"`` if ``direction`` is not finite, else None (one host sync)."""
        return first_failed(self.check_labels(), self.finite_flags_with(direction).cpu().tolist())


def _same_sequence(a, b) -> bool:
    """Two specs that differ only in list against tuple at the top (``torch.autograd.grad`` returns a
    tuple for a list of parameters)."""
    sequences = (list, tuple)
    return a.type in sequences and b.type in sequences and a.children() == b.children()
