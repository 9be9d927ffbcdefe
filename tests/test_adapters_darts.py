"""flatarch.adapters.darts: the drop-in Architect for the original DARTS search code."""

from __future__ import annotations

import copy

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
from adapter_models import DartsNetwork
from flatarch.adapters.darts import Architect

import flatarch

NAMES = ["alphas_normal", "alphas_reduce"]


def build(seed=0, dtype=torch.float32, device="cpu"):
    torch.manual_seed(seed)
    model = DartsNetwork(4, 3, 3, nn.CrossEntropyLoss()).to(dtype=dtype, device=device)
    if dtype != torch.float32 or device != "cpu":
        # plain tensor attributes do not follow .to(); the original builds them on the device directly
        model.alphas_normal = model.alphas_normal.detach().to(dtype=dtype, device=device).requires_grad_(True)
        model.alphas_reduce = model.alphas_reduce.detach().to(dtype=dtype, device=device).requires_grad_(True)
        model._arch_parameters = [model.alphas_normal, model.alphas_reduce]
    return model


def train_like_original(model, architect, args, steps=2, device="cpu"):
    """The inner loop of DARTS' train_search.py train(), step for step."""
    optimizer = weight_sgd(model, lr=args.learning_rate)
    for step in range(steps):
        model.train()
        input, target = make_batch(10 + step, device=device)
        input_search, target_search = make_batch(100 + step, device=device)
        architect.step(input, target, input_search, target_search, args.learning_rate, optimizer,
                       unrolled=args.unrolled)
        optimizer.zero_grad()
        logits = model(input)
        loss = nn.CrossEntropyLoss()(logits, target)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
    return optimizer


def test_original_loop_runs_and_moves_the_alphas():
    model = build()
    args = original_args()
    architect = Architect(model, args)
    before = [a.detach().clone() for a in model.arch_parameters()]
    weights_before = [p.detach().clone() for p in model.parameters()]
    train_like_original(model, architect, args)
    assert architect.update.steps == 2
    for a, b in zip(model.arch_parameters(), before):
        assert torch.isfinite(a).all() and not torch.equal(a, b)
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), weights_before))
    # the live tensors are still the model's own (no replacement)
    assert model.arch_parameters()[0] is model.alphas_normal


@pytest.mark.parametrize(
    "update,knobs",
    [
        ("a2m", {}),
        ("a2m", {"difference": "forward", "rho": 0.05, "eps": 3e-2}),
        ("a2m", {"hessian": "exact"}),
        ("sam", {"rho": 0.05}),
        ("usam", {}),
        ("first-order", {}),
    ],
)
def test_grad_holds_flatarch_direction(update, knobs):
    model = build(1)
    args = original_args(arch_update=update, **knobs)
    architect = Architect(model, args)
    spy = OptimizerSpy(architect)
    batch = make_batch(7)
    expected = reference_direction(model, NAMES, batch, update, rho=knobs.get("rho", 0.1), **{
        k: v for k, v in knobs.items() if k != "rho"})
    architect.step(*make_batch(3), *batch, 0.025, None, unrolled=False)
    (call,) = spy.calls
    for got, want in zip(call["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # the direction is left in .grad, as loss.backward() left the gradient in the original
    assert_bitwise_equal([a.grad for a in model.arch_parameters()], call["grads"])


def test_a2m_is_not_first_order():
    """A sanity check that the comparison above can fail: A2M's direction differs from g."""
    model = build(1)
    batch = make_batch(7)
    a2m = reference_direction(model, NAMES, batch, "a2m", rho=0.1)
    fo = reference_direction(model, NAMES, batch, "first-order")
    assert max((a - f).abs().max().item() for a, f in zip(a2m, fo)) > 1e-6


def test_alphas_restored_bit_for_bit_and_changed_only_by_the_optimizer():
    model = build(2)
    architect = Architect(model, original_args())
    spy = OptimizerSpy(architect)
    before = [a.detach().clone() for a in model.arch_parameters()]
    architect.step(*make_batch(1), *make_batch(2), 0.025, None, unrolled=False)
    (call,) = spy.calls
    assert_bitwise_equal(call["alphas"], before)  # restored before the optimizer stepped
    after = [a.detach() for a in model.arch_parameters()]
    assert_bitwise_equal(after, adam_step_reference(before, call["grads"]))


def test_weight_grads_are_not_touched():
    model = build(3)
    architect = Architect(model, original_args())
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.grad = None if i % 3 == 0 else torch.full_like(p, float(i))
    sentinels = [None if p.grad is None else p.grad.clone() for p in params]
    grad_objects = [p.grad for p in params]
    architect.step(*make_batch(1), *make_batch(2), 0.025, None, unrolled=False)
    for p, s, obj in zip(params, sentinels, grad_objects):
        assert p.grad is obj
        if s is None:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, s)


def test_batchnorm_statistics_as_first_order_darts_leaves_them():
    model = build(4)
    reference = copy.deepcopy(model)
    architect = Architect(model, original_args())
    batch = make_batch(2)
    architect.step(*make_batch(1), *batch, 0.025, None, unrolled=False)
    reference._loss(*batch)  # the original's single forward pass
    for (name, b), r in zip(model.named_buffers(), reference.buffers()):
        assert torch.equal(b, r), name


def test_unrolled_positional_false_and_eta_optimizer_ignored():
    model = build(5)
    architect = Architect(model, original_args())
    optimizer = weight_sgd(model)
    info = architect.step(*make_batch(1), *make_batch(2), 0.025, optimizer, False)
    assert info.evaluations == 4 and architect.last_info is info
    assert optimizer.state == {}  # the weights' optimizer is not used


@pytest.mark.parametrize("update,match", [("a2m", "first-order update"), ("sam", "first-order update"),
                                          ("first-order", "second-order")])
def test_unrolled_true_raises_and_changes_nothing(update, match):
    model = build(6)
    architect = Architect(model, original_args(arch_update=update, unrolled=True))
    before = [a.detach().clone() for a in model.arch_parameters()]
    with pytest.raises(ValueError, match=match):
        architect.step(*make_batch(1), *make_batch(2), 0.025, None, unrolled=True)
    assert_bitwise_equal([a.detach() for a in model.arch_parameters()], before)


def test_optimizer_is_the_original_adam_and_the_update_uses_it():
    model = build(7)
    architect = Architect(model, original_args(arch_learning_rate=6e-4, arch_weight_decay=2e-3))
    opt = architect.optimizer
    assert isinstance(opt, torch.optim.Adam)
    (group,) = opt.param_groups
    assert group["lr"] == 6e-4 and group["betas"] == (0.5, 0.999) and group["weight_decay"] == 2e-3
    assert [id(p) for p in group["params"]] == [id(a) for a in model.arch_parameters()]
    assert architect.update.optimizer is opt
    assert architect.model is model
    assert architect.network_momentum == 0.9 and architect.network_weight_decay == 3e-4
    # original loops call architect.optimizer.zero_grad() after the step
    architect.step(*make_batch(1), *make_batch(2), 0.025, None, unrolled=False)
    opt.zero_grad()
    assert all(a.grad is None for a in model.arch_parameters())


def test_knob_defaults_and_overrides():
    model = build(8)
    architect = Architect(model, original_args())
    assert isinstance(architect.update, flatarch.A2M)
    assert architect.update.rho == 0.1 and architect.update.eps == 1e-2  # DARTS-space defaults
    assert architect.update.hessian == "fd" and architect.update.difference == "central"
    # None in the namespace means "default" (argparse options declared with default=None)
    architect = Architect(build(8), original_args(arch_update="usam", rho=None, hessian="exact"))
    assert isinstance(architect.update, flatarch.USAM) and architect.update.rho == 0.1
    assert architect.update.hessian == "exact"
    architect = Architect(build(8), original_args(arch_update="sam"), rho=0.3)
    assert isinstance(architect.update, flatarch.SAM) and architect.update.rho == 0.3


def test_bad_knobs_raise_clear_errors():
    with pytest.raises(ValueError, match="arch_update"):
        Architect(build(), original_args(arch_update="adam"))
    with pytest.raises(ValueError, match="rho"):
        Architect(build(), original_args(rho=-1.0))
    with pytest.raises(ValueError, match="hessian"):
        Architect(build(), original_args(arch_update="sam", hessian="fd"))


def test_float64_model_keeps_dtype():
    model = build(9, dtype=torch.float64)
    architect = Architect(model, original_args())
    architect.step(*make_batch(1, dtype=torch.float64), *make_batch(2, dtype=torch.float64), 0.025, None,
                   unrolled=False)
    for a in model.arch_parameters():
        assert a.dtype == torch.float64 and a.grad.dtype == torch.float64


def test_state_dict_round_trip():
    model = build(10)
    architect = Architect(model, original_args())
    architect.step(*make_batch(1), *make_batch(2), 0.025, None, unrolled=False)
    state = architect.state_dict()
    other = Architect(copy.deepcopy(model), original_args())
    other.load_state_dict(state)
    assert other.update.steps == 1
    assert torch.equal(other.optimizer.state_dict()["state"][0]["exp_avg"],
                       architect.optimizer.state_dict()["state"][0]["exp_avg"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_stays_on_its_device():
    model = build(11, device="cuda")
    architect = Architect(model, original_args())
    train_like_original(model, architect, original_args(), device="cuda")
    for a in model.arch_parameters():
        assert a.is_cuda and (a.grad is None or a.grad.is_cuda)


def test_no_cuda_calls(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(".cuda() was called")

    monkeypatch.setattr(torch.Tensor, "cuda", forbidden)
    monkeypatch.setattr(torch.nn.Module, "cuda", forbidden)
    model = build(12)
    architect = Architect(model, original_args(arch_update="a2m", hessian="exact"))
    architect.step(*make_batch(1), *make_batch(2), 0.025, weight_sgd(model), unrolled=False)
    assert architect.update.steps == 1
