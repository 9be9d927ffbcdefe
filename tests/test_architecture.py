"""The import direction of docs/architecture.md, enforced: the core never imports the reference
spaces, the adapters or the command line; the reference spaces never import the adapters or the
command line; the adapters import only the core."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: source folder -> the package name it is installed as (pyproject.toml package-dir)
PACKAGES = {"flatarch": "flatarch", "reference_spaces": "flatarch.reference_spaces", "adapters": "flatarch.adapters"}
#: layer -> package prefixes it must not import
FORBIDDEN = {
    "core": ("flatarch.reference_spaces", "flatarch.adapters", "flatarch.cli"),
    "reference_spaces": ("flatarch.adapters", "flatarch.cli"),
    "adapters": ("flatarch.reference_spaces", "flatarch.cli"),
}
#: the one deliberate exception: ``flatarch.search`` is the engine, imported on first use
ALLOWED = {("flatarch", "flatarch.reference_spaces.engine")}


def _modules():
    for folder, package in PACKAGES.items():
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, name), os.path.join(ROOT, folder))
                    parts = rel[:-3].split(os.sep)
                    if parts[-1] == "__init__":
                        parts = parts[:-1]
                    yield ".".join([package, *parts]), os.path.join(dirpath, name), name == "__init__.py"


def _layer(module: str) -> str:
    if module.startswith("flatarch.cli") or module == "flatarch.__main__":
        return "cli"
    for layer in ("reference_spaces", "adapters"):
        if module.startswith(f"flatarch.{layer}"):
            return layer
    return "core"


def _imports(module: str, path: str, is_package: bool):
    tree = ast.parse(open(path).read())
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def test_every_layer_imports_only_downwards():
    bad = []
    for module, path, is_package in _modules():
        for target in _imports(module, path, is_package):
            for prefix in FORBIDDEN.get(_layer(module), ()):
                allowed = any(module == m and target.startswith(t) for m, t in ALLOWED)
                if (target == prefix or target.startswith(prefix + ".")) and not allowed:
                    bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(sorted(set(bad)))


def test_the_checker_sees_relative_imports():
    imports = set(_imports("flatarch.reference_spaces.engine.loop",
                           os.path.join(ROOT, "reference_spaces", "engine", "loop.py"), False))
    assert "flatarch.reference_spaces.registry" in imports and "flatarch.reference_spaces.engine.reporting" in imports
    assert _layer("flatarch.a2m") == "core" and _layer("flatarch.cli.search") == "cli"


@pytest.mark.parametrize("package", ["flatarch", "flatarch.adapters"])
def test_importing_the_core_or_the_adapters_loads_no_reference_space(package):
    import subprocess
    import sys

    code = (f"import sys, {package}; bad = [m for m in sys.modules if m.startswith('flatarch.reference_spaces')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
