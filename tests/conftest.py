"""Test configuration: one torch thread.

These machines have 2 cores and pytest-xdist may run two workers; two OpenMP threads per
process on a busy core make small ops ~100x slower (oversubscription), so every test process
uses exactly one intra-op thread.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_NATS_BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "nats_bench.csv")


@pytest.fixture
def nats_bench_csv():
    """Path of the real NAS-Bench-201 table beside the checkout; skips the test when absent."""
    path = os.environ.get("FLATARCH_NATS_BENCH_CSV", SHARED_NATS_BENCH)
    if not os.path.exists(path):
        pytest.skip(f"NAS-Bench-201 table not found at {path} (set FLATARCH_NATS_BENCH_CSV)")
    return os.path.abspath(path)
