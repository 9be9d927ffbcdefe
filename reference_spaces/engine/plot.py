"""The search's PNG: the op weights of every edge over the epochs, PC-DARTS' edge weights, and the
search's curves (accuracies, losses, the update's sharpness, the benchmark accuracy of each
epoch's genotype where the space has a benchmark)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flatarch.atomic_files import atomic_save_figure

COLUMNS = 4


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _panels(history: Sequence[dict[str, Any]], labels: Mapping[str, tuple[str, Sequence[str], Sequence[str]]]):
    """``(title, [epochs, lines] values, line names)`` for every edge of every alpha tensor and one
    panel per 1-D tensor (PC-DARTS' betas, softmax-normalised per node in the network)."""
    panels = []
    for name in history[0]["alphas"]:
        stacked = np.asarray([h["alphas"][name] for h in history], dtype=np.float64)
        group, ops, edges = labels.get(name, (name, [], []))
        if stacked.ndim == 3:
            weights = _softmax(stacked)
            for e in range(weights.shape[1]):
                edge = edges[e] if e < len(edges) else str(e)
                names = list(ops) or [f"op {o}" for o in range(weights.shape[2])]
                panels.append((f"{group} {edge}", weights[:, e, :], names))
        else:
            names = list(edges) or [f"edge {e}" for e in range(stacked.shape[1])]
            panels.append((f"{name} (raw)", stacked, names))
    return panels


def _curves(axes, history: Sequence[dict[str, Any]], epochs: list[int], marker: str | None) -> None:
    acc, loss, sharp, bench = axes
    for key, label in (("train_acc", "train"), ("val_acc", "validation")):
        acc.plot(epochs, [h[key] for h in history], marker=marker, label=label)
    acc.set(title="supernet accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss.plot(epochs, [h[key] for h in history], marker=marker, label=label)
    loss.set(title="supernet loss", xlabel="epoch", ylabel="cross-entropy")
    sharp.plot(epochs, [(h.get("step") or {}).get("sharpness", float("nan")) for h in history], marker=marker)
    sharp.set(title="sharpness L(alpha+e) - L(alpha)", xlabel="epoch", ylabel="loss increase")
    datasets = list(history[-1].get("benchmark") or {})
    for d in datasets:
        bench.plot(epochs, [h["benchmark"].get(d, float("nan")) for h in history], marker=marker, label=d)
    bench.set(title="benchmark test accuracy of the genotype", xlabel="epoch", ylabel="accuracy (%)")
    bench.set_visible(bool(datasets))
    for ax in (acc, loss, sharp, bench):
        ax.title.set_fontsize(9)
        if ax is not sharp and ax.has_data():
            ax.legend(fontsize=7)


def _with_hessian_panel(fig, row, history: Sequence[dict[str, Any]], marker: str | None):
    """The curves' row split into five, the Hessian's dominant eigenvalue (``--hessian-every``) next
    to the sharpness; returns the four axes :func:`_curves` fills, then the eigenvalue's."""
    grid = row[0].get_subplotspec().get_gridspec()
    for ax in row:
        ax.remove()
    acc, loss, sharp, eigen, bench = (fig.add_subplot(cell) for cell in grid[-1, :].subgridspec(1, 5))
    measured = [h for h in history if "hessian" in h]
    eigen.plot([h["epoch"] for h in measured], [h["hessian"]["eigenvalue"] for h in measured], marker=marker or "o",
               markersize=3)
    eigen.set(title="dominant Hessian eigenvalue", xlabel="epoch", ylabel="eigenvalue")
    eigen.title.set_fontsize(9)
    eigen.sharex(acc)  # the same epochs as the other curves, also when only some epochs are measured
    return [acc, loss, sharp, bench, eigen]


def plot_history(history: Sequence[dict[str, Any]], path: str, title: str = "",
                 labels: Mapping[str, tuple[str, Sequence[str], Sequence[str]]] | None = None) -> None:
    """Write the PNG to ``path`` atomically. ``labels``: per architecture tensor name, its group,
    op names and edge names (e.g. ``("cell", OPS, ["1<-0", ...])``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = _panels(history, labels or {})
    epochs = [h["epoch"] for h in history]
    marker = "o" if len(epochs) <= 20 else None  # a single epoch is a point, not an invisible line
    rows = math.ceil(len(panels) / COLUMNS) + 1
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(4 * COLUMNS, 2.8 * rows), squeeze=False)
    for ax, (panel_title, values, names) in zip(axes[:-1].flat, panels):
        for line, name in enumerate(names):
            ax.plot(epochs, values[:, line], marker=marker, markersize=3, label=name)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("weight", fontsize=8)
        # autoscaled: early in a search (Adam lr 3e-4) the weights move by hundredths around 1/ops
    for ax in list(axes[:-1].flat)[len(panels):]:
        ax.axis("off")
    if panels:
        axes[0, 0].legend(fontsize=6)
    curves = list(axes[-1])
    if any("hessian" in h for h in history):
        curves = _with_hessian_panel(fig, curves, history, marker)
    _curves(curves[:4], history, epochs, marker)
    for ax in [*axes.flat, *curves]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    try:
        atomic_save_figure(fig, path, dpi=80)
    finally:
        plt.close(fig)
