"""Nothing in a search iteration waits for the device: every method and update, both spaces,
DARTS-PT's tuning phase and the core's deferred step, audited on a CPU by tests/host_syncs.py (a
CUDA run checks the same with torch's sync debug mode, tests/test_engine_speed.py); and no
iteration leaves an autograd graph alive behind it."""

import gc
import warnings

import pytest
import torch
from flatarch.reference_spaces.engine import SearchConfig
from flatarch.reference_spaces.engine.loop import _Searcher
from flatarch.reference_spaces.engine.methods import METHODS
from flatarch.reference_spaces.engine.projection import ProjectionState
from flatarch.reference_spaces.engine.reporting import StepStats
from host_syncs import HostSyncs

import flatarch

TINY = SearchConfig(dataset="digits", subset=64, batch_size=8, channels=4, cells_per_stage=1, epochs=2,
                    max_batches=3, progress=False, plot=False, seed=3, device="cpu")


def waits_of(action) -> str:
    with HostSyncs() as syncs:
        action()
    return syncs.report()


def test_the_audit_finds_each_kind_of_wait_and_not_arithmetic():
    t = torch.tensor([0.5, -1.0, 2.0])
    waits = [lambda: t.sum().item(), lambda: bool(t.sum() > 0), lambda: float(t.max()), lambda: t.tolist(),
             lambda: t.cpu(), lambda: t.numpy(), lambda: t.nonzero(), lambda: t[t > 0],
             lambda: torch.masked_select(t, t > 0), lambda: torch.unique(t), lambda: torch.tensor([1.0], device="cpu")]
    for wait in waits:
        assert waits_of(wait).startswith("1 x "), wait
    assert "test_host_syncs.py" in waits_of(lambda: t.sum().item())  # the line that waits is named
    assert waits_of(lambda: (t * 2 + 1).softmax(0).where(t > 0, 0.0).argmax()) == ""
    assert waits_of(lambda: torch.tensor([1.0])) == ""  # host data staying on the host


def test_the_allowed_host_reads_are_only_the_cpu_only_ones():
    """torch's Adam reads its step count on the host unless capturable (flatarch makes it
    capturable on CUDA); SGD reads nothing."""
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    adam, sgd = torch.optim.Adam([p]), torch.optim.SGD([p], lr=0.1, momentum=0.9)
    adam.step()
    assert waits_of(adam.step) == "" and waits_of(sgd.step) == ""


def searcher_after_one_iteration(**overrides) -> tuple[_Searcher, list, torch.Tensor, StepStats]:
    searcher = _Searcher(TINY.replace(**overrides))
    for schedule in searcher.method.schedules:
        schedule.start_epoch(searcher.ctx, 0)
    batches = list(zip(searcher.train.epoch(0), searcher.valid.epoch(0)))[:searcher.iters]
    sums, stats = torch.zeros(3, dtype=torch.float64), StepStats(searcher.device)
    searcher.iteration(*batches[0], 0, sums, stats)  # the first alpha step builds the Adam state
    return searcher, batches[1:], sums, stats


def iterations_waits(searcher, batches, sums, stats) -> str:
    def iterations():
        for train_batch, val_batch in batches:
            searcher.iteration(train_batch, val_batch, 0, sums, stats)

    return waits_of(iterations)


# every method on NAS-Bench-201; on the DARTS space (seconds each) the methods that change its
# network (PC-DARTS' partial channels and betas) or its weight step (lambda-DARTS' per-cell weights),
# the rest with -m slow
SPACE_METHODS = [("nb201", m) for m in METHODS] + [
    ("darts", m) if m in ("pcdarts", "lambda-darts") else pytest.param("darts", m, marks=pytest.mark.slow)
    for m in METHODS]


@pytest.mark.parametrize("space,method", SPACE_METHODS)
def test_a_search_iteration_never_waits_for_the_device(space, method):
    searcher, *rest = searcher_after_one_iteration(space=space, method=method, optimizer="a2m")
    assert iterations_waits(searcher, *rest) == ""
    assert searcher.arch_opt.steps == searcher.iters == 3  # the audit saw real steps


@pytest.mark.parametrize("update,options", [("first-order", {}), ("sam", {}), ("usam", {}),
                                            ("a2m", {"difference": "forward"})])
def test_every_update_steps_without_waiting(update, options):
    searcher, *rest = searcher_after_one_iteration(optimizer=update, **options)
    assert iterations_waits(searcher, *rest) == ""


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_darts_pt_tuning_iterations_never_wait(space):
    searcher, batches, sums, stats = searcher_after_one_iteration(space=space, method="darts-pt", optimizer="a2m")
    state = ProjectionState.empty({g: a.shape[0] for g, a in searcher.net.alphas().items()})
    for chosen, removed in zip(state.chosen.values(), state.removed.values()):
        chosen[0], removed[-1] = 2, True
    searcher._start_tuning(state)
    searcher.iteration(*batches[0], 0, sums, stats)  # the new weight optimizer's first step
    assert iterations_waits(searcher, batches[1:], sums, stats) == ""


def test_projection_constants_follow_each_new_decision():
    weights = {"cell": torch.full((3, 4), 0.25)}
    state = ProjectionState.empty({"cell": 3})
    assert state.apply(weights)["cell"] is weights["cell"]
    state.chosen["cell"][1] = 2
    first = state.apply(weights)["cell"]
    assert first[1].tolist() == [0.0, 0.0, 1.0, 0.0] and first[0].tolist() == [0.25] * 4
    state.removed["cell"][0] = True  # decided in place, as a projection round does
    second = state.apply(weights)["cell"]
    assert second[0].tolist() == [0.0] * 4 and second[1].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert second[2].tolist() == [0.25] * 4
    assert ProjectionState.from_json(state.to_json()) == state


def test_the_core_step_waits_once_without_deferred_check_and_never_with_it():
    """Outside the engine the NaN/Inf check is read on the host by default (one wait per step);
    ``deferred_check=True`` reads it a step later from a copy that has arrived."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                            torch.nn.Linear(8, 3))
            self.alpha = torch.nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.body(x) + self.alpha

    loss = flatarch.module_loss(Net(), (torch.randn(16, 4), torch.randint(0, 3, (16,))), ["alpha"])
    for deferred in (False, True):
        opt = flatarch.A2M(loss.arch_params, rho=0.1, deferred_check=deferred)
        opt.step(loss)
        with HostSyncs() as syncs:
            opt.step(loss)
        waits = {(site.file, site.function) for site in syncs.found}
        assert waits == (set() if deferred else {("flatarch/evaluation.py", "first_nonfinite")}), syncs.report()
        assert opt.steps == 2


def graph_tensors() -> dict[int, tuple[int, ...]]:
    """``{id: shape}`` of the tensors that hold an autograd graph now."""
    gc.collect()
    with warnings.catch_warnings():  # isinstance on every object touches deprecated module attributes
        warnings.simplefilter("ignore")
        tensors = (o for o in gc.get_objects() if isinstance(o, torch.Tensor))
        return {id(t): tuple(t.shape) for t in tensors if t.grad_fn is not None}


@pytest.mark.parametrize("method,update", [("darts", "first-order"), ("darts", "a2m"), ("lambda-darts", "a2m"),
                                           ("sdarts-adv", "a2m")])
def test_no_autograd_graph_outlives_a_search_iteration(method, update):
    """A graph kept alive past its step (in a StepInfo, a cache, a closure) would hold a pass's
    activations on the GPU until the next step: more memory, more work for the allocator. Only the
    graphs made since the iteration began count (earlier tests in this process may keep theirs,
    e.g. in a kept traceback)."""
    searcher, batches, sums, stats = searcher_after_one_iteration(method=method, optimizer=update)
    before = graph_tensors()
    searcher.iteration(*batches[0], 0, sums, stats)
    assert [shape for key, shape in graph_tensors().items() if key not in before] == []
