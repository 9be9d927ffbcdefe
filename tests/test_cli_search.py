"""``flatarch search`` command line."""

import json
import os
import re

import pytest
from interrupts import interrupt_at

from flatarch.cli import build_parser, main

TINY = ["--subset", "48", "--batch-size", "8", "--channels", "4", "--cells", "1", "--epochs", "1",
        "--no-progress", "--no-plot", "--optimizer", "first-order"]


def _search_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["search"]


def test_help_explains_every_flag_with_its_default():
    p = _search_help()
    for action in p._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        assert "default" in action.help, f"{action.option_strings} does not state its default"
    text = p.format_help()
    for flag in ("--space", "--method", "--optimizer", "--rho", "--eps", "--epochs", "--batch-size", "--seed",
                 "--seeds", "--workers", "--dataset", "--data-dir", "--download", "--out", "--resume", "--device",
                 "--table", "--amp", "--val-augment"):
        assert flag in text


def test_tiny_search_prints_genotype_and_table(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["search", *TINY, "--out", out]) == 0
    text = capsys.readouterr().out
    genotype = re.search(r"genotype: (\S+)", text).group(1)
    assert genotype.count("~") == 6
    assert "epoch 1/1  train" in text and "ms per iteration" in text and "selected: best-val-loss" in text
    assert json.load(open(os.path.join(out, "result.json")))["genotype"] == genotype
    # same folder again without --resume: refused, nothing overwritten
    before = os.path.getmtime(os.path.join(out, "result.json"))
    assert main(["search", *TINY, "--out", out]) == 2
    assert "--resume" in capsys.readouterr().err
    assert os.path.getmtime(os.path.join(out, "result.json")) == before


def test_seeds_print_mean_and_std(tmp_path, capsys):
    assert main(["search", *TINY, "--seeds", "1", "2", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "seed 1:" in text and "seed 2:" in text and "mean ± std" in text and "no best-seed selection" in text


@pytest.mark.parametrize("dataset,expect", [("cifar10", "cifar-10-batches-py"),
                                            ("imagenet16-120", "train_data_batch_1")])
def test_missing_data_dir_exits_2_without_traceback(tmp_path, capsys, dataset, expect):
    code = main(["search", "--dataset", dataset, "--data-dir", str(tmp_path / "nothing"), "--no-progress",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert expect in err and "--data-dir" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "run")


def test_a_search_stopped_in_its_first_epoch_says_how_to_continue_and_a_bare_resume_is_refused(tmp_path, monkeypatch,
                                                                                              capsys):
    """Stopped before its first epoch ended, a search has no checkpoint: the hint asks for the same
    command with --resume, and ``--out X --resume`` alone (with or without --seeds), which has no
    settings to continue with (it ran the demo's defaults in X), is refused."""
    from flatarch.reference_spaces.engine import loop

    out = str(tmp_path / "run")
    with monkeypatch.context() as m:
        m.setattr(loop._Searcher, "run_epoch", lambda self, epoch: (_ for _ in ()).throw(KeyboardInterrupt))
        assert main(["search", *TINY, "--out", out]) == 130
    assert "nothing records the settings yet; continue with: the same command plus --out " \
           f"{out} --resume" in capsys.readouterr().err
    before = os.listdir(out)
    for seeds in ([], ["--seeds", "1", "2"]):
        assert main(["search", "--out", out, "--resume", "--no-progress", *seeds]) == 2
        err = capsys.readouterr().err
        assert "yet (the search stopped before its first epoch ended" in err and "run the original command again" \
            in err and err.count("\n") == 1, err
    assert os.listdir(out) == before
    assert main(["search", *TINY, "--out", out, "--resume"]) == 0


def test_resume_needs_out(capsys):
    assert main(["search", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_cli_prints_benchmark_accuracy_with_table(nats_bench_csv, tmp_path, capsys):
    assert main(["search", *TINY, "--table", nats_bench_csv, "--out", str(tmp_path / "r")]) == 0
    text = capsys.readouterr().out
    assert re.search(r"cifar10\s+\d+\.\d\d\s+\(94\.37 / 54\.30\)", text), text
    assert re.search(r"imagenet16-120\s+\d+\.\d\d\s+\(47\.31 / 16\.32\)", text), text


def test_cli_bad_table_exits_2(tmp_path, capsys):
    assert main(["search", *TINY, "--table", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "nope.csv" in err and "Traceback" not in err


def test_resume_takes_every_setting_from_the_checkpoint(tmp_path, monkeypatch, capsys):
    """Interrupted, then ``flatarch search --out X --resume`` alone: the settings, the benchmark table
    and --no-plot come from the checkpoint; the result is the uninterrupted run's. An option given
    that differs is refused by name; a larger --epochs extends the run."""
    from sweep_files import synthetic_table

    options = [*TINY, "--epochs", "2", "--early-stop", "0", "--lr", "0.05", "--seed", "4", "--table",
               synthetic_table(str(tmp_path))]
    straight, out = str(tmp_path / "straight"), str(tmp_path / "run")
    assert main(["search", *options, "--out", straight]) == 0
    with monkeypatch.context() as m:
        interrupt_at(m, 1)  # in epoch 2
        assert main(["search", *options, "--out", out]) == 130
    assert f"interrupted; continue with: flatarch search --out {out} --resume" in capsys.readouterr().err
    assert main(["search", "--out", out, "--resume", "--lr", "0.1", "--no-progress"]) == 2
    assert "(lr: 0.05 -> 0.1)" in capsys.readouterr().err
    assert main(["search", "--out", out, "--resume", "--no-progress"]) == 0
    assert f"--resume: continuing the search in {out} after epoch 1 of 2" in capsys.readouterr().err
    resumed, whole = (json.load(open(os.path.join(folder, "result.json"))) for folder in (out, straight))
    assert _alphas(out) == _alphas(straight) and len(_alphas(out)) == 2
    assert resumed["benchmark"] == whole["benchmark"] and resumed["config"]["seed"] == 4
    assert not os.path.exists(os.path.join(out, "search.png"))  # --no-plot, as the run was started
    assert main(["search", "--out", out, "--resume", "--epochs", "3", "--no-progress"]) == 0
    assert len(_alphas(out)) == 3 and json.load(open(os.path.join(out, "result.json")))["epochs_run"] == 3


def _alphas(folder):
    return [json.loads(line)["alphas"] for line in open(os.path.join(folder, "search.jsonl"))]


def test_sigterm_stops_like_ctrl_c(tmp_path):
    """``kill`` (SIGTERM) of a running search: the Ctrl-C hint, exit 143, a checkpoint to resume from."""
    import signal
    import subprocess
    import sys
    import time

    out = str(tmp_path / "run")
    command = [sys.executable, "-m", "flatarch", "search", *TINY, "--epochs", "40", "--early-stop", "0", "--out", out]
    search = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    end = time.monotonic() + 120
    while not os.path.exists(os.path.join(out, "checkpoint.pt")):
        assert time.monotonic() < end and search.poll() is None, "the search did not write its first checkpoint"
        time.sleep(0.05)
    search.send_signal(signal.SIGTERM)
    _, err = search.communicate(timeout=60)
    assert search.returncode == 143, err
    assert f"interrupted; continue with: flatarch search --out {out} --resume" in err and "Traceback" not in err
    from flatarch.reference_spaces.run_folder import read_checkpoint

    assert 1 <= read_checkpoint(os.path.join(out, "checkpoint.pt"))["epoch"] < 40  # what --resume continues from
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # the write it was in was completed or undone


def test_a_full_disk_fails_in_one_line_and_loses_nothing(tmp_path, monkeypatch, capsys):
    import errno

    import torch

    out = str(tmp_path / "run")
    real_save = torch.save

    def full_disk_in_epoch_2(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk_in_epoch_2)
        assert main(["search", *TINY, "--epochs", "2", "--early-stop", "0", "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"flatarch search: error: [Errno 28] No space left on device; continue with: "
                           f"flatarch search --out {out} --resume")
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "search.jsonl"]  # epoch 1 committed, no temporary left
    assert main(["search", "--out", out, "--resume", "--no-progress"]) == 0
    assert json.load(open(os.path.join(out, "result.json")))["epochs_run"] == 2
