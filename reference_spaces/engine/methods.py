"""The methods of the paper's table 2 as recipes of components (``--method``).

A :class:`Method` names what it changes and nothing else; the loop
(:mod:`flatarch.reference_spaces.engine.loop`) is the same first-order bi-level loop for all of
them, and every method composes with every architecture update (``--optimizer``): A2-PC-DARTS is
``method="pcdarts", optimizer="a2m"``.

Settings a method's authors ran with are *recipes*: named sets of settings (``--recipe``) that
replace the paper's common settings where the user gave none. The paper's common settings
(tables 3 and 4) stay the default; ``original`` is a method's own authors' settings and
``a2m-authors`` (every method) what the A2M authors' own code ran for the paper's table 2, settings
and code paths alike, each cited in the recipe's source (docs/reproduce.md lists every departure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..recipes import AUTHORS_RECIPE, PAPER_RECIPE
from ..space import NetworkOptions
from .components import AdversarialSmoothing, AuxiliarySkipDecay, BetaDecay, LambdaCorrection, RandomSmoothing
from .projection import Projection

PAPER_SOURCE = "the A2M paper's common settings (tables 3 and 4)"


def _frozen(mapping: Mapping[str, Any] | None = None, **kwargs: Any) -> Mapping[str, Any]:
    return MappingProxyType({**(mapping or {}), **kwargs})


@dataclass(frozen=True)
class Recipe:
    """Named settings of a method; ``by_space`` adds or overrides settings per search space, and
    ``by_update`` (space -> update -> settings) per space and architecture update, where a method's
    runs differed between its standard and its A2 row."""

    source: str
    settings: Mapping[str, Any] = field(default_factory=_frozen)
    by_space: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen)
    by_update: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=_frozen)

    def for_space(self, space: str, update: str | None = None) -> dict[str, Any]:
        return {**self.settings, **self.by_space.get(space, {}), **self.by_update.get(space, {}).get(update, {})}


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

    def recipe(self, name: str | None, space: str, update: str | None = None) -> dict[str, Any]:
        """The settings of recipe ``name`` on ``space`` with ``update`` (``None``/``"paper"``: nothing
        replaced)."""
        if name is None or name == PAPER_RECIPE:
            return {}
        if name not in self.recipes:
            known = ", ".join([PAPER_RECIPE, *self.recipes])
            raise ValueError(f"--method {self.name} has no recipe {name!r}; choose one of: {known}")
        return self.recipes[name].for_space(space, update)

    def recipe_source(self, name: str | None) -> str:
        """Where recipe ``name``'s settings come from."""
        if name is None or name == PAPER_RECIPE:
            return PAPER_SOURCE
        return self.recipes[name].source


#: SmoothDARTS' largest smoothing radius (train_search.py --epsilon_alpha 0.3, L56-57)
SMOOTHING_DEFAULTS = Recipe("xiangning-chen/SmoothDARTS train_search.py --epsilon_alpha",
                            _frozen(smoothing_epsilon=0.3))
LAMBDA_SETTINGS = ("lambda_coef", "lambda_eps0", "lambda_corr")
PROJECTION_SETTINGS = ("projection_interval", "tune_epochs")

#: what every method ran with in the A2M authors' code where flatarch's defaults differ: the
#: validation split augmented, and every pass of an alpha step updating the BatchNorm running
#: statistics
AUTHORS_SETTINGS = _frozen(val_augment=True, running_stats="every-pass")
AUTHORS_SOURCE = ("AI-Tech-Research-Lab/AsquaredM: validation split augmented (train_search.py --data_aug default "
                  "True, L84, L216-220; sota/cnn/train_search.py L199-202); every alpha-step pass in train mode, "
                  "updating the BatchNorm running statistics (optimizers/darts/architect.py L298-364 under "
                  "model.train(), train_search.py L435, sota/cnn/train_search.py L327)")


def _as_run(source: str = "", settings: Mapping[str, Any] | None = None,
            by_space: Mapping[str, Mapping[str, Any]] | None = None,
            by_update: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> Recipe:
    """A method's ``a2m-authors`` recipe: :data:`AUTHORS_SETTINGS` and the method's own."""
    return Recipe(AUTHORS_SOURCE + (f"; {source}" if source else ""), _frozen(AUTHORS_SETTINGS, **(settings or {})),
                  _frozen(by_space), _frozen(by_update))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("darts", "first-order DARTS (Liu et al. 2019): softmax over the ops of each edge",
               val_augment_off=("nb201",), recipes=_frozen({AUTHORS_RECIPE: _as_run()})),
        Method(
            "pcdarts",
            "PC-DARTS (Xu et al. 2020): 1/4 of the channels through the mixed ops; edge normalisation "
            "on the DARTS space",
            settings=("edge_normalization", "partial_channels"),
            defaults=Recipe("yuhuixu1993/PC-DARTS model_search.py: K = 4 (L31-50), the betas on the DARTS space "
                            "(L78-85); K = 4 in the A2M authors' code too (AsquaredM sota/cnn/model_search_pcdarts.py "
                            "L33-49, nasbench201/model.py L162-188), no betas on NAS-Bench-201 (nasbench201/model.py "
                            "L161-191)",
                            _frozen(partial_channels=4),
                            by_space=_frozen(darts=_frozen(edge_normalization=True),
                                             nb201=_frozen(edge_normalization=False))),
            recipes=_frozen({
                "original": Recipe(
                    "yuhuixu1993/PC-DARTS train_search.py: batch 256 (L24), lr 0.1 (L25), lr_min 0 (L26), arch lr "
                    "6e-4 (L43), alpha steps from epoch 15 on (L156-157)",
                    _frozen(batch_size=256, lr=0.1, lr_min=0.0, arch_lr=6e-4, warmup_epochs=15)),
                AUTHORS_RECIPE: _as_run(
                    "DARTS space: sota/cnn/train_search_pcdarts.py (scripts/pc-darts-search.sh L12-19): no edge "
                    "normalisation (PCDARTSNetwork, sota/cnn/model_search_pcdarts.py L72-109, creates alphas only: "
                    "sota/cnn/model_search.py L212-221), no best-epoch selection and no early stop (L160-190: the "
                    "final genotype)",
                    by_space=_frozen(darts=_frozen(edge_normalization=False, select="final", early_stop=0))),
                "imagenet": Recipe(
                    "yuhuixu1993/PC-DARTS train_search_imagenet.py: batch 1024 (L26), lr 0.5 (L27), lr_min 0 (L28), "
                    "arch lr 6e-3 (L43), alpha steps from epoch 35 on (--begin, L45, L199), the weights' lr warmed "
                    "up linearly over 5 epochs (L155-158); K = 2 (model_search_imagenet.py L34-36, L42-43, L59); with "
                    "--dataset imagenet (its data protocol)",
                    _frozen(batch_size=1024, lr=0.5, lr_min=0.0, arch_lr=6e-3, warmup_epochs=35, lr_warmup_epochs=5,
                            partial_channels=2))}),
        ),
        Method("betadarts", "beta-DARTS (Ye et al. 2022): beta-decay regulariser on the validation loss",
               regularizer=BetaDecay(), settings=("beta_index",),
               defaults=Recipe("beta-DARTS optimizers/darts/architect.py: the coefficient from the epoch",
                               _frozen(beta_index="epoch")),
               recipes=_frozen({AUTHORS_RECIPE: _as_run(
                   "DARTS space: the coefficient 0.5 t from the batch index t (sota/cnn/train_search.py L338 passes "
                   "step as the epoch to optimizers/darts/architect.py step, L83, L144)",
                   by_space=_frozen(darts=_frozen(beta_index="batch")))})),
        Method("sdarts-rs", "SDARTS-RS (Chen & Hsieh 2020): weight steps at randomly perturbed op probabilities",
               smoothing=RandomSmoothing(), settings=("smoothing_epsilon",), defaults=SMOOTHING_DEFAULTS,
               recipes=_frozen({AUTHORS_RECIPE: _as_run()})),
        Method("sdarts-adv", "SDARTS-ADV (Chen & Hsieh 2020): weight steps at PGD-perturbed op probabilities",
               smoothing=AdversarialSmoothing(), settings=("smoothing_epsilon",), defaults=SMOOTHING_DEFAULTS,
               recipes=_frozen({AUTHORS_RECIPE: _as_run()})),
        Method("darts-minus", "DARTS- (Chu et al. 2021): an auxiliary skip connection decaying from 1 to 0",
               network=NetworkOptions(auxiliary_skip=True), schedules=(AuxiliarySkipDecay(),),
               recipes=_frozen({AUTHORS_RECIPE: _as_run()})),
        Method(
            "lambda-darts",
            "lambda-DARTS (Movahedi et al. 2023): weight steps also raise the correlation of the cells' "
            "architecture gradients",
            correction=LambdaCorrection(), settings=LAMBDA_SETTINGS,
            defaults=Recipe("dr-faustus/Lambda-DARTS sota/cnn/train_search.py --lambda_ 0.125 (L61), --epsilon_0 1e-4 "
                            "(L60); corr as its run_search.sh (the argparse default 'none' switches the method off)",
                            _frozen(lambda_coef=0.125, lambda_eps0=1e-4, lambda_corr="corr")),
            recipes=_frozen({
                "original": Recipe(
                    "dr-faustus/Lambda-DARTS run_search.sh L2-13 (DARTS space: corr, lambda 0.25, eps0 1e-3, batch 96) "
                    "and NAS-Bench201/scripts-search/algos/DARTS-V1.sh L17-44 (lambda 0.25, eps0 1e-4, arch lr 1e-4, "
                    "the config's 100 epochs)",
                    _frozen(lambda_coef=0.25, lambda_corr="corr"),
                    _frozen(darts=_frozen(lambda_eps0=1e-3, batch_size=96),
                            nb201=_frozen(lambda_eps0=1e-4, arch_lr=1e-4, epochs=100))),
                AUTHORS_RECIPE: _as_run(
                    "Lambda-DARTS/scripts/run_search_DARTS.sh L3-13 (s5, signcorr, lambda 0.125, eps0 1e-4, batch 96, "
                    "arch lr 3e-4, 50 epochs) running Lambda-DARTS/sota/cnn/train_search.py (the final genotype, "
                    "L226, no early stop, L178-224); Lambda-DARTS/scripts/run_search_NASBENCH.sh L3-16 (corr, lambda "
                    "0.125, eps0 1e-4, arch lr 1e-4) running NAS-Bench201/exps/algos/DARTS-V1.py: the config's 50 "
                    "epochs (configs/nas-benchmark/algos/DARTS.config L5; the script's epochs=50, L4, is never "
                    "passed), the weight step before the architecture step (L38-63), the final genotype (L243)",
                    _frozen(lambda_coef=0.125, lambda_eps0=1e-4, epochs=50, select="final", early_stop=0),
                    _frozen(darts=_frozen(lambda_corr="signcorr", batch_size=96, arch_lr=3e-4),
                            nb201=_frozen(lambda_corr="corr", arch_lr=1e-4, step_order="weights-first")))}),
        ),
        Method(
            "darts-pt",
            "DARTS-PT (Wang et al. 2021): a first-order supernet, then the genotype by perturbation-based "
            "projection with tuning in between",
            projection=Projection(), settings=PROJECTION_SETTINGS,
            defaults=Recipe("ruocwang/darts-pt exp_scripts/darts-proj-*.sh --proj_intv 5; no early stop",
                            _frozen(projection_interval=5, early_stop=0)),
            fixed=_frozen(select="projection"),
            demo=_frozen(projection_interval=1),
            recipes=_frozen({
                "original": Recipe(
                    "ruocwang/darts-pt nasbench201/train_search.py --epochs 100 (L43); sota/cnn/train_search.py "
                    "--epochs 50 (L44)",
                    by_space=_frozen(nb201=_frozen(epochs=100), darts=_frozen(epochs=50))),
                AUTHORS_RECIPE: _as_run(
                    "dartspt/: the A2 DARTS-space runs at batch 32 in both phases (exp_scripts/darts-sota.sh L7, L26; "
                    "darts-proj-sota.sh L7, L36; experiments/sota/cifar10/search-darts-sota-s5-2-darts-sam/log.txt "
                    "L2), "
                    "the standard one at 64 (search-darts-sota-s5-2/log.txt L2); the standard NAS-Bench-201 row "
                    "projects a 100-epoch supernet (experiments/nasbench201/search-darts-201-0/"
                    "log_resume-100_dev-proj_seed-0_intv-5.txt L1, resume_epoch=100; nasbench201/train_search.py "
                    "--epochs default 100, L43), the A2 row a 50-epoch one (exp_scripts/darts-201.sh L24)",
                    by_update=_frozen(darts=_frozen(a2m=_frozen(batch_size=32)),
                                      nb201=_frozen({"first-order": _frozen(epochs=100)})))}),
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
