"""Drop-in ``Architect`` for DARTS-PT (``ruocwang/darts-pt``), supernet and projection phases.

Change the import in ``nasbench201/train_search.py`` and ``sota/cnn/train_search.py``::

    from flatarch.adapters.darts_pt import Architect   # was: from nasbench201.architect_ig import Architect

The same ``architect`` then serves the supernet loop and ``pt_project``'s tuning loop, which call

* ``architect.step(input, target, input_search, target_search, eta=lr, network_optimizer=optimizer)``
  (``nasbench201/train_search.py``),
* ``architect.step(input, target, input_search, target_search, lr, optimizer)``
  (``sota/cnn/train_search.py``),
* ``architect.step(input, target, input_search, target_search, return_logits=True)``
  (``nasbench201/projection.py`` and ``sota/cnn/projection.py``, the tuning between projections).

The original ``step(input_train, target_train, input_valid, target_valid, *args, **kwargs)``
(``nasbench201/architect_ig.py`` L33) ignores everything after the four batches and returns
``shared``, which is ``None`` for its first-order update (L41, L44-48); the loops hand it on to
``model.step(..., shared=shared)``, and the DARTS-space model asserts it is ``None``
(``sota/cnn/model_search.py`` L173). This ``step`` therefore returns ``None`` too; the step's
:class:`flatarch.StepInfo` is ``architect.last_info``.

The projection's masked rows need nothing special: the forward overwrites projected rows with
their one-hot ``proj_weights``, so their gradient, and with it the update's direction, is
exactly zero there, as in the original's first-order step. Knobs: :mod:`flatarch.adapters._architect`.
"""

from __future__ import annotations

from typing import Any

from .darts import Architect as _DartsArchitect


class Architect(_DartsArchitect):
    """``Architect(model, args)`` as in DARTS-PT; the architecture step is a flatarch update.

    ``step`` takes DARTS' arguments (:class:`flatarch.adapters.darts.Architect`) and
    ``return_logits``; ``eta``, ``network_optimizer`` and ``return_logits`` are ignored, as the
    original ignores them. ``unrolled=True`` (second-order DARTS, which DARTS-PT does not
    implement either) raises ``ValueError``. Returns ``None``, as the original does.
    """

    def step(self, *args: Any, return_logits: bool = False, **kwargs: Any) -> None:
        super().step(*args, **kwargs)
        return None
