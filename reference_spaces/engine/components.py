"""The pieces a method is made of, each a thin engine-side wrapper of a core building block.

The search loop knows four slots (see :class:`~flatarch.reference_spaces.engine.methods.Method`):

* a **regulariser** adds a term to the validation loss the ArchOptimizer differentiates, so
  every gradient evaluation of the update sees it (:class:`BetaDecay`);
* a **smoothing** replaces the architecture weights of the weight step
  (:class:`RandomSmoothing`, :class:`AdversarialSmoothing`);
* a **schedule** sets a per-epoch quantity before the epoch's training (:class:`AuxiliarySkipDecay`);
* the network options (:class:`~flatarch.reference_spaces.space.NetworkOptions`) change the
  supernet itself (partial channels, edge normalisation, the auxiliary skip).

Each component gets a :class:`Context`: the network, the space, the settings and a seeded
generator, so components hold no hidden global state and resume exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

import flatarch
from flatarch import smoothing

from ..space import ArchWeights, SearchNetwork, SearchSpace


@dataclass
class Context:
    """What a component may read: the network, the space, the resolved settings, a generator."""

    network: SearchNetwork
    space: SearchSpace
    config: Any  # SearchConfig (resolved)
    generator: torch.Generator
    autocast: Callable[[], Any]


def mixing_weights(network: SearchNetwork) -> dict[str, torch.Tensor]:
    """``softmax(alpha)`` per group: the architecture weights the network uses by default."""
    return {group: torch.softmax(alpha, dim=-1) for group, alpha in network.alphas().items()}


def cross_entropy(ctx: Context, x: torch.Tensor, y: torch.Tensor, weights: ArchWeights | None) -> torch.Tensor:
    with ctx.autocast():
        logits = ctx.network(x, weights)
    return F.cross_entropy(logits.float(), y)


class BetaDecay:
    """beta-DARTS (Ye et al. 2022): ``lambda(e) * sum_g w_g * mean_edges logsumexp(alpha_g)`` added to
    the validation loss; ``lambda(e) = 50 * e / 100`` as in the beta-DARTS repository
    (``optimizers/darts/architect.py``), the per-group weights ``w_g`` from the space (A2M paper
    appendix C.5 on the DARTS space)."""

    def loss_term(self, ctx: Context, network: SearchNetwork, epoch: int) -> torch.Tensor | None:
        weight = flatarch.regularizers.beta_decay_weight(epoch)
        if not weight:
            return None
        return weight * flatarch.regularizers.beta_decay(network.alphas(), ctx.space.beta_decay_weights)


class RandomSmoothing:
    """SDARTS-RS: the weight step runs at ``random_smoothing(softmax(alpha), e_t)``, a fresh draw per
    group and step, ``e_t`` from :func:`flatarch.smoothing.smoothing_radius`."""

    def weights(self, ctx: Context, epoch: int, batch: Any) -> dict[str, torch.Tensor]:
        radius = smoothing.smoothing_radius(epoch, ctx.config.epochs, end=ctx.config.smoothing_epsilon)
        with torch.no_grad():
            return {g: smoothing.random_smoothing(p, radius, generator=ctx.generator)
                    for g, p in mixing_weights(ctx.network).items()}


class AdversarialSmoothing:
    """SDARTS-ADV: the weight step runs at the result of a 7-step PGD attack on the training loss
    over the mixing probabilities (:func:`flatarch.smoothing.adversarial_smoothing`), the network
    in eval mode during the attack as in SmoothDARTS."""

    steps = 7

    def weights(self, ctx: Context, epoch: int, batch: Any) -> dict[str, torch.Tensor]:
        radius = smoothing.smoothing_radius(epoch, ctx.config.epochs, end=ctx.config.smoothing_epsilon)
        x, y = batch
        network = ctx.network
        with torch.no_grad():
            clean = mixing_weights(network)
        network.eval()
        try:
            return smoothing.adversarial_smoothing(lambda w: cross_entropy(ctx, x, y, w), clean, radius,
                                                   steps=self.steps, generator=ctx.generator)
        finally:
            network.train()


class AuxiliarySkipDecay:
    """DARTS- (Chu et al. 2021): the auxiliary skip's weight ``(E - e) / E``, stepped after each epoch's
    training as the A2M authors' code does (AsquaredM ``train_search.py`` L268-271): epochs 0 and 1
    train with 1, epoch ``e >= 1`` with ``(E - e + 1) / E``, the last with ``2 / E``. (The original
    DARTS- code steps before the epoch, one epoch earlier; AsquaredM fixes ``E = 50``, we use the
    run's epochs.)"""

    def start_epoch(self, ctx: Context, epoch: int) -> None:
        epochs = ctx.config.epochs
        ctx.network.set_auxiliary_skip(1.0 if epoch == 0 else (epochs - epoch + 1) / epochs)
