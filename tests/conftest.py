"""Test configuration: one torch thread; where the real NAS-Bench-201 CSV is.

These machines have 2 cores and pytest-xdist may run two workers; two OpenMP threads per
process on a busy core make small ops ~100x slower (oversubscription), so every test process
uses exactly one intra-op thread.

Tests of the table shipped with flatarch need nothing; tests that read the NATS-Bench CSV
itself (``nats_bench_csv``) take it from ``$FLATARCH_NB201_TABLE`` when that names a ``.csv``
file (the same variable flatarch reads), else from ``shared/nats_bench.csv`` beside the
checkout, and are skipped when neither exists. Beyond that, tests never see the user's
``$FLATARCH_NB201_TABLE``: a test that wants it sets it.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from flatarch.reference_spaces.nb201.benchmark import TABLE_ENV  # noqa: E402

torch.set_num_threads(1)

SHARED_NATS_BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "nats_bench.csv")


@pytest.fixture(scope="session")
def nats_bench_csv():
    """Path of the real NAS-Bench-201 CSV (see the module docstring); skips the test when absent."""
    configured = os.environ.get(TABLE_ENV, "").strip()
    path = configured if configured.lower().endswith(".csv") else SHARED_NATS_BENCH
    if not os.path.exists(path):
        pytest.skip(f"NAS-Bench-201 CSV not found at {path} (set {TABLE_ENV} to nats_bench.csv)")
    return os.path.abspath(path)


@pytest.fixture(autouse=True)
def _no_table_from_the_environment(monkeypatch):
    """Without a table named by the test, flatarch uses the one it ships, whatever the shell sets."""
    monkeypatch.delenv(TABLE_ENV, raising=False)
