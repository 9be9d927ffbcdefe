"""NASLib's own code (automl/NASLib), imported from a checkout for the tests that run the adapter
against it: ``$FLATARCH_NASLIB`` names the checkout (the folder holding the ``naslib`` package).

NASLib is not on the package index, supports Python 3.7-3.9 only by its ``setup.py``, and
``naslib/__init__``-level imports pull in every optimizer, predictor, benchmark API and plot.
Those modules that the DARTS search never uses (:data:`UNUSED`) are replaced by inert stand-ins at
import time (tests/checkout_imports.py); nothing else is: ``DARTSOptimizer``, ``DARTSMixedOp``,
``Graph``/``EdgeData``, the NAS-Bench-201 and DARTS (``nasbench301``) search spaces, their
primitives and the ``Trainer`` are the real ones, on ``networkx`` (a dependency of torch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from checkout_imports import checkout_folder, checkout_imports, forget_checkout

CHECKOUT_ENV = "FLATARCH_NASLIB"
#: what NASLib imports that its DARTS search never uses: the Trainer's checkpointer and config
#: nodes (fvcore), a colour log formatter (termcolor), image metrics (pytorch_msssim, skimage),
#: the discrete optimizers' predictors (naslib.predictors, whose GP kernels import
#: ``collections.Iterable`` and fail on Python >= 3.10), other benchmarks' APIs (ConfigSpace,
#: nasbench_pytorch, transforms3d) and plots (seaborn)
UNUSED = (
    "fvcore",
    "termcolor",
    "pytorch_msssim",
    "skimage",
    "naslib.predictors",
    "ConfigSpace",
    "nasbench_pytorch",
    "transforms3d",
    "seaborn",
)


@contextmanager
def naslib_imports() -> Iterator[None]:
    """``import naslib...`` works inside the block (the checkout on the path, :data:`UNUSED` inert)."""
    with checkout_imports(checkout_folder(CHECKOUT_ENV, "naslib", "automl/NASLib"), UNUSED):
        yield


def forget_naslib() -> None:
    """Take NASLib and the stand-ins out of ``sys.modules`` (the stand-in tests import neither)."""
    forget_checkout("naslib", UNUSED)
