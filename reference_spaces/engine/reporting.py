"""What a search reports, as the A2M authors' code does (AsquaredM ``train_search.py`` L241-324).

Every epoch: the genotype read *before* the epoch's training (``genotype_start``) and after it
(``genotype``), the supernet's training loss and accuracy (weight steps, train mode), its loss and
accuracy on the whole validation split (eval mode, after the epoch's training), the means of the
ArchOptimizer's step figures (:class:`~flatarch.StepInfo`) and, where the space knows them, the
benchmark accuracies of ``genotype``.

Selection (``--select``): ``best-val-loss`` (the paper's protocol) reports the ``genotype_start``
of the epoch with the lowest validation loss, so the genotype lags the weights that reached that
loss by one epoch, exactly as the authors' code; ``final`` reports the last epoch's ``genotype``;
DARTS-PT reports its projection's genotype (``projection``). Early stopping (``--early-stop N``):
the search ends once more than ``N`` epochs have passed since the best one (the authors'
``epoch - best_epoch > 10``).

Divergence: an epoch whose training or validation loss is NaN or infinite is never the best one
and never selected, and starts no patience count (the authors' ``valid_obj < best_loss`` is false
for NaN, so their best stays where it was; with no finite epoch yet, patience counts from the
start). A search with such an epoch has *diverged* from the first one (:func:`diverged_epoch`),
whatever came after it; :mod:`.loop` then reports the selected epoch among the finite ones and
says so, or fails when there is none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from flatarch.step_info import StepInfo

#: the StepInfo figures averaged over an epoch, in this order
STEP_FIGURES = ("loss", "perturbed_loss", "sharpness", "grad_norm", "evaluations")


class StepStats:
    """Means over an epoch of every :class:`~flatarch.StepInfo` figure over the steps taken, with
    the counts of steps taken and skipped, summed on the device: no host synchronisation until
    :meth:`means`, also when ``info.skipped`` is a device tensor (an update with ``deferred_check``)."""

    def __init__(self, device: torch.device):
        # the figures, then [steps taken, steps skipped]
        self.sums = torch.zeros(len(STEP_FIGURES) + 2, dtype=torch.float64, device=device)
        self._skipped_row = torch.zeros_like(self.sums)
        self._skipped_row[-1] = 1.0

    def add(self, info: StepInfo) -> None:
        if isinstance(info.skipped, torch.Tensor):
            self.sums += torch.where(info.skipped.to(self.sums.device), self._skipped_row, self._taken(info))
        else:
            self.sums += self._skipped_row if info.skipped else self._taken(info)

    def _taken(self, info: StepInfo) -> torch.Tensor:
        values = [info.loss, info.perturbed_loss, info.sharpness, info.grad_norm]
        return torch.stack([v.detach().to(self.sums) for v in values] +
                           [self.sums.new_full((), float(info.evaluations)), self.sums.new_ones(()),
                            self.sums.new_zeros(())])

    def means(self) -> dict[str, float | int]:
        *sums, steps, skipped = self.sums.tolist()
        means = [s / steps for s in sums] if steps else [float("nan")] * len(STEP_FIGURES)
        return {**dict(zip(STEP_FIGURES, means)), "steps": int(steps), "skipped": int(skipped)}


def finite(record: dict[str, Any]) -> bool:
    """Whether an epoch's training and validation losses are finite numbers."""
    return all(math.isfinite(record[key]) for key in ("train_loss", "val_loss"))


def best_record(history: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The finite epoch record with the lowest validation loss (the first of equals), or ``None``."""
    best = None
    for record in history:
        if finite(record) and (best is None or record["val_loss"] < best["val_loss"]):
            best = record
    return best


def should_stop(history: Sequence[dict[str, Any]], patience: int) -> bool:
    """More than ``patience`` epochs since the best one, or since the start while no epoch is finite
    (``patience`` 0: never)."""
    if not patience or not history:
        return False
    best = best_record(history)
    return history[-1]["epoch"] - (best["epoch"] if best else 0) > patience


def diverged_epoch(history: Sequence[dict[str, Any]]) -> int | None:
    """The first epoch whose losses are not finite, or ``None``."""
    return next((record["epoch"] for record in history if not finite(record)), None)


def selected(history: Sequence[dict[str, Any]], selection: str) -> tuple[Any, int] | None:
    """``(genotype JSON, epoch)`` that ``selection`` reports, never a non-finite epoch's: ``final``
    and ``projection`` fall back to the last finite epoch; ``None`` when no epoch is finite."""
    if selection in ("final", "projection"):
        last = next((r for r in reversed(history) if finite(r)), None)
        return None if last is None else (last["genotype"], last["epoch"])
    best = best_record([r for r in history if r.get("phase", "search") == "search"])
    return None if best is None else (best["genotype_start"], best["epoch"])


def describe_selection(selection: str, epoch: int, history: Sequence[dict[str, Any]]) -> str:
    if selection == "final":
        what = "the last epoch" if epoch == history[-1]["epoch"] else "the last epoch with finite losses"
        return f"final: the genotype after {what} ({epoch})"
    if selection == "projection":
        return f"projection: DARTS-PT's projected genotype after its tuning (epoch {epoch})"
    loss = next(r["val_loss"] for r in history if r["epoch"] == epoch)
    return f"best-val-loss: the genotype at the start of epoch {epoch}, whose validation loss {_loss(loss)} was lowest"


def _loss(value: float) -> str:
    """A loss to 4 decimals, or to 4 significant digits once it is large (a diverging run's 5e27)."""
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One line per epoch for the terminal or a log file."""
    parts = [f"epoch {record['epoch']}/{epochs}",
             f"train {_loss(record['train_loss'])} {record['train_acc']:.2f}%",
             f"val {_loss(record['val_loss'])} {record['val_acc']:.2f}%"]
    step = record.get("step") or {}
    if step.get("steps") and step.get("evaluations", 2) > 1:  # first-order evaluates no perturbed point
        parts.append(f"sharpness {step['sharpness']:.2e}")
    if "decided_edges" in record:
        parts.append(f"entropy {record['alpha_entropy']:.3f} margin {record['alpha_margin']:.3g} decided "
                     f"{record['decided_edges']}/{record['edges']}" + (" (undecided)" if record["undecided"] else ""))
    if "hessian" in record:
        parts.append(f"hessian eigenvalue {record['hessian']['eigenvalue']:.3g}")
    if record.get("benchmark"):
        parts.append(" ".join(f"{k} {v:.2f}" for k, v in record["benchmark"].items()))
    parts.append(f"{record['seconds']:.1f} s")
    genotype = record["genotype"]
    if isinstance(genotype, str):
        parts.append(genotype)
    return "  ".join(parts)


def projection_lines(records: Sequence[dict[str, Any]], nodes: dict[str, Sequence[Sequence[int]]],
                     edge_names: dict[str, Sequence[str]]) -> list[str]:
    """DARTS-PT's projections of one round, one line per edge or node: ``operation: normal cell,
    edge 3<-1 keeps sep_conv_3x3``; ``topology: normal cell, node 3 keeps 3<-0, 3<-2; dropped 3<-1``."""
    def cell(group: str) -> str:  # NAS-Bench-201's one group is named "cell": "cell", not "cell cell"
        return group if group.endswith("cell") else f"{group} cell"

    lines, dropped = [], {}
    for r in records:
        if r["kind"] == "op":
            lines.append(f"operation: {cell(r['cell'])}, edge {r['edge_name']} keeps {r['chosen']}")
        else:
            dropped.setdefault((r["cell"], r["node"]), []).append(r["edge"])
    for (group, node), gone in dropped.items():
        names = edge_names[group]
        kept = [names[e] for e in nodes[group][node] if e not in gone]
        target = names[gone[0]].split("<-")[0]
        lines.append(f"topology: {cell(group)}, node {target} keeps {', '.join(kept)}; dropped "
                     f"{', '.join(names[e] for e in gone)}")
    return lines
