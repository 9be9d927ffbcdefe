"""A2M (and SAM, USAM, first-order DARTS) inside existing search code. See ``docs/adapters.md``.

Drop-in ``Architect`` classes: one import line changes in the user's ``train_search.py``::

    from flatarch.adapters.darts import Architect       # quark0/darts, Lambda-DARTS (sota/cnn)
    from flatarch.adapters.pc_darts import Architect    # PC-DARTS
    from flatarch.adapters.beta_darts import Architect  # beta-DARTS
    from flatarch.adapters.darts_pt import Architect    # DARTS-PT, supernet and projection

:func:`patch` builds the same object for other code bases; :func:`add_arguments` puts the
knobs on a script's argparse parser. For the modular frameworks:
:mod:`flatarch.adapters.naslib` (``A2MDARTSOptimizer``, NASLib imported on first use) and
:mod:`flatarch.adapters.confopt` (``attach(trainer)``); neither imports its framework here.
"""

from .arguments import add_arguments
from .patch import STYLES, patch

__all__ = ["STYLES", "add_arguments", "patch"]
