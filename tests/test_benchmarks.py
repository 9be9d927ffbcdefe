"""The benchmark scripts run end to end at smoke-test sizes (speed itself is never asserted here)."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

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
    for section in ("alpha_step", "layout", "search", "projection", "train", "data", "authors", "scaling"):
        assert result[section], section
    assert "needs 2 GPUs" in result["scaling"][0]["skipped"]
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
    # what a GPU search can lose without more calls: measured on CUDA, None (waits) or 0 (late checks) here
    for row in (r for r in result["search"] if "skipped" not in r):
        assert row["waits_per_iteration"] is None and row["late_checks_per_iteration"] == 0


def test_late_checks_counts_only_checks_read_before_their_copy_arrived():
    sys.path.insert(0, BENCHMARKS)
    try:
        import torch
        from gpu_suite import LateChecks

        from flatarch.deferred import PendingCheck
    finally:
        sys.path.remove(BENCHMARKS)
    arrived, late = (PendingCheck(torch.tensor([True, True]), ["a", "b"], step) for step in (1, 2))
    late.ready = lambda: False  # a copy still on its way (CUDA only in real runs)
    original = PendingCheck.first_bad
    with LateChecks() as counter:
        assert arrived.first_bad() is None and late.first_bad() is None
    assert counter.count == 1
    assert PendingCheck.first_bad is original  # put back: later reads are not counted


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
    for name in ("authors", "adapter", "module_loss", "module_loss, deferred_check", "floor"):
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
    parts = re.findall(r"^  (.+?) +iteration ([\d.]+) ms, alpha step ([\d.]+) \+ weight step ([\d.]+) ms", text, re.M)
    assert {p[0] for p in parts} == counted.keys() and all(float(n) > 0 for p in parts for n in p[1:])


def _grouped_edges_module():
    sys.path.insert(0, BENCHMARKS)
    try:
        import grouped_edges
    finally:
        sys.path.remove(BENCHMARKS)
    return grouped_edges


def _copy_per_edge_kernels_into_groups(grouped, per_edge, space):
    """Give the grouped network the per-edge network's kernels, each at its edge's rows."""
    import torch

    cells = [(g, p) for g, p in zip(grouped.cells, per_edge.cells) if hasattr(g, "sources")]
    with torch.no_grad():
        for g_cell, p_cell in cells:
            for source, group in enumerate(g_cell.sources):
                if space == "nb201":
                    from flatarch.reference_spaces.nb201.search_network import _OUTGOING
                    edges = _OUTGOING[source]
                    c = group.conv1.in_channels
                    for k, e in enumerate(edges):  # per-edge modules: skip, 1x1, 3x3, pool
                        group.conv1.weight[k * c:(k + 1) * c] = p_cell.edges[e][1][1].weight
                        group.conv3.weight[k * c:(k + 1) * c] = p_cell.edges[e][2][1].weight
                    continue
                edges = [e for _, e in g_cell.outgoing[source]]
                kept = [n for n in grouped.primitives if n != "none"]
                for k, e in enumerate(edges):
                    modules = dict(zip(kept, p_cell.edges[e].ops))
                    convs = group.convolutions
                    c = convs.c
                    rows = slice(k * c, (k + 1) * c)
                    for i, name in enumerate(convs.names):
                        stages = list(modules[name]) if convs.names[i] in convs.separable else [modules[name]]
                        convs.depthwise_1[i].weight[rows] = stages[0][1].weight
                        convs.pointwise_1.weight[(i * convs.m + k) * c:(i * convs.m + k + 1) * c] = stages[0][2].weight
                        if len(stages) == 2:
                            j = convs.separable.index(name)
                            convs.depthwise_2[j].weight[rows] = stages[1][1].weight
                            convs.pointwise_2.weight[(j * convs.m + k) * c:(j * convs.m + k + 1) * c] = \
                                stages[1][2].weight
                    if group.skip is not None:
                        half = group.skip.conv_1.out_channels // group.skip.copies
                        fr = modules["skip_connect"]
                        group.skip.conv_1.weight[k * half:(k + 1) * half] = fr.conv_1.weight
                        group.skip.conv_2.weight[k * half:(k + 1) * half] = fr.conv_2.weight


def test_grouped_edges_baseline_is_the_same_network():
    """The benchmark's per-edge layout, given the same kernels, computes what flatarch's grouped
    supernet computes (logits and alpha gradients in training mode, logits in eval mode after it):
    the benchmark compares two layouts of one function."""
    import torch
    import torch.nn.functional as F

    grouped_edges = _grouped_edges_module()
    for space in ("nb201", "darts"):
        torch.manual_seed(0)
        layouts, _, image = grouped_edges.build(space, True, torch.device("cpu"))
        grouped, per_edge = layouts["grouped"].double(), layouts["per-edge"].double()
        _copy_per_edge_kernels_into_groups(grouped, per_edge, space)
        x = torch.randn(4, 3, image, image, dtype=torch.float64)
        y = torch.randint(0, 10, (4,))
        results = []
        for net in (grouped, per_edge):
            logits = net(x)
            alphas = list(net.arch_parameters().values())
            results.append((logits, torch.autograd.grad(F.cross_entropy(logits, y), alphas)))
            net.eval()
            results[-1] += (net(x),)
        (a, ga, ea), (b, gb, eb) = results
        assert torch.allclose(a, b, atol=1e-10) and torch.allclose(ea, eb, atol=1e-10), space
        assert all(torch.allclose(u, v, atol=1e-10) for u, v in zip(ga, gb)), space


@pytest.mark.slow
def test_distributed_benchmark_under_torchrun_prints_the_reductions_cost(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           os.path.join(BENCHMARKS, "distributed.py"), "--tiny", "--batch", "8", "--repeats", "2",
                           "--json", str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert {(r["update"], r["variant"]) for r in rows} == {(u, v) for u in ("first-order", "a2m")
                                                          for v in ("data-parallel", "data-parallel sync-bn")}
    assert all(r["vs_alone"] > 0 and r["speedup"] > 0 and r["threads"] == 1 for r in rows)
    assert "torch threads 1" in done.stdout and done.stdout.count("reductions cost") == 4
