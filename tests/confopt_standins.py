"""Stand-ins with the shapes of confopt's classes (automl/ConfigurableOptimizer @ 13bde40), for the adapter tests.

confopt's distribution is not on the package index (and the index's ``confopt`` is another
project); its code must not be copied. Written from its interfaces, at toy size:

* :class:`NB201SearchModel` (``searchspace/nb201/core/model_search.py``): the alphas are one
  ``nn.Parameter`` attribute ``arch_parameters`` of shape ``[6, ops]`` (L132-134), the betas
  ``beta_parameters`` ``[6]``; ``sample`` is a replaceable function (softmax by default, L278-280)
  applied to the live alphas at every forward (L282-297, L323); forward returns
  ``(features, logits)``. Its first forward draws from torch's generator before anything else, as
  confopt's mixed ops do when they count their FLOPs on a ``randn_like`` input
  (``searchspace/common/mixop.py`` L88-89, L125-131).
* :class:`NB201SearchSpace` (``searchspace/common/base_search.py`` L17-121 and
  ``searchspace/nb201/supernet.py`` L62-96): a wrapper holding ``model``, with the *property*
  ``arch_parameters`` returning a new list ``[model.arch_parameters]`` at each call,
  ``set_arch_parameters`` (a ``.data`` swap), ``model_weight_parameters()``, components.
* :class:`GumbelSoftmaxSampler`: a stochastic sampler drawing fresh noise from torch's
  generator at every forward (as confopt's GDAS/SNAS samplers do, ``archsampler/gdas/sampler.py``
  L41-59), kept soft so that finite differences stay meaningful.
* :class:`SearchSpaceHandler` (``train/search_space_handler.py`` L33-214): ``add_reg_terms``,
  ``perturbation``, ``perturb_parameter``, ``adapt_search_space`` (which puts the perturbator
  among the space's ``components``, L91-92).
* :class:`Loader`: a shuffling loader, its order drawn from torch's generator at each ``iter()``
  as a ``DataLoader(shuffle=True)`` draws its sampler's seed.
* :class:`ConfigurableTrainer` (``train/configurable_trainer.py``): the constructor's arguments,
  ``train`` calling ``_train_epoch`` positionally (L230-244) and ``_train_epoch``'s arch and weight
  steps (L423-510), ``_load_checkpoint``'s truthiness test on the arch optimizer (L647-648).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from adapter_models import NB201_OPS, SearchCell


class NB201SearchModel(nn.Module):
    def __init__(self, C=4, N=1, num_classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.cells = nn.ModuleList(SearchCell(C) for _ in range(N))
        self.lastact = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU())
        self.classifier = nn.Linear(C, num_classes)
        self.arch_parameters = nn.Parameter(1e-3 * torch.randn(6, len(NB201_OPS)))
        self.beta_parameters = nn.Parameter(1e-3 * torch.randn(6))
        self.flops = None

    def sample(self, alphas):
        return F.softmax(alphas, dim=-1)

    def forward(self, inputs):
        if self.flops is None:  # confopt's FLOP count at the first forward: a draw from the generator
            self.flops = float(torch.randn_like(inputs).numel())
        weights = self.sample(self.arch_parameters)
        feature = self.stem(inputs)
        for cell in self.cells:
            feature = cell(feature, weights.clone())
        out = self.lastact(feature).mean(dim=(2, 3))
        return out, self.classifier(out)


class NB201SearchSpace(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.model = NB201SearchModel(*args, **kwargs)
        self.components = []

    @property
    def arch_parameters(self):
        return [self.model.arch_parameters]

    @property
    def beta_parameters(self):
        return [self.model.beta_parameters]

    def set_arch_parameters(self, arch_parameters):
        self.model.arch_parameters.data = arch_parameters[0]

    def set_sample_function(self, sample_function):
        self.model.sample = sample_function

    def model_weight_parameters(self):
        arch = {id(p) for p in self.arch_parameters} | {id(p) for p in self.beta_parameters}
        return [p for p in self.model.parameters() if id(p) not in arch]

    def forward(self, x):
        return self.model(x)

    def new_step(self):
        for component in self.components:
            component.new_step()


class GumbelSoftmaxSampler:
    def __init__(self, tau=1.0):
        self.tau = tau

    def sample(self, alpha):
        gumbels = -torch.empty_like(alpha).exponential_().log()
        return F.softmax((alpha.log_softmax(dim=-1) + gumbels) / self.tau, dim=-1)


class L2ArchRegularizer:
    """An arch-dependent regulariser term (confopt's Regularizer adds such terms to both losses)."""

    def __init__(self, weight=0.1):
        self.weight = weight

    def add_reg_terms(self, search_space, loss):
        return loss + self.weight * sum(a.pow(2).sum() for a in search_space.arch_parameters)


class SearchSpaceHandler:
    def __init__(self, regularizer=None, perturbation=None):
        self.regularizer = regularizer
        self.perturbation = perturbation

    def add_reg_terms(self, search_space, loss):
        if self.regularizer:
            return self.regularizer.add_reg_terms(search_space, loss)
        return loss

    def perturb_parameter(self, search_space):
        if self.perturbation is not None:
            search_space.set_arch_parameters(self.perturbation(search_space.arch_parameters))

    def adapt_search_space(self, search_space):
        if self.perturbation is not None:
            search_space.components.append(self.perturbation)


class Perturbator:
    """confopt's SDARTS perturbator's shape: noise written into the alphas (``_perturb_and_update_alphas``)."""

    def __call__(self, alphas):
        return [a + 0.1 for a in alphas]

    def _perturb_and_update_alphas(self):
        pass


class Loader:
    """Batches in an order drawn from torch's generator at each ``iter()``, turned by one more batch
    each time (a new batch for every ``next(iter(loader))``, also with few batches)."""

    def __init__(self, batches, start=0):
        self.batches = list(batches)
        self.position = start

    def __iter__(self):
        start = self.position
        self.position += 1
        order = torch.randperm(len(self.batches)).tolist()
        for i in range(len(self.batches)):
            yield self.batches[order[(start + i) % len(self.batches)]]

    def __len__(self):
        return len(self.batches)


class ConfigurableTrainer:
    def __init__(self, model, data, model_optimizer, arch_optimizer, scheduler, criterion, logger, batch_size,
                 use_data_parallel=False, print_freq=20, drop_path_prob=0.1, model_to_load=None,
                 checkpointing_freq=2, epochs=100, debug_mode=False, query_dataset="cifar10",
                 benchmark_api=None, early_stopper=None):
        self.model = model
        self.model_optimizer = model_optimizer
        self.arch_optimizer = arch_optimizer
        self.scheduler = scheduler
        self.data = data  # (train Loader, valid Loader)
        self.device = torch.device("cpu")
        self.criterion = criterion
        self.print_freq = print_freq
        self.epochs = epochs
        self.arch_records = []  # what the meters of the arch pass see

    def train(self, search_space_handler, epochs=None):
        train_loader, val_loader = self.data
        for _ in range(epochs or self.epochs):
            self._train_epoch(search_space_handler, train_loader, val_loader, self.model, self.criterion,
                              self.model_optimizer, self.arch_optimizer, self.print_freq)

    def _train_epoch(self, search_space_handler, train_loader, valid_loader, network, criterion, w_optimizer,
                     arch_optimizer, print_freq, is_warm_epoch=False, calc_gm_score=False, oles=False,
                     oles_frequency=20, oles_threshold=0.4):
        network.train()
        losses = []
        for x_train, y_train in train_loader:
            network.new_step()
            x_val, y_val = (t.to(self.device) for t in next(iter(valid_loader)))
            x_train, y_train = x_train.to(self.device), y_train.to(self.device)
            if not is_warm_epoch:  # the arch step: one pass, backward, a closure-less step, the perturbator
                arch_optimizer.zero_grad()
                logits = network(x_val)[1]
                arch_loss = search_space_handler.add_reg_terms(network, criterion(logits, y_val))
                arch_loss.backward()
                arch_optimizer.step()
                search_space_handler.perturb_parameter(network)
                self.arch_records.append((logits.detach(), arch_loss.detach()))
            w_optimizer.zero_grad()  # the weight step, gradients clipped to norm 5
            train_loss = search_space_handler.add_reg_terms(network, criterion(network(x_train)[1], y_train))
            train_loss.backward()
            torch.nn.utils.clip_grad_norm_(network.model_weight_parameters(), 5)
            w_optimizer.step()
            losses.append(train_loss.item())
        return losses

    def _load_checkpoint(self, checkpoint):
        self.model.load_state_dict(checkpoint["model"])
        if self.arch_optimizer:
            self.arch_optimizer.load_state_dict(checkpoint["arch_optimizer"])
        self.model_optimizer.load_state_dict(checkpoint["w_optimizer"])

    def checkpoint(self):
        return {"model": self.model.state_dict(), "arch_optimizer": self.arch_optimizer.state_dict(),
                "w_optimizer": self.model_optimizer.state_dict()}
