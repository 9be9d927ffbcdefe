"""flatarch.adapters.patch: an Architect-compatible object for other DARTS-derived code bases."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from adapter_checks import OptimizerSpy, independent_a2m, make_batch, original_args, reference_direction
from adapter_models import DartsNetwork, NB201Network
from confopt_standins import NB201SearchSpace
from flatarch.adapters import STYLES, add_arguments, beta_darts, darts, darts_pt, patch, pc_darts

import flatarch


class RenamedLossModel(nn.Module):
    """A code base whose search model calls its loss `criterion_loss` and keeps alphas in a dict."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 8 * 8, 3)
        self.alphas = {"a": (0.1 * torch.randn(3, 2)).requires_grad_(True)}

    def arch_parameters(self):
        return list(self.alphas.values())

    def forward(self, x):
        mix = F.softmax(self.alphas["a"], dim=-1)
        out = self.linear(x.flatten(1))
        return out * mix[:, 0] + out.tanh() * mix[:, 1]

    def criterion_loss(self, x, y):
        return F.cross_entropy(self(x), y)


def test_styles_are_the_repository_architects():
    assert STYLES == {"darts": darts.Architect, "pc-darts": pc_darts.Architect, "beta-darts": beta_darts.Architect,
                      "darts-pt": darts_pt.Architect}
    torch.manual_seed(0)
    model = DartsNetwork(4, 3, 3, nn.CrossEntropyLoss())
    assert type(patch(model, original_args())) is darts.Architect
    assert type(patch(model, original_args(), style="beta_darts")) is beta_darts.Architect


def test_keywords_without_args_and_over_args():
    torch.manual_seed(0)
    model = DartsNetwork(4, 3, 3, nn.CrossEntropyLoss())
    architect = patch(model, arch_update="sam", rho=0.05, arch_learning_rate=6e-4)
    assert isinstance(architect.update, flatarch.SAM) and architect.update.rho == 0.05
    assert architect.optimizer.param_groups[0]["lr"] == 6e-4
    architect = patch(model, original_args(arch_update="usam", rho=0.2), rho=0.3)
    assert isinstance(architect.update, flatarch.USAM) and architect.update.rho == 0.3
    architect = patch(model, {"arch_update": "first-order", "arch_learning_rate": 1e-3})
    assert isinstance(architect.update, flatarch.FirstOrder)
    assert architect.optimizer.param_groups[0]["lr"] == 1e-3


def test_val_loss_for_a_model_without_underscore_loss():
    torch.manual_seed(1)
    model = RenamedLossModel()
    with pytest.raises(TypeError, match="_loss"):
        patch(model)
    architect = patch(model, val_loss=lambda m, x, y: m.criterion_loss(x, y), rho=0.1)
    spy = OptimizerSpy(architect)
    x, y = make_batch(2)
    alpha = model.alphas["a"]
    before = alpha.detach().clone()

    # flatarch directly, functional convention, on the same point
    def functional(a):
        model.alphas["a"] = a[0]
        try:
            return model.criterion_loss(x, y)
        finally:
            model.alphas["a"] = alpha

    expected, _ = flatarch.A2M([alpha], rho=0.1).direction(functional)
    architect.step(x, y, x, y, 0.025, None, unrolled=False)
    torch.testing.assert_close(spy.calls[0]["grads"][0], expected[0], rtol=1e-5, atol=1e-7)
    assert torch.equal(spy.calls[0]["alphas"][0], before)
    assert not torch.equal(alpha, before)


def test_beta_style_on_nb201_matches_the_module_architect():
    torch.manual_seed(2)
    model = NB201Network(4, 1, 4, 3, nn.CrossEntropyLoss())
    architect = patch(model, original_args(), style="beta-darts")
    spy = OptimizerSpy(architect)
    batch = make_batch(3)

    def compute(m, b):
        return m._loss(*b) + 2.0 * torch.logsumexp(m._arch_parameters, dim=-1).mean()

    expected = reference_direction(model, ["_arch_parameters"], batch, "a2m", compute=compute, rho=1e-2)
    architect.step(*batch, *batch, 0.025, None, 4, unrolled=False)
    torch.testing.assert_close(spy.calls[0]["grads"][0], expected[0], rtol=1e-5, atol=1e-7)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="style"):
        patch(DartsNetwork(4, 3, 3, nn.CrossEntropyLoss()), style="gdas")
    with pytest.raises(TypeError, match="arch_parameters"):
        patch(nn.Linear(2, 2))
    model = DartsNetwork(4, 3, 3, nn.CrossEntropyLoss())
    model._arch_parameters = [model.alphas_normal.detach()]
    with pytest.raises(ValueError, match="requires grad"):
        patch(model)
    model._arch_parameters = []
    with pytest.raises(ValueError, match="no tensors"):
        patch(model)
    with pytest.raises(TypeError, match="val_loss"):
        patch(DartsNetwork(4, 3, 3, nn.CrossEntropyLoss()), val_loss="loss")


def test_add_arguments_defaults_change_nothing_and_options_reach_the_architect():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch_learning_rate", type=float, default=3e-4)
    parser.add_argument("--eps", type=float, default=0.5)  # already there: left alone
    add_arguments(parser)
    args = parser.parse_args([])
    assert args.arch_update is None and args.rho is None and args.eps == 0.5
    assert not hasattr(args, "beta_decay_weights")
    args = parser.parse_args(["--arch_update", "usam", "--rho", "0.02", "--hessian", "exact"])
    torch.manual_seed(0)
    architect = darts.Architect(DartsNetwork(4, 3, 3, nn.CrossEntropyLoss()), args)
    assert isinstance(architect.update, flatarch.USAM)
    assert architect.update.rho == 0.02 and architect.update.hessian == "exact"

    parser = add_arguments(argparse.ArgumentParser(), style="beta-darts")
    args = parser.parse_args(["--beta_decay_weights", "1", "0.5", "--beta_decay_end", "20"])
    architect = beta_darts.Architect(DartsNetwork(4, 3, 3, nn.CrossEntropyLoss()), args)
    assert architect.beta_decay_weights == [1.0, 0.5] and architect.beta_decay_lambda(50) == 10.0
    with pytest.raises(ValueError, match="style"):
        add_arguments(argparse.ArgumentParser(), style="gdas")


def confopt_val_loss(model, x, y):
    return F.cross_entropy(model(x)[1], y)  # confopt's forward returns (features, logits)


class ListAttributeModel(RenamedLossModel):
    """arch_parameters as a plain list attribute."""

    def __init__(self):
        super().__init__()
        self.arch_parameters = list(self.alphas.values())


@pytest.mark.parametrize("which", ["property", "parameter attribute", "list attribute", "explicit"])
def test_arch_parameters_as_property_attribute_or_argument(which):
    torch.manual_seed(3)
    space = NB201SearchSpace()
    if which == "property":  # confopt's SearchSpace wrapper: a property returning a new list each time
        model, kwargs, alpha = space, {"val_loss": confopt_val_loss}, space.model.arch_parameters
    elif which == "parameter attribute":  # confopt's NB201 model: one nn.Parameter attribute
        model, kwargs, alpha = space.model, {"val_loss": confopt_val_loss}, space.model.arch_parameters
    elif which == "list attribute":
        model = ListAttributeModel()
        kwargs, alpha = {"val_loss": lambda m, x, y: m.criterion_loss(x, y)}, model.alphas["a"]
    else:
        model, alpha = space, space.model.arch_parameters
        kwargs = {"val_loss": confopt_val_loss, "arch_params": [alpha]}
    architect = patch(model, rho=0.1, **kwargs)
    assert architect.update.leaves == (alpha,)
    spy = OptimizerSpy(architect)
    x, y = make_batch(4)
    clone = copy.deepcopy(model)
    clone_alpha = {"property": lambda: clone.model.arch_parameters, "explicit": lambda: clone.model.arch_parameters,
                   "parameter attribute": lambda: clone.arch_parameters,
                   "list attribute": lambda: clone.alphas["a"]}[which]()
    expected = independent_a2m([clone_alpha], lambda: kwargs["val_loss"](clone, x, y), 0.1, 1e-2)
    architect.step(x, y, x, y, 0.025, None, unrolled=False)
    torch.testing.assert_close(spy.calls[0]["grads"][0], expected[0], rtol=1e-6, atol=1e-9)


def test_arch_parameters_that_cannot_be_used_are_named():
    torch.manual_seed(0)
    model = NB201SearchSpace()
    with pytest.raises(TypeError, match="_loss"):
        patch(model)  # confopt's wrapper has no _loss: the message points to val_loss
    model.model.arch_parameters = nn.Parameter(torch.zeros(6, 5), requires_grad=False)
    with pytest.raises(ValueError, match="requires grad"):
        patch(model, val_loss=confopt_val_loss)
    with pytest.raises(TypeError, match="arch_params"):
        patch(model, val_loss=confopt_val_loss, arch_params="alphas")
    with pytest.raises(TypeError, match="arch_params="):
        patch(nn.Linear(2, 2), val_loss=confopt_val_loss)
