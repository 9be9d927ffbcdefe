"""The defining property of a data-parallel search: on 2 gloo ranks with --sync-bn it equals the
single-device search with the same global batch (alphas after each epoch, genotypes, logged losses,
the Hessian eigenvalue), for every method and update; a per-rank A2M does not; without --sync-bn
the search is deterministic for a given number of ranks; a failure on one rank ends both.

Float64 (see tests/dist_engine_cases.py): the runs differ by the order of float sums alone. The
tolerance, 1e-9 relative, leaves room for that noise (about 1e-16 per operation, grown over two
epochs of steps) and is still far below what a per-rank A2M moves the alphas (about 1e-4)."""

import math
import os

import pytest
from dist_engine_cases import UPDATES, case_config
from flatarch.reference_spaces.engine.methods import METHODS
from ranks import on_ranks

TOLERANCE = 1e-9

QUICK = {
    "darts a2m": {**case_config("darts", "a2m").__dict__, "sync_bn": True, "hessian_every": 1},
    "per-rank a2m": {**case_config("darts", "a2m").__dict__, "sync_bn": True, "per_rank_a2m": True},
    "per-rank bn": {**case_config("darts", "a2m").__dict__},
    "per-rank bn again": {**case_config("darts", "a2m").__dict__},
}
MATRIX = {f"{m} {u}": {**case_config(m, u).__dict__, "sync_bn": True} for m in METHODS for u in UPDATES}


def differences(a, b, path="") -> list[str]:
    """Where two summaries differ beyond the tolerance (exactly, for strings)."""
    if isinstance(a, dict):
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float):
        return [] if math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def reference_of(ranks, name):
    return next(r[name]["reference"] for r in ranks if r[name]["reference"] is not None)


@pytest.fixture(scope="module")
def quick():
    return on_ranks(_run, 2, list(QUICK.items()), ["darts a2m"], True, timeout=300)


def _run(cases, references, then_fail):
    from dist_engine_cases import run_cases

    return run_cases(cases, references, then_fail)


def test_two_ranks_with_sync_bn_equal_one_device(quick):
    reference = reference_of(quick, "darts a2m")
    assert reference["epochs"][-1]["hessian"] is not None
    for rank in quick:
        assert differences(rank["darts a2m"]["parallel"], reference) == []
    assert quick[0]["darts a2m"]["parallel"] == quick[1]["darts a2m"]["parallel"]  # one search, bit for bit


def test_a_per_rank_a2m_fails_the_equality(quick):
    # the Hessian measurement changes nothing in a search: "darts a2m"'s reference is this one's
    found = differences(quick[0]["per-rank a2m"]["parallel"], reference_of(quick, "darts a2m"))
    assert any(".alphas." in d for d in found)


def test_without_sync_bn_the_ranks_run_one_deterministic_search(quick):
    """Per-rank BatchNorm statistics (DDP's default) are another function of the batch: the search
    differs from one device's, but every rank runs the same search, and a rerun repeats it bit for bit."""
    parallel = quick[0]["per-rank bn"]["parallel"]
    assert parallel == quick[1]["per-rank bn"]["parallel"] == quick[0]["per-rank bn again"]["parallel"]
    # on one device --sync-bn changes nothing: "darts a2m"'s reference is this one's (less the Hessian)
    assert any(".alphas." in d for d in differences(parallel, reference_of(quick, "darts a2m")))


def test_a_failure_on_one_rank_ends_every_rank_with_its_message(quick):
    assert quick[1]["failure"] == "MemoryError: out of memory (a stand-in)"
    assert quick[0]["failure"] == "PeerFailed: rank 1: out of memory (a stand-in)"


def _resumed_then_killed(folder):
    from dist_engine_cases import resumed_then_killed

    return resumed_then_killed(folder)


@pytest.fixture(scope="module")
def ranks_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("ranks")


@pytest.fixture(scope="module")
def resumed_then_killed(ranks_folder):
    return on_ranks(_resumed_then_killed, 2, str(ranks_folder), timeout=300)


def test_two_ranks_resume_by_out_and_resume_alone_as_an_uninterrupted_search(resumed_then_killed, ranks_folder):
    """Rank 0 alone sees the run folder; it hands the checkpoint's settings and state to the other rank,
    which writes nothing: no run folder, no tracker's files."""
    done = resumed_then_killed[0]
    assert len(done["resumed"]["epochs"]) == 2 and done["resumed"] == done["straight"]
    assert os.listdir(ranks_folder / "straight" / "tensorboard") and os.listdir(ranks_folder / "rank-1") == []


def test_seeds_run_one_after_another_over_all_the_ranks(resumed_then_killed, ranks_folder):
    first, second = resumed_then_killed[0]["seeds"]
    assert first == resumed_then_killed[0]["straight"] and second != first  # the same search as alone, seed by seed
    assert (ranks_folder / "seeds" / "summary.json").exists()


def test_a_rank_that_dies_without_a_word_ends_the_others_with_one_line(resumed_then_killed):
    assert resumed_then_killed[1] is None  # it died
    message = resumed_then_killed[0]["killed"]
    assert message.startswith("PeerFailed: rank 0: another rank stopped without a message") and "\n" not in message


def test_a_split_smaller_than_the_batch_must_split_over_the_ranks_too(tmp_path):
    """--subset 10 --batch-size 8: the training half's 5 images are its batch, 3 and 2 on two ranks, and the
    mean of the two means is not the batch's mean. Rank 0 of 2 (on a group of one process: nothing is
    reduced before the refusal)."""
    import torch.distributed as dist
    from dist_engine_cases import TINY
    from flatarch.reference_spaces.engine import SearchError
    from flatarch.reference_spaces.engine.loop import _Searcher
    from flatarch.reference_spaces.engine.ranks import Ranks

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(SearchError, match="the training split holds 5 images, fewer than --batch-size"):
            _Searcher(TINY.replace(subset=10), None, Ranks(0, 2, dist.group.WORLD))
        _Searcher(TINY.replace(subset=12), None, Ranks(0, 2, dist.group.WORLD))  # 6 and 6: 3 images a rank
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_method_and_update_on_two_ranks_equals_one_device():
    ranks = on_ranks(_run, 2, list(MATRIX.items()), list(MATRIX), False, timeout=3600)
    failed = {name: differences(ranks[0][name]["parallel"], reference_of(ranks, name))[:3] for name in MATRIX}
    assert {name: found for name, found in failed.items() if found} == {}
    assert all(ranks[0][name]["parallel"] == ranks[1][name]["parallel"] for name in MATRIX)
