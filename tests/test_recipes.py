"""``--recipe a2m-authors``: what the A2M authors' code ran for table 2, on every method and both spaces.

The expected values are written out here from the files the recipes cite (AsquaredM and the
method repositories it runs; docs/reproduce.md), not read from the recipes: a recipe that sets a
setting the files do not show, or misses one, fails.
"""

import json

import pytest
import torch
from flatarch.reference_spaces.engine import SearchConfig, loop, search
from flatarch.reference_spaces.engine.methods import AUTHORS_RECIPE, METHODS
from flatarch.reference_spaces.errors import UsageError
from flatarch.reference_spaces.registry import get_space
from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME
from flatarch.reference_spaces.sweep.units import SearchUnit
from torch import nn

import flatarch
from flatarch import regularizers

UPDATES = ("first-order", "a2m")
#: every method, both spaces: the validation split augmented, every alpha-step pass updating BatchNorm
COMMON = {"val_augment": True, "running_stats": "every-pass"}
#: (method, space, update or None for both) -> what that method's runs set beyond COMMON
AS_RUN = {
    ("pcdarts", "darts", None): {"edge_normalization": False, "select": "final", "early_stop": 0},
    ("betadarts", "darts", None): {"beta_index": "batch"},
    ("lambda-darts", "darts", None): {"lambda_coef": 0.125, "lambda_eps0": 1e-4, "lambda_corr": "signcorr",
                                      "batch_size": 96, "arch_lr": 3e-4, "epochs": 50, "ops": "s5",
                                      "select": "final", "early_stop": 0},
    ("lambda-darts", "nb201", None): {"lambda_coef": 0.125, "lambda_eps0": 1e-4, "lambda_corr": "corr",
                                      "batch_size": 64, "arch_lr": 1e-4, "epochs": 50, "select": "final",
                                      "early_stop": 0, "step_order": "weights-first"},
    ("darts-pt", "darts", "a2m"): {"batch_size": 32},
    ("darts-pt", "nb201", "first-order"): {"epochs": 100},
}


def expected(method, space, update):
    out = dict(COMMON)
    for (m, s, u), settings in AS_RUN.items():
        if (m, s) == (method, space) and u in (None, update):
            out.update(settings)
    return out


def resolve(method, space, update, recipe):
    cfg = SearchConfig(space=space, method=method, optimizer=update, recipe=recipe, dataset="cifar10")
    return cfg, cfg.resolved(get_space(space).defaults)


@pytest.mark.parametrize("space", ["nb201", "darts"])
@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_recipe_resolves_to_the_cited_values_and_changes_nothing_else(method, space, update):
    cfg, ran = resolve(method, space, update, AUTHORS_RECIPE)
    _, without = resolve(method, space, update, None)
    want = expected(method, space, update)
    assert {k: getattr(ran, k) for k in want} == want
    others = [f for f in vars(ran) if f not in (*want, "recipe")]
    assert {f: getattr(ran, f) for f in others} == {f: getattr(without, f) for f in others}
    changes = cfg.recipe_changes(get_space(space).defaults)
    assert changes == {k: {"value": v, "default": getattr(without, k)} for k, v in want.items()
                       if v != getattr(without, k)}


def test_the_changes_are_what_differs_from_the_defaults():
    cfg, _ = resolve("darts", "nb201", "a2m", AUTHORS_RECIPE)
    assert cfg.recipe_changes({"rho": 1e-2, "eps": 1e-2}) == {
        "running_stats": {"value": "every-pass", "default": "first-pass"},
        "val_augment": {"value": True, "default": False}}  # DARTS on NAS-Bench-201: off in the paper's protocol
    explicit = cfg.replace(val_augment=False)  # the user's setting wins and is not the recipe's change
    assert "val_augment" not in explicit.recipe_changes({"rho": 1e-2, "eps": 1e-2})
    assert SearchConfig(method="pcdarts").recipe_changes({}) == {}


TINY = SearchConfig(dataset="digits", subset=32, batch_size=8, channels=4, cells_per_stage=1, epochs=1,
                    max_batches=1, progress=False, plot=False, seed=1, recipe=AUTHORS_RECIPE)
DARTS_TINY = TINY.replace(space="darts", subset=16, batch_size=4, channels=8)
QUICK = [("pcdarts", "darts"), ("lambda-darts", "nb201")]
FULL = [(m, s) for m in METHODS for s in ("nb201", "darts") if (m, s) not in QUICK]


@pytest.mark.parametrize("method,space", QUICK + [pytest.param(*c, marks=pytest.mark.slow) for c in FULL])
def test_every_recipe_runs_on_digits_and_its_result_names_what_it_changed(method, space, tmp_path):
    base = DARTS_TINY if space == "darts" else TINY
    result = search(base, method=method, optimizer="a2m", out=str(tmp_path / "r"), batch_size=base.batch_size,
                    epochs=1)  # explicit: the recipe's batch sizes and epochs are its authors' full runs
    saved = json.loads((tmp_path / "r" / loop.RESULT_NAME).read_text())["recipe"]
    want = expected(method, space, "a2m")
    assert saved["name"] == AUTHORS_RECIPE and "AsquaredM" in saved["source"]
    assert set(saved["changed"]) <= set(want) and "running_stats" in saved["changed"]
    for name, change in saved["changed"].items():
        assert change["value"] == want[name] == result.config[name]
    assert all(h["step"]["evaluations"] == 4 for h in result.history)
    if method == "pcdarts" and space == "darts":
        assert "betas_normal" not in result.history[-1]["alphas"]  # no edge normalisation


def test_pcdarts_keeps_edge_normalisation_on_the_darts_space_unless_told():
    on = SearchConfig(space="darts", method="pcdarts").resolved({})
    assert on.edge_normalization is True
    assert SearchConfig(space="nb201", method="pcdarts").resolved({}).edge_normalization is False
    with pytest.raises(UsageError, match="no edge normalisation .* drop --edge-normalization"):
        search(TINY, method="pcdarts", recipe=None, edge_normalization=True)
    with pytest.raises(UsageError, match="--edge-normalization does not apply to --method darts"):
        search(TINY, method="darts", edge_normalization=False)


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_pcdarts_k_is_a_setting_that_reaches_the_network(space, monkeypatch):
    """K = 4 as PC-DARTS and the A2M authors ran it, K = 2 on request (PC-DARTS' ImageNet search)."""
    assert SearchConfig(space=space, method="pcdarts").resolved({}).partial_channels == 4
    assert SearchConfig(space=space, method="pcdarts", recipe=AUTHORS_RECIPE).resolved({}).partial_channels == 4
    assert SearchConfig(space=space, method="darts").resolved({}).partial_channels is None
    built = []
    real = loop.NetworkOptions
    monkeypatch.setattr(loop, "NetworkOptions", lambda **kw: built.append(kw["partial_channels"]) or real(**kw))
    config = TINY if space == "nb201" else DARTS_TINY
    for k in (None, 2):
        result = search(config, method="pcdarts", partial_channels=k)
        assert result.config["partial_channels"] == (k or 4)
    search(config, method="darts")
    assert built == [4, 2, 1]
    with pytest.raises(UsageError, match="--partial-channels does not apply to --method darts"):
        search(TINY, method="darts", partial_channels=2)


@pytest.mark.parametrize("settings,message", [
    ({"running_stats": "some-passes"}, "--running-stats must be first-pass or every-pass"),
    ({"step_order": "random"}, "--step-order must be alpha-first or weights-first"),
    ({"method": "betadarts", "beta_index": "step"}, "--beta-index must be epoch or batch"),
    ({"method": "darts", "beta_index": "batch"}, "--beta-index does not apply to --method darts"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        search(TINY, out=str(tmp_path / "r"), **settings)
    assert not (tmp_path / "r").exists()


def _order(monkeypatch, **settings):
    seen = []
    for name, mark in (("weight_step", "w"), ("arch_loss", "a")):
        real = getattr(loop._Searcher, name)
        monkeypatch.setattr(loop._Searcher, name, lambda self, *a, _r=real, _m=mark, **k: (seen.append(_m),
                                                                                         _r(self, *a, **k))[1])
    search(TINY, recipe=None, optimizer="first-order", max_batches=2, **settings)
    return "".join(seen)


def test_step_order_puts_the_weight_step_first_on_request(monkeypatch):
    assert _order(monkeypatch) == "awaw"
    assert _order(monkeypatch, step_order="weights-first") == "wawa"


@pytest.mark.parametrize("index,coefficients", [("epoch", [0, 0, 0, 0.5, 0.5, 0.5]), ("batch", [0, 0.5, 1, 0, 0.5, 1])])
def test_beta_decay_counts_epochs_or_batches(monkeypatch, index, coefficients):
    seen = []
    real = regularizers.beta_decay_weight
    monkeypatch.setattr(regularizers, "beta_decay_weight", lambda t: (seen.append(real(t)), real(t))[1])
    search(TINY, recipe=None, method="betadarts", optimizer="first-order", epochs=2, subset=48, max_batches=3,
           early_stop=0, beta_index=index)
    assert seen == coefficients


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)
        self.alpha = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return (self.bn(self.conv(x)).mean((2, 3)) * self.alpha.softmax(0)).sum(1)


@pytest.mark.parametrize("update,passes", [("first-order", 1), ("sam", 2), ("a2m", 4)])
def test_every_pass_updates_the_running_statistics_on_request(update, passes):
    x = torch.randn(4, 1, 5, 5)
    for rule, updates in (("first-pass", 1), ("every-pass", passes)):
        net = _Net()
        loss = flatarch.module_loss(net, (x,), ["alpha"], compute=lambda m, b: m(b[0]).pow(2).mean())
        opt = flatarch.make_update(update, loss.arch_params, running_stats=rule)
        opt.step(loss)
        assert int(net.bn.num_batches_tracked) == updates, rule
    with pytest.raises(ValueError, match="running_stats must be one of first-pass, every-pass"):
        flatarch.make_update(update, [net.alpha], running_stats="all")


def test_paired_differences_cannot_update_every_pass():
    with pytest.raises(ValueError, match="batch_pair=True .* protect_buffers=False"):
        flatarch.make_update("a2m", [nn.Parameter(torch.zeros(2))], batch_pair=True, running_stats="every-pass")


def _recorded_by_the_version_before(folder):
    """The search in ``folder`` as the version before these settings recorded it: none of them, and no
    op set on the DARTS space, whose default then was the 8 ops of ``darts``."""
    state = torch.load(folder / CHECKPOINT_NAME, weights_only=True)
    result = json.loads((folder / loop.RESULT_NAME).read_text())
    for config in (state["config"], result["config"]):
        for key in ("running_stats", "step_order", "beta_index", "edge_normalization", "partial_channels"):
            del config[key]
        config["ops"] = None
    torch.save(state, folder / CHECKPOINT_NAME)
    (folder / loop.RESULT_NAME).write_text(json.dumps(result))


def test_a_search_of_the_version_before_resumes_and_a_sweep_finds_it_finished(tmp_path):
    out = tmp_path / "r"
    older = DARTS_TINY.replace(recipe=None, method="pcdarts", optimizer="first-order", ops="darts", out=str(out))
    search(older)
    _recorded_by_the_version_before(out)

    def unit(config):
        return SearchUnit("r", str(out), config, config.resolved(get_space("darts").defaults))

    assert unit(older).changed() == [] and unit(older).conflicts() == []
    # a sweep file that names no op set now asks for s5: the one difference, which the file can restore
    assert unit(older.replace(ops=None)).changed() == ["ops: 'darts' -> 's5'"]
    resumed = loop.search_one(out=str(out), resume=True, epochs=2, progress=False)  # the settings from the checkpoint
    assert len(resumed.history) == 2
    assert {k: resumed.config[k] for k in ("ops", "edge_normalization", "running_stats", "step_order",
                                           "partial_channels")} == {
        "ops": "darts", "edge_normalization": True, "running_stats": "first-pass", "step_order": "alpha-first",
        "partial_channels": 4}
