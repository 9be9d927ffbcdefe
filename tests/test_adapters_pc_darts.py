"""flatarch.adapters.pc_darts: the drop-in Architect for the PC-DARTS search code (four arch tensors)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from adapter_checks import (
    OptimizerSpy,
    adam_step_reference,
    assert_bitwise_equal,
    make_batch,
    original_args,
    reference_direction,
    weight_sgd,
)
from adapter_models import PCDartsNetwork
from flatarch.adapters.pc_darts import Architect

NAMES = ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"]


def build(seed=0):
    torch.manual_seed(seed)
    return PCDartsNetwork(4, 3, 3, nn.CrossEntropyLoss())


def test_model_interface_is_pc_darts():
    model = build()
    arch = model.arch_parameters()
    assert [a.shape for a in arch] == [(5, 4), (5, 4), (5,), (5,)]
    registered = {id(p) for p in model.parameters()}
    assert not any(id(a) in registered for a in arch)  # plain tensors, as in the original


def test_original_loop_with_warmup_epochs():
    """PC-DARTS' train(): the architecture step only from epoch 15 on; weights every step."""
    model = build(1)
    args = original_args(arch_learning_rate=6e-4)
    architect = Architect(model, args)
    optimizer = weight_sgd(model, lr=0.1)
    before = [a.detach().clone() for a in model.arch_parameters()]
    for epoch in (14, 15):
        model.train()
        input, target = make_batch(epoch)
        input_search, target_search = make_batch(100 + epoch)
        if epoch >= 15:
            architect.step(input, target, input_search, target_search, 0.1, optimizer, unrolled=args.unrolled)
        optimizer.zero_grad()
        logits = model(input)
        loss = nn.CrossEntropyLoss()(logits, target)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
    assert architect.update.steps == 1
    assert architect.optimizer.param_groups[0]["lr"] == 6e-4
    for a, b in zip(model.arch_parameters(), before):
        assert not torch.equal(a, b)  # the betas move too


@pytest.mark.parametrize("update", ["a2m", "sam", "usam", "first-order"])
def test_grad_holds_flatarch_direction_over_all_four_tensors(update):
    model = build(2)
    architect = Architect(model, original_args(arch_update=update))
    spy = OptimizerSpy(architect)
    batch = make_batch(5)
    expected = reference_direction(model, NAMES, batch, update, rho=0.1)
    architect.step(*make_batch(4), *batch, 0.1, None, unrolled=False)
    (call,) = spy.calls
    assert len(call["grads"]) == 4
    for got, want in zip(call["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        assert got.abs().max() > 0


def test_betas_are_perturbed_too():
    """A2M with the betas held fixed gives another alpha direction: the adapter perturbs all four."""
    model = build(3)
    architect = Architect(model, original_args())
    spy = OptimizerSpy(architect)
    batch = make_batch(5)
    alphas_only = reference_direction(model, NAMES[:2], batch, "a2m", rho=0.1)
    architect.step(*make_batch(4), *batch, 0.1, None, unrolled=False)
    got = spy.calls[0]["grads"][:2]
    assert max((g - a).abs().max().item() for g, a in zip(got, alphas_only)) > 1e-7


def test_restored_bit_for_bit_and_only_the_optimizer_moves_them():
    model = build(4)
    architect = Architect(model, original_args())
    spy = OptimizerSpy(architect)
    before = [a.detach().clone() for a in model.arch_parameters()]
    weight_grads = []
    for p in model.parameters():
        p.grad = torch.ones_like(p)
        weight_grads.append(p.grad)
    architect.step(*make_batch(1), *make_batch(2), 0.1, None, unrolled=False)
    assert_bitwise_equal(spy.calls[0]["alphas"], before)
    assert_bitwise_equal([a.detach() for a in model.arch_parameters()],
                         adam_step_reference(before, spy.calls[0]["grads"]))
    for p, g in zip(model.parameters(), weight_grads):
        assert p.grad is g and torch.equal(g, torch.ones_like(g))


def test_unrolled_true_raises():
    architect = Architect(build(), original_args())
    with pytest.raises(ValueError, match="unrolled=True"):
        architect.step(*make_batch(1), *make_batch(2), 0.1, None, unrolled=True)
