"""The DARTS search space (imported as ``flatarch.reference_spaces.darts``).

* :mod:`.genotype` -- derivation from alphas, JSON and Python-literal formats, `load` by name or file.
* :mod:`.known` -- the Genotype record and the published genotypes by name (DARTS_V1, DARTS_V2, PC_DARTS, ...).
* :mod:`.ops`, :mod:`.search_network`, :mod:`.space` -- the search network and ``--space darts``.
* :mod:`.evaluation_network`, :mod:`.train`, :mod:`.loaders` -- training a genotype from scratch.
* :mod:`.plots` -- cell pictures and learning curves.
"""

from .genotype import PRIMITIVES, Genotype, derive_genotype, load, save
from .known import KNOWN_GENOTYPES

__all__ = ["KNOWN_GENOTYPES", "PRIMITIVES", "Genotype", "derive_genotype", "load", "save"]
