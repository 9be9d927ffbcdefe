"""The search loop's speed options keep the search: compile, on-device step figures, no host waits."""

import pytest
import torch
from flatarch.reference_spaces.data import BatchStream, load_dataset
from flatarch.reference_spaces.engine import SearchConfig, search
from flatarch.reference_spaces.engine.loop import _Searcher
from flatarch.reference_spaces.engine.reporting import STEP_FIGURES, StepStats

from flatarch.step_info import StepInfo

TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=1,
                    max_batches=2, progress=False, plot=False, seed=3, device="cpu")


def test_step_stats_count_taken_and_skipped_steps_whether_known_on_the_host_or_the_device():
    stats = StepStats(torch.device("cpu"))
    one, nan = torch.tensor(1.0), torch.tensor(float("nan"))
    stats.add(StepInfo(one, one * 3, one * 2, 4))
    stats.add(StepInfo(nan, nan, nan, 4, skipped=True, found_inf=True))
    stats.add(StepInfo(nan, nan, nan, 4, skipped=torch.tensor(True), found_inf=torch.tensor(True)))
    stats.add(StepInfo(one * 3, one * 5, one * 4, 4, skipped=torch.tensor(False), found_inf=torch.tensor(False)))
    means = stats.means()
    assert means["steps"] == 2 and means["skipped"] == 2
    assert [means[k] for k in STEP_FIGURES] == [2.0, 4.0, 2.0, 3.0, 4.0]
    empty = StepStats(torch.device("cpu")).means()
    assert empty["steps"] == 0 and empty["loss"] != empty["loss"]  # NaN: no step to average


@pytest.mark.parametrize("space,optimizer", [("nb201", "a2m"),
                                             pytest.param("darts", "first-order", marks=pytest.mark.slow)])
def test_compile_compiles_each_cell_in_place_and_keeps_the_search(monkeypatch, space, optimizer):
    """The tracing backend without code generation (aot_eager) keeps this fast on a CPU; inductor
    is what --compile uses, measured by benchmarks/gpu_suite.py."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    compiled = []
    original = torch.nn.Module.compile

    def compile_for_test(module, **kwargs):
        compiled.append(module)
        original(module, backend="aot_eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_for_test)
    config = TINY.replace(space=space, optimizer=optimizer, channels=4 if space == "nb201" else 8)
    plain = search(config)
    torch._dynamo.reset()
    counters.clear()
    result = search(config, compile=True)
    cells = _Searcher(config).net.cells
    assert [type(m) for m in compiled] == [type(m) for m in cells] and result.config["compile"] is True
    # every cell frame compiled whole (one graph per cell size, mode and grad mode), none broken or
    # left to eager mode
    assert counters["frames"]["ok"] == counters["frames"]["total"] > 0 and not counters["graph_break"]
    assert result.genotype_json == plain.genotype_json
    for name, alpha in plain.history[-1]["alphas"].items():
        torch.testing.assert_close(torch.tensor(result.history[-1]["alphas"][name]), torch.tensor(alpha),
                                   rtol=1e-5, atol=1e-7)


def test_compile_is_a_search_flag():
    from flatarch.cli.search import _options

    flags = {field: flag for field, flag, *_ in _options()}
    assert flags["compile"] == "--compile" and SearchConfig().compile is False


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("optimizer", ["first-order", "a2m"])
def test_a_search_iteration_never_waits_for_the_device(optimizer):
    searcher = _Searcher(TINY.replace(device="cuda", optimizer=optimizer, max_batches=4))
    sums = torch.zeros(3, dtype=torch.float64, device="cuda")
    batches = zip(searcher.train.epoch(0), searcher.valid.epoch(0))
    train_batch, val_batch = next(batches)
    searcher.iteration(train_batch, val_batch, 0, sums)  # the first step creates the Adam state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    steps = 1
    try:
        for train_batch, val_batch in batches:
            searcher.iteration(train_batch, val_batch, 0, sums)
            steps += 1
    finally:
        torch.cuda.set_sync_debug_mode("default")
    searcher.arch_opt.check()
    assert steps == searcher.iters > 2  # the split's training batches, max_batches or fewer
    assert searcher.arch_opt.steps == steps and searcher.arch_opt.skipped_steps == 0


@pytest.mark.cuda
@cuda
def test_batch_streams_never_wait_for_the_device():
    data = load_dataset("digits").subset(64)
    stream = BatchStream(data, torch.arange(64), 8, augment=True, seed=0, stream_id=0, device="cuda")
    cpu = BatchStream(data, torch.arange(64), 8, augment=True, seed=0, stream_id=0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(stream.epoch(1))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for (x, y), (x_cpu, y_cpu) in zip(batches, cpu.epoch(1)):
        torch.testing.assert_close(x.cpu(), x_cpu)
        assert torch.equal(y.cpu(), y_cpu)
