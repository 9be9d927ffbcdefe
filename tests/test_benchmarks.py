"""The benchmark scripts run end to end at smoke-test sizes (speed itself is never asserted here)."""

import json
import os
import re
import subprocess
import sys
import textwrap

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(__file__)}


def run(script, *args):
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args], capture_output=True, text=True,
                          env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def numbers(row):
    return [row[k] for k in ("value", "vs_first_order", "vs_floor", "vs_authors", "peak_memory_bytes") if k in row]


def test_gpu_suite_tiny_on_cpu_writes_every_section(tmp_path):
    out = tmp_path / "suite.json"
    text = run("gpu_suite.py", "--device", "cpu", "--tiny", "--json", str(out), "--workers", "0")
    result = json.loads(out.read_text())
    assert result["environment"]["threads"] == 1 and "torch threads 1" in text
    for section in ("alpha_step", "layout", "search", "projection", "train", "data", "authors"):
        assert result[section], section
    assert all(r["operator_calls"] < 0.75 * r["per_edge_operator_calls"] for r in result["layout"])
    measured = [r for section in ("alpha_step", "layout", "search", "projection", "train", "data")
                for r in result[section] if "skipped" not in r]
    assert all(n > 0 for r in measured for n in numbers(r)) and all(r["threads"] == 1 for r in measured)
    names = {r["name"] for r in result["alpha_step"]}
    assert {"first-order", "a2m central", "a2m forward", "a2m exact", "a2m central batch_pair"} <= names
    searched = {(r["space"], r["update"]) for r in result["search"] if "skipped" not in r}
    assert searched == {(s, u) for s in ("nb201", "darts") for u in ("first-order", "sam", "usam", "a2m")}
    skipped = {r["name"]: r["skipped"] for r in result["search"] if "skipped" in r}
    assert "needs CUDA" in skipped["nb201 bf16"] and "--compile" in skipped["darts compiled"]
    assert "--darts" in result["authors"][0]["skipped"]


STAND_IN_ARCHITECT = '''
    import torch


    class Architect:
        """A stand-in with the A2M authors' interface: USAM shift, central difference at the shifted point."""

        def __init__(self, model, args):
            self.model, self.rho, self.eps = model, args.rho_alpha_sam, args.epsilon_sam
            self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=args.arch_learning_rate,
                                              betas=(0.5, 0.999), weight_decay=args.arch_weight_decay)

        def _grad(self, x, y):
            return torch.autograd.grad(self.model._loss(x, y), self.model.arch_parameters())

        def _set(self, values):
            with torch.no_grad():
                for a, v in zip(self.model.arch_parameters(), values):
                    a.copy_(v)

        def step(self, x_train, y_train, x, y, eta, network_optimizer, epoch=0, unrolled=False):
            self.optimizer.zero_grad()
            alphas = self.model.arch_parameters()
            start = [a.detach().clone() for a in alphas]
            g0 = self._grad(x, y)
            shifted = [a + self.rho * g for a, g in zip(start, g0)]
            self._set(shifted)
            g1 = self._grad(x, y)
            self._set([a + self.eps * g for a, g in zip(shifted, g1)])
            plus = self._grad(x, y)
            self._set([a - self.eps * g for a, g in zip(shifted, g1)])
            minus = self._grad(x, y)
            self._set(start)
            for a, g, p, m in zip(alphas, g1, plus, minus):
                a.grad = g + self.rho * (p - m) / (2 * self.eps)
            self.optimizer.step()
'''


def test_a2m_vs_authors_compares_given_checkouts_and_skips_without_them(tmp_path):
    assert "skipping" in run("a2m_vs_authors.py")
    darts, authors = tmp_path / "darts", tmp_path / "asquaredm"
    (darts / "cnn").mkdir(parents=True)
    (darts / "cnn" / "model_search.py").write_text("from adapter_models import DartsNetwork as Network\n")
    (authors / "optimizers" / "darts").mkdir(parents=True)
    (authors / "optimizers" / "darts" / "architect.py").write_text(textwrap.dedent(STAND_IN_ARCHITECT))
    text = run("a2m_vs_authors.py", "--darts", str(darts), "--asquaredm", str(authors), "--device", "cpu",
               "--batch", "4", "--channels", "4", "--layers", "3", "--size", "8", "--repeats", "1")
    assert "torch threads 1" in text
    for name in ("authors", "adapter", "module_loss", "floor"):
        assert name in text
    difference = float(text.rsplit("after one step: ", 1)[1])
    assert difference < 1e-6


def test_grouped_edges_counts_fewer_calls_than_the_per_edge_layout():
    text = run("grouped_edges.py", "--tiny", "--repeats", "1")
    assert text.count("torch threads 1") == 2
    rows = [line.split() for line in text.splitlines() if line.startswith(("alpha gradient", "weight pass"))]
    assert len(rows) == 4  # two passes, two spaces, batch 2
    for row in rows:
        per_edge, grouped = (int(n.replace(",", "")) for n in row[3:5])
        assert grouped < 0.6 * per_edge, row  # operator calls are counted, not timed: the same on every run


def test_search_epoch_counts_each_steps_calls():
    """The engine's A2M step makes the calls of its four evaluations and little else (counted, not
    timed: the host's work per call is what a GPU search waits for)."""
    text = run("search_epoch.py", "--iters", "1", "--rounds", "1", "--batch-size", "2", "--channels", "4",
               "--cells", "1")
    assert "torch threads: 1" in text
    counted = {m[0]: [int(n) for n in m[1:]]
               for m in re.findall(r"^  (.+?) +alpha step (\d+) = (\d+) x (\d+) \+ (-?\d+);", text, re.M)}
    assert counted.keys() == {"DARTS (first-order)", "A2-DARTS central", "A2-DARTS forward"}
    for name, evaluations in (("DARTS (first-order)", 1), ("A2-DARTS central", 4), ("A2-DARTS forward", 3)):
        total, k, evaluation, extra = counted[name]
        # beyond its evaluations the step makes a fixed number of calls (Adam, the alpha arithmetic, the
        # buffer copies): 64-121 on the paper's network too
        assert k == evaluations and total == k * evaluation + extra and 0 <= extra < 200, name
