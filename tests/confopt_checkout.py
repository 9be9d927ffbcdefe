"""confopt's own code (automl/ConfigurableOptimizer), imported from a checkout for the tests that
run the adapter against it: ``$FLATARCH_CONFOPT`` names the checkout (its root or its ``src/``).

confopt is not on the package index (the index's ``confopt`` is another project) and its
requirements pull in what its search loop never touches. Those modules (:data:`UNUSED`) are
replaced by inert stand-ins at import time (tests/checkout_imports.py); nothing else is: the
trainer, the NAS-Bench-201 supernet, the samplers, the handler and ``thop`` (the FLOP counter that
confopt's operations call on their first forward) are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from checkout_imports import checkout_folder, checkout_imports

CHECKOUT_ENV = "FLATARCH_CONFOPT"
#: packages confopt imports that its search loop never uses: checkpointing (fvcore), experiment
#: tracking (wandb), downloads (gdown), other benchmarks and search spaces, plots, ReinMax
UNUSED = ("fvcore", "wandb", "gdown", "skimage", "ConfigSpace", "nasbench", "nasbench301", "seaborn", "reinmax")


def source_folder() -> str:
    """The folder holding the ``confopt`` package, or a skip saying what to set."""
    return checkout_folder(CHECKOUT_ENV, "confopt", "automl/ConfigurableOptimizer")


@contextmanager
def confopt_imports() -> Iterator[None]:
    """``import confopt...`` works inside the block (the checkout on the path, :data:`UNUSED` inert)."""
    folder = source_folder()
    pytest.importorskip("thop", reason="confopt's operations count their FLOPs with thop at their first forward")
    with checkout_imports(folder, UNUSED):
        yield
