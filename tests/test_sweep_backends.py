"""The cluster backends end to end on tiny digits runs, with the real libraries: SLURM through
submitit's local executor (same jobs, same checkpoint-and-requeue protocol, on this machine) and
Ray on a local instance."""

import json
import os
import signal
import threading
import time

import pytest
from flatarch.reference_spaces.engine import search_one
from flatarch.reference_spaces.engine.loop import RESULT_NAME
from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME
from flatarch.reference_spaces.sweep import build_tables
from flatarch.reference_spaces.sweep.backends.slurm import FOLDER
from flatarch.reference_spaces.sweep.status import STATUS_NAME
from sweep_files import TINY_SETTINGS, synthetic_table, write_sweep

from flatarch.cli import main
from flatarch.cli.sweep_file import read_sweep_file

pytest.importorskip("submitit")
GRID = {"optimizer": ["first-order", "a2m"], "seed": [1]}


def _file(tmp_path, run, settings=None):
    settings = settings or {**TINY_SETTINGS, "table": synthetic_table(str(tmp_path))}
    return write_sweep(tmp_path / "s.toml", grid=GRID, settings=settings, run={"root": str(tmp_path / "root"), **run})


def _check_finished(path):
    plan = read_sweep_file(path)
    (table,) = build_tables(plan.runs)
    for run in plan.runs:
        result = json.load(open(os.path.join(run.search.folder, RESULT_NAME)))
        assert result["config"]["optimizer"] == run.point["optimizer"]
        assert table.cells[("darts", run.point["optimizer"], "cifar10")].values == [result["benchmark"]["cifar10"]]
    return plan


def test_slurm_backend_runs_job_arrays_through_submitit(tmp_path, capsys):
    path = _file(tmp_path, {"backend": "slurm", "cluster": "local", "time": 10, "gpus": 0, "cpus": 1})
    assert main(["sweep", path]) == 0
    assert capsys.readouterr().out.count(": finished in") == 2
    plan = _check_finished(path)
    jobs = os.listdir(os.path.join(plan.root, FOLDER))
    assert sum(name.endswith("_result.pkl") for name in jobs) == 2  # two submitit jobs
    for run in plan.runs:  # each ran in its job's process, not in the sweep's
        assert json.load(open(os.path.join(run.search.folder, STATUS_NAME)))["job"]
    assert main(["sweep", path]) == 0 and "0 to run" in capsys.readouterr().out


def test_slurm_backend_refuses_what_submitit_cannot_use(tmp_path, capsys):
    assert main(["sweep", _file(tmp_path, {"backend": "slurm", "cluster": "local"})]) == 2
    assert "backend slurm needs time = MINUTES" in capsys.readouterr().err
    path = _file(tmp_path, {"backend": "slurm", "cluster": "local", "time": 5, "submitit": {"slurm_nonsense": 1}})
    assert main(["sweep", path]) == 2
    assert "submitit refused a parameter" in capsys.readouterr().err


def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, capsys):
    settings = {**TINY_SETTINGS, "epochs": 10, "early-stop": 0}
    path = write_sweep(tmp_path / "s.toml", grid={"optimizer": ["first-order"], "seed": [1]}, settings=settings,
                       run={"root": str(tmp_path / "root"), "backend": "slurm", "cluster": "local", "time": 60,
                            "gpus": 0, "cpus": 1})
    plan = read_sweep_file(path)
    (run,) = plan.runs
    checkpoint = os.path.join(run.search.folder, CHECKPOINT_NAME)

    def preempt():
        """What SLURM does to a preempted job: submitit's signal to the job's process."""
        while not os.path.exists(checkpoint):
            time.sleep(0.05)
        pid = json.load(open(os.path.join(run.search.folder, STATUS_NAME)))["pid"]
        os.kill(pid, signal.SIGUSR2)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    assert main(["sweep", path]) == 0
    thread.join(timeout=5)
    log = open(os.path.join(run.search.folder, "log.txt")).read()
    assert log.count("--- ") == 2 and log.count("starting a new one") == 1  # requeued once, resumed
    history = [json.loads(line) for line in open(os.path.join(run.search.folder, "search.jsonl"))]
    alone = search_one(run.search.config.replace(out=None, progress=False))  # the same search, uninterrupted
    assert [h["alphas"] for h in history] == [h["alphas"] for h in alone.history]
    jobs = os.path.join(plan.root, FOLDER)
    stderr = "".join(open(os.path.join(jobs, n)).read() for n in os.listdir(jobs) if n.endswith("_log.err"))
    assert "Caught signal SIGUSR2" in stderr and "this job is preempted" in stderr


def test_ray_backend_runs_tasks_on_a_local_instance(tmp_path, capsys):
    pytest.importorskip("ray")
    # units ask for 1 GPU by default; a local instance without GPUs runs them on CPUs and says so
    path = _file(tmp_path, {"backend": "ray", "workers": 2})
    assert main(["sweep", path]) == 0
    captured = capsys.readouterr()
    assert "this machine has no GPU; each unit runs on CPUs" in captured.err
    assert captured.out.count(": finished in") == 2
    plan = _check_finished(path)
    pids = {json.load(open(os.path.join(r.search.folder, STATUS_NAME)))["pid"] for r in plan.runs}
    assert os.getpid() not in pids  # the units ran in Ray's worker processes
