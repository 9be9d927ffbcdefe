"""flatarch: flat-minima architecture updates for differentiable NAS.

The headline call::

    import flatarch
    opt = flatarch.A2M(arch_params, rho=1e-2)   # any pytree of alpha tensors
    info = opt.step(val_loss_fn)                 # val_loss_fn(alpha) -> scalar

Updates (each implements :class:`ArchOptimizer`): :class:`FirstOrder` (DARTS), :class:`SAM`,
:class:`USAM`, :class:`A2M`. The formulas are in each module's docstring and in
``docs/optimizers.md``.
"""

from . import regularizers, sharpness
from .a2m import A2M
from .base import DARTS_ADAM_DEFAULTS, ArchUpdate
from .errors import NonFiniteError, StateDictError
from .first_order import FirstOrder
from .module_loss import ModuleLoss, module_loss
from .protocol import ArchOptimizer
from .sam import SAM
from .step_info import StepInfo
from .updates import UPDATES, make_update
from .usam import USAM

__version__ = "0.1.0"


def __getattr__(name: str):
    # flatarch.search (the reference-space search engine) is imported on first use, so that
    # `import flatarch` stays the small core: no datasets, plotting or space code is loaded.
    if name == "search":
        from .reference_spaces.engine import search

        return search
    raise AttributeError(f"module 'flatarch' has no attribute {name!r}")

__all__ = [
    "A2M",
    "DARTS_ADAM_DEFAULTS",
    "SAM",
    "UPDATES",
    "USAM",
    "ArchOptimizer",
    "ArchUpdate",
    "FirstOrder",
    "ModuleLoss",
    "NonFiniteError",
    "StateDictError",
    "StepInfo",
    "make_update",
    "module_loss",
    "regularizers",
    "search",
    "sharpness",
]
