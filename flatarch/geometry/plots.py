"""PNG plots of the geometry analyses (matplotlib, Agg backend: no display needed).

Every function takes plain arrays and writes one PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

from ..atomic_files import atomic_save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Paper figure 5 colours: high/medium/low tiers and random pairs.
TIER_COLOURS = {"A": "tab:orange", "B": "tab:green", "C": "tab:red"}
RANDOM_COLOUR = "tab:blue"


def _density(ax, values, bins, **kwargs) -> None:
    """Density histogram drawn as stairs (np.histogram is far cheaper than ax.hist on 1e6 samples)."""
    heights, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, density=True)
    ax.stairs(heights, edges, **kwargs)


def _save(fig, path: str, dpi: int = 80) -> None:
    try:
        atomic_save_figure(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def neighbour_histograms(
    path: str,
    space_acc: np.ndarray,
    panels: Mapping[tuple[str, int], tuple[np.ndarray, tuple[float, float]]],
    title: str = "",
) -> None:
    """Grid (tiers x radii) of neighbour-accuracy densities against the whole space (paper fig. 4).

    ``panels[(tier, radius)] = (pooled neighbour accuracies, (tier low, tier high))``; the tier's
    interval is shaded.
    """
    tiers = list(dict.fromkeys(t for t, _ in panels))
    radii = sorted({r for _, r in panels})
    fig, axes = plt.subplots(len(tiers), len(radii), figsize=(3.2 * len(radii), 2.4 * len(tiers)), squeeze=False)
    bins = np.linspace(float(np.min(space_acc)), float(np.max(space_acc)), 60)
    for i, tier in enumerate(tiers):
        for j, radius in enumerate(radii):
            ax = axes[i][j]
            _density(ax, space_acc, bins, fill=True, color="tab:green", alpha=0.45, label="whole space")
            nb, (low, high) = panels[(tier, radius)]
            if len(nb):
                _density(ax, nb, bins, fill=True, color="tab:blue", alpha=0.6, label="neighbours at the panel's radius")
            ax.axvspan(low, high, color="tab:red", alpha=0.25, label="the tier's accuracy range")
            ax.set_title(f"{tier}, radius {radius}", fontsize=9)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:  # one legend for every panel
                ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("test accuracy (%)", fontsize=9)
    fig.supylabel("density", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def difference_distributions(
    path: str,
    diffs: Mapping[int, Mapping[str, np.ndarray]],
    random_diff: np.ndarray,
    title: str = "",
) -> None:
    """One panel per radius: densities of ``|acc(ref) - acc(neighbour)|`` per tier and of random pairs
    (paper fig. 5, 12, 13)."""
    radii = sorted(diffs)
    fig, axes = plt.subplots(1, len(radii), figsize=(3.6 * len(radii), 2.8), squeeze=False)
    top = float(np.percentile(random_diff, 99)) if len(random_diff) else 1.0
    bins = np.linspace(0, max(top, 1e-9), 50)
    for ax, radius in zip(axes[0], radii):
        _density(ax, random_diff, bins, lw=1.5, color=RANDOM_COLOUR, label="random pairs")
        for tier, d in diffs[radius].items():
            if len(d):
                _density(ax, d, bins, lw=1.5, color=TIER_COLOURS.get(tier), label=tier)
        ax.set_title(f"radius {radius}", fontsize=9)
        ax.set_xlabel("|acc difference| (points)", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def accuracy_paths(
    path: str,
    paths: Mapping[str, tuple[Sequence[np.ndarray], Mapping[str, float]]],
    title: str = "",
) -> None:
    """Accuracy paths (level means, with every unique cell as a dot) and both normalised barriers
    in the legend (paper fig. 7). ``paths[name] = (level accuracies, barrier dict)``."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, (level_accs, barrier) in paths.items():
        colour = TIER_COLOURS.get(name)
        means = [float(np.mean(x)) for x in level_accs]
        xs = np.arange(len(means))
        label = (
            f"{name}: B_cell={barrier['normalised_min_cell']:.3f}, B_mean={barrier['normalised_min_level_mean']:.3f}"
        )
        ax.plot(xs, means, "-o", color=colour, label=label)
        for x, accs in zip(xs, level_accs):
            ax.scatter(np.full(len(accs), x), accs, s=6, color=colour, alpha=0.35)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("moves from a (path-tree level)", fontsize=9)
    ax.set_ylabel("test accuracy (%)", fontsize=9)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)  # 825 x 528 pixels: the per-cell dots and the legend's barriers stay legible
