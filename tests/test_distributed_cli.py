"""``torchrun --nproc_per_node=2 -m flatarch search --sync-bn`` on CPUs (gloo) equals ``flatarch search``
with the same global batch and seed; rank 0 alone prints and writes; the checkpoint does not resume on
another number of ranks; bad input is one line per rank, no traceback."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

from flatarch.cli import main

TINY = ["--subset", "32", "--batch-size", "8", "--channels", "4", "--cells", "1", "--epochs", "2", "--no-progress",
        "--no-plot", "--dtype", "float64", "--rho", "0.5", "--early-stop", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args, nproc=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "flatarch", *args]
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)


def log(folder):
    with open(os.path.join(folder, "search.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_torchrun_search_equals_one_device_and_rank_0_alone_prints(tmp_path, capsys):
    parallel, single = str(tmp_path / "parallel"), str(tmp_path / "single")
    done = torchrun("search", *TINY, "--sync-bn", "--out", parallel)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(["search", *TINY, "--out", single]) == 0
    assert done.stdout.count("epoch 2/2  train") == 1 and done.stdout.count("genotype:") == 1
    for a, b in zip(log(parallel), log(single), strict=True):
        assert a["genotype"] == b["genotype"]
        for key in ("train_loss", "val_loss"):
            assert math.isclose(a[key], b[key], rel_tol=1e-9)
        assert a["alphas"].keys() == b["alphas"].keys()
        for x, y in zip(sum(a["alphas"]["arch_alpha"], []), sum(b["alphas"]["arch_alpha"], [])):
            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    # the checkpoint of 2 ranks does not resume on one
    capsys.readouterr()
    assert main(["search", *TINY, "--sync-bn", "--out", parallel, "--resume"]) == 2
    assert "world_size: 2 -> 1" in capsys.readouterr().err


@pytest.mark.parametrize("world, local, stop, launcher", [
    ("2", "2", KeyboardInterrupt(), "torchrun --nproc_per_node=2 -m flatarch"),
    ("16", "8", OSError("No space left on device"), "torchrun --nnodes=2 --nproc_per_node=8 ... -m flatarch"),
])
def test_a_stopped_search_under_torchrun_says_how_to_resume_it_on_as_many_ranks(world, local, stop, launcher,
                                                                                  tmp_path, monkeypatch, capsys):
    """``flatarch search --out X --resume`` alone would be refused: the checkpoint resumes on its number of ranks."""
    from flatarch.reference_spaces import engine

    out = str(tmp_path / "run")

    def stopped(**settings):  # after seed 1's first checkpoint (before it, the hint asks for the whole command)
        os.makedirs(os.path.join(out, "seed-1"))
        open(os.path.join(out, "seed-1", "checkpoint.pt"), "wb").close()
        raise stop

    monkeypatch.setattr(engine, "search", stopped)
    monkeypatch.setenv("WORLD_SIZE", world)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert main(["search", "--seeds", "1", "2", "--out", out]) in (1, 130)
    hint = f"continue with: {launcher} search --out {out} --seeds 1 2 --resume"
    assert capsys.readouterr().err.rstrip().endswith(hint)


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_ranks_is_refused_in_one_line(tmp_path):
    done = torchrun("search", *TINY, "--batch-size", "7", "--out", str(tmp_path / "run"))
    # torchrun reports the failed ranks with a traceback of its own; none comes from flatarch
    assert done.returncode != 0 and not re.search(r'File ".*(flatarch|reference_spaces)', done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("flatarch search: error:")]
    assert lines and all("--batch-size 7 is the global batch" in line for line in lines)
    assert not os.path.exists(tmp_path / "run")
