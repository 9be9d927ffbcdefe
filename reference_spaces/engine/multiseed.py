"""Several seeds of one search, one after another or in parallel processes, and their summary.

Protocol (as in the paper's tables): every seed's reported genotype (``--select``: the paper's
best-validation-loss genotype by default) is evaluated and the table reports the **mean ± standard
deviation over all seeds** (population std, ``ddof=0``); no seed is ever selected as "the best".
A seed whose search diverged (:mod:`.reporting`) is not a result: it is left out of the mean and
named, with the epoch it diverged from, beside the table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DIVERGENCES
from ..run_folder import CHECKPOINT_NAME, checkpoint_settings
from .checkpoint import write_json
from .config import SearchConfig, SearchError, resolve_device
from .loop import LOG_NAME, RESULT_NAME, SearchResult, search_one, settings_to_resume
from .pool import map_in_order
from .ranks import joined

PROTOCOL = "mean ± std over all seeds (population std), the reported genotype of every seed; no best-seed selection"
SUMMARY_NAME = "summary.json"


@dataclass
class MultiSeedResult:
    seeds: list[int]
    #: per seed; ``None`` where the search diverged with no finite epoch to report
    results: list[SearchResult | None]
    #: ``{metric: {"mean", "std", "values"}}`` over the counted seeds: benchmark accuracies per
    #: dataset (where the space knows them) and the search's own final validation accuracy
    summary: dict[str, dict[str, Any]]
    protocol: str = PROTOCOL
    #: seeds left out of the summary, and why (their search diverged)
    excluded: dict[int, str] = field(default_factory=dict)

    @property
    def counted(self) -> list[int]:
        """The seeds the summary covers."""
        return [s for s in self.seeds if s not in self.excluded]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "seeds": self.seeds,
            "counted": self.counted,
            "excluded": {str(s): why for s, why in self.excluded.items()},
            "summary": self.summary,
            "genotypes": [r and r.genotype_json for r in self.results],
            # the first seed's: every seed runs from the same command, flatarch, torch and device setting
            "provenance": next((r.provenance for r in self.results if r is not None and r.provenance), {}),
        }


def counts(result: SearchResult | None) -> bool:
    """Whether a seed's result enters the summary: it has one, and its search did not diverge."""
    return result is not None and result.diverged_epoch is None


def aggregate(results: Sequence[SearchResult | None]) -> dict[str, dict[str, Any]]:
    """Mean and population std over seeds of every benchmark accuracy present in all results,
    and of the final search validation accuracy; diverged seeds left out (:func:`counts`)."""
    results = [r for r in results if counts(r)]
    metrics: dict[str, list[float]] = {}
    keys = set.intersection(*(set(r.benchmark) for r in results)) if results else set()
    for key in sorted(keys):
        metrics[key] = [float(r.benchmark[key]) for r in results]
    metrics["search_val_acc"] = [float(r.history[-1]["val_acc"]) for r in results if r.history]
    return {
        k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for k, v in metrics.items() if v
    }


def seed_folder(out: str, seed: int) -> str:
    """Where one seed of a multi-seed search in ``out`` runs."""
    return os.path.join(out, f"seed-{seed}")


def _seed_config(config: SearchConfig, seed: int, parallel: bool) -> SearchConfig:
    out = seed_folder(config.out, seed) if config.out else None
    return config.replace(seed=seed, out=out, progress=config.progress and not parallel, tag=f"seed {seed}")


def _recorded(out: str, configs: Sequence[SearchConfig], given: Sequence[str]) -> list[SearchConfig]:
    """``--resume`` without retyping: each seed's settings as its checkpoint records them. A seed
    without one yet (a kill came before its first epoch ended, or before it started) takes another
    seed's, its seed aside: every seed of a multi-seed search runs the one command's settings."""
    recorded = [checkpoint_settings(c.out) for c in configs]
    shared = settings_to_resume(next((r for r in recorded if r is not None), None), f"{out}'s seed folders", given)
    return [c.with_recorded(r or shared, {*given, "seed", "out", "tag"}) for c, r in zip(configs, recorded)]


def refuse_seed_folders(config: SearchConfig) -> None:
    """One search in a folder that holds a multi-seed search's seeds and no search of its own:
    refused, with the command that continues them (else the two runs' files would mix there)."""
    out = config.out
    if not (out and os.path.isdir(out)) or os.path.exists(os.path.join(out, CHECKPOINT_NAME)):
        return
    found = sorted(int(m[1]) for name in os.listdir(out) if (m := re.fullmatch(r"seed-(\d+)", name))
                   and os.path.exists(os.path.join(out, name, CHECKPOINT_NAME)))
    if found:
        seeds = " ".join(map(str, found))
        flag = "--resume: " if config.resume else ""
        raise SearchError(f"{flag}{out} holds the searches of seeds {seeds} (OUT/seed-N), not one search; "
                          f"continue them with: flatarch search --out {out} --seeds {seeds} --resume "
                          "(and the seeds of the first command that have no folder yet), or choose another --out")


def refuse_one_search_folder(out: str | None) -> None:
    """Several seeds in a folder that holds one search of its own (OUT/checkpoint.pt, its log or
    result): refused, with the command that continues that search (else the files would mix)."""
    held = [n for n in (CHECKPOINT_NAME, LOG_NAME, RESULT_NAME) if out and os.path.exists(os.path.join(out, n))]
    if held:
        raise SearchError(f"{out} holds one search ({', '.join(held)}), not the searches of several seeds; "
                          f"continue it with: flatarch search --out {out} --resume, or choose another --out "
                          "for --seeds")


def _search_seed(config: SearchConfig) -> SearchResult | Exception:
    """One seed's search; its divergence is returned, not raised, so that the other seeds go on."""
    try:
        return search_one(config)
    except DIVERGENCES as exc:
        return exc


def _not_counted(outcome: SearchResult | Exception) -> str | None:
    """Why a seed's outcome is left out of the summary, or ``None`` when it counts."""
    if not isinstance(outcome, SearchResult):
        return str(outcome)
    if outcome.diverged_epoch is not None:  # (its selection says it diverged too, with the losses)
        return (f"the search diverged from epoch {outcome.diverged_epoch} (its result reports epoch "
                f"{outcome.selected_epoch}: {outcome.config.get('select')} among the epochs with finite losses)")
    return None


def search_seeds(
    config: SearchConfig | None = None, seeds: Sequence[int] = (0,), workers: int = 1, **overrides: Any
) -> MultiSeedResult:
    """Run the search once per seed (``out/seed-<s>`` each) and summarise.

    ``workers > 1`` runs that many seeds at once in separate processes (:mod:`.pool`: spawned,
    one torch thread each); results come back in seed order either way.
    """
    given = config is not None
    config = (config or SearchConfig()).replace(**overrides)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise SearchError("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise SearchError(f"--seeds has repeated seeds: {seeds}")
    if not isinstance(workers, int) or workers < 1:
        raise SearchError(f"--workers must be a whole number >= 1, got {workers!r}")
    refuse_one_search_folder(config.out)
    parallel = workers > 1 and len(seeds) > 1
    configs = [_seed_config(config, s, parallel) for s in seeds]
    if not given and config.resume and config.out:
        configs = _recorded(config.out, configs, list(overrides))
    with joined(resolve_device(config.device, config.amp)) as ranks:  # one process group for all the seeds
        if ranks.world > 1 and parallel:
            raise SearchError(f"--workers {workers} runs seeds in separate processes; on {ranks.world} ranks the seeds "
                              "run one after another over all of them: drop --workers")
        outcomes = map_in_order(_search_seed, configs, workers)
        results = [o if isinstance(o, SearchResult) else None for o in outcomes]
        excluded = {s: why for s, o in zip(seeds, outcomes) if (why := _not_counted(o))}
        multi = MultiSeedResult(seeds, results, aggregate(results), excluded=excluded)
        if config.out and ranks.writer:
            write_json(multi.to_json(), os.path.join(config.out, SUMMARY_NAME))
    return multi


def format_summary(multi: MultiSeedResult) -> str:
    """A plain-text table: one row per metric, mean ± std over the seeds, then the protocol."""
    lines = [f"{'metric':<16} {'mean ± std':>16}  per seed ({', '.join(map(str, multi.counted))})" if multi.summary
             else "no seed has a result to count"]
    for key, s in multi.summary.items():
        values = ", ".join(f"{v:.2f}" for v in s["values"])
        lines.append(f"{key:<16} {s['mean']:>8.2f} ± {s['std']:<5.2f}  {values}")
    lines += [f"not counted: seed {seed}: {why}" for seed, why in multi.excluded.items()]
    lines.append(f"protocol: {multi.protocol}")
    return "\n".join(lines)
