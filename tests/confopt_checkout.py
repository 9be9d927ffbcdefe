"""confopt's own code (automl/ConfigurableOptimizer), imported from a checkout for the tests that
run the adapter against it: ``$FLATARCH_CONFOPT`` names the checkout (its root or its ``src/``).

confopt is not on the package index (the index's ``confopt`` is another project) and its
requirements pull in what its search loop never touches. Those modules (:data:`UNUSED`) are
replaced by inert stand-ins at import time; nothing else is: the trainer, the NAS-Bench-201
supernet, the samplers, the handler and ``thop`` (the FLOP counter that confopt's operations call
on their first forward) are the real ones.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

CHECKOUT_ENV = "FLATARCH_CONFOPT"
#: packages confopt imports that its search loop never uses: checkpointing (fvcore), experiment
#: tracking (wandb), downloads (gdown), other benchmarks and search spaces, plots, ReinMax
UNUSED = ("fvcore", "wandb", "gdown", "skimage", "ConfigSpace", "nasbench", "nasbench301", "seaborn", "reinmax")


class _Inert(type):
    """A stand-in class: any attribute is another stand-in, calling it makes an inert object."""

    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _inert(f"{cls.__name__}.{name}")


def _inert(name: str) -> type:
    return _Inert(name, (), {"__init__": lambda self, *a, **k: None, "__getattr__": lambda self, n: _inert(n)})


class _InertModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _inert(f"{self.__name__}.{name}")


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in UNUSED:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _InertModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def source_folder() -> str:
    """The folder holding the ``confopt`` package, or a skip saying what to set."""
    root = os.environ.get(CHECKOUT_ENV, "").strip()
    if not root:
        pytest.skip(f"no confopt checkout: set {CHECKOUT_ENV} to a checkout of automl/ConfigurableOptimizer")
    for folder in (os.path.join(root, "src"), root):
        if os.path.isdir(os.path.join(folder, "confopt")):
            return folder
    pytest.skip(f"{CHECKOUT_ENV}={root} holds no confopt package (neither src/confopt nor confopt)")


@contextmanager
def confopt_imports() -> Iterator[None]:
    """``import confopt...`` works inside the block (the checkout on the path, :data:`UNUSED` inert)."""
    folder = source_folder()
    pytest.importorskip("thop", reason="confopt's operations count their FLOPs with thop at their first forward")
    stubs = _Stubs()
    sys.meta_path.insert(0, stubs)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)
        sys.meta_path.remove(stubs)
