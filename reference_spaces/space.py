"""The contract between the search engine and a search space.

The engine (:mod:`flatarch.reference_spaces.engine`) runs the first-order bi-level loop of
SPEC section 3 for any space that implements :class:`SearchSpace`; the method variants
(DARTS, PC-DARTS, beta-DARTS, SDARTS-RS, DARTS-) are described by :class:`Method` and applied
partly by the engine (regulariser, random smoothing, auxiliary-skip schedule) and partly by the
space's network (partial channels, edge normalisation, the auxiliary skip itself).

How the engine uses a space (additions since the first version are marked *added*; all are
backward compatible):

* spaces are found by name through :mod:`flatarch.reference_spaces.registry` (*added*):
  ``get_space(name, **options)`` builds one (``options`` are the space constructor's keyword
  arguments, e.g. ``table=`` for nb201, passed from ``SearchConfig.space_options``); a built-in
  space adds one ``"name": "module:Class"`` line to ``registry._BUILTIN``, other code calls
  ``register_space(name, factory)``;
* ``defaults`` may also hold ``"channels"`` and ``"cells_per_stage"`` (*added*): the engine passes
  them to ``build_network`` as keywords when the user gives none;
* ``build_network`` receives ``channels=`` and ``cells_per_stage=`` keywords (None: the space's
  default) (*added*);
* an optional ``op_names`` attribute (*added*) labels the ops in the engine's alpha plot;
* ``evaluate`` is called after every epoch and at the end, so it must be cheap (or return ``{}``);
  a space that needs an external file (a benchmark table) should check it in its constructor, so
  a bad path fails before the search and not after its first epoch (*added* as guidance);
* the network is put on the device with ``.to(device)``, trained in ``train()`` mode throughout,
  and its ``state_dict`` (which holds the alphas) is what checkpoints store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass(frozen=True)
class Method:
    """A differentiable-NAS method, independent of the architecture update (ArchOptimizer).

    Attributes:
        name: ``darts``, ``pcdarts``, ``betadarts``, ``sdarts-rs`` or ``darts-minus``.
        partial_channels: PC-DARTS channel proportion ``1/K`` as ``K`` (1 = all channels).
        edge_normalization: PC-DARTS softmax-weighted ``betas`` on the incoming edges of a node.
        beta_decay: add the beta-DARTS regulariser to the validation loss.
        random_smoothing: SDARTS-RS uniform noise amplitude on alpha before each weight step (0 = off).
        auxiliary_skip: DARTS- auxiliary skip connection whose weight decays 1 -> 0 over the search.
    """

    name: str = "darts"
    partial_channels: int = 1
    edge_normalization: bool = False
    beta_decay: bool = False
    random_smoothing: float = 0.0
    auxiliary_skip: bool = False

    @classmethod
    def from_name(cls, name: str) -> Method:
        presets = {
            "darts": cls("darts"),
            "pcdarts": cls("pcdarts", partial_channels=4, edge_normalization=True),
            "betadarts": cls("betadarts", beta_decay=True),
            "sdarts-rs": cls("sdarts-rs", random_smoothing=0.03),
            "darts-minus": cls("darts-minus", auxiliary_skip=True),
        }
        if name not in presets:
            raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(presets)}")
        return presets[name]


@runtime_checkable
class SearchNetwork(Protocol):
    """A weight-sharing supernet. Its forward reads its own live architecture tensors, so the
    ArchOptimizer can evaluate it at perturbed alphas through :func:`flatarch.module_loss`."""

    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """The alphas (and PC-DARTS betas) as a flat ``{name: parameter}`` dict, registered
        parameters of the module (their names are attribute paths usable by ``module_loss``)."""

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter that is not an architecture parameter."""

    def set_progress(self, fraction: float) -> None:
        """Search progress in ``[0, 1]`` (DARTS- decays its auxiliary skip weight by it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SearchSpace(Protocol):
    """What the engine needs from a space. ``name`` is the ``--space`` value of the CLI."""

    name: str
    #: per-space defaults the CLI uses when a flag is not given, e.g. ``{"rho": 1e-2, "eps": 1e-2}``
    defaults: dict[str, Any]

    def build_network(self, *, num_classes: int, in_channels: int, method: Method, **options: Any) -> SearchNetwork:
        ...

    def genotype(self, network: SearchNetwork) -> Any:
        """The discrete architecture the network currently encodes (JSON-serialisable through
        :meth:`genotype_to_json`)."""

    def genotype_to_json(self, genotype: Any) -> Any: ...

    def beta_decay_groups(self, network: SearchNetwork) -> dict[str, torch.Tensor]:
        """The alpha tensors the beta-DARTS regulariser acts on, by cell type
        (``{"alpha": ...}`` on NAS-Bench-201, ``{"normal": ..., "reduce": ...}`` on DARTS)."""

    def evaluate(self, genotype: Any, *, dataset: str) -> dict[str, float]:
        """Accuracies of a genotype where the space knows them without training (benchmark
        lookup on NAS-Bench-201); an empty dict where it does not."""
