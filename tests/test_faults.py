"""A crash at any instant of a run's writes: kill the search, the training and the sweep at every
write boundary (:mod:`flatarch.fault_points`), continue them, and check that they end as an
uninterrupted run ends, timings and paths aside.

The boundaries are enumerated from the hook itself (a run that records every point it passes), so
a write added later is covered, and the list is checked against the one expected here. Each kill
is a SIGKILL of a forked child at the chosen point (no ``finally``, no ``atexit``, as ``kill -9``);
at a ``written`` point the power-loss variant also cuts the temporary file to half its length (the
data that had not reached the disk). The default run kills the search at every boundary and the
training and the sweep at a representative set; ``-m slow`` at all of theirs.
"""

from __future__ import annotations

import json
import os
import signal
import traceback

import pytest
import torch
from flatarch.reference_spaces.engine import SearchConfig, search
from flatarch.reference_spaces.run_folder import read_checkpoint

from flatarch import fault_points

#: 2 epochs of 2 iterations on 48 digits, C = 4, one cell per stage, with the plot
TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=2,
                    max_batches=2, progress=False, plot=True, seed=3, early_stop=0)
#: record keys that are timings
TIMINGS = ("seconds", "seconds_per_iteration", "elapsed")


def record_points(run) -> list[str]:
    """The names of the points ``run()`` passes, in order."""
    seen = []
    previous = fault_points.install(lambda name, path: seen.append(name))
    try:
        run()
    finally:
        fault_points.install(previous)
    return seen


def kill_at(run, index: int, power_loss: bool = False) -> None:
    """Run ``run()`` in a forked child that is SIGKILLed at the ``index``-th point it passes."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        passed = 0

        def hook(name, path):
            nonlocal passed
            if passed == index:
                if power_loss and name.startswith("written "):
                    os.truncate(path, os.path.getsize(path) // 2)
                fault_points.kill_this_process()
            passed += 1

        fault_points.install(hook)
        try:
            run()
        except BaseException:
            traceback.print_exc()
        os._exit(3)  # the point was never reached
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with status {status}"


def _plain(value, out):
    """JSON-like ``value`` without timings, with ``out`` as ``OUT``."""
    if isinstance(value, dict):
        return {k: _plain(v, out) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_plain(v, out) for v in value]
    if isinstance(value, str):
        return value.replace(out, "OUT")
    if isinstance(value, torch.Tensor):
        return (value.dtype, value.tolist())
    return value


def folder_state(out: str, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """Every file under ``out``: JSON as data, checkpoints as their tensors and records (timings and
    ``out`` itself left out), anything else as bytes."""
    state = {}
    for base, _, names in os.walk(out):
        for name in names:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, out)
            if name in skip:
                continue
            if name == "status.json":  # a sweep's story of its last attempt: its state is what counts
                state[rel] = json.load(open(path))["state"]
            elif name.endswith(".pt"):
                state[rel] = _plain(read_checkpoint(path), out)
            elif name.endswith(".json"):
                state[rel] = _plain(json.load(open(path)), out)
            elif name.endswith(".jsonl"):
                state[rel] = [_plain(json.loads(line), out) for line in open(path)]
            else:
                state[rel] = open(path, "rb").read()
    return state


def kills(run, resume, out_of, points, chosen, expected, power_loss=False, skip=()) -> None:
    """For each index in ``chosen``: ``run(out)`` killed at that point, then ``resume(out)``; the folder
    must then equal ``expected`` (files named in ``skip`` aside). ``out_of(i)`` names a fresh folder."""
    for i in chosen:
        out = out_of(i)
        kill_at(lambda: run(out), i, power_loss)  # noqa: B023 (called at once)
        resume(out)
        where = f"killed at {points[i]} (point {i}{', power loss' if power_loss else ''})"
        assert folder_state(out, skip) == expected, where


def written(points) -> list[int]:
    return [i for i, name in enumerate(points) if name.startswith("written ")]


# --- the search ------------------------------------------------------------------------------

SEARCH_EPOCH = ["written checkpoint.pt", "replaced checkpoint.pt", "written search.jsonl", "replaced search.jsonl"]
SEARCH_END = ["written genotype.json", "replaced genotype.json", "written search.png", "replaced search.png",
              "written result.json", "replaced result.json"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """``{plot: (folder, points)}`` of an uninterrupted search with and without its plot."""
    found = {}
    for plot in (False, True):
        out = str(tmp_path_factory.mktemp("uninterrupted") / "run")
        found[plot] = out, record_points(lambda: search(TINY, out=out, plot=plot))  # noqa: B023
    return found


def test_the_search_passes_the_expected_points(searched):
    """The checkpoint commits each epoch before the log; result.json comes last. A new write shows here."""
    assert searched[True][1] == SEARCH_EPOCH * 2 + SEARCH_END
    assert searched[False][1] == SEARCH_EPOCH * 2 + [p for p in SEARCH_END if "search.png" not in p]


def _search_kills(searched, tmp_path, plot, chosen, power_loss=False):
    reference, points = searched[plot]
    kills(lambda out: search(TINY, out=out, plot=plot), lambda out: search(TINY, out=out, plot=plot, resume=True),
          lambda i: str(tmp_path / f"cut-{i}"), points, chosen(points), folder_state(reference), power_loss)


def test_a_search_killed_at_any_write_resumes_to_the_uninterrupted_result(searched, tmp_path):
    _search_kills(searched, tmp_path, False, lambda points: range(len(points)))


def test_a_power_loss_during_a_write_of_a_search_loses_nothing(searched, tmp_path):
    """A half-written temporary file beside the checkpoint, or beside result.json (every one: -m slow)."""
    _search_kills(searched, tmp_path, False, lambda points: [points.index("written checkpoint.pt"),
                                                             points.index("written result.json")], power_loss=True)


def test_a_search_killed_after_writing_its_plot_resumes(searched, tmp_path):
    _search_kills(searched, tmp_path, True, lambda points: [points.index("replaced search.png")])


@pytest.mark.slow
@pytest.mark.parametrize("power_loss", [False, True], ids=["kill", "power-loss"])
def test_every_write_of_a_search_with_its_plot(searched, tmp_path, power_loss):
    _search_kills(searched, tmp_path, True, written if power_loss else lambda points: range(len(points)), power_loss)


# --- the training ----------------------------------------------------------------------------

TRAIN_POINTS = ["written checkpoint.pt", "replaced checkpoint.pt", "written genotype.json", "replaced genotype.json",
                "written checkpoint.pt", "replaced checkpoint.pt", "written learning_curve.png",
                "replaced learning_curve.png", "written report.json", "replaced report.json"]
#: the default run's kills: a checkpoint ahead of the files derived from it, a curve without its
#: report (every point, and the power-loss variant, with -m slow)
TRAIN_QUICK = ["replaced checkpoint.pt", "replaced learning_curve.png"]


@pytest.fixture
def tiny_training(monkeypatch):
    """``train(out, resume=False)``: 2 epochs of DARTS_V2 at C = 4 on 16 random 16x16 images."""
    from flatarch.reference_spaces.darts import loaders
    from flatarch.reference_spaces.darts.train import TrainConfig, train_genotype
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    images = TensorDataset(torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g))
    monkeypatch.setattr(loaders, "datasets_for", lambda cfg: (images, images, 10))
    config = TrainConfig(epochs=2, channels=4, cells_per_stage=1, batch_size=8, loader_workers=0)
    return lambda out, resume=False: train_genotype("DARTS_V2", "cifar10", config=config, device="cpu", out_dir=out,
                                                    resume=resume, log=None)


@pytest.mark.parametrize("every", [pytest.param(False, id="quick"),
                                   pytest.param(True, id="every", marks=pytest.mark.slow)])
def test_a_training_killed_at_a_write_resumes_to_the_uninterrupted_report(tiny_training, tmp_path, every):
    reference = str(tmp_path / "uninterrupted")
    points = record_points(lambda: tiny_training(reference))
    assert points == TRAIN_POINTS
    chosen = range(len(points)) if every else [points.index(p) for p in TRAIN_QUICK]
    kills(tiny_training, lambda out: tiny_training(out, resume=True), lambda i: str(tmp_path / f"cut-{i}"), points,
          chosen, folder_state(reference))
    if every:
        kills(tiny_training, lambda out: tiny_training(out, resume=True), lambda i: str(tmp_path / f"lost-{i}"),
              points, written(points), folder_state(reference), True)


# --- the sweep -------------------------------------------------------------------------------

SWEEP_POINTS = ["locked sweep.lock", "locked unit.lock", "written status.json", "replaced status.json",
                *SEARCH_EPOCH, "written genotype.json", "replaced genotype.json", "written result.json",
                "replaced result.json", "written status.json", "replaced status.json", "unlocking unit.lock",
                "unlocking sweep.lock", "written report.md", "replaced report.md", "written report.csv",
                "replaced report.csv", "written report-nb201-digits.png", "replaced report-nb201-digits.png"]
#: the default run's kills: a stale lock of each kind, a result without its status, runs without their report
SWEEP_QUICK = ["locked unit.lock", "replaced result.json", "unlocking sweep.lock"]


@pytest.mark.parametrize("every", [pytest.param(False, id="quick"),
                                   pytest.param(True, id="every", marks=pytest.mark.slow)])
def test_a_sweep_killed_at_a_write_completes_as_an_uninterrupted_one(tmp_path, every):
    """``flatarch sweep`` (driver and its inline worker) killed at a lock, a status file, a run's file
    or the report, then started again: its root ends as an uninterrupted sweep's, lock files gone."""
    from sweep_files import TINY_SETTINGS, synthetic_table, write_sweep

    from flatarch.cli import main

    table = synthetic_table(str(tmp_path))

    def sweep(root):
        path = write_sweep(tmp_path / f"{os.path.basename(root)}.toml", grid={"seed": [1]},
                           settings={**TINY_SETTINGS, "table": table}, run={"root": root})
        assert main(["sweep", path]) == 0

    reference = str(tmp_path / "uninterrupted")
    points = record_points(lambda: sweep(reference))
    assert points == SWEEP_POINTS
    chosen = range(len(points)) if every else [points.index(p) for p in SWEEP_QUICK]
    skip = ("log.txt",)  # the units' own output, one section per attempt
    kills(sweep, sweep, lambda i: str(tmp_path / f"cut-{i}"), points, chosen, folder_state(reference, skip), skip=skip)
    if every:
        kills(sweep, sweep, lambda i: str(tmp_path / f"lost-{i}"), points, written(points),
              folder_state(reference, skip), True, skip=skip)
