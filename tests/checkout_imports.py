"""A framework's own code imported from a checkout, for the tests that run an adapter against it
(tests/confopt_checkout.py, tests/naslib_checkout.py).

Neither confopt nor NASLib is on the package index, and both import, at module level, packages
that their search loops never use. :func:`checkout_imports` puts the checkout first on the path
and replaces those modules (a name and everything under it) by inert stand-ins, in the test
process only; :func:`forget_checkout` takes the checkout's modules and the stand-ins out of
``sys.modules`` again, so that later tests in the same process see neither.
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


def _under(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, unused: tuple[str, ...]):
        self.unused = unused

    def find_spec(self, name, path, target=None):
        if _under(name, self.unused):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _InertModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def checkout_folder(env: str, package: str, repository: str) -> str:
    """The folder holding ``package`` in the checkout ``$env`` names (its root or its ``src/``),
    or a skip saying what to set."""
    root = os.environ.get(env, "").strip()
    if not root:
        pytest.skip(f"no {package} checkout: set {env} to a checkout of {repository}")
    for folder in (os.path.join(root, "src"), root):
        if os.path.isdir(os.path.join(folder, package)):
            return folder
    pytest.skip(f"{env}={root} holds no {package} package (neither src/{package} nor {package})")


@contextmanager
def checkout_imports(folder: str, unused: tuple[str, ...]) -> Iterator[None]:
    """Imports inside the block find the checkout in ``folder`` first and get inert stand-ins
    for ``unused`` (top-level packages such as ``"fvcore"`` or subpackages such as
    ``"naslib.predictors"``)."""
    stubs = _Stubs(unused)
    sys.meta_path.insert(0, stubs)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        sys.path.remove(folder)
        sys.meta_path.remove(stubs)


def forget_checkout(package: str, unused: tuple[str, ...]) -> None:
    """Drop ``package``'s modules and the stand-ins for ``unused`` from ``sys.modules``."""
    for name in [n for n in sys.modules if _under(n, (package, *unused))]:
        del sys.modules[name]
