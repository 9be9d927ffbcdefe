"""The search's PNG: the op probabilities of every edge over the epochs from the initial alphas
(epoch 0) on, PC-DARTS' edge weights, and the search's curves (accuracies, losses, the update's
sharpness where it has one, the benchmark accuracy of each epoch's genotype beside the optimum and
the all-skip cell where the space has a benchmark)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flatarch.atomic_files import atomic_save_figure

COLUMNS = 4


def softmax(x: np.ndarray) -> np.ndarray:
    """``softmax`` over the last axis (the op probabilities of alphas)."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _panels(history: Sequence[dict[str, Any]], labels: Mapping[str, tuple[str, Sequence[str], Sequence[str]]],
            initial: Mapping[str, Any]):
    """``(title, [epochs, lines] values, line names)`` for every edge of every alpha tensor and one
    panel per 1-D tensor (PC-DARTS' betas, softmax-normalised per node in the network); the first
    row is ``initial`` (epoch 0) where it has the tensor."""
    panels = []
    for name in history[0]["alphas"]:
        rows = ([initial[name]] if name in initial else []) + [h["alphas"][name] for h in history]
        stacked = np.asarray(rows, dtype=np.float64)
        group, ops, edges = labels.get(name, (name, [], []))
        if stacked.ndim == 3:
            weights = softmax(stacked)
            for e in range(weights.shape[1]):
                edge = edges[e] if e < len(edges) else str(e)
                names = list(ops) or [f"op {o}" for o in range(weights.shape[2])]
                panels.append((f"{group} {edge}", weights[:, e, :], names))
        else:
            names = list(edges) or [f"edge {e}" for e in range(stacked.shape[1])]
            panels.append((f"{name} (raw)", stacked, names))
    return panels


def _reference_lines(ax, reference: Mapping[str, Mapping[str, float]], datasets: Sequence[str]) -> None:
    """Per dataset, in its line's colour: the optimum dashed, the all-skip cell dotted."""
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    for name, style in (("optimum", "--"), ("all-skip", ":")):
        for d in datasets:
            if d in reference.get(name, {}):
                ax.axhline(reference[name][d], ls=style, lw=0.9, color=colours.get(d, "0.5"))
        if reference.get(name):
            ax.plot([], [], ls=style, color="0.4", label=name)  # one legend entry per kind


def _curves(axes, history: Sequence[dict[str, Any]], epochs: list[int], marker: str | None,
            reference: Mapping[str, Mapping[str, float]]) -> None:
    acc, loss, sharp, bench = axes
    for key, label in (("train_acc", "train"), ("val_acc", "validation")):
        acc.plot(epochs, [h[key] for h in history], marker=marker, label=label)
    acc.set(title="supernet accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        loss.plot(epochs, [h[key] for h in history], marker=marker, label=label)
    loss.set(title="supernet loss", xlabel="epoch", ylabel="cross-entropy")
    sharpness = [(h.get("step") or {}).get("sharpness", float("nan")) for h in history]
    sharp.plot(epochs, sharpness, marker=marker, label="L(alpha+e) - L(alpha)")
    sharp.set(title="sharpness of the alpha step", xlabel="epoch", ylabel="loss increase")
    # first-order DARTS takes no perturbed step: its sharpness is 0 (or nan before alpha steps)
    sharp.set_visible(any(np.isfinite(v) and v != 0 for v in sharpness))
    datasets = list(history[-1].get("benchmark") or {})
    for d in datasets:
        bench.plot(epochs, [h["benchmark"].get(d, float("nan")) for h in history], marker=marker, label=d)
    _reference_lines(bench, reference, datasets)
    bench.set(title="genotype's benchmark accuracy", xlabel="epoch", ylabel="test accuracy (%)")
    bench.set_visible(bool(datasets))
    for ax in (acc, loss, sharp, bench):
        ax.set_title(ax.get_title(), fontsize=9, pad=12)  # room for a 1e-5 scale above the axis
        if ax.has_data():
            ax.legend(fontsize=7)


def _with_hessian_panel(fig, row, history: Sequence[dict[str, Any]], marker: str | None):
    """The curves' row split into five, the Hessian's dominant eigenvalue (``--hessian-every``) next
    to the sharpness; returns the four axes :func:`_curves` fills, then the eigenvalue's."""
    grid = row[0].get_subplotspec().get_gridspec()
    for ax in row:
        ax.remove()
    acc, loss, sharp, eigen, bench = (fig.add_subplot(cell) for cell in grid[-1, :].subgridspec(1, 5, wspace=0.5))
    measured = [h for h in history if "hessian" in h]
    eigen.plot([h["epoch"] for h in measured], [h["hessian"]["eigenvalue"] for h in measured], marker=marker or "o",
               markersize=3)
    eigen.set(title="Hessian eigenvalue", xlabel="epoch", ylabel="dominant eigenvalue")
    eigen.set_title(eigen.get_title(), fontsize=9, pad=12)
    eigen.sharex(acc)  # the same epochs as the other curves, also when only some epochs are measured
    return [acc, loss, sharp, bench, eigen]


def plot_history(history: Sequence[dict[str, Any]], path: str, title: str = "",
                 labels: Mapping[str, tuple[str, Sequence[str], Sequence[str]]] | None = None,
                 initial: Mapping[str, Any] | None = None,
                 reference: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """Write the PNG to ``path`` atomically. ``labels``: per architecture tensor name, its group,
    op names and edge names (e.g. ``("cell", OPS, ["1<-0", ...])``); ``initial``: the architecture
    tensors before the first epoch, plotted at epoch 0; ``reference``: accuracies drawn as lines on
    the benchmark panel (``{"optimum": {dataset: acc}, "all-skip": ...}``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    initial = initial or {}
    panels = _panels(history, labels or {}, initial)
    epochs = [h["epoch"] for h in history]
    marker = "o" if len(epochs) <= 20 else None  # a single epoch is a point, not an invisible line
    rows = math.ceil(len(panels) / COLUMNS) + 1
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(4 * COLUMNS, 2.8 * rows), squeeze=False)
    for ax, (panel_title, values, names) in zip(axes[:-1].flat, panels):
        xs = epochs if len(values) == len(epochs) else [0, *epochs]  # epoch 0: the initial alphas
        for line, name in enumerate(names):
            ax.plot(xs, values[:, line], marker=marker, markersize=3, label=name)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("op probability" if "(raw)" not in panel_title else "edge weight (raw)", fontsize=8)
        # autoscaled: early in a search (Adam lr 3e-4) the probabilities move by hundredths around 1/ops
        if "(raw)" in panel_title:
            ax.legend(fontsize=6)
    for ax in list(axes[:-1].flat)[len(panels):]:
        ax.axis("off")
    if panels:  # the op panels share their ops: one legend above them all
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="upper center", ncol=min(len(names), 8), fontsize=8,
                   bbox_to_anchor=(0.5, 0.965), frameon=False)
    curves = list(axes[-1])
    if any("hessian" in h for h in history):
        curves = _with_hessian_panel(fig, curves, history, marker)
    _curves(curves[:4], history, epochs, marker, reference or {})
    for ax in [*axes.flat, *curves]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if panels else 0.97))
    try:
        atomic_save_figure(fig, path, dpi=80)
    finally:
        plt.close(fig)
