"""Pictures: the learning curve of a training run and the normal/reduction cells of a genotype."""

from __future__ import annotations

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from flatarch.atomic_files import atomic_save_figure  # noqa: E402

from .genotype import Genotype, validate  # noqa: E402


def _save(fig, path: str | os.PathLike) -> None:
    atomic_save_figure(fig, path, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_learning_curve(history: list[dict[str, float]], path: str | os.PathLike) -> None:
    """Loss (left) and accuracy (right) per epoch, training and test."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    tested = [h for h in history if "test_acc" in h]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    if all("train_objective" in h for h in history):
        ax_loss.plot(epochs, [h["train_objective"] for h in history], "--", color="C0", alpha=0.6,
                     label="train objective (+ auxiliary)")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], label="train")
    if tested:
        ax_loss.plot([h["epoch"] for h in tested], [h["test_loss"] for h in tested], "o-", ms=3, label="test")
        ax_acc.plot([h["epoch"] for h in tested], [h["test_acc"] for h in tested], "o-", ms=3, label="test")
    for ax, name in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers (not 1.2, 1.4, ...)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if tested:
        ax_acc.set_title(f"final test accuracy {tested[-1]['test_acc']:.2f}%")
    _save(fig, path)


def _arc(ax, x0: float, x1: float, height: float, color: str, lw: float) -> tuple[float, float]:
    """Half-ellipse from ``(x0, 0)`` to ``(x1, 0)`` with apex ``height`` (negative: below), arrow at
    ``x1``; returns the apex."""
    theta = np.linspace(np.pi, 0.0, 60) if x1 > x0 else np.linspace(0.0, np.pi, 60)
    cx, rx = (x0 + x1) / 2, abs(x1 - x0) / 2
    xs, ys = cx + rx * np.cos(theta), height * np.sin(theta)
    keep = (np.hypot(xs - x0, ys) > 0.2) & (np.hypot(xs - x1, ys) > 0.2)
    xs, ys = xs[keep], ys[keep]
    ax.plot(xs, ys, color=color, lw=lw)
    ax.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-2], ys[-2]), arrowprops={"arrowstyle": "->", "color": color})
    return cx, height


def _draw_cell(ax, pairs: list[tuple[str, int]], concat: list[int], title: str) -> None:
    """Arc diagram: nodes on a line (the two inputs, the intermediate nodes, the output); the
    first input edge of each node arcs above the line, the second below, with its op at the apex."""
    steps = len(pairs) // 2
    xpos = {n: float(n) for n in range(steps + 2)}
    x_out = steps + 2.5
    # intermediate nodes numbered as in genotypes and in search.png's edge names (2<-0): 2, 3, ...
    labels = {0: "$c_{k-2}$", 1: "$c_{k-1}$", **{i + 2: str(i + 2) for i in range(steps)}}
    for k, (op, src) in enumerate(pairs):
        dst = k // 2 + 2
        span = xpos[dst] - xpos[src]
        sign = 1.0 if k % 2 == 0 else -1.0
        cx, cy = _arc(ax, xpos[src], xpos[dst], sign * (0.35 + 0.3 * span), "0.25", 1.3)
        ax.text(cx, cy, op, fontsize=7.5, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.2", "fc": "lightyellow", "ec": "0.6"})
    for c in concat:
        _arc(ax, xpos[c], x_out, -0.12 * (x_out - xpos[c]), "0.7", 0.8)
    for node, x in xpos.items():
        ax.text(x, 0.0, labels[node], ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "circle", "fc": "lightgreen" if node < 2 else "lightblue", "ec": "0.3"})
    ax.text(x_out, 0.0, "$c_k$", ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "circle", "fc": "wheat", "ec": "0.3"})
    reach = 0.35 + 0.3 * (steps + 1)
    ax.set_xlim(-0.6, x_out + 0.6)
    ax.set_ylim(-reach - 0.3, reach + 0.3)
    ax.set_title(title)
    ax.axis("off")


def plot_genotype(genotype: Genotype, path: str | os.PathLike, title: str | None = None) -> None:
    """Normal (top) and reduction (bottom) cell of ``genotype``: nodes, kept edges labelled with
    their ops, and the concatenated output."""
    g = validate(genotype)
    fig, (ax_n, ax_r) = plt.subplots(2, 1, figsize=(10, 10))
    _draw_cell(ax_n, list(g.normal), list(g.normal_concat), "normal cell")
    _draw_cell(ax_r, list(g.reduce), list(g.reduce_concat), "reduction cell")
    if title:
        fig.suptitle(title)
    _save(fig, path)
