"""Drop-in ``Architect`` for the PC-DARTS repository (``train_search.py``).

Change the import in ``train_search.py``::

    from flatarch.adapters.pc_darts import Architect   # was: from architect import Architect

PC-DARTS' ``arch_parameters()`` holds four plain tensors: ``alphas_normal``, ``alphas_reduce``
(``[14, ops]``) and the edge-normalisation weights ``betas_normal``, ``betas_reduce`` (``[14]``).
The update perturbs and steps all four, as the original Adam trains all four. The call shape
is DARTS': ``architect.step(input, target, input_search, target_search, lr, optimizer,
unrolled=args.unrolled)`` (the original loop starts calling it at epoch 15; nothing changes
there). Knobs: :mod:`flatarch.adapters._architect`.
"""

from __future__ import annotations

from .darts import Architect as _DartsArchitect


class Architect(_DartsArchitect):
    """``Architect(model, args)`` as in PC-DARTS; same step as :class:`flatarch.adapters.darts.Architect`."""
