"""The search engine shared by every reference space (imported as
``flatarch.reference_spaces.engine``).

Python API::

    from flatarch.reference_spaces.engine import search
    result = search(space="nb201", method="darts", optimizer="a2m", dataset="cifar10",
                    data_dir="data", epochs=50, seed=1, out="runs/a2-darts")
    result.genotype, result.benchmark          # arch string; {"cifar10": .., ...} with a table

    multi = search(seeds=[1, 2, 3], workers=3, out="runs/a2-darts")   # several seeds
    multi.summary                               # mean ± std over seeds per dataset

Modules: :mod:`.config` (settings and defaults), :mod:`.methods` (the methods as recipes of
:mod:`.components`), :mod:`.loop` (the bi-level loop), :mod:`.reporting` (records, selection,
early stopping), :mod:`.checkpoint` (JSON files), :mod:`.multiseed` (seeds and their summary),
:mod:`.pool` (worker processes), :mod:`.plot` (the PNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..data import DataError, ImageData
from .config import SearchConfig, SearchError
from .loop import SearchResult, search_one
from .methods import METHODS, Method, get_method
from .multiseed import PROTOCOL, MultiSeedResult, aggregate, format_summary, refuse_seed_folders, search_seeds


def search(
    config: SearchConfig | None = None,
    *,
    seeds: Sequence[int] | None = None,
    workers: int = 1,
    data: ImageData | None = None,
    **settings: Any,
) -> SearchResult | MultiSeedResult:
    """Run a search. Keyword ``settings`` are :class:`SearchConfig` fields (they override
    ``config``). With ``seeds``, one search per seed (``workers`` parallel processes) and a
    :class:`MultiSeedResult`; otherwise one search and a :class:`SearchResult`. ``data``: search on
    these images (an :class:`~flatarch.reference_spaces.data.ImageData`) instead of loading
    ``dataset`` (one seed only).

    Writes nothing unless ``out`` is given (a folder: search.jsonl, checkpoint.pt, result.json,
    genotype.json, search.png); the result comes back either way. ``flatarch search`` always gives one."""
    if seeds is None and workers != 1:
        raise SearchError("--workers runs several seeds at once; give --seeds too, or drop --workers")
    if seeds is not None:
        if data is not None:
            raise SearchError("data= works with one seed; run search(data=..., seed=s) per seed")
        return search_seeds(config, seeds=seeds, workers=workers, **settings)
    refuse_seed_folders((config or SearchConfig()).replace(**settings))
    return search_one(config, data=data, **settings)


__all__ = [
    "PROTOCOL",
    "DataError",
    "METHODS",
    "Method",
    "MultiSeedResult",
    "SearchConfig",
    "SearchError",
    "SearchResult",
    "aggregate",
    "format_summary",
    "get_method",
    "search",
    "search_one",
    "search_seeds",
]
