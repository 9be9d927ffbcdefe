"""Drop-in ``Architect`` for the original DARTS repository (``cnn/train_search.py``).

Change the import in ``train_search.py``::

    from flatarch.adapters.darts import Architect      # was: from architect import Architect

and the search runs A2M (or ``args.arch_update``) instead of first-order DARTS. The loop is
unchanged: ``Architect(model, args)`` and
``architect.step(input, target, input_search, target_search, lr, optimizer, unrolled=args.unrolled)``.

The model keeps its alphas (``alphas_normal``, ``alphas_reduce``) as plain tensors outside the
module's registered parameters; the update writes the perturbed values into those very
tensors during the step and restores them bit for bit before ``.optimizer`` steps. Knobs:
:mod:`flatarch.adapters._architect`.
"""

from __future__ import annotations

from typing import Any

from flatarch.step_info import StepInfo

from ._architect import FlatArchitect


class Architect(FlatArchitect):
    """``Architect(model, args)`` as in DARTS; the architecture step is a flatarch update.

    ``step`` takes the original arguments. ``eta`` (the weights' learning rate) and
    ``network_optimizer`` only served the second-order (unrolled) step, which is not provided:
    ``unrolled=True`` raises. Returns the step's :class:`flatarch.StepInfo` (the original
    returned nothing, so loops that ignore it are unaffected).
    """

    def step(
        self,
        input_train: Any,
        target_train: Any,
        input_valid: Any,
        target_valid: Any,
        eta: float | None = None,
        network_optimizer: Any = None,
        unrolled: bool = False,
    ) -> StepInfo:
        return self._arch_step(input_valid, target_valid, unrolled)
