"""Every result says where it came from: the ``provenance`` object of result.json, report.json,
summary.json and the sweep report; ``flatarch --version``."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

import flatarch
from flatarch import provenance as P
from flatarch.cli import main

KEYS = {"flatarch", "torch", "device", "argv", "host", "threads", "git_commit", "git_dirty"}
TINY = ["--subset", "48", "--batch-size", "8", "--channels", "4", "--cells", "1", "--epochs", "1", "--no-plot"]


def test_the_provenance_object_of_a_cpu_run():
    record = P.provenance("cpu", argv=["flatarch", "search"])
    assert set(record) == KEYS  # no cuda/cudnn keys without a GPU
    assert record["device"] == "cpu" and record["argv"] == ["flatarch", "search"]
    assert record["flatarch"] == flatarch.__version__ and record["torch"] == torch.__version__
    assert record["threads"] == torch.get_num_threads()
    assert record["git_commit"] is None or len(record["git_commit"]) == 40


def test_git_commit_is_null_outside_a_checkout(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    P.git_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", no_git)
    try:
        assert P.git_commit() is None
    finally:
        P.git_commit.cache_clear()
    monkeypatch.undo()
    checkout = subprocess.run(["git", "-C", P.__file__.rsplit("/", 1)[0], "rev-parse", "HEAD"], capture_output=True,
                              text=True)
    assert P.git_commit() == (checkout.stdout.strip() if checkout.returncode == 0 else None)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_is_flatarch_s_not_that_of_a_repository_around_an_installed_copy(tmp_path):
    """flatarch installed in a project's .venv: git found the project's repository and its commit
    was recorded as flatarch's."""
    project = tmp_path / "project"
    installed = project / ".venv" / "lib" / "site-packages" / "flatarch"
    installed.mkdir(parents=True)
    shutil.copy(P.__file__, installed / "provenance.py")

    def git(*args):
        return subprocess.run(["git", "-C", str(project), "-c", "user.name=u", "-c", "user.email=u@h", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (project / "train.py").write_text("")
    git("add", "train.py")
    git("commit", "-qm", "the project")
    assert P.git_commit.__wrapped__(str(installed)) is None
    git("add", "-f", ".venv")  # flatarch's files tracked in that repository: its commit pins them
    git("commit", "-qm", "vendored")
    assert P.git_commit.__wrapped__(str(installed)) == git("rev-parse", "HEAD")
    assert P.git_dirty.__wrapped__(str(installed)) is False
    (installed / "provenance.py").write_text("# changed after the commit\n")
    (project / "notes.txt").write_text("untracked files do not change the code that ran")
    assert P.git_dirty.__wrapped__(str(installed)) is True


@pytest.mark.cuda
def test_a_gpu_run_names_the_card_and_the_cuda_versions():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    record = P.provenance("cuda")
    assert record["device"] == f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    assert record["cuda"] == torch.version.cuda and record["cudnn"] == torch.backends.cudnn.version()


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"flatarch {flatarch.__version__} (torch {torch.__version__})"


def test_result_and_summary_record_provenance(tmp_path, capsys):
    assert main(["search", *TINY, "--out", str(tmp_path / "one")]) == 0
    result = json.loads((tmp_path / "one" / "result.json").read_text())
    assert set(result["provenance"]) == KEYS and result["provenance"]["device"] == "cpu"
    assert result["provenance"]["argv"] == sys.argv  # the command line (here pytest's)
    assert main(["search", *TINY, "--seeds", "1", "2", "--out", str(tmp_path / "many")]) == 0
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    seed = json.loads((tmp_path / "many" / "seed-1" / "result.json").read_text())
    assert summary["provenance"] == seed["provenance"] and summary["provenance"]["device"] == "cpu"


def test_training_report_records_provenance(tmp_path):
    from flatarch.reference_spaces.darts.train import TrainConfig, train_genotype

    out = tmp_path / "train"
    config = TrainConfig(epochs=1, channels=4, cells_per_stage=1, batch_size=64, loader_workers=0)
    train_genotype("DARTS_V2", "digits", config=config, device="cpu", out_dir=str(out), log=None)
    report = json.loads((out / "report.json").read_text())
    assert set(report["provenance"]) == KEYS and report["provenance"]["device"] == "cpu"
