"""The search's PNG: softmax weights of every architecture edge over the epochs, and the
train/validation accuracy curves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flatarch.atomic_files import atomic_save_figure


def _edge_series(history: list[dict[str, Any]]) -> list[tuple[str, np.ndarray]]:
    """``[(label, [epochs, ops] softmax weights)]`` for every row of every 2-D alpha tensor."""
    series = []
    for name in history[0]["alphas"]:
        stacked = np.asarray([h["alphas"][name] for h in history], dtype=np.float64)
        if stacked.ndim != 3:  # 1-D tensors (PC-DARTS edge weights) are not per-op mixtures
            continue
        z = stacked - stacked.max(axis=-1, keepdims=True)
        w = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        for e in range(w.shape[1]):
            series.append((f"{name}[{e}]", w[:, e, :]))
    return series


def plot_history(history: list[dict[str, Any]], path: str, title: str = "", op_names=None) -> None:
    """Write the PNG to ``path`` (atomically: a temporary file, then ``os.replace``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    series = _edge_series(history)
    epochs = [h["epoch"] for h in history]
    cols = 3
    rows = math.ceil(len(series) / cols) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, (label, w) in zip(axes[:-1].flat, series):
        for o in range(w.shape[1]):
            ax.plot(epochs, w[:, o], label=op_names[o] if op_names else f"op {o}")
        ax.set_title(label, fontsize=9)
        # autoscaled: early in a search (Adam lr 3e-4) the weights move by hundredths around 1/ops
    for ax in list(axes[:-1].flat)[len(series):]:
        ax.axis("off")
    if series:
        axes[0, 0].legend(fontsize=7)
    acc = axes[-1, 0]
    acc.plot(epochs, [h["train_acc"] for h in history], label="train")
    acc.plot(epochs, [h["val_acc"] for h in history], label="validation")
    acc.set_xlabel("epoch")
    acc.set_ylabel("accuracy (%)")
    acc.legend(fontsize=7)
    acc.set_title("search accuracy", fontsize=9)
    for ax in axes[-1, 1:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_save_figure(fig, path, dpi=80)
    finally:
        plt.close(fig)
