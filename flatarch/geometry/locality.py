"""Locality statistics on a table of accuracies (paper section 5.1, appendix D.3).

* **Tiers**: accuracy intervals ``[low, high]`` naming high/medium/low-accuracy reference sets
  (A/B/C). :func:`tiers_around` builds them as windows around reference accuracies (the paper's
  A/B/C models), :func:`tiers_from_thresholds` as three consecutive bands.
* **Difference distributions**: ``|acc(ref) - acc(neighbour)|`` pooled over the references of a
  tier, against ``|acc(x) - acc(y)|`` for random pairs ``x != y`` of the whole space.
* **Kolmogorov-Smirnov**: two-sample KS test (``scipy.stats.ks_2samp``) of a tier's pooled
  neighbour accuracies against the accuracies of the whole space; the statistic is
  ``sup_t |F_neigh(t) - F_space(t)|``.

Everything here works on plain numpy arrays; spaces supply the neighbour accuracies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Tier:
    """A named accuracy interval ``low <= acc <= high``."""

    name: str
    low: float
    high: float

    def __post_init__(self):
        if not self.low <= self.high:
            raise ValueError(f"tier {self.name!r}: low ({self.low}) must not exceed high ({self.high})")

    def members(self, acc: np.ndarray) -> np.ndarray:
        """Indices of the entries of ``acc`` inside the interval."""
        acc = np.asarray(acc)
        return np.flatnonzero((acc >= self.low) & (acc <= self.high))

    @property
    def label(self) -> str:
        return f"{self.name} [{self.low:.2f}, {self.high:.2f}]"


def tiers_around(references: Mapping[str, float], window: float) -> list[Tier]:
    """One tier per reference accuracy: ``[ref - window, ref + window]``."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    return [Tier(name, float(ref) - window, float(ref) + window) for name, ref in references.items()]


def tiers_from_thresholds(acc: np.ndarray, high: float, low: float) -> list[Tier]:
    """Three bands: A = ``acc >= high``, B = ``low <= acc < high``, C = ``acc < low``.

    Bands are closed intervals on the observed accuracies, with the open ends nudged by one ulp.
    """
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    acc = np.asarray(acc, dtype=np.float64)
    below_high = float(np.nextafter(high, -np.inf))
    below_low = float(np.nextafter(low, -np.inf))
    return [
        Tier("A", float(high), max(float(acc.max()), float(high))),
        Tier("B", float(low), below_high),
        Tier("C", min(float(acc.min()), below_low), below_low),
    ]


def abs_differences(ref_acc: np.ndarray, neighbour_acc: np.ndarray) -> np.ndarray:
    """``|ref_acc[i] - neighbour_acc[i, j]|`` flattened; ``neighbour_acc`` is ``[n_refs, n_neighbours]``."""
    ref_acc = np.asarray(ref_acc, dtype=np.float64)
    neighbour_acc = np.asarray(neighbour_acc, dtype=np.float64)
    return np.abs(neighbour_acc - ref_acc[:, None]).ravel()


def random_pair_differences(acc: np.ndarray, n_pairs: int, seed: int = 0) -> np.ndarray:
    """``|acc[x] - acc[y]|`` for ``n_pairs`` uniformly random ordered pairs with ``x != y``."""
    acc = np.asarray(acc, dtype=np.float64)
    if len(acc) < 2:
        raise ValueError("random pairs need at least two architectures")
    rng = np.random.default_rng(seed)
    x = rng.integers(len(acc), size=n_pairs)
    # y uniform over the other len-1 entries: shift by 1..len-1 (mod len)
    y = (x + rng.integers(1, len(acc), size=n_pairs)) % len(acc)
    return np.abs(acc[x] - acc[y])


@dataclass(frozen=True)
class KSResult:
    """Two-sample Kolmogorov-Smirnov statistic and p-value; ``n`` is the first sample's size."""

    statistic: float
    pvalue: float
    n: int


def ks_test(sample: np.ndarray, population: np.ndarray) -> KSResult:
    """``scipy.stats.ks_2samp(sample, population)`` (two-sided; exact or asymptotic as scipy chooses)."""
    sample = np.asarray(sample, dtype=np.float64).ravel()
    if sample.size == 0:
        return KSResult(float("nan"), float("nan"), 0)
    res = stats.ks_2samp(sample, np.asarray(population, dtype=np.float64).ravel())
    return KSResult(float(res.statistic), float(res.pvalue), int(sample.size))
