"""Writing geometry results: atomic files, and the KS table in the layout of paper table 8.

Table 8 has one row per (tier, radius), radius-major (A1, B1, C1, A2, ...), and per dataset the KS
statistic of the tier's pooled neighbour accuracies against the whole space, its p-value and the
number of pooled neighbour samples ``n`` (= references in the tier x neighbourhood size).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..atomic_files import atomic_write_text
from .locality import KSResult


def _finite(obj):
    """NaN/inf -> None, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_json(path: str, obj) -> None:
    """Strict JSON (NaN written as null), atomically."""
    atomic_write_text(path, json.dumps(_finite(obj), indent=1, allow_nan=False) + "\n")


@dataclass(frozen=True)
class KSRow:
    """One cell of table 8: a tier's radius-r neighbourhood on one dataset."""

    dataset: str
    tier: str
    low: float
    high: float
    radius: int
    n_refs: int
    ks: KSResult


def _ordered(rows: Sequence[KSRow]) -> tuple[list[str], list[tuple[int, str]]]:
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    tiers = list(dict.fromkeys(r.tier for r in rows))
    radii = sorted({r.radius for r in rows})
    return datasets, [(radius, tier) for radius in radii for tier in tiers]


def _index(rows: Sequence[KSRow]) -> dict[tuple[str, str, int], KSRow]:
    return {(r.dataset, r.tier, r.radius): r for r in rows}


def ks_table_csv(rows: Sequence[KSRow]) -> str:
    """Wide CSV: ``tier, radius``, then per dataset
    ``<ds>_interval, <ds>_n_refs, <ds>_ks, <ds>_pvalue, <ds>_n``."""
    datasets, keys = _ordered(rows)
    index = _index(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["tier", "radius"]
    for ds in datasets:
        header += [f"{ds}_interval", f"{ds}_n_refs", f"{ds}_ks", f"{ds}_pvalue", f"{ds}_n"]
    writer.writerow(header)
    for radius, tier in keys:
        line = [tier, radius]
        for ds in datasets:
            r = index.get((ds, tier, radius))
            if r is None:
                line += ["", "", "", "", ""]
            else:
                line += [
                    f"[{r.low:.4f}, {r.high:.4f}]",
                    r.n_refs,
                    f"{r.ks.statistic:.6f}",
                    f"{r.ks.pvalue:.6g}",
                    r.ks.n,
                ]
        writer.writerow(line)
    return out.getvalue()


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "0" if p == 0 else f"{p:.1e}"


def ks_table_markdown(rows: Sequence[KSRow]) -> str:
    """Markdown in paper table 8 layout (KS statistic, p-value, n per dataset), tier intervals below."""
    datasets, keys = _ordered(rows)
    index = _index(rows)
    head = "| Tier | Radius | " + " | ".join(f"{ds} KS | {ds} p | {ds} n" for ds in datasets) + " |"
    sep = "|" + "---|" * (2 + 3 * len(datasets))
    lines = [head, sep]
    for radius, tier in keys:
        cells = []
        for ds in datasets:
            r = index.get((ds, tier, radius))
            if r is None or r.ks.n == 0:
                cells += ["-", "-", "0"]
            else:
                cells += [f"{r.ks.statistic:.3f}", _fmt_p(r.ks.pvalue), str(r.ks.n)]
        lines.append(f"| {tier} | {radius} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Tier intervals (test accuracy %, references per tier):")
    lines.append("")
    seen = set()
    for r in rows:
        if (r.dataset, r.tier) not in seen:
            seen.add((r.dataset, r.tier))
            lines.append(f"- {r.dataset} {r.tier}: [{r.low:.2f}, {r.high:.2f}], {r.n_refs} cells")
    return "\n".join(lines) + "\n"
