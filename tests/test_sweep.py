"""``flatarch sweep`` on the local backend: the sweep file and its checks, runs and their folders,
skip and retry, failures recorded, the lock, interruption and SIGKILL, and the table-2 report
against the runs' own result files."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from flatarch.reference_spaces.darts.train import REPORT_NAME
from flatarch.reference_spaces.engine.loop import RESULT_NAME
from flatarch.reference_spaces.run_folder import CHECKPOINT_NAME
from flatarch.reference_spaces.sweep import LOCK_NAME, build_tables, csv_text, markdown, states
from flatarch.reference_spaces.sweep.lock import FileLock
from flatarch.reference_spaces.sweep.status import CLAIM_NAME, STATUS_NAME
from folder_files import file_bytes
from sweep_files import TINY_SETTINGS, TINY_TRAIN, synthetic_table, write_sweep

from flatarch.cli import main
from flatarch.cli.sweep_file import read_sweep_file

NB201_GRID = {"method": ["darts"], "optimizer": ["first-order", "a2m"], "seed": [1, 2]}


@pytest.fixture
def nb201_file(tmp_path):
    settings = {**TINY_SETTINGS, "table": synthetic_table(str(tmp_path))}
    return write_sweep(tmp_path / "s.toml", grid=NB201_GRID, settings=settings,
                       run={"backend": "local", "root": str(tmp_path / "root")})


BAD = [
    ({"nonsense": {"a": 1}}, "unknown key 'nonsense'"),
    ({"grid": {}}, "the grid is empty"),
    ({"grid": {**NB201_GRID, "seed": []}}, "[grid] seed is empty"),
    ({"grid": {**NB201_GRID, "out": ["a", "b"]}}, "[grid] out is not a grid axis"),
    ({"grid": {**NB201_GRID, "no-plot": [True, False]}}, "[grid] no-plot is not a grid axis"),
    ({"grid": {**NB201_GRID, "lr": [0.1]}, "settings": {"lr": 0.2}}, "lr is in [grid] and in [settings]"),
    ({"grid": {**NB201_GRID, "train": {"cutout": [0, 16]}}}, "[grid] train.* varies the trainings"),
    ({"grid": {**NB201_GRID, "rho": [0.01, 0.1]}}, "--rho does not apply to --optimizer first-order"),
    ({"settings": {"epoch": 1}}, "[settings] epoch is not an option; valid: "),
    ({"settings": {"out": "x"}}, "[settings] out is set by the sweep"),
    ({"settings": {"seed": 3}}, "seed is in [grid] and in [settings]"),
    ({"settings": {"epochs": "many"}}, "invalid int value: 'many'"),
    ({"settings": {"epochs": 0}}, "--epochs must be a whole number >= 1"),
    ({"settings": {"rho": 0.1}}, "--rho does not apply to --optimizer first-order"),
    ({"settings": {"no-plot": "yes"}}, "[settings] no-plot is a switch"),
    ({"grid": {**NB201_GRID, "method": ["darts", "nodarts"]}}, "invalid choice: 'nodarts'"),
    ({"train": TINY_TRAIN}, "[train] trains genotypes of the darts space"),
    ({"methods": {"pcdarts": {"recipe": "original"}}}, "[methods.pcdarts]: pcdarts is not a method of the sweep"),
    ({"methods": {"darts": {"seed": 1}}}, "[methods.darts] seed is a grid axis"),
    ({"methods": {"darts": {"recipe": "original"}}}, "--method darts has no recipe 'original'"),
    ({"run": {"backend": "spark"}}, "[run] backend 'spark' is unknown"),
    ({"run": {"workers": 0}}, "[run] workers must be a whole number >= 1"),
    ({"run": {"partition": "gpu"}}, "[run] partition is not an option of backend local"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m for _, m in BAD])
def test_a_bad_sweep_file_is_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, change, message):
    tables = {"grid": NB201_GRID, "settings": TINY_SETTINGS, "run": {"root": str(tmp_path / "root")}}
    for name, table in change.items():
        tables[name] = table if name in ("grid", "nonsense", "train", "methods") else {**tables.get(name, {}), **table}
    path = write_sweep(tmp_path / "s.toml", **tables)
    before = open(path, "rb").read()
    assert main(["sweep", path]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not os.path.exists(tmp_path / "root") and open(path, "rb").read() == before


def test_unreadable_and_invalid_toml_files(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read the sweep file" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[grid\nseed = 1")
    assert main(["sweep", str(tmp_path / "bad.toml")]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_settings_spellings_folders_and_configs(tmp_path):
    path = write_sweep(
        tmp_path / "s.toml",
        grid={"dataset": ["digits"], "method": ["darts", "pcdarts"], "optimizer": ["first-order", "a2m"], "seed": [0]},
        # the long option name, its underscore form and the setting it sets are one key each
        settings={"batch_size": 8, "cells_per_stage": 1, "arch-lr": 0.001, "val-augment": False, "rho": 0.05},
        run={"root": "rel/root"},
    )
    with pytest.raises(Exception, match="--rho does not apply to --optimizer first-order"):
        read_sweep_file(path)  # rho in [settings] reaches every run, first-order ones too
    path = write_sweep(tmp_path / "s.toml", grid={"dataset": ["digits"], "method": ["darts", "pcdarts"],
                                                  "optimizer": ["first-order", "a2m"], "seed": [0]},
                       settings={"batch_size": 8, "cells_per_stage": 1, "arch-lr": 0.001, "val-augment": False},
                       methods={"pcdarts": {"recipe": "original", "arch_lr": 0.002}},
                       run={"root": "rel/root"})
    plan = read_sweep_file(path)
    assert plan.root == os.path.abspath("rel/root") and plan.backend == "local" and plan.workers is None
    assert [r.key for r in plan.runs] == ["nb201/digits/darts-first-order/seed-0", "nb201/digits/darts-a2m/seed-0",
                                          "nb201/digits/pcdarts-first-order/seed-0", "nb201/digits/pcdarts-a2m/seed-0"]
    config = plan.runs[1].search.config
    assert (config.batch_size, config.cells_per_stage, config.arch_lr, config.val_augment) == (8, 1, 0.001, False)
    assert config.out == os.path.join(plan.root, "nb201", "digits", "darts-a2m", "seed-0") and config.threads == 1
    assert plan.runs[1].search.resolved.rho == 1e-2  # defaults filled: the space's rho
    # [methods.pcdarts] reaches the pcdarts runs only, and wins over [settings]
    assert [(r.search.config.recipe, r.search.config.arch_lr) for r in plan.runs] == [
        (None, 0.001), (None, 0.001), ("original", 0.002), ("original", 0.002)]
    assert plan.runs[2].search.resolved.batch_size == 8 and plan.runs[2].search.resolved.lr == 0.1  # the recipe's
    assert not os.path.exists("rel")


def test_local_sweep_runs_skips_finished_runs_and_reports_their_numbers(tmp_path, nb201_file, capsys):
    assert main(["sweep", nb201_file]) == 0
    out = capsys.readouterr().out
    assert "4 to run" in out and out.count(": finished in") == 4
    plan = read_sweep_file(nb201_file)
    root = plan.root
    results = {r.point["optimizer"]: [] for r in plan.runs}
    for run in plan.runs:
        result = json.load(open(os.path.join(root, run.key, RESULT_NAME)))
        assert result["config"]["seed"] == run.point["seed"] and result["config"]["optimizer"] == run.point["optimizer"]
        assert json.load(open(os.path.join(root, run.key, STATUS_NAME)))["state"] == "finished"
        results[run.point["optimizer"]].append(result["benchmark"])
    # the report's numbers are the mean and population std of the runs' own benchmark values
    (table,) = build_tables(plan.runs)
    assert table.updates == ["first-order", "a2m"] and table.datasets == ["cifar10", "cifar100", "imagenet16-120"]
    for update, benchmarks in results.items():
        for dataset in table.datasets:
            values = [b[dataset] for b in benchmarks]
            cell = table.cells[("darts", update, dataset)]
            assert cell.values == values and cell.mean == pytest.approx(np.mean(values))
            assert cell.std == pytest.approx(np.std(values)) and cell.text() == f"{np.mean(values):.2f} ± " \
                                                                                 f"{np.std(values):.2f}"
    rows = list(csv.DictReader(io.StringIO(csv_text([table]))))
    assert float(rows[0]["cifar100 A2 mean"]) == pytest.approx(np.mean([b["cifar100"] for b in results["a2m"]]),
                                                              abs=1e-4)
    assert rows[0]["cifar100 A2 n"] == "2" and rows[0]["cifar100 standard seeds"] == "2"
    assert {"report.md", "report.csv", "report-nb201-digits.png"} <= set(os.listdir(root))
    assert open(os.path.join(root, "report.md")).read() == markdown([table])
    # a second sweep runs nothing and changes no run
    before = {k: v for k, v in file_bytes(root).items() if not k.startswith("report")}
    assert main(["sweep", nb201_file]) == 0
    assert "4 finished, 0 to run" in capsys.readouterr().out
    assert {k: v for k, v in file_bytes(root).items() if not k.startswith("report")} == before
    # --report prints the table (CSV with --csv); --dry-run lists the units
    assert main(["sweep", nb201_file, "--report", "--csv"]) == 0
    assert capsys.readouterr().out == csv_text([table])
    assert main(["sweep", nb201_file, "--dry-run"]) == 0
    assert capsys.readouterr().out.count("finished ") == 4


def test_failed_run_is_recorded_the_sweep_goes_on_and_a_rerun_retries_only_it(tmp_path, nb201_file, capsys):
    plan = read_sweep_file(nb201_file)
    broken = os.path.join(plan.root, plan.runs[1].key)
    os.makedirs(broken)
    with open(os.path.join(broken, CHECKPOINT_NAME), "wb") as f:
        f.write(b"not a checkpoint")
    assert main(["sweep", nb201_file]) == 1
    out = capsys.readouterr().out
    assert out.count(": finished in") == 3 and f"{plan.runs[1].key}: FAILED: CheckpointError:" in out
    status = json.load(open(os.path.join(broken, STATUS_NAME)))
    assert status["state"] == "failed" and "damaged" in status["error"] and "Traceback" in status["traceback"]
    (table,) = build_tables(plan.runs)
    cell = table.cells[("darts", "first-order", "cifar10")]  # runs[1] is darts first-order seed 2
    assert (len(cell.values), cell.failed, cell.seeds) == (1, 1, 2) and "(1/2; 1 failed)" in cell.text()
    assert "(1/2; 1 failed)" in markdown([table])
    os.remove(os.path.join(broken, CHECKPOINT_NAME))
    finished = {r.key: os.path.getmtime(os.path.join(plan.root, r.key, RESULT_NAME)) for r in plan.runs
                if r is not plan.runs[1]}
    assert main(["sweep", nb201_file]) == 0
    out = capsys.readouterr().out
    assert "3 finished, 1 to run (1 failed before)" in out and out.count(": finished in") == 1
    assert all(os.path.getmtime(os.path.join(plan.root, k, RESULT_NAME)) == t for k, t in finished.items())
    # a search that diverged (its result names the epoch) is not a value of the table: it is counted as diverged
    path = os.path.join(plan.root, plan.runs[1].key, RESULT_NAME)
    result = json.load(open(path))
    with open(path, "w") as f:
        json.dump({**result, "diverged_epoch": 1}, f)
    (table,) = build_tables(plan.runs)
    cell = table.cells[("darts", "first-order", "cifar10")]
    assert (len(cell.values), cell.diverged, cell.missing) == (1, 1, 0) and "(1/2; 1 diverged)" in cell.text()
    assert list(csv.DictReader(io.StringIO(csv_text([table]))))[0]["cifar10 standard diverged"] == "1"


def test_a_search_stopped_between_its_last_checkpoint_and_its_result_gets_its_result(tmp_path, nb201_file, capsys):
    assert main(["sweep", nb201_file]) == 0
    plan = read_sweep_file(nb201_file)
    run = plan.runs[0]
    path = os.path.join(plan.root, run.key, RESULT_NAME)
    saved = json.load(open(path))
    os.remove(path)
    assert states(plan.runs)[run.key][1] == "missing"
    assert main(["sweep", nb201_file]) == 0
    assert "1 to run" in capsys.readouterr().out
    again = json.load(open(path))
    assert again["genotype"] == saved["genotype"] and again["benchmark"] == saved["benchmark"]


def test_second_sweep_on_a_root_is_refused_naming_the_holder_and_a_stale_lock_is_taken_over(tmp_path, nb201_file,
                                                                                              capsys):
    plan = read_sweep_file(nb201_file)
    os.makedirs(plan.root)
    lock = FileLock(os.path.join(plan.root, LOCK_NAME)).acquire()
    try:
        assert main(["sweep", nb201_file]) == 2
        err = capsys.readouterr().err
        assert f"another sweep runs on {plan.root}: pid {os.getpid()} on host " in err and err.count("\n") == 1
    finally:
        lock.release()
    # a lock file naming a holder that no longer holds it (a killed sweep): taken over, and said so
    with open(os.path.join(plan.root, LOCK_NAME), "w") as f:
        json.dump({"pid": 999999, "host": "gone", "since": "yesterday"}, f)
    assert main(["sweep", nb201_file]) == 0
    assert "the sweep that held it (pid 999999 on host gone since yesterday) no longer runs" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(plan.root, LOCK_NAME))  # released and removed


def test_a_unit_another_process_runs_is_left_to_it(tmp_path, nb201_file, capsys):
    plan = read_sweep_file(nb201_file)
    busy = os.path.join(plan.root, plan.runs[0].key)
    os.makedirs(busy)
    claim = FileLock(os.path.join(busy, CLAIM_NAME)).acquire()
    try:
        assert main(["sweep", nb201_file, "--dry-run"]) == 0
        assert f"running   {plan.runs[0].key}  (held by pid {os.getpid()}" in capsys.readouterr().out
        assert main(["sweep", nb201_file]) == 0
        assert "3 to run (0 failed before), 1 running elsewhere" in capsys.readouterr().out
        assert not os.path.exists(os.path.join(busy, RESULT_NAME))
        assert "1 running" in markdown(build_tables(plan.runs))
    finally:
        claim.release()


def _sweep_process(path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT as a terminal's Ctrl-C delivers it (a test runner may have it ignored, which children inherit)
    return subprocess.Popen([sys.executable, "-m", "flatarch", "sweep", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _pids_alive(pids):
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def test_ctrl_c_and_sigkill_of_a_pooled_sweep_keep_finished_runs_and_a_rerun_completes(tmp_path, capsys):
    # two longer searches on two worker processes
    path = write_sweep(tmp_path / "s.toml", grid={"optimizer": ["first-order"], "seed": [1, 2]},
                       settings={**TINY_SETTINGS, "subset": 16, "epochs": 20, "early-stop": 0},
                       run={"backend": "local", "workers": 2, "root": str(tmp_path / "root")})
    plan = read_sweep_file(path)
    folders = [os.path.join(plan.root, r.key) for r in plan.runs]

    def worker(folder):
        status = os.path.join(folder, STATUS_NAME)
        return json.load(open(status)).get("pid") if os.path.exists(status) else None

    def unfinished():
        return [f for f in folders if not os.path.exists(os.path.join(f, RESULT_NAME))]

    sweep = _sweep_process(path)
    _wait_for(lambda: all(map(worker, folders)) and any(os.path.exists(os.path.join(f, CHECKPOINT_NAME))
                                                         for f in folders))
    pids = {worker(f) for f in folders}
    assert len(pids) == 2 and sweep.pid not in pids  # each search in its own worker process
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and "interrupted; finished runs are kept" in err
    _wait_for(lambda: not _pids_alive(pids), timeout=30)  # the workers were stopped with the sweep
    interrupted = unfinished()
    resumable = [f for f in interrupted if os.path.exists(os.path.join(f, CHECKPOINT_NAME))]
    assert resumable  # the search whose checkpoint we waited for was stopped after it

    sweep = _sweep_process(path)
    _wait_for(lambda: all(worker(f) not in pids for f in interrupted))
    pids = {worker(f) for f in interrupted}
    sweep.kill()
    _, err = sweep.communicate(timeout=60)  # its stderr closes when the workers and Python's resource tracker end
    _wait_for(lambda: not _pids_alive(pids), timeout=30)  # orphaned workers exit on their own
    assert json.load(open(os.path.join(plan.root, LOCK_NAME)))["pid"] == sweep.pid  # a stale lock
    assert "leaked semaphore" not in err and "Traceback" not in err, err

    assert main(["sweep", path]) == 0
    out = capsys.readouterr().out
    assert f"(pid {sweep.pid} on host" in out and "no longer runs" in out and not unfinished()
    for folder in interrupted:
        assert open(os.path.join(folder, "log.txt")).read().count("--- ") == 3  # three attempts
    for folder in resumable:  # started once, then continued from its checkpoint
        assert open(os.path.join(folder, "log.txt")).read().count("starting a new one") == 1
    for folder in folders:
        assert sum(1 for _ in open(os.path.join(folder, "search.jsonl"))) == 20
        assert not os.path.exists(os.path.join(folder, CLAIM_NAME))  # a clean finish leaves no lock file
    assert not os.path.exists(os.path.join(plan.root, LOCK_NAME))


def test_darts_sweep_trains_each_genotype_and_reports_its_test_accuracy(tmp_path, capsys):
    path = write_sweep(tmp_path / "s.toml", grid={"optimizer": ["first-order", "a2m"], "seed": [1]},
                       settings={**TINY_SETTINGS, "space": "darts"}, train=TINY_TRAIN,
                       run={"root": str(tmp_path / "root")})
    assert main(["sweep", path]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 4 units" in out and "train-digits: finished in" in out
    plan = read_sweep_file(path)
    (table,) = build_tables(plan.runs)
    assert table.datasets == ["digits"] and "final test accuracy" in table.source
    for run in plan.runs:
        (train,) = run.trains
        report = json.load(open(os.path.join(train.folder, REPORT_NAME)))
        genotype = json.load(open(os.path.join(run.search.folder, "genotype.json")))
        assert report["config"]["genotype"] == genotype and report["config"]["epochs"] == 1
        assert report["config"]["seed"] == run.point["seed"] == 1  # trained with its search's seed
        assert table.cells[("darts", run.point["optimizer"], "digits")].values == [report["final_test_acc"]]
    # a longer training in the file makes the trainings unfinished; the searches stay finished
    path = write_sweep(tmp_path / "s.toml", grid={"optimizer": ["first-order", "a2m"], "seed": [1]},
                       settings={**TINY_SETTINGS, "space": "darts"}, train={**TINY_TRAIN, "epochs": 2},
                       run={"root": str(tmp_path / "root")})
    assert main(["sweep", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished  darts/") == 2 and out.count("epochs: 1 -> 2") == 2


@pytest.mark.slow  # ~35 s here: a worker's death (the out-of-memory killer) is rarer than the faults above
def test_a_dead_worker_fails_the_units_in_flight_and_the_sweep_goes_on(tmp_path, capsys):
    path = write_sweep(tmp_path / "s.toml", grid={"optimizer": ["first-order"], "seed": [1, 2, 3]},
                       settings={**TINY_SETTINGS, "epochs": 8, "early-stop": 0},
                       run={"backend": "local", "workers": 2, "root": str(tmp_path / "root")})
    plan = read_sweep_file(path)
    first = os.path.join(plan.root, plan.runs[0].key)
    sweep = _sweep_process(path)
    _wait_for(lambda: os.path.exists(os.path.join(first, CHECKPOINT_NAME)))
    os.kill(json.load(open(os.path.join(first, STATUS_NAME)))["pid"], signal.SIGKILL)  # as the OOM killer would
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 1 and f"{plan.runs[0].key}: FAILED: a worker process died" in out
    assert f"{plan.runs[2].key}: finished in" in out  # a fresh pool ran the rest
    assert json.load(open(os.path.join(first, STATUS_NAME)))["state"] == "failed"
    assert main(["sweep", path]) == 0  # and a rerun completes the failed ones from their checkpoints
    assert all(os.path.exists(os.path.join(plan.root, r.key, RESULT_NAME)) for r in plan.runs)


def test_the_example_sweep_files_describe_table_2(capsys):
    from flatarch.reference_spaces.engine.methods import METHODS

    root = os.path.join(os.path.dirname(__file__), "..", "examples")
    nb201 = read_sweep_file(os.path.join(root, "table2-nb201.toml"))
    darts = read_sweep_file(os.path.join(root, "table2-darts.toml"))
    for plan, space, units in ((nb201, "nb201", 70), (darts, "darts", 280)):
        assert len(plan.runs) == 70 and sum(len(r.units) for r in plan.runs) == units
        assert {r.point["space"] for r in plan.runs} == {space}
        assert {r.point["optimizer"] for r in plan.runs} == {"first-order", "a2m"}
        assert {r.point["seed"] for r in plan.runs} == {1, 2, 3, 4, 5}
        methods = {r.point["method"] for r in plan.runs}
        assert methods <= set(METHODS) and len(methods) == 7
        assert all(r.search.resolved.epochs == 50 and r.search.resolved.dataset == "cifar10" for r in plan.runs)
    assert darts.backend == "slurm" and {t.dataset for r in darts.runs for t in r.trains} == {
        "cifar10", "cifar100", "imagenet16-120"}
    assert all(t.spec.config.resolved(t.dataset).epochs == 600 for r in darts.runs for t in r.trains)
    assert main(["sweep", os.path.join(root, "table2-nb201.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("missing ") for line in out.splitlines()) == 70 and not os.path.exists(nb201.root)
    assert out.splitlines()[-1] == "70 units in 70 runs: 70 missing"


def test_any_search_setting_is_an_axis_with_folders_rows_and_a_sensitivity_plot(tmp_path, capsys):
    settings = {**TINY_SETTINGS, "table": synthetic_table(str(tmp_path)), "optimizer": "a2m"}
    path = write_sweep(tmp_path / "s.toml", grid={"rho": [0.01, 0.1], "arch-lr": [0.001], "seed": [1, 2]},
                       settings=settings, run={"root": str(tmp_path / "root")})
    assert main(["sweep", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "4 units in 4 runs: 4 missing"
    assert main(["sweep", path, "--report"]) == 0
    assert "nothing to report yet: no run of the sweep has started" in capsys.readouterr().err
    assert main(["sweep", path]) == 0
    plan = read_sweep_file(path)
    assert [r.key for r in plan.runs] == [f"nb201/darts-a2m/rho-{rho}/arch_lr-0.001/seed-{s}"
                                          for rho in (0.01, 0.1) for s in (1, 2)]
    for run in plan.runs:
        result = json.load(open(os.path.join(run.search.folder, RESULT_NAME)))
        assert result["config"]["rho"] == run.axes["rho"] and result["config"]["arch_lr"] == 0.001
    (table,) = build_tables(plan.runs)
    assert table.methods == ["darts rho=0.01 arch_lr=0.001", "darts rho=0.1 arch_lr=0.001"]
    text = markdown([table])
    assert "| darts rho=0.1 arch_lr=0.001 |" in text and "Searches ran on: flatarch" in text
    warned = [r for r in plan.runs if json.load(open(os.path.join(r.search.folder, RESULT_NAME)))["warnings"]]
    assert warned, "the tiny searches report cells with warnings (their initial cell, undecided edges)"
    listed = re.findall(r"^- (\S+): (.+)$", text, re.M)
    assert [key for key, _ in listed] == [r.key for r in warned]  # each run whose result warns, with its gist
    assert all(":" not in gist and gist for _, gist in listed)
    rows = list(csv.DictReader(io.StringIO(csv_text([table]))))
    assert [(r["method"], r["rho"], r["arch_lr"]) for r in rows] == [("darts", "0.01", "0.001"),
                                                                     ("darts", "0.1", "0.001")]
    root = os.listdir(plan.root)
    assert "report-nb201-digits-rho.png" in root and "report-nb201-digits-eps.png" not in root


def test_training_settings_are_axes_too(tmp_path):
    path = write_sweep(tmp_path / "s.toml", grid={"seed": [1], "train": {"cutout": [0, 4]}},
                       settings={**TINY_SETTINGS, "space": "darts"}, train=TINY_TRAIN,
                       run={"root": str(tmp_path / "root")})
    plan = read_sweep_file(path)
    assert [r.key for r in plan.runs] == [f"darts/darts-a2m/train.cutout-{c}/seed-1" for c in (0, 4)]
    assert [r.trains[0].spec.config.cutout for r in plan.runs] == [0, 4]
    path = write_sweep(tmp_path / "s.toml", grid={"seed": [1], "train": {"genotype": ["x"]}},
                       settings={**TINY_SETTINGS, "space": "darts"}, train=TINY_TRAIN,
                       run={"root": str(tmp_path / "root")})
    with pytest.raises(Exception, match="train.genotype is not a training setting"):
        read_sweep_file(path)


def test_a_sweep_file_whose_settings_its_runs_cannot_take_is_refused_before_anything_changes(tmp_path, capsys):
    """Fewer epochs (or another lr) than the runs' checkpoints: refused up front naming the run and the
    setting, exit 2; the runs, their status files and the report that shows them stay as they were."""
    def sweep_file(**settings):
        return write_sweep(tmp_path / "s.toml", grid={"seed": [1, 2]}, settings={**TINY_SETTINGS, **settings},
                           run={"backend": "local", "root": str(tmp_path / "root")})

    assert main(["sweep", sweep_file(epochs=2)]) == 0
    plan = read_sweep_file(sweep_file())
    capsys.readouterr()
    before = file_bytes(plan.root)
    assert main(["sweep", sweep_file(lr=0.1)]) == 2
    err = capsys.readouterr().err
    assert f"run {plan.runs[0].key} was made with other settings (epochs: 2 -> 1; lr: 0.025 -> 0.1) (and 1 more " \
           "run(s)); restore them in the sweep file" in err and err.count("\n") == 1, err
    assert file_bytes(plan.root) == before  # the report too: it still shows the runs' values
    assert re.search(r"\| darts \| \d+\.\d\d ± ", open(os.path.join(plan.root, "report.md")).read())


def test_a_finished_run_reported_with_another_select_is_reported_again(tmp_path, capsys):
    """``select`` (like ``early-stop``) may change on --resume but decides what a search reports: a
    sweep file that changes it does not leave the runs' results as the old selection made them."""
    def sweep_file(**settings):
        return write_sweep(tmp_path / "s.toml", grid={"seed": [1]}, settings={**TINY_SETTINGS, **settings},
                           run={"backend": "local", "root": str(tmp_path / "root")})

    assert main(["sweep", sweep_file()]) == 0
    plan = read_sweep_file(sweep_file(select="final"))
    path = os.path.join(plan.root, plan.runs[0].key, RESULT_NAME)
    assert json.load(open(path))["selection"].startswith("best-val-loss")
    assert states(plan.runs)[plan.runs[0].search.key][1:] == ("missing", "finished with other settings (select: "
                                                                         "'best-val-loss' -> 'final')")
    capsys.readouterr()
    assert main(["sweep", sweep_file(select="final")]) == 0
    assert "0 finished, 1 to run" in capsys.readouterr().out
    assert json.load(open(path))["selection"].startswith("final")


def test_a_run_that_diverged_without_a_finite_epoch_is_diverged_not_failed(tmp_path, monkeypatch, capsys):
    """Seed 2's validation loss is NaN in every epoch, so its search has no result: the sweep says it
    diverged (not FAILED), counts it so in the report and does not run it again; exit status 0.
    Seed 3 diverges in its second epoch: it reports the first, and the sweep says it diverged too."""
    from flatarch.reference_spaces.engine import loop

    validate = loop._Searcher.validate
    monkeypatch.setattr(loop._Searcher, "validate", lambda self, epoch: (float("nan"), 10.0) if self.cfg.seed == 2
                        or self.cfg.seed == 3 and epoch == 1 else validate(self, epoch))
    path = write_sweep(tmp_path / "s.toml", grid={"seed": [1, 2, 3]},
                       settings={**TINY_SETTINGS, "epochs": 2, "table": synthetic_table(str(tmp_path))},
                       run={"backend": "local", "root": str(tmp_path / "root")})
    plan = read_sweep_file(path)
    assert main(["sweep", path]) == 0
    out = capsys.readouterr().out
    assert f"{plan.runs[1].key}: diverged, no result: DivergedError: the search diverged from epoch 1" in out
    assert f"{plan.runs[2].key}: finished in" in out and "; diverged from epoch 2, so not a value" in out
    assert "FAILED" not in out and "1 diverged, 0 failed" in out
    assert json.load(open(os.path.join(plan.root, plan.runs[1].key, STATUS_NAME)))["state"] == "diverged"
    (table,) = build_tables(plan.runs)
    assert "(1/3; 2 diverged)" in table.cells[("darts", "a2m", "cifar10")].text()
    assert main(["sweep", path]) == 0
    assert "2 finished, 1 diverged (not run again), 0 to run" in capsys.readouterr().out


def test_a_lock_file_removed_by_its_holder_is_never_held_twice(tmp_path, monkeypatch):
    """A holder removes the lock file when it lets go; a process that opened the file just before
    and locks it after sees it is no longer the file at the path and locks the new one instead."""
    import fcntl

    from flatarch.reference_spaces.sweep.lock import LockError

    path = str(tmp_path / "unit.lock")
    first = FileLock(path).acquire()
    opened_before = os.open(path, os.O_RDWR)  # another process opens the file ...
    first.release()  # ... and the holder lets go, removing it
    assert not os.path.exists(path)
    real = FileLock._lock_file
    pending = [opened_before]

    def lock_the_old_file_first(self):
        if pending:
            fd = pending.pop()
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds: nobody holds the removed file
            return fd
        return real(self)

    monkeypatch.setattr(FileLock, "_lock_file", lock_the_old_file_first)
    second = FileLock(path).acquire()
    assert json.load(open(path))["pid"] == os.getpid() and not pending  # it locked the file now at the path
    with pytest.raises(LockError, match="is held by pid"):
        FileLock(path).acquire()
    second.release()
    assert not os.path.exists(path)
