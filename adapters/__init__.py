"""Drop-in replacements for the ``Architect`` of the original DARTS, PC-DARTS and beta-DARTS code.

One import line changes in the user's ``train_search.py``::

    from flatarch.adapters.darts import Architect       # quark0/darts
    from flatarch.adapters.pc_darts import Architect    # PC-DARTS
    from flatarch.adapters.beta_darts import Architect  # beta-DARTS

and :func:`patch` builds the same object for other code bases; :func:`add_arguments` puts the
knobs on a script's argparse parser. See ``docs/adapters.md``.
"""

from .arguments import add_arguments
from .patch import STYLES, patch

__all__ = ["STYLES", "add_arguments", "patch"]
