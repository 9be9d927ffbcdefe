"""A2M inside NASLib (``automl/NASLib``): ``A2MDARTSOptimizer``, a drop-in for its ``DARTSOptimizer``.

In a NASLib search script, two lines change::

    from flatarch.adapters.naslib import A2MDARTSOptimizer   # was: from naslib.optimizers import DARTSOptimizer
    optimizer = A2MDARTSOptimizer(**config.search)             # was: DARTSOptimizer(**config.search)

The constructor takes ``DARTSOptimizer``'s arguments plus the knobs of
:mod:`flatarch.adapters._settings` (``arch_update``, ``rho``, ``eps``, ``hessian``,
``difference``), so they can sit in the ``search:`` block of the YAML config. Everything else --
``adapt_search_space``, ``before_training``, ``new_epoch``, ``get_final_architecture``,
checkpointables, NASLib's ``Trainer`` -- is NASLib's own. Only ``step`` changes:

``DARTSOptimizer.step`` (``naslib/optimizers/oneshot/darts/optimizer.py`` L165-191) zeroes the
arch optimizer, back-propagates the validation loss ``CE(graph(x_val), y_val)`` and steps the
arch optimizer, then takes the weight step on the training batch (gradient clipping
``grad_clip`` over ``graph.parameters()``) and returns ``(logits_train, logits_val, train_loss,
val_loss)``. Here the arch part is a flatarch update over the same ``architectural_weights``,
stepping NASLib's own arch optimizer (Adam, betas (0.5, 0.999)). NASLib keeps the alphas as
edge data (``edge.data.alpha``, shared by all copies of a cell), outside ``graph.parameters()``,
and its ``DARTSMixedOp`` reads them at every forward (L294-301), so the update uses the closure
convention: it writes each perturbed point into those very Parameters, re-runs the graph,
differentiates with respect to the alphas only and restores them bit for bit. The weight step
is NASLib's. The returned tuple is NASLib's, with ``logits_val`` and ``val_loss`` from the
evaluation at the unperturbed alphas (detached: their graph is used up by the update).

Cost per step: the update's evaluations (A2M 4, SAM/USAM 2, first-order 1) instead of one,
each a forward and an alpha-only backward, plus NASLib's weight step.

After ``step``, ``alpha.grad`` holds the update's direction ``G`` plus the training-loss
gradient that the weight step's ``backward`` accumulates into it, as NASLib's own step leaves
``g_val + g_train`` there; NASLib clears it at the next arch ``zero_grad``.

Only DARTS is adapted: NASLib's GDAS and DrNAS optimizers sample ``sampled_arch_weight`` from
the alphas *before* the arch step (``gdas/optimizer.py`` L133-138, ``drnas/optimizer.py`` L94-99), so
the forward does not read the live alphas and an in-place perturbation would not reach it.

NASLib is imported when ``A2MDARTSOptimizer`` is first looked up, not when this module is; the
flatarch part lives in :class:`FlatDARTSStep` and :func:`flat_darts_optimizer` combines it with
any class that has ``DARTSOptimizer``'s interface.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from flatarch import defaults
from flatarch.base import ArchUpdate
from flatarch.step_info import StepInfo
from flatarch.updates import update_settings

from ._settings import UpdateKnobs

#: NASLib's ``search_space.get_type()`` -> the paper's rho (appendix C.3); NASLib's DARTS space is "nasbench301"
RHO_BY_NASLIB_TYPE = {"nasbench201": defaults.RHO_BY_SPACE["nb201"], "nasbench301": defaults.RHO_BY_SPACE["darts"]}

#: where NASLib defines DARTSOptimizer
NASLIB_DARTS_MODULE = "naslib.optimizers.oneshot.darts.optimizer"


def space_rho(search_space: Any, knobs: UpdateKnobs) -> float | None:
    """The paper's rho for a NASLib search space, when ``rho`` was not given and the update has one."""
    if knobs.rho is not None or "rho" not in update_settings(knobs.arch_update):
        return None
    get_type = getattr(search_space, "get_type", None)
    space_type = get_type() if callable(get_type) else None
    if space_type not in RHO_BY_NASLIB_TYPE:
        raise ValueError(
            f"no default rho for the NASLib search space type {space_type!r}; pass rho= to A2MDARTSOptimizer "
            "(the paper's: 1e-2 on NAS-Bench-201, 1e-1 on the DARTS space)"
        )
    return RHO_BY_NASLIB_TYPE[space_type]


class FlatDARTSStep:
    """The flatarch part of ``A2MDARTSOptimizer`` (see the module docstring); free of NASLib.

    Args (beyond ``DARTSOptimizer``'s, which are passed on):
        arch_update, rho, eps, hessian, difference: see :mod:`flatarch.adapters._settings`; rho
            defaults to the paper's value for the search space's ``get_type()``.

    Attributes (beyond ``DARTSOptimizer``'s):
        update: the :class:`flatarch.ArchUpdate` over ``architectural_weights`` (after
            ``adapt_search_space``); it steps ``arch_optimizer``.
        last_info: the :class:`flatarch.StepInfo` of the latest step.
    """

    def __init__(
        self,
        *args: Any,
        arch_update: str = "a2m",
        rho: float | None = None,
        eps: float | None = None,
        hessian: str | None = None,
        difference: str | None = None,
        **kwargs: Any,
    ):
        self.knobs = UpdateKnobs(arch_update, rho, eps, hessian, difference)
        super().__init__(*args, **kwargs)
        self.update: ArchUpdate | None = None
        self.last_info: StepInfo | None = None

    def adapt_search_space(self, search_space: Any, dataset: Any, scope: Any = None, **kwargs: Any) -> None:
        rho = space_rho(search_space, self.knobs)
        super().adapt_search_space(search_space, dataset, scope=scope, **kwargs)
        # The update steps NASLib's own arch optimizer, built over these very Parameters.
        self.update = self.knobs.build(
            list(self.architectural_weights), optimizer=self.arch_optimizer, module=self.graph, rho_default=rho
        )

    def before_training(self) -> None:
        super().before_training()
        self._check_alphas()

    def _check_alphas(self) -> None:
        if self.update is None:
            raise RuntimeError("call adapt_search_space(search_space, dataset) before training or stepping")
        if [id(p) for p in self.architectural_weights] != [id(p) for p in self.update.leaves]:
            raise RuntimeError(
                "architectural_weights no longer holds the Parameters the update was built over (were they "
                "replaced rather than moved in place?); call adapt_search_space again"
            )

    def step(self, data_train: Any, data_val: Any) -> tuple[Any, Any, Any, Any]:
        """One search step; returns NASLib's ``(logits_train, logits_val, train_loss, val_loss)``."""
        self._check_alphas()
        input_train, target_train = data_train
        input_val, target_val = data_val
        logits_val, val_loss = self._arch_step(input_val, target_val)
        logits_train, train_loss = self._weight_step(input_train, target_train)
        return logits_train, logits_val, train_loss, val_loss

    def _arch_step(self, input_val: Any, target_val: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.arch_optimizer.zero_grad()
        at_alpha: list[tuple[torch.Tensor, torch.Tensor]] = []

        def val_loss() -> torch.Tensor:
            logits = self.graph(input_val)
            loss = self.loss(logits, target_val)
            if not at_alpha:  # every update evaluates the unperturbed alphas first
                at_alpha.append((logits.detach(), loss.detach()))
            return loss

        self.last_info = self.update.step(val_loss, convention="closure")
        return at_alpha[0]

    def _weight_step(self, input_train: Any, target_train: Any) -> tuple[torch.Tensor, torch.Tensor]:
        # As DARTSOptimizer.step's weight part (L182-189).
        self.op_optimizer.zero_grad()
        logits = self.graph(input_train)
        loss = self.loss(logits, target_train)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.graph.parameters(), self.grad_clip)
        self.op_optimizer.step()
        return logits, loss


def flat_darts_optimizer(darts_optimizer: type) -> type:
    """``darts_optimizer`` (NASLib's ``DARTSOptimizer``, or a class with its interface) with the
    flatarch architecture step of :class:`FlatDARTSStep`."""

    class A2MDARTSOptimizer(FlatDARTSStep, darts_optimizer):
        __doc__ = FlatDARTSStep.__doc__

    A2MDARTSOptimizer.__module__ = __name__
    A2MDARTSOptimizer.__qualname__ = "A2MDARTSOptimizer"
    return A2MDARTSOptimizer


def _naslib_darts_optimizer() -> type:
    try:
        module = importlib.import_module(NASLIB_DARTS_MODULE)
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing.split(".")[0] == "naslib":
            hint = "install NASLib (automl/NASLib) in this environment"
        else:  # NASLib is there, one of its own imports failed
            hint = (
                "NASLib is installed but does not import: install its requirements.txt, on the Python "
                "3.7-3.9 its setup.py accepts (on 3.10 and later naslib.predictors fails to import)"
            )
        raise ImportError(
            f"flatarch.adapters.naslib.A2MDARTSOptimizer extends NASLib's DARTSOptimizer, and importing "
            f"{NASLIB_DARTS_MODULE} failed ({error}); {hint}"
        ) from error
    return module.DARTSOptimizer


def __getattr__(name: str) -> Any:
    # NASLib is imported on first use of the class, so that importing flatarch never needs it.
    if name == "A2MDARTSOptimizer":
        cls = flat_darts_optimizer(_naslib_darts_optimizer())
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
