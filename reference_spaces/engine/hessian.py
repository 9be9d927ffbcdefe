"""The Hessian's dominant eigenvalue during a search (``--hessian-every K``) and R-DARTS' early
stop on its growth (``--hessian-stop RATIO``).

R-DARTS (Zela et al., "Understanding and Robustifying Differentiable Architecture Search", ICLR
2020) found that the dominant eigenvalue of the Hessian of the validation loss w.r.t. alpha grows
as DARTS heads for the degenerate architectures it ends in, and stopped the search when it grew
("DARTS-ES"). Repository automl/RobustDARTS, files cited below.

**Measurement.** At the end of the epochs ``0, K, 2K, ...`` (0-based, as their
``epoch % report_freq_hessian == 0``, ``src/search/train_search.py`` L374) of the supernet search,
after training, :func:`flatarch.sharpness.power_iteration` on the engine's architecture loss (the
validation cross-entropy plus the method's regulariser: the loss the updates step on), in train
mode as the updates' passes. It changes nothing: the network's buffers and torch's random state
are put back, so a search measured every epoch takes exactly the steps of one never measured.
Where we depart from their code:

* the batch is fixed, the first batch of the validation split's ordered sweep (drawn for epoch 0),
  so the curve follows the landscape, not the batch; theirs is the epoch's last search batch
  (``train_search.py`` L393);
* the eigenvalue is the largest in magnitude, by power iteration; theirs is the largest of all
  eigenvalues of the full Hessian (``numpy.linalg.eigvals``, L415), which includes the alpha
  Adam's weight decay (``src/search/analyze.py``, ``_hessian``: ``+ weight_decay * inp``, a shift
  of 1e-3); we leave that shift out;
* they also measure at the last epoch; we keep the measurements evenly spaced, so a search
  extended with ``--resume --epochs N`` measures as an uninterrupted one.

**Early stop** (``src/utils.py``, ``EVLocalAvg.update`` and ``early_stop``, L67-140, with the
defaults of ``src/search/args.py`` L61-64: window 5, delta 4, ``es_start_epoch`` 10): after the
``n``-th measurement (``n >= 3``), the local average of measurement ``j = n - 3`` is the mean of
the measurements ``j - 2 .. j + 2`` that exist. Once measurement ``j - 4`` lies at (0-based)
epoch 10 or later, the search stops if ``LA[j] / LA[j - 4] > RATIO``, and reports the genotype
at the end of measurement ``j - 4``'s epoch (their ``stop_genotype = genotypes[stop_epoch]``),
not the last one. Never on the last epoch (``train_search.py`` L423). We also require
``LA[j - 4] > 0``: a ratio of eigenvalues of mixed signs says nothing about growth.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from flatarch import sharpness

#: R-DARTS' defaults (src/search/args.py L61-64): local-average window, how many local averages
#: back the comparison looks, the first 0-based epoch it may stop at
WINDOW, DELTA, START_EPOCH = 5, 4, 10


def measure(searcher, epoch: int) -> dict[str, Any]:
    """``{"hessian": {...}}`` for the record of 0-based ``epoch`` when it is measured, else ``{}``."""
    every = searcher.cfg.hessian_every
    if not every or epoch % every or searcher.projection is not None:
        return {}
    batch = next(iter(searcher.valid.sweep(0)))
    start = time.perf_counter()
    found = sharpness.power_iteration(searcher.arch_loss(batch, epoch), dict(searcher.arch),
                                      grad_reduce=searcher.ranks.reduce)
    return {"hessian": {"eigenvalue": found.value, "iterations": found.iterations, "converged": found.converged,
                        "seconds": time.perf_counter() - start}}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def stop_epoch(records: Sequence[dict[str, Any]], cfg) -> int | None:
    """The (1-based) epoch whose genotype R-DARTS' rule reports, once the rule has fired on the
    search-phase ``records``; ``None`` while it has not (or ``cfg.hessian_stop`` is off)."""
    if cfg.hessian_stop is None:
        return None
    measured = [(r["epoch"] - 1, r["hessian"]["eigenvalue"]) for r in records if "hessian" in r]
    values = [v for _, v in measured]
    half = WINDOW // 2

    def local_average(j: int) -> float:
        return _mean(values[max(0, j - half): j + half + 1])

    for n in range(half + 1, len(measured) + 1):  # replays the check made after each measurement
        j = n - 1 - half
        if j < DELTA or measured[j - DELTA][0] < START_EPOCH or measured[n - 1][0] == cfg.epochs - 1:
            continue
        previous = local_average(j - DELTA)
        if previous > 0 and local_average(j) / previous > cfg.hessian_stop:
            return measured[j - DELTA][0] + 1
    return None


def stop_message(records: Sequence[dict[str, Any]], cfg) -> str | None:
    epoch = stop_epoch(records, cfg)
    if epoch is None:
        return None
    return (f"early stop (R-DARTS): the local mean of the Hessian's dominant eigenvalue grew by more than "
            f"{cfg.hessian_stop}x; reporting the genotype of epoch {epoch}")


def selected(records: Sequence[dict[str, Any]], cfg) -> tuple[Any, int, str] | None:
    """``(genotype JSON, epoch, description)`` R-DARTS' rule reports, or ``None`` when it did not fire."""
    epoch = stop_epoch(records, cfg)
    if epoch is None:
        return None
    record = next(r for r in records if r["epoch"] == epoch)
    return (record["genotype"], epoch,
            f"hessian-stop: the genotype after epoch {epoch}, where R-DARTS' rule places the start of the "
            f"eigenvalue's growth (local mean more than {cfg.hessian_stop}x)")
