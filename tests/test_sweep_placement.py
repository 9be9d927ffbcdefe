"""Sweeps place their units on GPUs: the local backend deals each unit its own GPU(s) (tested with a
faked GPU count: the commands and their CUDA_VISIBLE_DEVICES), a unit with ``gpus = 2`` runs as a
2-rank search (on this machine's CPUs: torchrun on the local backend, two tasks of one submitit
job, two Ray tasks in a placement group)."""

import json
import os
import threading
import time

import pytest
import torch
from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME, read_checkpoint
from flatarch.reference_spaces.sweep.backends import BackendError, make_backend
from flatarch.reference_spaces.sweep.backends import local as local_backend
from flatarch.reference_spaces.sweep.execute import LOG_NAME
from sweep_files import TINY_SETTINGS, synthetic_table, write_sweep

from flatarch.cli import main
from flatarch.cli.sweep_file import read_sweep_file


def _plan(tmp_path, seeds, run):
    settings = {**TINY_SETTINGS, "table": synthetic_table(str(tmp_path)), "optimizer": "first-order"}
    path = write_sweep(tmp_path / "s.toml", grid={"seed": seeds}, settings=settings,
                       run={"root": str(tmp_path / "root"), **run})
    return path, read_sweep_file(path)


class _Launched(list):
    """(command, CUDA_VISIBLE_DEVICES) of every unit's process, and per GPU the most units on it at once."""

    def __init__(self):
        super().__init__()
        self.most_at_once: dict[str, int] = {}


@pytest.fixture
def four_gpus(monkeypatch):
    """This machine as one with 4 GPUs, and the units' processes replaced by a recorder."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    launched, active, lock = _Launched(), [], threading.Lock()

    def run_command(command, env, log, running):
        gpus = env["CUDA_VISIBLE_DEVICES"]
        with lock:
            active.append(gpus)
            launched.append((command, gpus))
            for gpu in gpus.split(","):
                at_once = sum(gpu in a.split(",") for a in active)
                launched.most_at_once[gpu] = max(launched.most_at_once.get(gpu, 0), at_once)
        time.sleep(0.2)
        with lock:
            active.remove(gpus)
        outcome = command[-3]
        with open(outcome, "w") as f:
            json.dump({"state": "finished", "seconds": 0.2}, f)
        return 0

    monkeypatch.setattr(local_backend, "run_command", run_command)
    return launched


@pytest.mark.parametrize("gpus,groups,ranks", [(1, {"0", "1", "2", "3"}, 1), (2, {"0,1", "2,3"}, 2),
                                               (3, {"0,1,2"}, 3)])
def test_the_local_backend_gives_each_unit_its_own_gpus(tmp_path, four_gpus, gpus, groups, ranks):
    _, plan = _plan(tmp_path, [1, 2, 3, 4, 5], {"backend": "local", "gpus": gpus})
    backend = make_backend("local", root=plan.root, cwd=plan.cwd, workers=None, options=plan.options)
    backend.start()
    try:
        handles = backend.submit([run.search for run in plan.runs])
        outcomes = []
        while handles:
            ended = backend.wait(handles, 5.0)
            outcomes += ended
            handles = [h for h in handles if h not in {handle for handle, _ in ended}]
    finally:
        backend.close()
    assert [o["state"] for _, o in outcomes] == ["finished"] * 5
    assert {gpus for _, gpus in four_gpus} == groups
    assert set(four_gpus.most_at_once.values()) <= {1}  # a unit's GPUs are its own
    for command, _ in four_gpus:
        assert ("torch.distributed.run" in command) == (ranks > 1)
        assert ranks == 1 or f"--nproc_per_node={ranks}" in command
        assert command[command.index("-m", 3 if ranks > 1 else 0) + 1] == "flatarch.reference_spaces.sweep.placement"


def test_units_asking_for_a_fraction_of_a_gpu_share_each_gpu(tmp_path, four_gpus):
    """gpus = 0.5: two units per GPU at once (as Ray's fractional GPUs), each a one-rank search."""
    _, plan = _plan(tmp_path, list(range(1, 17)), {"backend": "local", "gpus": 0.5})
    backend = make_backend("local", root=plan.root, cwd=plan.cwd, workers=None, options=plan.options)
    backend.start()
    try:
        handles = backend.submit([run.search for run in plan.runs])
        while handles:
            ended = {handle for handle, _ in backend.wait(handles, 5.0)}
            handles = [h for h in handles if h not in ended]
    finally:
        backend.close()
    assert four_gpus.most_at_once == {"0": 2, "1": 2, "2": 2, "3": 2}
    assert all("torch.distributed.run" not in command for command, _ in four_gpus)


@pytest.mark.parametrize("gpus", [0.3, 1.5])
def test_a_gpu_count_that_is_neither_whole_nor_one_over_k_is_refused(tmp_path, gpus):
    _, plan = _plan(tmp_path, [1], {"backend": "local"})
    with pytest.raises(BackendError, match=r"1/k \(0.5, 0.25, ...\)"):
        make_backend("local", root=plan.root, cwd=plan.cwd, workers=None, options={"gpus": gpus})


def test_more_gpus_per_unit_than_the_machine_has_is_refused(tmp_path, four_gpus, capsys):
    path, _ = _plan(tmp_path, [1], {"backend": "local", "gpus": 5})
    assert main(["sweep", path]) == 2
    assert "each unit asks for 5 GPUs but this machine has 4" in capsys.readouterr().err


def test_a_unit_with_two_gpus_runs_as_a_two_rank_search_on_the_cpus_here(tmp_path, capsys):
    path, plan = _plan(tmp_path, [1], {"backend": "local", "gpus": 2})
    assert main(["sweep", path]) == 0
    captured = capsys.readouterr()
    assert "this machine has no GPU; each unit runs on CPUs as 2 CPU ranks (gloo)" in captured.err
    assert ": finished in" in captured.out
    (run,) = plan.runs
    assert read_checkpoint(os.path.join(run.search.folder, CHECKPOINT_NAME))["config"]["world_size"] == 2
    log = open(os.path.join(run.search.folder, LOG_NAME)).read()
    assert log.count("epoch 1/1  train") == 1  # rank 0 alone prints


@pytest.mark.slow
def test_slurm_runs_a_two_gpu_unit_as_one_job_of_two_tasks(tmp_path, capsys):
    pytest.importorskip("submitit")
    path, plan = _plan(tmp_path, [1], {"backend": "slurm", "cluster": "local", "time": 10, "gpus": 2, "cpus": 1})
    assert main(["sweep", path]) == 0 and ": finished in" in capsys.readouterr().out
    (run,) = plan.runs
    assert read_checkpoint(os.path.join(run.search.folder, CHECKPOINT_NAME))["config"]["world_size"] == 2


@pytest.mark.slow
def test_ray_runs_a_two_gpu_unit_as_two_tasks_of_a_placement_group_on_cpus_here(tmp_path, capsys):
    pytest.importorskip("ray")
    path, plan = _plan(tmp_path, [1], {"backend": "ray", "workers": 2, "gpus": 2, "cpus": 1})
    assert main(["sweep", path]) == 0
    captured = capsys.readouterr()
    assert "each unit runs on CPUs as 2 CPU ranks" in captured.err and ": finished in" in captured.out
    (run,) = plan.runs
    assert read_checkpoint(os.path.join(run.search.folder, CHECKPOINT_NAME))["config"]["world_size"] == 2


def test_backends_refuse_a_negative_gpu_count(tmp_path):
    _, plan = _plan(tmp_path, [1], {"backend": "local"})
    with pytest.raises(BackendError, match="gpus must be >= 0"):
        make_backend("local", root=plan.root, cwd=plan.cwd, workers=None, options={"gpus": -1})
