"""Experiment trackers (``--log-to tensorboard,wandb,mlflow``): mirrors of ``search.jsonl``.

Each tracker gets the epoch records ``search.jsonl`` gets, as they are written (DARTS-PT's
projection records stay in ``search.jsonl`` alone), and the run's settings; ``search.jsonl`` stays
the source of truth (a tracker that fails mid-run is switched off with one warning, the search
goes on). Per epoch record: every number as a scalar at step
``epoch`` (``train_loss``, ``val_acc``, ``alpha_entropy``, ``step/sharpness``, ``hessian/eigenvalue``,
``benchmark/cifar10``, ...), the op probabilities ``softmax(alpha)`` of each group as a histogram
(TensorBoard, W&B; MLflow: a JSON artifact per epoch) and the genotype as text. At the end: the
reported genotype, its accuracies and profile.

Where they write: TensorBoard ``OUT/tensorboard/``; W&B offline or online as the ``WANDB_*``
environment says (``WANDB_MODE=offline``), files under ``OUT/wandb/``, project ``$WANDB_PROJECT``
or ``flatarch``; MLflow the tracking URI of ``$MLFLOW_TRACKING_URI``, else a file store in
``OUT/mlruns`` (MLflow 3 keeps its file store in maintenance mode: flatarch then sets
``MLFLOW_ALLOW_FILE_STORE=true`` for its own process), experiment ``$MLFLOW_EXPERIMENT_NAME`` or
``flatarch``, through a client of its own (MLflow's global tracking URI and active run, which a
notebook or the next search in the process would share, are left alone). The packages are
optional extras: ``pip install "flatarch[tensorboard]"`` (or ``[wandb]``, ``[mlflow]``).

One search is one tracker run, named by its folder (:func:`run_name`; the seeds of ``--seeds`` and
of a sweep's grid point grouped by their parent folder, :func:`run_group`); a resumed search
continues the same W&B and MLflow runs (their ids are in its checkpoint), and a stopped or failed
one ends them as killed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .config import SearchError
from .plot import softmax

#: the folders the trackers write into a run's folder (moved aside with it by --restart)
TRACKER_FILES = ("tensorboard", "wandb", "mlruns")


class Tracker(Protocol):
    """What the search hands a tracker: its settings once (``__init__(out, config, run_id)``, the
    id of the run to continue or ``None``), each record, the result at the end, or ``close`` when
    the search stops without one. ``run_id``: what a resumed search continues (``None``: nothing).
    A record is one epoch's line of ``search.jsonl``."""

    run_id: str | None

    def log_record(self, record: Mapping[str, Any]) -> None: ...

    def finish(self, result: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


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
        module, extra = TRACKERS[name].module, TRACKERS[name].extra
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
    """Per op-choice tensor of the record (``[edges, ops]``), ``softmax`` over its last axis (the op
    probabilities). PC-DARTS' 1-D edge weights are left out: the network normalises them per node,
    not over the whole vector, so a softmax of all of them would be no distribution it uses."""
    out = {}
    for name, values in (record.get("alphas") or {}).items():
        a = np.asarray(values, dtype=np.float64)
        if a.ndim >= 2:
            out[name] = softmax(a)
    return out


def _text(genotype: Any) -> str:
    return genotype if isinstance(genotype, str) else json.dumps(genotype)


def run_name(out: str) -> str:
    """A search's tracker run name: its folder, relative to the working directory when under it
    (``runs/a2/seed-1``), else absolute; unique where the folder's own name (``seed-1``) is not."""
    path = os.path.abspath(out)
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def run_group(out: str) -> str | None:
    """The seeds' common folder (:func:`run_name`) of a seed's search (``.../seed-N``), else ``None``."""
    path = os.path.abspath(out)
    return run_name(os.path.dirname(path)) if re.fullmatch(r"seed--?\d+", os.path.basename(path)) else None


class TensorBoardTracker:
    module, extra = "tensorboard", "tensorboard"  # the package it needs, the extra that installs it
    run_id = None  # the event files in OUT/tensorboard are the run: a resumed search adds a file there

    def __init__(self, out: str, config: Mapping[str, Any], run_id: str | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(os.path.join(out, "tensorboard"))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```")

    def log_record(self, record: Mapping[str, Any]) -> None:
        step = record["epoch"]
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, step)
        for name, p in probabilities(record).items():
            self.writer.add_histogram(f"op_probability/{name}", p, step)
        self.writer.add_text("genotype", _text(record["genotype"]), step)
        self.writer.flush()

    def finish(self, result: Mapping[str, Any]) -> None:
        self.writer.add_text("result/genotype", _text(result["genotype"]))
        for key, value in scalars(_result_figures(result)).items():
            self.writer.add_scalar(key, value)
        self.close()

    def close(self) -> None:
        self.writer.close()


def _result_figures(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"result": {k: result.get(k) for k in ("benchmark", "profile")}}


class WandbTracker:
    module, extra = "wandb", "wandb"

    def __init__(self, out: str, config: Mapping[str, Any], run_id: str | None = None):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "flatarch"), dir=out, name=run_name(out),
                              group=run_group(out), config=dict(config), reinit="create_new", id=run_id,
                              resume="allow" if run_id else None)
        self.run_id = self.run.id

    def log_record(self, record: Mapping[str, Any]) -> None:
        data: dict[str, Any] = dict(scalars(record))
        for name, p in probabilities(record).items():
            data[f"op_probability/{name}"] = self.wandb.Histogram(p.ravel())
        data["genotype"] = _text(record["genotype"])
        self.run.log(data, step=record["epoch"])

    def finish(self, result: Mapping[str, Any]) -> None:
        self.run.summary["result/genotype"] = _text(result["genotype"])
        for key, value in scalars(_result_figures(result)).items():
            self.run.summary[key] = value
        self.run.finish()

    def close(self) -> None:
        self.run.finish(exit_code=1)


class MLflowTracker:
    module, extra = "mlflow", "mlflow"

    def __init__(self, out: str, config: Mapping[str, Any], run_id: str | None = None):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # see the module docstring
            uri = "file:" + os.path.abspath(os.path.join(out, "mlruns"))
        self.client = client = MlflowClient(tracking_uri=uri)
        if run_id:
            client.update_run(run_id, status="RUNNING")
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "flatarch")
            experiment = client.get_experiment_by_name(name)
            group = run_group(out)
            run = client.create_run(experiment.experiment_id if experiment else client.create_experiment(name),
                                    run_name=run_name(out), tags={"group": group} if group else None)
            run_id = run.info.run_id
            client.log_batch(run_id, params=[Param(k, v if isinstance(v, str) else json.dumps(v))
                                             for k, v in config.items()])
        self.run_id = run_id

    def _metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k.replace("-", "_"), v, now, step)
                                                    for k, v in values.items()])

    def log_record(self, record: Mapping[str, Any]) -> None:
        step = record["epoch"]
        self._metrics(scalars(record), step)
        self.client.log_dict(self.run_id, {k: p.tolist() for k, p in probabilities(record).items()},
                             f"op_probability/epoch-{step:04d}.json")
        self.client.set_tag(self.run_id, "genotype", _text(record["genotype"]))

    def finish(self, result: Mapping[str, Any]) -> None:
        self.client.set_tag(self.run_id, "result.genotype", _text(result["genotype"]))
        self._metrics(scalars(_result_figures(result)))
        self.client.set_terminated(self.run_id)

    def close(self) -> None:
        self.client.set_terminated(self.run_id, status="KILLED")


#: ``--log-to`` name -> its tracker
TRACKERS: dict[str, type] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MLflowTracker}


class Trackers:
    """The run's trackers; a call that fails switches that tracker off with one warning.
    ``run_ids``: per tracker, the run a resumed search continues (:meth:`ids` of the first command)."""

    def __init__(self, names: Sequence[str], out: str | None, config: Mapping[str, Any],
                 run_ids: Mapping[str, str] | None = None):
        self.active: dict[str, Any] = {}
        run_ids = run_ids or {}
        for name in names:
            self._call(name, lambda name=name: self.active.__setitem__(
                name, TRACKERS[name](out, config, run_ids.get(name))))

    def ids(self) -> dict[str, str]:
        """Per tracker, the id of its run, for a resumed search to continue."""
        return {name: tracker.run_id for name, tracker in self.active.items() if tracker.run_id}

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

    def close(self) -> None:
        """End the runs of a search that stopped without a result (Ctrl-C, a failure); after
        :meth:`finish`, nothing."""
        for name, tracker in list(self.active.items()):
            self._call(name, tracker.close)
        self.active.clear()
