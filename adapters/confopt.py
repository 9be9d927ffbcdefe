"""A2M inside confopt (``automl/ConfigurableOptimizer``): an optimizer-shaped architecture step.

``ConfigurableTrainer._train_epoch`` (``train/configurable_trainer.py`` L448-458) takes the
architecture step inline: zero the arch optimizer's gradients, run the network on the
validation batch, back-propagate the criterion plus the handler's regulariser terms, step the
arch optimizer without a closure, then let the SDARTS perturbator (if any) act on the alphas;
the arch optimizer is one of torch's Adam/SGD/ASGD (the closed enum ``OptimizerType``,
``enums.py`` L73-79). Nothing is forked: :func:`attach` replaces the trainer's
``arch_optimizer`` by a :class:`FlatArchOptimizer` around it, and wraps that one trainer's
``_train_epoch`` so that the optimizer knows the network, criterion, regulariser and the
validation batch the loop draws (``next(iter(valid_loader))``, L436)::

    from flatarch.adapters.confopt import attach
    attach(trainer, arch_update="a2m", rho=1e-2)    # after building the ConfigurableTrainer
    trainer.train(search_space_handler, ...)

On ``step()`` the update's first evaluation, ``g(alpha)``, is the trainer's own pass: its loss
(as the handler's ``add_reg_terms`` returned it) and the gradient its backward left in the
alphas' ``.grad``. Every further point the update needs (A2M: ``alpha_t`` and the difference
pair; SAM/USAM: the perturbed point) is evaluated on the same batch through the closure
``add_reg_terms(criterion(network(x)[1], y))``, the point written into the live alphas (confopt's
models read them at every forward) and restored bit for bit; then the wrapped torch optimizer
steps with the update's direction in ``.grad``. So that the update sees what the trainer saw and
the trainer goes on as after its own step:

* ``zero_grad()`` records torch's random state (CPU and the alphas' CUDA device), and every
  further evaluation replays it: the sampler's noise (GDAS, DrNAS, ...), dropout masks and
  partial channels are those the trainer's pass drew (:class:`flatarch.evaluation.RandomState`).
  One exception: the first forward of confopt's operations counts their FLOPs on a
  ``randn_like`` input before anything else (``searchspace/common/mixop.py`` L88-89, L125-131,
  L205-206, L253-260), so in the very first step of a search the trainer's pass drew that noise
  first and a stochastic sampler's noise differs between ``g(alpha)`` and the later points;
* on leaving ``step()`` the random stream is exactly where the trainer's pass left it, and the
  network's buffers (BatchNorm statistics) are what that pass left.

So with ``arch_update="first-order"`` the step takes no forward of its own and the search is bit
for bit confopt's own loop (the weights, the alphas, and so every later ``next(iter(loader))``);
with A2M the only change is the alphas' update. Forwards per search step: the trainer's arch pass,
the update's further points (A2M 3, SAM/USAM 1, first-order none), the weight step: 5 with A2M.
``hessian="exact"`` differentiates through ``g(alpha)``'s graph, so it evaluates ``g(alpha)``
again (one forward more).

Not to be combined with confopt's SDARTS perturbator (``oneshot/perturbator``): it writes noise
into the alphas after every arch step and never restores them, so the noise stays in the
alphas, accumulates, and is applied to the logits rather than to the probabilities
(``perturb.py`` L54-65, L135-142; ``search_space_handler.py`` L117-120). :func:`attach` refuses
a search space that holds one (the handler's ``adapt_search_space`` puts it among the space's
``components``, ``search_space_handler.py`` L91-92), and the wrapped epoch a handler that has
one. SDARTS as published perturbs the mixing probabilities for the weight step only and restores
the alphas afterwards: that is :func:`flatarch.smoothing.random_smoothing`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from flatarch.buffers import BufferSnapshot, module_buffers
from flatarch.evaluation import RandomState
from flatarch.step_info import StepInfo

from ._settings import UpdateKnobs

#: the ``_train_epoch`` arguments the wrapper reads (train/configurable_trainer.py L396-411)
EPOCH_ARGUMENTS = ("search_space_handler", "valid_loader", "network", "criterion", "arch_optimizer")


def _unwrap(network: nn.Module) -> nn.Module:
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return network.module if isinstance(network, parallel) else network


class _RecordingLoader:
    """``valid_loader`` as the loop sees it, keeping the batch it hands out last."""

    def __init__(self, loader: Any, record: Callable[[Any], None]):
        self._loader = loader
        self._record = record

    def __iter__(self) -> Iterator[Any]:
        for batch in self._loader:
            self._record(batch)
            yield batch

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class EpochContext:
    """What one ``_train_epoch`` call gives the architecture loss: network, criterion, the
    handler's regulariser, the device, the latest validation batch and the latest loss the
    handler's ``add_reg_terms`` returned (in the arch step: the trainer's arch loss)."""

    def __init__(self, network: nn.Module, criterion: Callable, handler: Any, device: Any):
        self.network = network
        self.criterion = criterion
        self.handler = handler
        self.device = device
        self.batch: Any = None
        self.loss: torch.Tensor | None = None

    def recording(self, loader: Any) -> _RecordingLoader:
        return _RecordingLoader(loader, self._keep)

    def _keep(self, batch: Any) -> None:
        self.batch = batch

    @contextmanager
    def watching_losses(self) -> Iterator[None]:
        """While the block runs, the handler's ``add_reg_terms`` also keeps what it returns (an
        attribute of this handler object, removed afterwards; its class is untouched)."""
        handler = self.handler
        own = vars(handler).get("add_reg_terms")
        add_reg_terms = handler.add_reg_terms

        def watched(*args: Any, **kwargs: Any) -> torch.Tensor:
            self.loss = add_reg_terms(*args, **kwargs)
            return self.loss

        handler.add_reg_terms = watched
        try:
            yield
        finally:
            if own is None:
                del handler.add_reg_terms
            else:
                handler.add_reg_terms = own

    def loss_fn(self) -> Callable[[], torch.Tensor]:
        """The closure the trainer's arch pass computes, on the latest validation batch (L450-454)."""
        inputs, targets = self.batch
        inputs = inputs.to(self.device)
        targets = targets.to(self.device, non_blocking=True)

        def arch_loss() -> torch.Tensor:
            _, logits = self.network(inputs)
            return self.handler.add_reg_terms(_unwrap(self.network), self.criterion(logits, targets))

        return arch_loss


class FlatArchOptimizer:
    """An architecture optimizer for ``ConfigurableTrainer``: ``zero_grad``, ``step()``,
    ``state_dict``, ``load_state_dict`` and ``param_groups``, as the trainer and its checkpointer use them.

    Args:
        optimizer: the torch optimizer confopt built over the alphas (and betas); it applies
            the direction and keeps its learning rate and state.
        arch_update, rho, eps, hessian, difference: see :mod:`flatarch.adapters._settings`; rho
            defaults to 1e-2 when the optimizer holds one op-choice tensor (NAS-Bench-201), else 1e-1.

    ``step()`` needs the batch that :func:`attach` provides; ``step(loss_fn)`` takes a closure
    ``loss_fn() -> scalar`` that reads the live alphas instead (no backward in it).

    Attributes:
        optimizer, update (the :class:`flatarch.ArchUpdate`), last_info (the latest
        :class:`flatarch.StepInfo`).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        arch_update: str = "a2m",
        rho: float | None = None,
        eps: float | None = None,
        hessian: str | None = None,
        difference: str | None = None,
    ):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be the torch optimizer over the alphas, got {type(optimizer).__name__}")
        knobs = UpdateKnobs(arch_update, rho, eps, hessian, difference)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.optimizer = optimizer
        # Buffers and random state are handled around the whole step (see step()), not per evaluation.
        self.update = knobs.build(params, optimizer=optimizer, protect_buffers=False)
        self.last_info: StepInfo | None = None
        self._context: EpochContext | None = None
        self._random_at_zero_grad: RandomState | None = None
        self._buffers_after_trainer_pass = BufferSnapshot()

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def _devices(self) -> list[torch.device]:
        return [p.device for p in self.update.leaves]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the alphas' ``.grad`` and record the random state the trainer's arch pass starts from."""
        self._random_at_zero_grad = RandomState(self._devices())
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, loss_fn: Callable[[], torch.Tensor] | None = None) -> StepInfo:
        """One architecture step; see the module docstring."""
        if loss_fn is not None:
            self._random_at_zero_grad = None
            self.last_info = self.update.step(loss_fn, convention="closure")
            return self.last_info
        context = self._context
        if context is None or context.batch is None:
            raise RuntimeError(
                "FlatArchOptimizer.step() re-evaluates the trainer's validation batch, and has none: install it "
                "with flatarch.adapters.confopt.attach(trainer), or pass step(loss_fn)"
            )
        closure = context.loss_fn()
        self._buffers_after_trainer_pass.take(module_buffers(context.network))
        random_after_trainer_pass = RandomState(self._devices())
        try:
            if self._random_at_zero_grad is not None:
                self._random_at_zero_grad.restore()  # the further points replay the trainer's draws
            if getattr(self.update, "hessian", None) == "exact":  # needs the graph of g(alpha): evaluated again
                self.last_info = self.update.step(closure, convention="closure")
            else:
                self.last_info = self.update.step(self._after_trainers_pass(closure, context.loss),
                                                  convention="closure", returns_grad=True)
        finally:
            self._random_at_zero_grad = None
            random_after_trainer_pass.restore()
            self._buffers_after_trainer_pass.put_back()
        return self.last_info

    def _after_trainers_pass(self, closure: Callable[[], torch.Tensor], loss: torch.Tensor | None,
                             ) -> Callable[[], tuple[torch.Tensor, list[torch.Tensor]]]:
        """``(loss, grads)`` at each call: the first time, the trainer's pass at alpha (its loss and
        the ``.grad`` its backward left); then a forward and an alpha-only backward of ``closure``."""
        leaves = self.update.leaves
        missing = [i for i, p in enumerate(leaves) if p.grad is None]
        if loss is None or missing:
            raise RuntimeError(
                "FlatArchOptimizer.step() continues from the trainer's arch pass (its loss through the handler's "
                "add_reg_terms, its backward into the alphas' .grad) and found "
                + ("no loss" if loss is None else f"no .grad in arch parameter(s) {missing}")
                + "; call it after arch_loss.backward(), as confopt's _train_epoch does"
            )
        first: tuple[torch.Tensor, list[torch.Tensor]] | None = (loss.detach(), [p.grad for p in leaves])

        def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
            nonlocal first
            if first is not None:
                trainers, first = first, None
                return trainers
            value = closure()
            return value.detach(), list(torch.autograd.grad(value, leaves))

        return loss_and_grads

    @contextmanager
    def reading(self, context: EpochContext) -> Iterator[EpochContext]:
        """Let ``step()`` use ``context`` while the block runs."""
        self._context = context
        try:
            yield context
        finally:
            self._context = None

    def state_dict(self) -> dict[str, Any]:
        """The update's state, the wrapped optimizer's included (for confopt's checkpoints)."""
        return self.update.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`, or the plain torch optimizer state of a checkpoint that confopt
        saved without flatarch (it goes to the wrapped optimizer)."""
        if "update" not in state_dict and {"state", "param_groups"} <= set(state_dict):
            self.optimizer.load_state_dict(state_dict)
            return
        self.update.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}({self.update!r})"


PERTURBATOR_REFUSED = (
    "confopt's SDARTS perturbator writes noise into the alphas after every arch step and never restores them; it "
    "cannot be combined with the flatarch architecture step. Run without the perturbator (for SDARTS smoothing, "
    "see flatarch.smoothing.random_smoothing)"
)


def _check_handler(handler: Any) -> None:
    if getattr(handler, "perturbation", None) is not None:
        raise ValueError(PERTURBATOR_REFUSED)


def _check_search_space(trainer: Any) -> None:
    """Refuse a search space among whose components the handler put a perturbator (confopt's
    ``BasePerturbator``, ``oneshot/perturbator/base_perturb.py`` L11-33)."""
    for component in getattr(getattr(trainer, "model", None), "components", None) or ():
        if callable(getattr(component, "_perturb_and_update_alphas", None)):
            raise ValueError(PERTURBATOR_REFUSED)


def attach(trainer: Any, **knobs: Any) -> FlatArchOptimizer:
    """Make ``trainer`` (a confopt ``ConfigurableTrainer``) take flatarch architecture steps.

    Replaces ``trainer.arch_optimizer`` by a :class:`FlatArchOptimizer` around it and wraps
    this trainer's ``_train_epoch`` (the class is untouched) to hand the optimizer its batch.
    ``knobs`` are :class:`FlatArchOptimizer`'s. Returns the new arch optimizer.
    """
    if not (hasattr(trainer, "arch_optimizer") and callable(getattr(trainer, "_train_epoch", None))):
        raise TypeError(f"attach takes confopt's ConfigurableTrainer (arch_optimizer and _train_epoch), got "
                        f"{type(trainer).__module__}.{type(trainer).__qualname__}")
    current = trainer.arch_optimizer
    if isinstance(current, FlatArchOptimizer):
        raise ValueError("this trainer already takes flatarch architecture steps (attach was called before)")
    if current is None:
        raise ValueError("the trainer has no arch_optimizer to wrap; build it with the architecture optimizer")
    _check_search_space(trainer)
    train_epoch = trainer._train_epoch
    signature = inspect.signature(train_epoch)
    missing = [name for name in EPOCH_ARGUMENTS if name not in signature.parameters]
    if missing:
        raise TypeError(
            f"{type(trainer).__name__}._train_epoch has no {', '.join(missing)} argument(s); flatarch.adapters.confopt "
            "follows confopt's ConfigurableTrainer (commit 13bde40)"
        )
    flat = FlatArchOptimizer(current, **knobs)
    device = getattr(trainer, "device", None)
    if device is None:
        device = flat.update.leaves[0].device

    @functools.wraps(train_epoch)
    def flat_train_epoch(*args: Any, **kwargs: Any) -> Any:
        call = signature.bind(*args, **kwargs)
        if call.arguments["arch_optimizer"] is not flat:
            return train_epoch(*args, **kwargs)
        handler = call.arguments["search_space_handler"]
        _check_handler(handler)
        context = EpochContext(call.arguments["network"], call.arguments["criterion"], handler, device)
        call.arguments["valid_loader"] = context.recording(call.arguments["valid_loader"])
        with flat.reading(context), context.watching_losses():
            return train_epoch(*call.args, **call.kwargs)

    trainer._train_epoch = flat_train_epoch
    trainer.arch_optimizer = flat
    return flat
