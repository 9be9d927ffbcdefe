"""Experiment trackers (``--log-to tensorboard,wandb,mlflow``): mirrors of ``search.jsonl``.

Each tracker gets exactly the records ``search.jsonl`` gets, as they are written, and the run's
settings; ``search.jsonl`` stays the source of truth (a tracker that fails mid-run is switched off
with one warning, the search goes on). Per epoch record: every number as a scalar at step
``epoch`` (``train_loss``, ``val_acc``, ``alpha_entropy``, ``step/sharpness``, ``hessian/eigenvalue``,
``benchmark/cifar10``, ...), the op probabilities ``softmax(alpha)`` of each group as a histogram
(TensorBoard, W&B; MLflow: a JSON artifact per epoch) and the genotype as text. At the end: the
reported genotype, its accuracies and profile.

Where they write: TensorBoard ``OUT/tensorboard/``; W&B offline or online as the ``WANDB_*``
environment says (``WANDB_MODE=offline``), files under ``OUT/wandb/``, project ``$WANDB_PROJECT``
or ``flatarch``; MLflow the tracking URI of ``$MLFLOW_TRACKING_URI``, else a file store in
``OUT/mlruns`` (MLflow 3 keeps its file store in maintenance mode: flatarch then sets
``MLFLOW_ALLOW_FILE_STORE=true`` for its own process), experiment ``$MLFLOW_EXPERIMENT_NAME`` or
``flatarch``. The packages are optional extras: ``pip install "flatarch[tensorboard]"`` (or
``[wandb]``, ``[mlflow]``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .config import SearchError

#: ``--log-to`` name -> (the module it needs, the extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}
#: the folders the trackers write into a run's folder (moved aside with it by --restart)
TRACKER_FILES = ("tensorboard", "wandb", "mlruns")


class Tracker(Protocol):
    """What the search hands a tracker: its settings once, each record, the result at the end."""

    def log_record(self, record: Mapping[str, Any]) -> None: ...

    def finish(self, result: Mapping[str, Any]) -> None: ...


def parse(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"tensorboard,wandb"`` (or a list) -> ``("tensorboard", "wandb")``, each name checked."""
    if not text:
        return ()
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    for name in names:
        if name not in TRACKERS:
            raise SearchError(f"--log-to {name!r} is not a tracker; choose from: {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


def check_installed(names: Sequence[str]) -> None:
    """Refuse, before anything runs, a tracker whose package is not installed."""
    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise SearchError(f"--log-to {name} needs the {module} package; install it with "
                              f"pip install \"flatarch[{extra}]\", or drop {name} from --log-to")


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number of an epoch record, nested keys joined by ``/`` (``step/sharpness``)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[prefix] = float(value)

    for key, value in record.items():
        if key not in ("epoch", "alphas"):
            walk(key, value)
    return out


def probabilities(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per architecture tensor of the record, ``softmax`` over its last axis (the op probabilities)."""
    out = {}
    for name, values in (record.get("alphas") or {}).items():
        a = np.asarray(values, dtype=np.float64)
        z = np.exp(a - a.max(axis=-1, keepdims=True))
        out[name] = z / z.sum(axis=-1, keepdims=True)
    return out


def _text(genotype: Any) -> str:
    return genotype if isinstance(genotype, str) else json.dumps(genotype)


class TensorBoardTracker:
    def __init__(self, out: str, config: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(out, "tensorboard"))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```")

    def log_record(self, record: Mapping[str, Any]) -> None:
        if "epoch" not in record:
            return  # DARTS-PT's projection lines: in search.jsonl
        step = record["epoch"]
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, step)
        for name, p in probabilities(record).items():
            self.writer.add_histogram(f"op_probability/{name}", p, step)
        self.writer.add_text("genotype", _text(record["genotype"]), step)
        self.writer.flush()

    def finish(self, result: Mapping[str, Any]) -> None:
        self.writer.add_text("result/genotype", _text(result["genotype"]))
        for key, value in scalars({"result": {k: result.get(k) for k in ("benchmark", "profile")}}).items():
            self.writer.add_scalar(key, value)
        self.writer.close()


class WandbTracker:
    def __init__(self, out: str, config: Mapping[str, Any]):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "flatarch"), dir=out,
                              name=os.path.basename(os.path.abspath(out)), config=dict(config), reinit="create_new")

    def log_record(self, record: Mapping[str, Any]) -> None:
        if "epoch" not in record:
            return
        data: dict[str, Any] = dict(scalars(record))
        for name, p in probabilities(record).items():
            data[f"op_probability/{name}"] = self.wandb.Histogram(p.ravel())
        data["genotype"] = _text(record["genotype"])
        self.run.log(data, step=record["epoch"])

    def finish(self, result: Mapping[str, Any]) -> None:
        self.run.summary["result/genotype"] = _text(result["genotype"])
        for key, value in scalars({"result": {k: result.get(k) for k in ("benchmark", "profile")}}).items():
            self.run.summary[key] = value
        self.run.finish()


class MLflowTracker:
    def __init__(self, out: str, config: Mapping[str, Any]):
        import mlflow

        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
            mlflow.set_tracking_uri("file:" + os.path.abspath(os.path.join(out, "mlruns")))
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "flatarch"))
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=os.path.basename(os.path.abspath(out)))
        mlflow.log_params({k: json.dumps(v) if not isinstance(v, str) else v for k, v in config.items()})

    def log_record(self, record: Mapping[str, Any]) -> None:
        if "epoch" not in record:
            return
        step = record["epoch"]
        self.mlflow.log_metrics({k.replace("-", "_"): v for k, v in scalars(record).items()}, step=step)
        self.mlflow.log_dict({k: p.tolist() for k, p in probabilities(record).items()},
                             f"op_probability/epoch-{step:04d}.json")
        self.mlflow.set_tag("genotype", _text(record["genotype"]))

    def finish(self, result: Mapping[str, Any]) -> None:
        self.mlflow.set_tag("result.genotype", _text(result["genotype"]))
        metrics = scalars({"result": {k: result.get(k) for k in ("benchmark", "profile")}})
        self.mlflow.log_metrics({k.replace("-", "_"): v for k, v in metrics.items()})
        self.mlflow.end_run()


_CLASSES = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MLflowTracker}


class Trackers:
    """The run's trackers; a call that fails switches that tracker off with one warning."""

    def __init__(self, names: Sequence[str], out: str | None, config: Mapping[str, Any]):
        self.active: dict[str, Any] = {}
        for name in names:
            self._call(name, lambda name=name: self.active.__setitem__(name, _CLASSES[name](out, config)))

    def _call(self, name: str, call) -> None:
        try:
            call()
        except Exception as exc:  # a tracker must never stop the search: search.jsonl has it all
            self.active.pop(name, None)
            print(f"warning: --log-to {name} stopped logging ({type(exc).__name__}: {exc}); search.jsonl "
                  "has every record", file=sys.stderr, flush=True)

    def log_record(self, record: Mapping[str, Any]) -> None:
        for name, tracker in list(self.active.items()):
            self._call(name, lambda tracker=tracker: tracker.log_record(record))

    def finish(self, result: Mapping[str, Any]) -> None:
        for name, tracker in list(self.active.items()):
            self._call(name, lambda tracker=tracker: tracker.finish(result))
        self.active.clear()
