"""A built wheel maps the top-level folders to flatarch.adapters and flatarch.reference_spaces."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_built_wheel_imports_all_three_packages(tmp_path):
    pytest.importorskip("build")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("flatarch-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    names = zipfile.ZipFile(wheel).namelist()
    assert not any(n.startswith(("adapters/", "reference_spaces/", "tests/")) for n in names), names
    code = (
        "import flatarch, flatarch.adapters, flatarch.reference_spaces, flatarch.reference_spaces.nb201 as nb;"
        "import sys; site = sys.argv[1];"
        "assert all(m.__file__.startswith(site) for m in (flatarch, flatarch.adapters, flatarch.reference_spaces, nb)),"
        " [m.__file__ for m in (flatarch, flatarch.adapters, nb)];"
        "print(nb.sequence_to_arch((3,) * 6))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "nor_conv_3x3~2" in run.stdout
