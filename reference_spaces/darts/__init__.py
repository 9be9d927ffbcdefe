"""The DARTS search space (imported as ``flatarch.reference_spaces.darts``)."""

from .genotype import PRIMITIVES, Genotype

__all__ = ["PRIMITIVES", "Genotype"]
