"""flatarch.adapters.darts_pt: DARTS-PT's supernet and projection/tuning loops with the drop-in Architect."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from adapter_checks import (
    OptimizerSpy,
    adam_step_reference,
    assert_bitwise_equal,
    independent_a2m,
    make_batch,
    original_args,
)
from adapter_models import DartsPTProjNetwork
from flatarch.adapters import patch
from flatarch.adapters.darts_pt import Architect


def build(seed=0, **changes):
    torch.manual_seed(seed)
    args = original_args(method="darts-proj", **changes)
    model = DartsPTProjNetwork(4, 1, 4, 3, nn.CrossEntropyLoss(), args)
    return model, args


def tuning_step(model, architect, args, step):
    """One iteration of pt_project's tuning loop (nasbench201/projection.py L90-108)."""
    input, target = make_batch(10 + step)
    input_search, target_search = make_batch(100 + step)
    model.optimizer.zero_grad()
    architect.optimizer.zero_grad()
    shared = architect.step(input, target, input_search, target_search, return_logits=True)
    model.optimizer.zero_grad()
    architect.optimizer.zero_grad()
    logits, loss = model.step(input, target, args, shared=shared)
    return shared, (input_search, target_search)


def test_projection_tuning_call_takes_an_a2m_step():
    model, args = build()
    model.project_op(0, 2)
    model.project_op(3, 1)
    model.reset_optimizer(args.learning_rate / 10, args.momentum, args.weight_decay)
    architect = Architect(model, args)
    spy = OptimizerSpy(architect)
    alpha = model._arch_parameters
    before = alpha.detach().clone()
    clone = copy.deepcopy(model)
    x, y = make_batch(100)
    expected = independent_a2m(clone.arch_parameters(), lambda: clone._loss(x, y), 1e-2, 1e-2)

    shared, _ = tuning_step(model, architect, args, 0)

    assert shared is None  # what DARTS-PT's architect returns; model.step gets it as `shared`
    (call,) = spy.calls
    torch.testing.assert_close(call["grads"][0], expected[0], rtol=1e-6, atol=1e-9)
    # projected edges: overwritten in the forward, so their direction is exactly zero, as their gradient is
    assert torch.equal(call["grads"][0][[0, 3]], torch.zeros(2, 5))
    assert call["grads"][0][[1, 2, 4, 5]].abs().max() > 0
    assert_bitwise_equal(call["alphas"], [before])
    assert_bitwise_equal([alpha.detach()], adam_step_reference([before], call["grads"]))
    assert architect.last_info.evaluations == 4 and architect.update.rho == 1e-2


def test_supernet_call_shapes():
    model, args = build(1)
    architect = Architect(model, args)
    x, y = make_batch(1)
    xs, ys = make_batch(2)
    # nasbench201/train_search.py L309-310 and sota/cnn/train_search.py L367
    assert architect.step(x, y, xs, ys, eta=0.025, network_optimizer=model.optimizer) is None
    assert architect.step(x, y, xs, ys, 0.025, model.optimizer) is None
    assert architect.step(x, y, xs, ys, unrolled=False) is None
    assert architect.update.steps == 3 and model.optimizer.state == {}


def test_first_order_is_darts_pt_first_order():
    model, args = build(2)
    model.project_op(1, 4)
    reference = copy.deepcopy(model)
    architect = Architect(model, args, arch_update="first-order")
    adam = torch.optim.Adam(reference.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    for step in range(2):
        tuning_step(model, architect, args, step)
        # architect_ig.py _step_fo (L44-48) and the loop around it
        input, target = make_batch(10 + step)
        xs, ys = make_batch(100 + step)
        reference.optimizer.zero_grad()
        adam.zero_grad()
        reference._loss(xs, ys).backward()
        adam.step()
        reference.optimizer.zero_grad()
        adam.zero_grad()
        reference.step(input, target, args)
    assert_bitwise_equal([model._arch_parameters.detach()], [reference._arch_parameters.detach()])
    assert_bitwise_equal([p.detach() for p in model.get_weights()], [p.detach() for p in reference.get_weights()])
    assert_bitwise_equal(list(model.buffers()), list(reference.buffers()))


def test_what_cannot_be_honoured_is_refused():
    model, args = build(3)
    architect = Architect(model, args)
    before = model._arch_parameters.detach().clone()
    x, y = make_batch(1)
    with pytest.raises(ValueError, match="unrolled"):
        architect.step(x, y, x, y, unrolled=True)
    with pytest.raises(TypeError, match="weights"):
        architect.step(x, y, x, y, weights=None)
    assert torch.equal(model._arch_parameters, before) and architect.update.steps == 0


def test_patch_style_and_checkpoint_of_the_arch_optimizer():
    model, args = build(4)
    architect = patch(model, args, style="darts-pt")
    assert type(architect) is Architect
    tuning_step(model, architect, args, 0)
    # the scripts save and load architect.optimizer.state_dict() (nasbench201/train_search.py L224, L277)
    other = Architect(copy.deepcopy(model), args)
    other.optimizer.load_state_dict(architect.optimizer.state_dict())
    assert torch.equal(other.optimizer.state_dict()["state"][0]["exp_avg"],
                       architect.optimizer.state_dict()["state"][0]["exp_avg"])
