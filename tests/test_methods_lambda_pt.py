"""lambda-DARTS and DARTS-PT in the engine: what reaches the network, the correction's schedule,
the projection's choices on scores known by construction, resume across the phase boundary."""

import json
import os

import pytest
import torch
from flatarch.reference_spaces.engine import SearchConfig, loop, search
from flatarch.reference_spaces.engine.projection import check_schedule, schedule, tune_epochs
from flatarch.reference_spaces.errors import UsageError
from interrupts import interrupt_at

from flatarch import regularizers

TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=2,
                    max_batches=2, progress=False, plot=False, seed=3)
DARTS_TINY = TINY.replace(space="darts", subset=16, batch_size=4, max_batches=1, channels=8)


def test_lambda_darts_gives_every_cell_its_own_weights_and_corrects_the_weight_gradient(monkeypatch):
    calls = []
    real = regularizers.lambda_correction

    def spy(loss_fn, layer_weights, params, **kwargs):
        out = real(loss_fn, layer_weights, params, **kwargs)
        calls.append((len(layer_weights), kwargs, out))
        return out

    monkeypatch.setattr(regularizers, "lambda_correction", spy)
    grads = []
    real_step = torch.optim.SGD.step

    def record_step(self, *args, **kwargs):
        grads.append([p.grad.clone() for p in self.param_groups[0]["params"] if p.grad is not None])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", record_step)
    result = search(TINY, method="lambda-darts", optimizer="first-order", grad_clip=0.0, early_stop=0)
    assert result.config["lambda_coef"] == 0.125 and result.config["lambda_corr"] == "corr"
    assert len(calls) == 4  # every weight step, also in the first epoch (lambda_t = 0 there)
    for cells, kwargs, _ in calls:
        assert cells == 3 and kwargs["eps0"] == 1e-4 and kwargs["corr"] == "corr"  # all NB201 cells


def test_lambda_strength_ramps_from_zero_to_lambda(monkeypatch):
    strengths = []
    from flatarch.reference_spaces.engine import components

    real = components.LambdaCorrection.correct

    def spy(self, ctx, batch, weights, leaves, layout, params, epoch):
        before = [p.grad.clone() for p in params]
        real(self, ctx, batch, weights, leaves, layout, params, epoch)
        moved = max(float((p.grad - b).abs().max()) for p, b in zip(params, before))
        strengths.append((epoch, moved))

    monkeypatch.setattr(components.LambdaCorrection, "correct", spy)
    search(TINY, method="lambda-darts", optimizer="first-order", epochs=3, max_batches=1, early_stop=0, lambda_coef=1.0)
    assert [e for e, _ in strengths] == [0, 1, 2]
    assert strengths[0][1] == 0.0 and strengths[1][1] > 0 and strengths[2][1] > 0


def test_lambda_darts_on_the_darts_space_perturbs_normal_cells_only(monkeypatch):
    seen = []
    real = regularizers.lambda_correction
    monkeypatch.setattr(regularizers, "lambda_correction",
                        lambda loss_fn, ws, params, **kw: (seen.append(len(ws)), real(loss_fn, ws, params, **kw))[1])
    result = search(DARTS_TINY, method="lambda-darts", optimizer="first-order", recipe="a2m-authors", epochs=1,
                    batch_size=4)
    assert seen == [3]  # 5 cells: 3 normal, 2 reduction
    assert (result.config["ops"], result.config["lambda_corr"], result.config["epochs"]) == ("s5", "signcorr", 1)


@pytest.mark.parametrize("settings,message", [
    ({"method": "lambda-darts", "lambda_coef": -1.0}, "--lambda must be"),
    ({"method": "lambda-darts", "lambda_eps0": 0.0}, "--lambda-eps0 must be"),
    ({"method": "lambda-darts", "lambda_corr": "cos"}, "--lambda-corr must be corr or signcorr"),
    ({"method": "darts", "lambda_coef": 0.1}, "--lambda does not apply to --method darts"),
    ({"method": "darts-pt", "projection_interval": 0}, "--projection-interval must be"),
    ({"method": "darts-pt", "projection_interval": 5, "tune_epochs": 3},
     "--tune-epochs 3 is too short .* give at least 25"),
    ({"method": "darts-pt", "select": "final"}, "darts-pt always runs with --select projection"),
    ({"method": "pcdarts", "tune_epochs": 5}, "--tune-epochs does not apply"),
])
def test_bad_method_settings_are_refused_before_anything_is_written(tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        search(TINY, out=str(tmp_path / "r"), **settings)
    assert not (tmp_path / "r").exists()


def test_the_repositories_projection_schedules():
    # NAS-Bench-201: 6 edges every 5 epochs, 25 tuning epochs, the last at 24 (nasbench201/projection.py)
    assert tune_epochs(5, 6, 0) == 25
    assert schedule(25, 5, 6) == [(0, "op"), (5, "op"), (10, "op"), (15, "op"), (20, "op"), (24, "op")]
    # DARTS space: 14 op rounds, then 3 topology rounds at 70, 75, 80; 81 epochs (sota/cnn/projection.py)
    assert tune_epochs(5, 14, 3) == 81
    rounds = schedule(81, 5, 14)
    assert [t for t, k in rounds if k == "topology"] == [70, 75, 80] and len(rounds) == 17
    assert tune_epochs(1, 6, 0) == 6  # K = 1 needs one more epoch than K (E - 1)
    check_schedule(25, 5, 6, 0)
    with pytest.raises(UsageError):
        check_schedule(20, 5, 6, 0)  # rounds at 0, 5, 10, 15, 19: one edge short


def _known_scores(monkeypatch, best_op, keep):
    """Scores whose answer is known: removing op ``best_op(group, edge)`` gives 40 % (so it is kept),
    any other op 50 %; removing a whole edge gives 40 % if it is in ``keep[group]`` (so it stays),
    else 60 % (so it is dropped)."""

    def scorer(self, epoch):
        def score(weights):
            for group, w in weights.items():
                base = self.projection.apply({group: torch.softmax(self.net.alphas()[group].detach(), -1)})[group]
                changed = [e for e in range(len(w)) if not torch.equal(w[e], base[e])]
                if not changed:
                    continue
                edge = changed[0]
                if not w[edge].any():  # a topology candidate: the whole edge removed
                    return 40.0 if edge in keep.get(group, ()) else 60.0
                op = int((w[edge] != base[edge]).nonzero()[0])
                return 40.0 if op == best_op(group, edge) else 50.0
            return 50.0

        return score

    monkeypatch.setattr(loop._Searcher, "projection_accuracy", scorer)


def test_darts_pt_on_nb201_keeps_the_op_whose_removal_hurts_most(monkeypatch, tmp_path):
    target = {e: (e % 4) + 1 for e in range(6)}
    _known_scores(monkeypatch, lambda group, edge: target[edge], {})
    out = tmp_path / "pt"
    result = search(TINY, method="darts-pt", optimizer="first-order", projection_interval=2, out=str(out))
    assert result.selection.startswith("projection")
    # 2 supernet epochs, then K (E - 1) = 10 tuning epochs
    phases = [h["phase"] for h in result.history]
    assert phases == ["search"] * 2 + ["tune"] * 10
    lines = [json.loads(line) for line in open(out / loop.LOG_NAME)]
    projections = [r["projection"] for r in lines if "projection" in r]
    assert sorted(p["edge"] for p in projections) == list(range(6))
    assert all(p["kind"] == "op" and set(p["scores"]) == {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                          "avg_pool_3x3"} for p in projections)
    from flatarch.reference_spaces.nb201 import OPS, sequence_to_arch

    assert all(p["chosen"] == OPS[target[p["edge"]]] for p in projections)
    assert result.genotype == sequence_to_arch([target[e] for e in range(6)])
    # the projection epochs: before tuning epochs 0, 2, 4, 6, 8 and the last (9)
    assert [p["epoch"] for p in projections] == [3, 5, 7, 9, 11, 12]


def test_equal_scores_keep_the_lowest_op_index(monkeypatch):
    monkeypatch.setattr(loop._Searcher, "projection_accuracy", lambda self, epoch: (lambda weights: 50.0))
    result = search(TINY, method="darts-pt", optimizer="first-order", projection_interval=2, epochs=1, arch_lr=1e-6)
    assert result.genotype == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    # alphas that hardly moved, and no warning that the cell is undecided: the projection chose every op
    assert result.history[-1]["decided_edges"] < 6 and not [w for w in result.warnings if "undecided" in w]


def test_darts_pt_on_the_darts_space_projects_ops_then_topology(monkeypatch, tmp_path):
    # two kept edges for each of the nodes with 3, 4 and 5 incoming edges (rows 2-4, 5-8, 9-13)
    keep = {"normal": {2, 4, 5, 7, 10, 13}, "reduce": {3, 4, 6, 8, 9, 12}}
    _known_scores(monkeypatch, lambda group, edge: edge % 7, keep)
    out = tmp_path / "pt"
    result = search(DARTS_TINY, method="darts-pt", optimizer="first-order", projection_interval=1, epochs=1,
                    out=str(out))
    assert result.config["ops"] == "s5"
    lines = [json.loads(line)["projection"] for line in open(out / loop.LOG_NAME) if "projection" in line]
    ops = [p for p in lines if p["kind"] == "op"]
    topo = [p for p in lines if p["kind"] == "topology"]
    assert len(ops) == 28 and len(topo) == 2 * (1 + 2 + 3)  # one drop per edge above two, per node
    assert all(p["chosen"] == p["edge_name"] and 60.0 in p["scores"].values() for p in topo)
    from flatarch.reference_spaces.darts.genotype import OP_SETS, edge_index

    for group in ("normal", "reduce"):
        pairs = getattr(result.genotype, group)
        for node in range(4):
            kept = {edge_index(node, pred) for _, pred in pairs[2 * node: 2 * node + 2]}
            expected = {0, 1} if node == 0 else {e for e in keep[group] if edge_index(node, 0) <= e <= edge_index(
                node, node + 1)}
            assert kept == expected, (group, node)
            for op, pred in pairs[2 * node: 2 * node + 2]:
                assert op == OP_SETS["s5"][edge_index(node, pred) % 7]


def test_a2_darts_pt_takes_a2m_steps_in_both_phases_and_resumes_across_them(tmp_path, monkeypatch):
    cfg = TINY.replace(method="darts-pt", optimizer="a2m", projection_interval=2)
    full = search(cfg, out=str(tmp_path / "full"))
    assert all(h["step"]["evaluations"] == 4 for h in full.history)
    out = tmp_path / "cut"
    with monkeypatch.context() as m:
        interrupt_at(m, 6)  # in the tuning phase
        with pytest.raises(KeyboardInterrupt):
            search(cfg, out=str(out))
    resumed = search(cfg, out=str(out), resume=True)
    assert resumed.genotype == full.genotype
    for a, b in zip(full.history, resumed.history):
        assert a["alphas"] == b["alphas"] and a["val_loss"] == b["val_loss"]
    log = lambda folder: [json.loads(line) for line in open(os.path.join(folder, loop.LOG_NAME))]  # noqa: E731
    strip = lambda records: [{k: v for k, v in r.items() if k not in ("seconds", "seconds_per_iteration")}  # noqa: E731
                             for r in records]
    assert strip(log(out)) == strip(log(tmp_path / "full"))
    with pytest.raises(UsageError, match="projection phase"):
        search(cfg.replace(epochs=3), out=str(out), resume=True)


def test_the_digits_demo_tunes_darts_pt_one_epoch_per_edge_and_explicit_settings_win():
    demo = SearchConfig(method="darts-pt").resolved({})
    assert demo.projection_interval == 1
    assert SearchConfig(method="darts-pt", projection_interval=3).resolved({}).projection_interval == 3
    assert SearchConfig(method="darts-pt", dataset="cifar10").resolved({}).projection_interval == 5  # the repository's
    assert SearchConfig(method="darts").resolved({}).projection_interval is None  # not a darts setting
