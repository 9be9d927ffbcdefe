"""``--log-to tensorboard,wandb,mlflow``: each tracker against its real package, offline, read back
with that package's own reader and compared with search.jsonl (the source of truth)."""

import glob
import json
import os
import re
import struct
import time

import pytest
from flatarch.reference_spaces.engine import SearchConfig, search, trackers

from flatarch.cli import main

TINY = SearchConfig(dataset="digits", subset=48, batch_size=8, channels=4, cells_per_stage=1, epochs=2,
                    warmup_epochs=0, max_batches=2, progress=False, plot=False, seed=3)


def _records(out):
    return [json.loads(line) for line in open(os.path.join(out, "search.jsonl"))]


def test_tensorboard_event_file_holds_every_epoch_scalar_histogram_and_genotype(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "run")
    search(TINY, out=out, log_to="tensorboard")
    events = EventAccumulator(os.path.join(out, "tensorboard"), size_guidance={"tensors": 0, "histograms": 0})
    events.Reload()
    records = _records(out)
    for key in ("val_acc", "train_loss", "alpha_entropy", "alpha_margin", "step/sharpness", "benchmark/cifar10"):
        logged = events.Scalars(key)
        expected = [r[key] if "/" not in key else r[key.split("/")[0]][key.split("/")[1]] for r in records]
        assert [e.step for e in logged] == [r["epoch"] for r in records], key
        assert [e.value for e in logged] == pytest.approx(expected, rel=1e-6), key
    assert [h.step for h in events.Histograms("op_probability/arch_alpha")] == [1, 2]
    texts = {e.step: e.tensor_proto.string_val[0].decode() for e in events.Tensors("genotype/text_summary")}
    assert texts == {r["epoch"]: r["genotype"] for r in records}


def _wandb_records(path):
    """The protobuf records of a ``.wandb`` file: a 7-byte header, then the LevelDB log format
    (32 KiB blocks of ``crc32c(4) length(2) type(1) data`` chunks; 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    pos, block, pending, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _finished_wandb_records(path, seconds=60.0):
    """The records of a finished run: W&B's service process writes the file after ``run.finish()``
    returns (read at once, it can still be its 7-byte header), its ``exit`` record last."""
    deadline = time.monotonic() + seconds
    while True:
        records = _wandb_records(path)
        if any(r.HasField("exit") for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_wandb_offline_run_holds_the_settings_and_every_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = str(tmp_path / "run")
    search(TINY, out=out, log_to="wandb", rho=0.02)
    (path,) = glob.glob(os.path.join(out, "wandb", "offline-run-*", "run-*.wandb"))
    records = _finished_wandb_records(path)
    updates = [i for r in records if r.HasField("run") for i in r.run.config.update]
    updates += [i for r in records if r.HasField("config") for i in r.config.update]
    config = {i.key: json.loads(i.value_json) for i in updates}
    assert config["rho"] == 0.02 and config["optimizer"] == "a2m"
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.HasField("history")]
    history = [h for h in history if "val_acc" in h]
    records = _records(out)
    assert [(h["_step"], h["genotype"]) for h in history] == [(r["epoch"], r["genotype"]) for r in records]
    assert [h["val_acc"] for h in history] == pytest.approx([r["val_acc"] for r in records])
    assert all(h["op_probability/arch_alpha/_type"] == "histogram" and sum(h["op_probability/arch_alpha/values"]) == 30
               for h in history)  # 30 op probabilities: 6 edges x 5 ops


def test_mlflow_file_store_holds_params_metrics_and_the_result(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = str(tmp_path / "run")
    result = search(TINY, out=out, log_to="mlflow")
    client = MlflowClient("file:" + os.path.join(out, "mlruns"))
    (experiment,) = [e for e in client.search_experiments() if e.name == "flatarch"]
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "val_acc")
    records = _records(out)
    assert [m.step for m in history] == [r["epoch"] for r in records]
    assert [m.value for m in history] == pytest.approx([r["val_acc"] for r in records])
    assert run.data.params["method"] == "darts" and json.loads(run.data.params["epochs"]) == 2
    assert run.data.tags["result.genotype"] == result.genotype_json
    assert run.data.metrics["result/benchmark/cifar10"] == pytest.approx(result.benchmark["cifar10"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "op_probability")]
    assert artifacts == ["op_probability/epoch-0001.json", "op_probability/epoch-0002.json"]


def _mlflow_runs(store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient("file:" + str(store))
    (experiment,) = [e for e in client.search_experiments() if e.name == "flatarch"]
    return client, client.search_runs([experiment.experiment_id])


def test_each_seed_is_its_own_mlflow_run_in_its_own_store_named_by_its_folder(tmp_path, monkeypatch):
    """The second seed of a process used to log into the first one's store, and both runs were
    named ``seed-N`` as in every other --seeds run and sweep."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    search(TINY, seeds=[1, 2], epochs=1, out="study", log_to="mlflow")
    for seed in (1, 2):
        _, (run,) = _mlflow_runs(tmp_path / "study" / f"seed-{seed}" / "mlruns")
        assert run.info.run_name == f"study/seed-{seed}" and run.data.tags["group"] == "study"
        assert run.data.params["seed"] == str(seed) and run.info.status == "FINISHED"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # MLflow's global state left alone
    assert trackers.run_name(str(tmp_path.parent)) == str(tmp_path.parent) and trackers.run_group("a/b") is None


def test_a_resumed_search_continues_its_wandb_and_mlflow_runs(tmp_path, monkeypatch):
    from flatarch.reference_spaces.engine import loop

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    validate = loop._Searcher.validate

    def stopped_in_epoch_2(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return validate(self, epoch)

    out = str(tmp_path / "run")
    monkeypatch.setattr(loop._Searcher, "validate", stopped_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        search(TINY, out=out, log_to="wandb,mlflow")
    client, (run,) = _mlflow_runs(os.path.join(out, "mlruns"))
    assert run.info.status == "KILLED"  # not left running for ever
    monkeypatch.setattr(loop._Searcher, "validate", validate)
    search(out=out, resume=True)
    client, (resumed,) = _mlflow_runs(os.path.join(out, "mlruns"))
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    folders = sorted(glob.glob(os.path.join(out, "wandb", "offline-run-*")))
    # one W&B run id, resumed (a second folder within the same second gets a "-1" suffix)
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)(-\d+)?", os.path.basename(f))[1] for f in folders}
    assert len(folders) == 2 and len(ids) == 1


def test_op_probabilities_are_those_of_the_op_choice_tensors_only():
    record = {"alphas": {"alphas_normal": [[0.0, 1.0], [2.0, 2.0]], "betas_normal": [0.0, 1.0, 2.0]}}
    probabilities = trackers.probabilities(record)
    assert list(probabilities) == ["alphas_normal"]  # PC-DARTS' betas are normalised per node, not as one vector
    assert probabilities["alphas_normal"].sum(-1).tolist() == pytest.approx([1.0, 1.0])


def test_a_missing_tracker_package_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    out = tmp_path / "run"
    assert main(["search", "--out", str(out), "--log-to", "tensorboard,wandb", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--log-to wandb needs the wandb package; install it with pip install \"flatarch[wandb]\"" in err
    assert err.count("\n") == 1 and not out.exists()
    assert main(["search", "--out", str(out), "--log-to", "comet"]) == 2
    assert "--log-to 'comet' is not a tracker; choose from: tensorboard, wandb, mlflow" in capsys.readouterr().err
    with pytest.raises(trackers.SearchError, match="give --out"):
        search(TINY, log_to="tensorboard")


def test_a_failing_tracker_is_switched_off_and_the_search_goes_on(tmp_path, capsys, monkeypatch):
    def broken(self, record):
        raise ConnectionError("server gone")

    monkeypatch.setattr(trackers.TensorBoardTracker, "log_record", broken)
    out = str(tmp_path / "run")
    result = search(TINY, out=out, log_to="tensorboard")
    assert len(_records(out)) == 2 and result.history[-1]["epoch"] == 2
    assert capsys.readouterr().err.count("--log-to tensorboard stopped logging (ConnectionError: server gone)") == 1


def test_the_default_install_pulls_no_tracker():
    import tomllib

    project = tomllib.load(open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb"))["project"]
    heavy = ("tensorboard", "wandb", "mlflow", "ray")
    assert not [d for d in project["dependencies"] if d.startswith(heavy)]
    extras = project["optional-dependencies"]
    assert {tracker.extra for tracker in trackers.TRACKERS.values()} <= set(extras)
    assert not [d for d in extras["dev"] if d.startswith(heavy)]
    assert set(extras["test"][0].split("[")[1].rstrip("]").split(",")) >= {"dev", "ray", *trackers.TRACKERS}
