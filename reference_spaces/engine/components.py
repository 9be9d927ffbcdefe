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
import flatarch.distributed
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
    #: the mean over data-parallel ranks of a list of tensors (``None`` on one rank)
    grad_reduce: flatarch.distributed.GradReduce | None = None


def mixing_weights(network: SearchNetwork) -> dict[str, torch.Tensor]:
    """``softmax(alpha)`` per group: the architecture weights the network uses by default."""
    return {group: torch.softmax(alpha, dim=-1) for group, alpha in network.alphas().items()}


def widened(logits: torch.Tensor) -> torch.Tensor:
    """Logits for the loss: bf16 (``--amp``) in float32, float32 and float64 as they are (a search
    under ``torch.set_default_dtype(torch.float64)`` runs in float64 throughout)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def cross_entropy(ctx: Context, x: torch.Tensor, y: torch.Tensor, weights: ArchWeights | None) -> torch.Tensor:
    with ctx.autocast():
        logits = ctx.network(x, weights)
    return F.cross_entropy(widened(logits), y)


#: ``--beta-index``: what beta-DARTS' coefficient ``lambda(t) = 50 t / 100`` counts: the epoch
#: (beta-DARTS), or the batch index within the epoch, as the A2M authors' DARTS-space runs did
#: (AsquaredM ``sota/cnn/train_search.py`` L338 passes the batch index ``step`` where
#: ``optimizers/darts/architect.py`` L83 takes the epoch)
BETA_INDICES = ("epoch", "batch")


class BetaDecay:
    """beta-DARTS (Ye et al. 2022): ``lambda(t) * sum_g w_g * mean_edges logsumexp(alpha_g)`` added to
    the validation loss; ``lambda(t) = 50 * t / 100`` as in the beta-DARTS repository
    (``optimizers/darts/architect.py``), ``t`` the epoch or the batch index
    (``config.beta_index``, :data:`BETA_INDICES`), the per-group weights ``w_g`` from the space (A2M
    paper appendix C.5 on the DARTS space)."""

    def loss_term(self, ctx: Context, network: SearchNetwork, epoch: int, step: int) -> torch.Tensor | None:
        weight = flatarch.regularizers.beta_decay_weight(step if ctx.config.beta_index == "batch" else epoch)
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
                                                   steps=self.steps, generator=ctx.generator,
                                                   grad_reduce=ctx.grad_reduce)
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


class LambdaCorrection:
    """lambda-DARTS (Movahedi et al. 2023): every cell of the weight step gets its own copy ``A_l``
    of the mixing weights, and the weights' gradient is corrected by
    ``lambda_t * flatarch.regularizers.lambda_correction(...)`` before clipping, with
    ``lambda_t = lambda * epoch / (epochs - 1)`` (Lambda-DARTS ``sota/cnn/train_search.py``
    L168-170, L243-248). Reduction cells keep the shared weights: the repository perturbs normal
    cells only (``model_search.py`` L263-265); on NAS-Bench-201 all 15 cells take part."""

    shared_groups = ("reduce",)

    def per_cell(self, ctx: Context, weights: dict[str, torch.Tensor]
                 ) -> tuple[dict[str, Any], list[torch.Tensor], list[tuple[str, int]]]:
        """The weights with one leaf copy per cell for every regularised group, the leaves, and
        their layout ``[(group, cells)]``."""
        counts = ctx.network.cells_per_group()
        out: dict[str, Any] = dict(weights)
        leaves: list[torch.Tensor] = []
        layout = []
        for group, w in weights.items():
            if group in self.shared_groups:
                continue
            cells = [w.detach().clone().requires_grad_(True) for _ in range(counts[group])]
            out[group] = cells
            leaves += cells
            layout.append((group, len(cells)))
        return out, leaves, layout

    def correct(self, ctx: Context, batch: Any, weights: dict[str, Any], leaves: list[torch.Tensor],
                layout: list[tuple[str, int]], params: list[torch.Tensor], epoch: int) -> None:
        """``w.grad += lambda_t * correction``; ``leaves`` hold ``dL/dA_l`` from the step's backward."""
        cfg = ctx.config
        strength = cfg.lambda_coef * epoch / max(cfg.epochs - 1, 1)
        x, y = batch

        def regrouped(layer_weights: list[torch.Tensor]) -> dict[str, Any]:
            out, start = dict(weights), 0
            for group, count in layout:
                out[group] = layer_weights[start:start + count]
                start += count
            return out

        correction = flatarch.regularizers.lambda_correction(
            lambda ws: cross_entropy(ctx, x, y, regrouped(ws)), [leaf.detach() for leaf in leaves], params,
            eps0=cfg.lambda_eps0, corr=cfg.lambda_corr, layer_grads=[leaf.grad for leaf in leaves],
            grad_reduce=ctx.grad_reduce)
        for param, term in zip(params, correction):
            if param.grad is None:
                param.grad = strength * term
            else:
                param.grad.add_(term, alpha=strength)
