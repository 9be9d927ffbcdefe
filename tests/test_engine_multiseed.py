"""Several seeds: aggregation (mean ± std over all seeds, no selection) and the runs themselves."""

import json
import os

import numpy as np
import pytest
from flatarch.reference_spaces.engine import (
    PROTOCOL,
    SearchConfig,
    SearchError,
    SearchResult,
    aggregate,
    format_summary,
    search,
)
from flatarch.reference_spaces.engine.multiseed import SUMMARY_NAME, MultiSeedResult
from folder_files import file_bytes

TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=1,
                    max_batches=2, progress=False, plot=False, optimizer="first-order")


def _result(bench, val):
    return SearchResult(genotype="g", genotype_json="g", benchmark=bench, selection="final", selected_epoch=1,
                        best_epoch=1, best_genotype="g", final_genotype="g", final_benchmark=bench,
                        history=[{"val_acc": val}], config={})


def test_aggregate_is_mean_and_std_over_all_seeds():
    results = [
        _result({"cifar10": 94.37, "cifar100": 73.51}, 50.0),
        _result({"cifar10": 54.30, "cifar100": 15.61}, 60.0),
        _result({"cifar10": 93.76, "cifar100": 71.11}, 70.0),
    ]
    s = aggregate(results)
    c10 = [94.37, 54.30, 93.76]
    assert s["cifar10"]["mean"] == pytest.approx(np.mean(c10))  # the mean, not the best (94.37)
    assert s["cifar10"]["std"] == pytest.approx(np.std(c10))
    assert s["cifar10"]["values"] == c10
    assert s["search_val_acc"]["mean"] == pytest.approx(60.0)
    text = format_summary(MultiSeedResult([1, 2, 3], results, s))
    assert "80.81 ± 18.75" in text and "no best-seed selection" in text and PROTOCOL in text
    # a dataset missing from one seed's result is left out, not averaged over fewer seeds
    assert "cifar10" not in aggregate([_result({"cifar10": 1.0}, 1.0), _result({}, 1.0)])


def test_sequential_seeds(tmp_path):
    multi = search(TINY, seeds=[1, 2], out=str(tmp_path))
    assert multi.seeds == [1, 2] and len(multi.results) == 2
    assert multi.results[0].history[-1]["alphas"] != multi.results[1].history[-1]["alphas"]
    assert all(os.path.isdir(tmp_path / f"seed-{s}") for s in (1, 2))
    summary = json.load(open(tmp_path / SUMMARY_NAME))
    assert summary["protocol"] == PROTOCOL and summary["seeds"] == [1, 2]
    # each seed's search is the same as running that seed alone
    alone = search(TINY, seed=2)
    assert alone.history[-1]["alphas"] == multi.results[1].history[-1]["alphas"]
    with pytest.raises(SearchError, match="repeated"):
        search(TINY, seeds=[1, 1])


def test_several_seeds_resume_without_retyping(tmp_path):
    """``--seeds 1 2 --out X --resume`` alone: a seed with no checkpoint yet (killed before its first
    epoch ended, or not started) runs the settings the other seeds' checkpoints record, not the
    defaults; ``--out X --resume`` without ``--seeds`` (or a new single search there) is refused instead of
    starting a search in X."""
    out = str(tmp_path)
    search(TINY, seeds=[1], out=out)
    multi = search(seeds=[1, 2], out=out, resume=True, progress=False)

    def settings(result):
        return {k: v for k, v in result.config.items() if k not in ("seed", "out", "tag")}

    assert settings(multi.results[1]) == settings(multi.results[0])
    assert multi.results[1].history[-1]["alphas"] == search(TINY, seed=2).history[-1]["alphas"]
    before = sorted(os.listdir(out))
    with pytest.raises(SearchError, match=f"continue them with: flatarch search --out {out} --seeds 1 2 --resume"):
        search(out=out, resume=True, progress=False)
    for fresh in ({}, {"restart": True}):  # a new single search there would mix its files with the seeds'
        with pytest.raises(SearchError, match=f"^{out} holds the searches of seeds 1 2 .* or choose another --out"):
            search(TINY, out=out, progress=False, **fresh)
    assert sorted(os.listdir(out)) == before == ["seed-1", "seed-2", SUMMARY_NAME]


@pytest.mark.slow
def test_parallel_workers_match_sequential():
    seq = search(TINY, seeds=[1, 2])
    par = search(TINY, seeds=[1, 2], workers=2)
    assert [r.history[-1]["alphas"] for r in seq.results] == [r.history[-1]["alphas"] for r in par.results]


def test_a_diverged_seed_is_named_and_not_counted(monkeypatch, tmp_path, capsys):
    """Seed 2 never has a finite validation loss (no result), seed 3 diverges after its first epoch
    (a result that names its divergence): the summary is seed 1's alone and names the two others."""
    from flatarch.reference_spaces.engine import loop

    from flatarch.cli import main

    losses = {1: [1.0, 0.9], 2: [float("nan")] * 2, 3: [1.0, float("nan")]}
    monkeypatch.setattr(loop._Searcher, "validate", lambda self, epoch: (losses[self.cfg.seed][epoch], 50.0))
    multi = search(TINY, seeds=[1, 2, 3], epochs=2, early_stop=0, out=str(tmp_path))
    assert multi.counted == [1] and multi.results[1] is None and multi.results[2].diverged_epoch == 2
    assert multi.summary["search_val_acc"]["values"] == [multi.results[0].history[-1]["val_acc"]]
    assert "no epoch has finite losses" in multi.excluded[2] and "diverged from epoch 2" in multi.excluded[3]
    assert multi.excluded[3].count("diverged") == 1 and "reports epoch 1: best-val-loss" in multi.excluded[3]
    saved = json.load(open(tmp_path / SUMMARY_NAME))
    assert saved["counted"] == [1] and set(saved["excluded"]) == {"2", "3"} and saved["genotypes"][1] is None
    text = format_summary(multi)
    assert "per seed (1)" in text and "not counted: seed 2: " in text and "not counted: seed 3: " in text
    none = format_summary(MultiSeedResult([2], [None], aggregate([None]), excluded={2: multi.excluded[2]}))
    assert none.startswith("no seed has a result to count\nnot counted: seed 2: ") and "per seed ()" not in none
    # the command line says so and exits 1: the table does not cover every seed
    assert main(["search", "--subset", "48", "--batch-size", "8", "--channels", "4", "--cells", "1", "--epochs", "2",
                 "--optimizer", "first-order", "--early-stop", "0", "--no-progress", "--no-plot", "--seeds", "1", "2",
                 "--out", str(tmp_path / "cli")]) == 1
    assert "seed 2: no result" in capsys.readouterr().out


def test_several_seeds_refuse_a_folder_holding_one_search(tmp_path):
    """``--seeds`` into the folder of one search would put seed-N folders beside its files."""
    out = str(tmp_path)
    search(TINY, out=out)
    before = file_bytes(out)
    for again in ({}, {"resume": True}):
        with pytest.raises(SearchError, match=f"^{out} holds one search .*--out {out} --resume, or choose another"):
            search(TINY, seeds=[1, 2], out=out, progress=False, **again)
    assert file_bytes(out) == before
