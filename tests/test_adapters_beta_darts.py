"""flatarch.adapters.beta_darts: the drop-in Architect for the beta-DARTS search code."""

from __future__ import annotations

import warnings

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
from adapter_models import BetaDartsSpaceNetwork, NB201Network, PCDartsNetwork
from flatarch.adapters.beta_darts import Architect


def nb201(seed=0):
    torch.manual_seed(seed)
    model = NB201Network(4, 1, 4, 3, nn.CrossEntropyLoss())
    with torch.no_grad():  # alphas away from uniform, so the regulariser's gradient is not ~0
        model._arch_parameters.normal_(0, 0.5)
    return model


def darts_space(seed=0):
    torch.manual_seed(seed)
    model = BetaDartsSpaceNetwork(4, 3, 3, nn.CrossEntropyLoss())
    with torch.no_grad():
        for a in model.arch_parameters():
            a.normal_(0, 0.5)
    return model


def lse(alpha):
    return torch.logsumexp(alpha, dim=-1).mean()


def nb201_objective(lam):
    def compute(m, batch):
        return m._loss(*batch) + lam * lse(m._arch_parameters)

    return compute


def test_model_interface_is_beta_darts_nb201():
    model = nb201()
    (alpha,) = model.arch_parameters()
    assert isinstance(alpha, nn.Parameter) and alpha.shape == (6, 5)
    assert alpha is model._arch_parameters
    assert any(p is alpha for p in model.parameters())  # registered
    assert not any(p is alpha for p in model.get_weights())


def test_original_nb201_loop_runs():
    """nasbench201/train_search.py train(), step for step (softmax_arch_parameters around the weight step)."""
    model = nb201(1)
    args = original_args()
    architect = Architect(model, args)
    optimizer = weight_sgd(model, model.get_weights())
    before = model._arch_parameters.detach().clone()
    for epoch in (0, 4):
        model.train()
        input, target = make_batch(epoch)
        input_search, target_search = make_batch(50 + epoch)
        architect.step(input, target, input_search, target_search, 0.025, optimizer, epoch, unrolled=args.unrolled)
        optimizer.zero_grad()
        architect.optimizer.zero_grad()
        model.softmax_arch_parameters()
        logits = model(input, updateType="weight")
        loss = nn.CrossEntropyLoss()(logits, target)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        model.restore_arch_parameters()
    assert architect.epoch == 4 and architect.update.steps == 2
    assert not torch.equal(model._arch_parameters, before)
    assert architect.update.rho == 1e-2  # NAS-Bench-201 default


@pytest.mark.parametrize("update", ["a2m", "sam", "usam", "first-order"])
@pytest.mark.parametrize("epoch", [0, 7])
def test_regulariser_is_inside_every_evaluation(update, epoch):
    """The adapter's .grad equals flatarch's update applied to L_val + (epoch / 2) * mean logsumexp(alpha)."""
    model = nb201(2)
    architect = Architect(model, original_args(arch_update=update))
    spy = OptimizerSpy(architect)
    batch = make_batch(9)
    expected = reference_direction(model, ["_arch_parameters"], batch, update, compute=nb201_objective(epoch / 2),
                                   rho=1e-2)
    architect.step(*make_batch(8), *batch, 0.025, None, epoch, unrolled=False)
    torch.testing.assert_close(spy.calls[0]["grads"][0], expected[0], rtol=1e-5, atol=1e-7)
    if epoch:
        unregularised = reference_direction(model, ["_arch_parameters"], batch, update, rho=1e-2)
        assert (unregularised[0] - expected[0]).abs().max() > 1e-3


def test_first_order_gradient_is_lambda_epoch_over_two_by_hand():
    model = nb201(3)
    architect = Architect(model, original_args(arch_update="first-order"))
    x, y = make_batch(4)
    alpha = model._arch_parameters
    g_loss = torch.autograd.grad(model._loss(x, y, updateType="alpha"), alpha)[0]
    g_reg = torch.autograd.grad(lse(alpha), alpha)[0]
    architect.step(x, y, x, y, 0.025, None, 10, unrolled=False)
    torch.testing.assert_close(alpha.grad, g_loss + 5.0 * g_reg, rtol=1e-5, atol=1e-7)
    assert architect.beta_decay_lambda() == 5.0


def test_restored_bit_for_bit_and_weight_grads_untouched():
    model = nb201(4)
    architect = Architect(model, original_args())
    spy = OptimizerSpy(architect)
    before = model._arch_parameters.detach().clone()
    weights = model.get_weights()
    for p in weights:
        p.grad = torch.full_like(p, 2.0)
    architect.step(*make_batch(1), *make_batch(2), 0.025, None, 12, unrolled=False)
    assert_bitwise_equal(spy.calls[0]["alphas"], [before])
    assert_bitwise_equal([model._arch_parameters.detach()], adam_step_reference([before], spy.calls[0]["grads"]))
    assert all(torch.equal(p.grad, torch.full_like(p, 2.0)) for p in weights)


# -- call shapes -------------------------------------------------------------------------------


def first_order_grad(model, architect_call):
    architect = Architect(model, original_args(arch_update="first-order"))
    architect_call(architect)
    return model._arch_parameters.grad.clone(), architect


def test_epoch_keyword_and_positional_agree():
    x, y = make_batch(1)
    g1, _ = first_order_grad(nb201(5), lambda a: a.step(x, y, x, y, 0.025, None, 6, unrolled=False))
    g2, _ = first_order_grad(nb201(5), lambda a: a.step(x, y, x, y, 0.025, None, epoch=6))
    g3, _ = first_order_grad(nb201(5), lambda a: a.step(x, y, x, y, 0.025, None, 6, False))
    assert torch.equal(g1, g2) and torch.equal(g1, g3)


def test_bool_in_the_epoch_slot_is_unrolled_and_the_set_epoch_is_used():
    x, y = make_batch(1)
    want, _ = first_order_grad(nb201(6), lambda a: a.step(x, y, x, y, 0.025, None, 6, unrolled=False))

    def call(a):
        a.set_epoch(6)
        a.step(x, y, x, y, 0.025, None, False)  # optimizers/darts/train_search.py's call shape

    got, architect = first_order_grad(nb201(6), call)
    assert torch.equal(got, want) and architect.epoch == 6


def test_missing_epoch_uses_the_latest_known_one():
    x, y = make_batch(1)
    want, _ = first_order_grad(nb201(7), lambda a: a.step(x, y, x, y, 0.025, None, 6))

    def call(a):
        a.set_epoch(6)
        a.step(x, y, x, y, 0.025, None, unrolled=False)  # sota/cnn/train_search.py's call shape

    got, _ = first_order_grad(nb201(7), call)
    assert torch.equal(got, want)

    def twice(a):
        a.step(x, y, x, y, 0.025, None, 6)
        a.model._arch_parameters.data.copy_(nb201(7)._arch_parameters)  # same point again
        a.step(x, y, x, y, 0.025, None)  # nasp's call shape: neither epoch nor unrolled

    got, _ = first_order_grad(nb201(7), twice)
    assert torch.equal(got, want)


def test_no_epoch_ever_warns_once_and_uses_lambda_zero():
    x, y = make_batch(1)
    want, _ = first_order_grad(nb201(8), lambda a: a.step(x, y, x, y, 0.025, None, 0))
    architect = Architect(nb201(8), original_args(arch_update="first-order"))
    with pytest.warns(UserWarning, match="set_epoch"):
        architect.step(x, y, x, y, 0.025, None, unrolled=False)
    assert torch.equal(architect.model._arch_parameters.grad, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        architect.step(x, y, x, y, 0.025, None, unrolled=False)  # once only


def test_call_shape_errors():
    x, y = make_batch(1)
    architect = Architect(nb201(), original_args())
    before = architect.model._arch_parameters.detach().clone()
    with pytest.raises(ValueError, match="unrolled=True"):
        architect.step(x, y, x, y, 0.025, None, True)  # a bool epoch slot meaning unrolled
    with pytest.raises(ValueError, match="unrolled=True"):
        architect.step(x, y, x, y, 0.025, None, 3, unrolled=True)
    with pytest.raises(TypeError, match="epoch"):
        architect.step(x, y, x, y, 0.025, None, False, unrolled=False)
    with pytest.raises(TypeError, match="epoch"):
        architect.step(x, y, x, y, 0.025, None, "3")
    with pytest.raises(ValueError, match="epoch"):
        architect.set_epoch(-1)
    assert torch.equal(architect.model._arch_parameters, before)


# -- DARTS space: a list of alphas and per-cell-type weights ---------------------------------------


def test_darts_space_per_cell_type_weights():
    model = darts_space(9)
    architect = Architect(model, original_args(arch_update="first-order", beta_decay_weights=[1.0, 0.25]))
    x, y = make_batch(3)
    normal, reduce = model.alphas_normal, model.alphas_reduce
    g_loss = torch.autograd.grad(model._loss(x, y), [normal, reduce])
    g_n = torch.autograd.grad(lse(normal), normal)[0]
    g_r = torch.autograd.grad(lse(reduce), reduce)[0]
    architect.step(x, y, x, y, 0.025, None, 8, unrolled=False)
    torch.testing.assert_close(normal.grad, g_loss[0] + 4.0 * 1.0 * g_n, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(reduce.grad, g_loss[1] + 4.0 * 0.25 * g_r, rtol=1e-5, atol=1e-7)


def test_darts_space_a2m_matches_flatarch():
    model = darts_space(10)
    architect = Architect(model, original_args(beta_decay_weights="0.5,2"))
    assert architect.beta_decay_weights == [0.5, 2.0]
    assert architect.update.rho == 0.1  # DARTS-space default
    spy = OptimizerSpy(architect)
    batch = make_batch(6)

    def compute(m, b):
        return m._loss(*b) + 3.0 * (0.5 * lse(m.alphas_normal) + 2.0 * lse(m.alphas_reduce))

    expected = reference_direction(model, ["alphas_normal", "alphas_reduce"], batch, "a2m", compute=compute, rho=0.1)
    architect.step(*make_batch(5), *batch, 0.025, None, 6, unrolled=False)
    for got, want in zip(spy.calls[0]["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_pc_darts_betas_are_not_regularised():
    torch.manual_seed(11)
    model = PCDartsNetwork(4, 3, 3, nn.CrossEntropyLoss())
    architect = Architect(model, original_args(arch_update="first-order"))
    x, y = make_batch(2)
    arch = model.arch_parameters()
    g_loss = torch.autograd.grad(model._loss(x, y), arch)
    architect.step(x, y, x, y, 0.025, None, 20)
    torch.testing.assert_close(arch[2].grad, g_loss[2], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(arch[3].grad, g_loss[3], rtol=1e-5, atol=1e-7)
    assert (arch[0].grad - g_loss[0]).abs().max() > 0


def test_schedule_knobs_and_bad_weights():
    architect = Architect(nb201(), original_args(beta_decay_start=1.0, beta_decay_end=11.0, beta_decay_epochs=10))
    assert architect.beta_decay_lambda(5) == 6.0
    architect.set_epoch(10)
    assert architect.beta_decay_lambda() == 11.0
    with pytest.raises(ValueError, match="beta_decay_weights"):
        Architect(darts_space(), original_args(beta_decay_weights=[1, 2, 3]))
    with pytest.raises(ValueError, match="epochs"):
        Architect(nb201(), original_args(beta_decay_epochs=0))
