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
from .components import AdversarialSmoothing, AuxiliarySkipDecay, BetaDecay, LambdaCorrection, RandomSmoothing
from .projection import Projection

#: the recipe every method has: the paper's common settings (tables 3 and 4)
PAPER_RECIPE = "paper"


def _frozen(mapping: Mapping[str, Any] | None = None, **kwargs: Any) -> Mapping[str, Any]:
    return MappingProxyType({**(mapping or {}), **kwargs})


@dataclass(frozen=True)
class Recipe:
    """Named settings of a method; ``by_space`` adds or overrides settings per search space."""

    source: str
    settings: Mapping[str, Any] = field(default_factory=_frozen)
    by_space: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen)

    def for_space(self, space: str) -> dict[str, Any]:
        return {**self.settings, **self.by_space.get(space, {})}


@dataclass(frozen=True)
class Method:
    """A differentiable-NAS method, independent of the architecture update.

    Attributes:
        name: the ``--method`` value.
        summary: one line for ``--help``.
        network: what the method changes in the supernet.
        regularizer: a term added to the validation loss (beta-DARTS), or None.
        smoothing: what replaces the architecture weights in the weight step (SDARTS), or None.
        correction: a correction of the weight step's gradient (lambda-DARTS), or None.
        schedules: per-epoch settings made before each epoch's training (DARTS-' skip weight).
        projection: a phase after the supernet search that picks the genotype (DARTS-PT), or None.
        val_augment_off: spaces on which the method searches with an un-augmented validation split
            (A2M paper appendix C.4: DARTS on NAS-Bench-201); augmented everywhere else.
        settings: the search settings only this method reads (others refuse them).
        defaults: this method's defaults for settings the user did not give (per space where needed).
        fixed: settings this method always runs with (a different one is refused).
        recipes: named settings (``--recipe``), e.g. the method's own hyper-parameters.
        demo: this method's settings on the offline demo dataset, above its defaults, so that its
            demo finishes in about a minute like the others (DARTS-PT: one tuning epoch per edge).
    """

    name: str
    summary: str
    network: NetworkOptions = NetworkOptions()
    regularizer: Any = None
    smoothing: Any = None
    correction: Any = None
    schedules: tuple[Any, ...] = ()
    projection: Any = None
    val_augment_off: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    defaults: Recipe = Recipe("none")
    fixed: Mapping[str, Any] = field(default_factory=_frozen)
    recipes: Mapping[str, Recipe] = field(default_factory=_frozen)
    demo: Mapping[str, Any] = field(default_factory=_frozen)

    def recipe(self, name: str | None, space: str) -> dict[str, Any]:
        """The settings of recipe ``name`` on ``space`` (``None``/``"paper"``: nothing replaced)."""
        if name is None or name == PAPER_RECIPE:
            return {}
        if name not in self.recipes:
            known = ", ".join([PAPER_RECIPE, *self.recipes])
            raise ValueError(f"--method {self.name} has no recipe {name!r}; choose one of: {known}")
        return self.recipes[name].for_space(space)


#: SmoothDARTS' largest smoothing radius (train_search.py --epsilon_alpha 0.3, L56-57)
SMOOTHING_DEFAULTS = Recipe("xiangning-chen/SmoothDARTS train_search.py --epsilon_alpha",
                            _frozen(smoothing_epsilon=0.3))
LAMBDA_SETTINGS = ("lambda_coef", "lambda_eps0", "lambda_corr")
PROJECTION_SETTINGS = ("projection_interval", "tune_epochs")

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
            recipes=_frozen(original=Recipe(
                "yuhuixu1993/PC-DARTS train_search.py: batch 256 (L24), lr 0.1 (L25), lr_min 0 (L26), arch lr 6e-4 "
                "(L43), alpha steps from epoch 15 on (L156-157)",
                _frozen(batch_size=256, lr=0.1, lr_min=0.0, arch_lr=6e-4, warmup_epochs=15))),
        ),
        Method("betadarts", "beta-DARTS (Ye et al. 2022): beta-decay regulariser on the validation loss",
               regularizer=BetaDecay()),
        Method("sdarts-rs", "SDARTS-RS (Chen & Hsieh 2020): weight steps at randomly perturbed op probabilities",
               smoothing=RandomSmoothing(), settings=("smoothing_epsilon",), defaults=SMOOTHING_DEFAULTS),
        Method("sdarts-adv", "SDARTS-ADV (Chen & Hsieh 2020): weight steps at PGD-perturbed op probabilities",
               smoothing=AdversarialSmoothing(), settings=("smoothing_epsilon",), defaults=SMOOTHING_DEFAULTS),
        Method("darts-minus", "DARTS- (Chu et al. 2021): an auxiliary skip connection decaying from 1 to 0",
               network=NetworkOptions(auxiliary_skip=True), schedules=(AuxiliarySkipDecay(),)),
        Method(
            "lambda-darts",
            "lambda-DARTS (Movahedi et al. 2023): weight steps also raise the correlation of the cells' "
            "architecture gradients",
            correction=LambdaCorrection(), settings=LAMBDA_SETTINGS,
            defaults=Recipe("dr-faustus/Lambda-DARTS sota/cnn/train_search.py --lambda_ 0.125 (L61), --epsilon_0 1e-4 "
                            "(L60); corr as its run_search.sh (the argparse default 'none' switches the method off)",
                            _frozen(lambda_coef=0.125, lambda_eps0=1e-4, lambda_corr="corr")),
            recipes=_frozen(
                original=Recipe(
                    "dr-faustus/Lambda-DARTS run_search.sh L2-13 (DARTS space: corr, lambda 0.25, eps0 1e-3, batch 96) "
                    "and NAS-Bench201/scripts-search/algos/DARTS-V1.sh L17-44 (lambda 0.25, eps0 1e-4, arch lr 1e-4, "
                    "the config's 100 epochs)",
                    _frozen(lambda_coef=0.25, lambda_corr="corr"),
                    _frozen(darts=_frozen(lambda_eps0=1e-3, batch_size=96),
                            nb201=_frozen(lambda_eps0=1e-4, arch_lr=1e-4, epochs=100))),
                **{"a2m-authors": Recipe(
                    "AI-Tech-Research-Lab/AsquaredM Lambda-DARTS/scripts/run_search_DARTS.sh L1-13 (s5, signcorr, "
                    "lambda 0.125, eps0 1e-4, batch 96, arch lr 3e-4, 50 epochs) and run_search_NASBENCH.sh L1-16 "
                    "(corr, lambda 0.125, eps0 1e-4, arch lr 1e-4, 50 epochs)",
                    _frozen(lambda_coef=0.125, lambda_eps0=1e-4, epochs=50),
                    _frozen(darts=_frozen(ops="s5", lambda_corr="signcorr", batch_size=96, arch_lr=3e-4),
                            nb201=_frozen(lambda_corr="corr", arch_lr=1e-4)))},
            ),
        ),
        Method(
            "darts-pt",
            "DARTS-PT (Wang et al. 2021): a first-order supernet, then the genotype by perturbation-based "
            "projection with tuning in between",
            projection=Projection(), settings=PROJECTION_SETTINGS,
            defaults=Recipe("ruocwang/darts-pt exp_scripts/darts-proj-*.sh --proj_intv 5; no early stop; s5 on the "
                            "DARTS space (sota/cnn/train_search.py --search_space s5, L57)",
                            _frozen(projection_interval=5, early_stop=0), _frozen(darts=_frozen(ops="s5"))),
            fixed=_frozen(select="projection"),
            demo=_frozen(projection_interval=1),
            recipes=_frozen(original=Recipe(
                "ruocwang/darts-pt nasbench201/train_search.py --epochs 100 (L43); sota/cnn/train_search.py "
                "--epochs 50 (L44), --search_space s5 (L57)",
                by_space=_frozen(nb201=_frozen(epochs=100), darts=_frozen(epochs=50, ops="s5")))),
        ),
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
