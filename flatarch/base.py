"""Machinery shared by every update: parameters, the inner optimizer, the step, the state.

Subclasses implement :meth:`ArchUpdate._direction` only: given a
:class:`~flatarch.evaluation.GradientOracle`, return the direction ``G`` (a tuple of leaves)
and the :class:`~flatarch.step_info.StepInfo` fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import tree
from .buffers import BufferSnapshot
from .defaults import DARTS_ADAM_DEFAULTS
from .deferred import PendingCheck, accepts_capturable, masked_step
from .distributed import GradReduce, reducer
from .errors import NonFiniteError, StateDictError
from .evaluation import FoundInf, GradientOracle
from .step_info import StepInfo


def check_rho(rho: float) -> float:
    rho = float(rho)
    if not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r} (the paper searched 1e-5 ... 1e-1)")
    return rho


def check_eps(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r} (the paper uses 1e-2)")
    return eps


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


#: settings that belong to an update rather than to its inner optimizer
UPDATE_SETTINGS = ("rho", "eps", "hessian", "difference", "adaptive", "adaptive_eta")


class ArchUpdate:
    """Base class of :class:`FirstOrder`, :class:`SAM`, :class:`USAM` and :class:`A2M`.

    Args:
        params: the architecture parameters: a tensor or any pytree (list, tuple, dict, ...)
            of leaf tensors that require grad.
        optimizer: ``None`` for DARTS' Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3;
            ``optimizer_kwargs`` override those), a ``torch.optim.Optimizer`` subclass built over
            the leaves with ``optimizer_kwargs``, or an optimizer already built over exactly
            these leaves.
        on_nonfinite: ``"raise"`` (default) raises :class:`~flatarch.NonFiniteError` when a loss
            or gradient is NaN/Inf; ``"skip"`` skips the step and counts it in ``skipped_steps``.
            Either way nothing is changed.
        module: a module whose buffers (BatchNorm running statistics) the extra perturbed passes
            must leave as the first pass left them. Taken from ``loss_fn.module`` when the loss
            is a :func:`flatarch.module_loss`.
        protect_buffers: set ``False`` to let every pass update the buffers.
        same_randomness: replay the first evaluation's random state in every later one, so
            dropout masks or sampled paths are the same at every point of the step.
        deferred_check: never wait for the device in :meth:`step`: the NaN/Inf check is made
            on the device, a step that fails it changes nothing there, and the outcome is read
            one step later (at the next :meth:`step`, :meth:`check`, ``state_dict`` or when
            ``steps``/``skipped_steps`` are read; a later ``step`` waits only for a step older
            than the one before it), where ``on_nonfinite="raise"`` raises for it.
            ``StepInfo.skipped`` is then a 0-dim bool tensor. On CUDA, DARTS' Adam (and any
            optimizer class that takes ``capturable``) is built with ``capturable=True`` so its
            state lives on the device. See :mod:`flatarch.deferred`.
        process_group: data parallelism: every gradient evaluation of the step is the mean over the
            ranks of this group (e.g. ``torch.distributed.group.WORLD``), so each evaluation point and
            the direction are the global batch's and every rank takes the same step. Each rank's loss
            must be the mean over its own shard, the shards of equal size. See
            :mod:`flatarch.distributed` and docs/distributed.md.
        grad_reduce: instead of ``process_group``, your own reduction: ``grad_reduce(tensors) ->
            tensors``, each the mean over the ranks (e.g. over a sub-group, or another backend).
    """

    #: the name :func:`flatarch.make_update` knows this update by
    name = "base"

    def __init__(
        self,
        params: Any,
        *,
        optimizer: type[torch.optim.Optimizer] | torch.optim.Optimizer | None = None,
        on_nonfinite: str = "raise",
        module: nn.Module | None = None,
        protect_buffers: bool = True,
        same_randomness: bool = True,
        deferred_check: bool = False,
        process_group: Any = None,
        grad_reduce: GradReduce | None = None,
        **optimizer_kwargs: Any,
    ):
        leaves, spec, paths = tree.flatten(params)
        if not leaves:
            raise ValueError("no architecture parameters: params is empty; pass the alpha tensor(s) to optimise")
        for path, leaf in zip(paths, leaves):
            if not isinstance(leaf, torch.Tensor):
                raise TypeError(f"architecture parameter {path} is a {type(leaf).__name__}, not a torch.Tensor")
        frozen = [path for path, leaf in zip(paths, leaves) if not leaf.requires_grad]
        if frozen:
            raise ValueError(
                f"architecture parameter(s) {', '.join(frozen)} do not require grad; make them "
                "nn.Parameter or call .requires_grad_()"
            )
        non_leaf = [path for path, leaf in zip(paths, leaves) if not leaf.is_leaf]
        if non_leaf:
            raise ValueError(
                f"architecture parameter(s) {', '.join(non_leaf)} are results of computations, not leaf "
                "tensors; optimise the tensors they are computed from"
            )
        seen: dict[int, str] = {}
        for path, leaf in zip(paths, leaves):
            if id(leaf) in seen:
                raise ValueError(f"the same tensor appears twice in params, at {seen[id(leaf)]} and {path}")
            seen[id(leaf)] = path
        self.params = params
        self.leaves: tuple[torch.Tensor, ...] = tuple(leaves)
        self._spec = spec
        self.paths: list[str] = paths
        self.on_nonfinite = check_choice("on_nonfinite", on_nonfinite, ("raise", "skip"))
        self.module = module
        self.protect_buffers = bool(protect_buffers)
        self.same_randomness = bool(same_randomness)
        self.deferred_check = bool(deferred_check)
        self.grad_reduce = reducer(process_group, grad_reduce)
        misplaced = [k for k in optimizer_kwargs if k in UPDATE_SETTINGS]
        if misplaced:  # else the inner optimizer's own "unexpected keyword" error would name Adam
            raise TypeError(f"{type(self).__name__} has no setting {', '.join(map(repr, misplaced))} (each "
                            "update's settings: flatarch.updates.update_settings(name)); flatarch.make_update(name, "
                            "params, ...) drops the settings an update does not have")
        self.optimizer = self._build_optimizer(optimizer, optimizer_kwargs)
        self._steps = 0
        self._skipped_steps = 0
        self._pending: list[PendingCheck] = []  # oldest first
        # buffer copies (before the step, after its first pass), reused from step to step
        self._snapshots = (BufferSnapshot(), BufferSnapshot())

    def _build_optimizer(self, optimizer: Any, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
        if optimizer is None:
            optimizer, kwargs = torch.optim.Adam, {**DARTS_ADAM_DEFAULTS, **kwargs}
        if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
            if (self.deferred_check and "capturable" not in kwargs and accepts_capturable(optimizer)
                    and all(leaf.device.type == "cuda" for leaf in self.leaves)):
                kwargs = {**kwargs, "capturable": True}  # state on the device: steps can be masked there
            return optimizer(self.leaves, **kwargs)
        if isinstance(optimizer, torch.optim.Optimizer):
            if kwargs:
                raise ValueError(
                    f"optimizer is already built; optimizer keyword arguments {sorted(kwargs)} would be ignored"
                )
            owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if owned != {id(p) for p in self.leaves}:
                raise ValueError(
                    "the given optimizer must be built over exactly the architecture parameters passed as params"
                )
            return optimizer
        raise TypeError(
            "optimizer must be None, a torch.optim.Optimizer subclass or instance; "
            f"got {type(optimizer).__name__}"
        )

    # -- hyper-parameters, for state_dict and repr ---------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        shapes = ", ".join(f"{p}:{list(t.shape)}" for p, t in zip(self.paths, self.leaves))
        return f"{type(self).__name__}({shapes}{', ' if hp else ''}{hp}, optimizer={type(self.optimizer).__name__})"

    # -- the step ------------------------------------------------------------------------------
    def _direction(self, oracle: GradientOracle) -> tuple[tuple[torch.Tensor, ...], StepInfo]:
        raise NotImplementedError

    # -- step counters: with deferred_check, reading them reads the last step's outcome ----------
    @property
    def steps(self) -> int:
        """Steps the inner optimizer took."""
        self.check()
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = int(value)

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for NaN/Inf (``on_nonfinite="skip"``) or a gradient-scale overflow."""
        self.check()
        return self._skipped_steps

    @skipped_steps.setter
    def skipped_steps(self, value: int) -> None:
        self._skipped_steps = int(value)

    def check(self) -> None:
        """Read the outcome of every step made with ``deferred_check`` whose outcome is not read yet
        (waits for the device): raise :class:`~flatarch.NonFiniteError` for one that met NaN/Inf if
        ``on_nonfinite`` is ``"raise"``, else count it. Nothing to do without such steps."""
        self._read_pending(wait=True)

    def _read_pending(self, wait: bool) -> None:
        """Read the pending outcomes, oldest first; without ``wait``, stop at one the device has
        not reached yet, unless it is older than the latest step (at most one step stays unread)."""
        while self._pending:
            oldest = self._pending[0]
            if not (wait or oldest.ready() or len(self._pending) > 1):
                return
            self._pending.pop(0)
            bad = oldest.first_bad()
            if bad is None:
                self._steps += 1
            elif self.on_nonfinite == "skip":
                self._skipped_steps += 1
            else:
                raise NonFiniteError(
                    f"{type(self).__name__}: loss or gradient was NaN/Inf at {bad} in step {oldest.step} "
                    "(deferred check), which therefore changed nothing. Lower the learning rates or rho, or "
                    "pass on_nonfinite='skip' to skip such steps"
                )

    def _evaluate(
        self,
        loss_fn: Callable[..., torch.Tensor],
        convention: str,
        returns_grad: bool,
        grad_scale: Any,
    ) -> tuple[tuple[torch.Tensor, ...] | None, StepInfo, GradientOracle]:
        """The direction, its StepInfo and the oracle that evaluated it (direction None: an fp16 overflow)."""
        oracle = GradientOracle(
            loss_fn,
            self.leaves,
            self._spec,
            self.paths,
            convention=convention,
            returns_grad=returns_grad,
            grad_scale=grad_scale,
            module=self.module,
            protect_buffers=self.protect_buffers,
            same_randomness=self.same_randomness,
            snapshots=self._snapshots,
            reduce=self.grad_reduce,
        )
        try:
            with oracle:
                direction, info = self._direction(oracle)
        except FoundInf:
            nan = torch.full((), float("nan"), device=self.leaves[0].device)
            return None, StepInfo(nan, nan, nan, oracle.evaluations, skipped=True, found_inf=True), oracle
        return direction, info, oracle

    def _host_checked(self, direction, info: StepInfo, oracle: GradientOracle):
        """``(direction, info)``, or ``(None, skipped info)`` for a non-finite step (or raise); one host sync."""
        if direction is None:
            return None, info
        bad = oracle.first_nonfinite(direction)
        if bad is not None:
            if self.on_nonfinite == "raise" and oracle.scale is None:
                raise NonFiniteError(
                    f"{type(self).__name__}: loss or gradient is NaN/Inf at {bad}; nothing was changed. "
                    "Lower the learning rates or rho, or pass on_nonfinite='skip' to skip such steps"
                )
            return None, StepInfo(info.loss, info.perturbed_loss, info.grad_norm, info.evaluations, True, True)
        return direction, info

    def direction(
        self,
        loss_fn: Callable[..., torch.Tensor],
        *,
        convention: str = "auto",
        returns_grad: bool = False,
        grad_scale: Any = None,
    ) -> tuple[Any, StepInfo]:
        """The update direction ``G`` (a pytree like ``params``) without stepping or touching ``.grad``.

        ``None`` in place of ``G`` when the step would be skipped (``info.skipped``).
        """
        direction, info = self._host_checked(*self._evaluate(loss_fn, convention, returns_grad, grad_scale))
        return (None if direction is None else tree.unflatten(direction, self._spec)), info

    def step(
        self,
        loss_fn: Callable[..., torch.Tensor],
        *,
        convention: str = "auto",
        returns_grad: bool = False,
        grad_scale: Any = None,
    ) -> StepInfo:
        """One architecture step: compute ``G``, store it in ``.grad``, step the inner optimizer.

        Args:
            loss_fn: ``loss_fn(alpha)`` (functional: gets a pytree like ``params``) or
                ``loss_fn()`` (closure: reads the live parameters); detected from its signature
                unless ``convention`` says ``"functional"`` or ``"closure"``.
            returns_grad: ``loss_fn`` returns ``(loss, grads)``, grads a pytree like ``params``
                (for losses whose backward you compute yourself, e.g. with an all-reduce).
            grad_scale: fp16 loss scale: a number or a ``torch.amp.GradScaler`` (its current
                scale is read, never changed). The loss is multiplied by it before each backward
                and the gradients divided by it; an overflow in the first gradient skips the step
                (``info.found_inf``) before any perturbation, whatever ``on_nonfinite`` says.

        ``.grad`` of each parameter is *replaced* by ``G`` (not accumulated into). With
        ``deferred_check``, a step that meets NaN/Inf leaves zeros in ``.grad``.
        """
        self._read_pending(wait=False)
        direction, info, oracle = self._evaluate(loss_fn, convention, returns_grad, grad_scale)
        if self.deferred_check and direction is not None and oracle.scale is None:
            flags = oracle.finite_flags_with(direction)
            ok = flags.all()
            if masked_step(self.optimizer, self.leaves, direction, ok):
                number = self._steps + self._skipped_steps + len(self._pending) + 1
                self._pending.append(PendingCheck(flags, oracle.check_labels(), number))
                return dataclasses.replace(info, skipped=~ok, found_inf=~ok)
        self.check()  # a step checked on the host comes after the deferred ones
        direction, info = self._host_checked(direction, info, oracle)
        if direction is None:
            self._skipped_steps += 1
            return info
        for leaf, g in zip(self.leaves, direction):
            leaf.grad = g.detach().to(dtype=leaf.dtype)
        self.optimizer.step()
        self._steps += 1
        return info

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The inner optimizer's parameter groups (learning rate, ...)."""
        return self.optimizer.param_groups

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: the inner optimizer's state, the step counters, the
        hyper-parameters and each parameter's pytree path and shape (so that loading matches state to
        parameters by name, not by position). The parameter values themselves are not included: they
        belong to the model's checkpoint, as with ``torch.optim``."""
        self.check()
        return {
            "update": self.name,
            "hyperparameters": self.hyperparameters(),
            "params": {path: list(leaf.shape) for path, leaf in zip(self.paths, self.leaves)},
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`, matching the saved optimizer state to the parameters by their
        pytree path (``['normal']``, ``[0]``), whatever order the pytree now lists them in.

        Raises:
            StateDictError: another update kind, other settings (``rho``, ``eps``, ...), other
                parameter names or shapes. Nothing is loaded then.
        """
        missing = {"update", "optimizer", "steps", "skipped_steps"} - set(state_dict)
        if missing:
            raise StateDictError(f"not a flatarch update state_dict: missing {sorted(missing)}")
        if state_dict["update"] != self.name:
            raise StateDictError(
                f"this state_dict is from a {state_dict['update']!r} update; it cannot be loaded into {self.name!r}"
            )
        self._check_hyperparameters(state_dict.get("hyperparameters"))
        optimizer_state = self._by_name(state_dict)
        self.optimizer.load_state_dict(optimizer_state)
        self._pending.clear()  # the loaded state replaces whatever a pending step did
        self._steps = int(state_dict["steps"])
        self._skipped_steps = int(state_dict["skipped_steps"])

    def _check_hyperparameters(self, saved: dict[str, Any] | None) -> None:
        if saved is None:
            return
        now = self.hyperparameters()
        differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if differ:
            changes = ", ".join(f"{k}={saved.get(k)!r} saved, {now.get(k)!r} here" for k in differ)
            raise StateDictError(
                f"this state_dict was saved by a {self.name} update with other settings ({changes}); "
                "build the update with the saved settings to resume it"
            )

    def _by_name(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """The saved inner-optimizer state with its parameter indices renumbered to this update's
        leaf order (state dicts without ``params`` are from flatarch 0.1 and load by position)."""
        optimizer_state = state_dict["optimizer"]
        saved = state_dict.get("params")
        if saved is None:
            saved = dict(zip(self.paths, (list(leaf.shape) for leaf in self.leaves)))
            if len(optimizer_state.get("state", {})) > len(self.leaves):
                raise StateDictError("this state_dict holds state for more parameters than this update has")
        saved_paths = list(saved)
        if set(saved_paths) != set(self.paths):
            only_saved = sorted(set(saved_paths) - set(self.paths))
            only_here = sorted(set(self.paths) - set(saved_paths))
            raise StateDictError(
                f"the state_dict is for parameters {saved_paths}, this update has {self.paths} "
                f"(only in the state_dict: {only_saved}; only here: {only_here}); build the update over the "
                "same pytree of parameters"
            )
        for path, leaf in zip(self.paths, self.leaves):
            if list(saved[path]) != list(leaf.shape):
                raise StateDictError(
                    f"parameter {path} has shape {list(leaf.shape)} here but {list(saved[path])} in the state_dict"
                )
        new_index = {old: self.paths.index(path) for old, path in enumerate(saved_paths)}
        # torch pairs saved ids with parameters by position within the groups: list each group's
        # ids in the order the live optimizer holds its parameters
        leaf_index = {id(leaf): i for i, leaf in enumerate(self.leaves)}
        saved_groups = [
            (set(new_index[int(i)] for i in group["params"]), group) for group in optimizer_state["param_groups"]
        ]
        groups = []
        for live in self.optimizer.param_groups:
            ids = [leaf_index[id(p)] for p in live["params"]]
            match = next((group for members, group in saved_groups if members == set(ids)), None)
            if match is None:
                raise StateDictError("the state_dict's optimizer groups its parameters differently from this update's")
            groups.append({**match, "params": ids})
        return {
            "state": {new_index[int(k)]: v for k, v in optimizer_state.get("state", {}).items()},
            "param_groups": groups,
        }
