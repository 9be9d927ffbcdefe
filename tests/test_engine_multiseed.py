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


@pytest.mark.slow
def test_parallel_workers_match_sequential():
    seq = search(TINY, seeds=[1, 2])
    par = search(TINY, seeds=[1, 2], workers=2)
    assert [r.history[-1]["alphas"] for r in seq.results] == [r.history[-1]["alphas"] for r in par.results]
