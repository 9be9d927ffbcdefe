"""The methods of the paper's table 2 as recipes of components (``--method``).

A :class:`Method` names what it changes and nothing else; the loop
(:mod:`flatarch.reference_spaces.engine.loop`) is the same first-order bi-level loop for all of
them, and every method composes with every architecture update (``--optimizer``): A2-PC-DARTS is
``method="pcdarts", optimizer="a2m"``.

Settings a method's authors ran with are *recipes*: named sets of settings (``--recipe``) that
replace the paper's common settings where the user gave none. The paper's common settings
(tables 3 and 4) stay the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..space import NetworkOptions
from .components import AdversarialSmoothing, AuxiliarySkipDecay, BetaDecay, RandomSmoothing


@dataclass(frozen=True)
class Method:
    """A differentiable-NAS method, independent of the architecture update.

    Attributes:
        name: the ``--method`` value.
        summary: one line for ``--help``.
        network: what the method changes in the supernet.
        regularizer: a term added to the validation loss (beta-DARTS), or None.
        smoothing: what replaces the architecture weights in the weight step (SDARTS), or None.
        schedules: per-epoch settings made before each epoch's training (DARTS-' skip weight).
        val_augment_off: spaces on which the method searches with an un-augmented validation split
            (A2M paper appendix C.4: DARTS on NAS-Bench-201); augmented everywhere else.
        recipes: named settings (``--recipe``), e.g. the method's own hyper-parameters.
        settings: the search settings only this method reads (others refuse them).
        space_ops: the candidate-op set per space where the method's authors used another one.
    """

    name: str
    summary: str
    network: NetworkOptions = NetworkOptions()
    regularizer: Any = None
    smoothing: Any = None
    schedules: tuple[Any, ...] = ()
    val_augment_off: tuple[str, ...] = ()
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    settings: tuple[str, ...] = ()
    space_ops: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def recipe(self, name: str | None) -> Mapping[str, Any]:
        """The settings of recipe ``name`` (``None``: the paper's common settings, nothing replaced)."""
        if name is None or name == PAPER_RECIPE:
            return {}
        if name not in self.recipes:
            known = ", ".join([PAPER_RECIPE, *self.recipes])
            raise ValueError(f"--method {self.name} has no recipe {name!r}; choose one of: {known}")
        return self.recipes[name]


#: the recipe every method has: the paper's common settings (tables 3 and 4)
PAPER_RECIPE = "paper"

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("darts", "first-order DARTS (Liu et al. 2019): softmax over the ops of each edge",
               val_augment_off=("nb201",)),
        Method(
            "pcdarts",
            "PC-DARTS (Xu et al. 2020): 1/4 of the channels through the mixed ops; edge normalisation "
            "on the DARTS space",
            network=NetworkOptions(partial_channels=4, edge_normalization=True),
            # yuhuixu1993/PC-DARTS train_search.py: batch 256 (L24), lr 0.1 (L25), lr_min 0 (L26),
            # arch lr 6e-4 (L43), and alpha steps only from epoch 15 on (L156-157)
            recipes=MappingProxyType({"original": MappingProxyType(
                {"batch_size": 256, "lr": 0.1, "lr_min": 0.0, "arch_lr": 6e-4, "warmup_epochs": 15})}),
        ),
        Method("betadarts", "beta-DARTS (Ye et al. 2022): beta-decay regulariser on the validation loss",
               regularizer=BetaDecay()),
        Method("sdarts-rs", "SDARTS-RS (Chen & Hsieh 2020): weight steps at randomly perturbed op probabilities",
               smoothing=RandomSmoothing(), settings=("smoothing_epsilon",)),
        Method("sdarts-adv", "SDARTS-ADV (Chen & Hsieh 2020): weight steps at PGD-perturbed op probabilities",
               smoothing=AdversarialSmoothing(), settings=("smoothing_epsilon",)),
        Method("darts-minus", "DARTS- (Chu et al. 2021): an auxiliary skip connection decaying from 1 to 0",
               network=NetworkOptions(auxiliary_skip=True), schedules=(AuxiliarySkipDecay(),)),
    )
}


#: settings that belong to some methods only
METHOD_SETTINGS: frozenset[str] = frozenset(s for m in METHODS.values() for s in m.settings)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def recipe_names() -> list[str]:
    """Every recipe some method has (``--recipe`` choices)."""
    names = [PAPER_RECIPE]
    for method in METHODS.values():
        names += [r for r in method.recipes if r not in names]
    return names
