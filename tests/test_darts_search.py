"""1-epoch CPU searches on the DARTS space through the shared engine, at tiny size (C=8, 5 cells,
a few digits images): every method with every architecture update."""

import json

import pytest
import torch
from flatarch.reference_spaces.darts import genotype as G
from flatarch.reference_spaces.darts.space import DartsSpace
from flatarch.reference_spaces.engine.methods import METHODS, get_method

UPDATES = ["first-order", "sam", "usam", "a2m"]
# each method once and each update at least once in the default run; the full matrix with -m slow
QUICK = [("darts", "a2m"), ("pcdarts", "sam"), ("betadarts", "usam"), ("sdarts-rs", "first-order"),
         ("sdarts-adv", "usam"), ("darts-minus", "a2m"), ("lambda-darts", "first-order")]
# DARTS-PT has its own tests (tests/test_methods_lambda_pt.py): its genotype comes from the projection
FULL = [pytest.param(m, u, marks=pytest.mark.slow) for m in METHODS for u in UPDATES
        if (m, u) not in QUICK and m != "darts-pt"]


def tiny_search(method, update, **kw):
    from flatarch.reference_spaces.engine.loop import search_one

    args = dict(space="darts", method=method, optimizer=update, epochs=1, batch_size=4, subset=16, max_batches=1,
                channels=8, cells_per_stage=1, progress=False, plot=False, device="cpu", seed=0)
    args.update(kw)
    return search_one(**args)


@pytest.mark.parametrize("method,update", QUICK + FULL)
def test_one_epoch_search(method, update):
    torch.manual_seed(0)
    before = DartsSpace().build_network(num_classes=10, in_channels=1, options=get_method(method).network,
                                        channels=8, cells_per_stage=1)
    result = tiny_search(method, update)
    g = G.from_json(result.genotype_json)
    assert len(g.normal) == 8 and len(g.reduce) == 8 and g.normal_concat == [2, 3, 4, 5]
    alphas = result.history[-1]["alphas"]
    assert set(alphas) >= {"alphas_normal", "alphas_reduce"}
    assert ("betas_normal" in alphas) == (method == "pcdarts")
    # the alpha step moved the architecture away from its initial values
    moved = torch.tensor(alphas["alphas_normal"]) - before.alphas_normal.detach()
    assert moved.abs().max() > 1e-6
    assert result.benchmark == {}


def test_search_writes_genotype_json_and_picture(tmp_path):
    out = tmp_path / "run"
    result = tiny_search("darts", "first-order", out=str(out))
    assert G.load(str(out / "genotype.json")) == G.from_json(result.genotype_json)
    assert (out / "genotype.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "result.json").read_text())["genotype"] == result.genotype_json


def test_space_is_registered():
    from flatarch.reference_spaces.registry import available_spaces, get_space

    assert "darts" in available_spaces()
    space = get_space("darts", beta_normal=0.5)
    assert space.defaults["rho"] == 0.1
    assert space.beta_decay_weights == {"normal": 0.5, "reduce": 1.0}


def test_betadarts_uses_the_normal_and_reduce_weights(monkeypatch):
    import flatarch

    seen = []
    original = flatarch.regularizers.beta_decay

    def spy(alphas, weights=None):
        seen.append((sorted(alphas), weights))
        return original(alphas, weights)

    monkeypatch.setattr(flatarch.regularizers, "beta_decay", spy)
    # lambda(epoch 0) = 0: the regulariser enters from the second epoch on
    tiny_search("betadarts", "first-order", epochs=2, space_options={"beta_normal": 2.0, "beta_reduce": 0.5})
    assert seen and seen[-1] == (["normal", "reduce"], {"normal": 2.0, "reduce": 0.5})


def test_the_darts_space_searches_s5_by_default_and_augments_validation_for_darts():
    result = tiny_search("darts", "first-order")
    assert result.config["ops"] == "s5" and result.config["val_augment"] is True
    assert len(result.history[-1]["alphas"]["alphas_normal"][0]) == 7
    eight = tiny_search("darts", "first-order", ops="darts")
    assert eight.config["ops"] == "darts" and len(eight.history[-1]["alphas"]["alphas_normal"][0]) == 8


def test_cli_search_darts(tmp_path, capsys):
    from flatarch.cli import main

    out = tmp_path / "s"
    rc = main(["search", "--space", "darts", "--method", "betadarts", "--optimizer", "a2m", "--epochs", "1",
               "--subset", "8", "--batch-size", "4", "--channels", "8", "--cells", "1", "--no-progress",
               "--no-plot", "--device", "cpu", "--beta-weights", "1", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "genotype.png" in text
    g = G.load(str(out / "genotype.json"))
    assert len(g.normal) == 8
    # the next step is printed: train the found genotype
    assert f"flatarch train --genotype {out / 'genotype.json'}" in text
    assert main(["search", "--space", "nb201", "--beta-weights", "1", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--beta-weights applies to --space darts --method betadarts only" in capsys.readouterr().err
