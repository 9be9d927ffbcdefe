"""What each rank runs in tests/test_distributed_engine.py (a module, so spawned ranks can import it).

A case is a search on tiny digits run two ways on every rank: *parallel*, one search over all the
ranks (``search_one`` inside the initialised gloo group), and, on one rank per case (cases are
dealt out over the ranks), the *reference*: the same settings as one single-device search
(``_Searcher`` with one rank). Float64 throughout (``--dtype float64``): the two then differ
only by the order of float sums, about 1e-16 relative, while a float32 comparison would drown the
property in Adam's first steps (``m / sqrt(v)`` turns rounding noise in a gradient entry near 0 into
a whole step of the learning rate).
"""

from __future__ import annotations

import os
import tempfile

import torch.distributed as dist
from flatarch.reference_spaces.engine import SearchConfig, search
from flatarch.reference_spaces.engine.loop import _Searcher, search_one
from flatarch.reference_spaces.engine.ranks import Ranks

import flatarch
from flatarch import distributed

# 32 digits: 16 per half, 2 batches of 8 per epoch, C = 4, one cell per stage; rho large enough
# that SAM's, USAM's and A2M's perturbed points are far from alpha
TINY = SearchConfig(dataset="digits", subset=32, batch_size=8, channels=4, cells_per_stage=1, epochs=2,
                    progress=False, plot=False, seed=3, early_stop=0, dtype="float64")
UPDATES = {
    "first-order": {"optimizer": "first-order"},
    "sam": {"optimizer": "sam", "rho": 0.5},
    "usam": {"optimizer": "usam", "rho": 0.5},
    "a2m": {"optimizer": "a2m", "rho": 0.5},
    "a2m-forward": {"optimizer": "a2m", "rho": 0.5, "difference": "forward"},
}
METHOD_SETTINGS = {"darts-pt": {"projection_interval": 1}, "sdarts-adv": {"smoothing_epsilon": 0.3},
                   "lambda-darts": {"lambda_coef": 10.0}}


def case_config(method: str, update: str, **extra) -> SearchConfig:
    return TINY.replace(method=method, **UPDATES[update], **METHOD_SETTINGS.get(method, {}), **extra)


def summary(result) -> dict:
    """What the equality is about: per epoch the alphas, genotype and logged losses; the reported genotype."""
    return {
        "genotype": result.genotype_json,
        "epochs": [{"alphas": r["alphas"], "genotype": r["genotype"], "train_loss": r["train_loss"],
                    "val_loss": r["val_loss"], "step_loss": r["step"]["loss"], "hessian": r.get("hessian", {})
                    .get("eigenvalue")} for r in result.history],
    }


class PerRankA2M(flatarch.A2M):
    """The algorithm a data-parallel A2M must not be: each rank perturbs with its own gradient and
    only the final directions are averaged."""

    def _direction(self, oracle):
        oracle.reduce = None
        direction, info = super()._direction(oracle)
        return distributed.mean_across_ranks(direction), info


def run_cases(cases: list[tuple[str, dict]], references: list[str], then_fail: bool = False) -> dict:
    """``{name: {"parallel": summary, "reference": summary or None}}``; a case is ``(name, config
    overrides)``, plus ``per_rank_a2m=True`` to run the parallel search with :class:`PerRankA2M`; the
    cases named in ``references`` have a reference (on one of the ranks).
    ``then_fail``: last, a search in which rank 1 fails (:func:`failing_rank`), under ``"failure"``."""
    rank, world = dist.get_rank(), dist.get_world_size()
    out = {}
    for i, (name, overrides) in enumerate(cases):
        overrides = dict(overrides)
        per_rank = overrides.pop("per_rank_a2m", False)
        cfg = TINY.replace(**overrides)
        saved = flatarch.updates.UPDATES["a2m"]
        if per_rank:
            flatarch.updates.UPDATES["a2m"] = PerRankA2M
        try:
            parallel = summary(search_one(cfg))
        finally:
            flatarch.updates.UPDATES["a2m"] = saved
        one_device = name in references and i % world == rank
        reference = summary(_Searcher(cfg, None, Ranks()).run()) if one_device else None
        out[name] = {"parallel": parallel, "reference": reference}
    if then_fail:  # last: the failure destroys the process group
        with tempfile.TemporaryDirectory() as folder:
            out["failure"] = failing_rank(TINY, 1, folder)
    return out


def out_of_memory() -> None:
    raise MemoryError("out of memory (a stand-in)")


def killed() -> None:
    """The process ends at once, as under ``kill -9``: no message, no clean-up (exit code 0, so that the
    spawning test waits for the other ranks, see tests/ranks.py)."""
    os._exit(0)


def failing_rank(config: SearchConfig, fail_rank: int, out: str, fail=out_of_memory) -> str:
    """A search in which rank ``fail_rank`` fails (``fail()``) in its second weight step (all ranks
    write into ``out``; rank 0 alone does): what this rank stops with."""
    from flatarch.reference_spaces.engine import loop

    real = loop._Searcher.weight_step
    calls = {"n": 0}

    def weight_step(self, *args):
        calls["n"] += 1
        if calls["n"] == 2 and dist.get_rank() == fail_rank:
            fail()
        return real(self, *args)

    loop._Searcher.weight_step = weight_step
    try:
        search_one(config.replace(out=os.path.join(out, "run")))
    except BaseException as exc:  # noqa: BLE001 -- what each rank stops with is the result
        return f"{type(exc).__name__}: {exc}"
    finally:
        loop._Searcher.weight_step = real
    return "finished"




def resumed_then_killed(folder: str) -> dict:
    """What ``torchrun ... -m flatarch search --out X --resume`` runs after a Ctrl-C, with rank 0 alone
    seeing the run folder (rank ``r > 0`` works in an empty ``folder/rank-r`` of its own, as on nodes
    that share no file system): ``{"straight": summary, "resumed": summary}`` of a straight search (with
    ``--log-to tensorboard``) and of one interrupted on every rank after its first epoch and resumed by
    ``out`` and ``resume`` alone; under ``"seeds"`` the summaries of ``--seeds`` (the straight search's
    and the next); then, under ``"killed"``, what rank 0 stops with when rank 1 dies in a search (rank 1
    returns nothing)."""
    from flatarch.reference_spaces.engine import loop

    rank = dist.get_rank()
    if rank:
        folder = os.path.join(folder, f"rank-{rank}")
        os.makedirs(folder)
    os.chdir(folder)
    out = {"straight": summary(search_one(TINY.replace(out="straight", log_to="tensorboard")))}
    real = loop._Searcher._epoch

    def epoch_then_ctrl_c(self, *args):
        real(self, *args)
        raise KeyboardInterrupt  # Ctrl-C reaches every rank under torchrun

    loop._Searcher._epoch = epoch_then_ctrl_c
    try:
        search_one(TINY.replace(out="run"))
    except KeyboardInterrupt:
        pass
    finally:
        loop._Searcher._epoch = real
    out["resumed"] = summary(search_one(out="run", resume=True))
    out["seeds"] = [summary(r) for r in search(TINY, seeds=[TINY.seed, TINY.seed + 1], out="seeds").results]
    out["killed"] = failing_rank(TINY, 1, "killed", fail=killed)
    return out
