"""flatarch.adapters.confopt: the optimizer-shaped architecture step on stand-ins shaped like confopt's classes."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from adapter_checks import StepSpy, assert_bitwise_equal, independent_a2m, make_batch
from confopt_standins import (
    ConfigurableTrainer,
    GumbelSoftmaxSampler,
    L2ArchRegularizer,
    Loader,
    NB201SearchSpace,
    Perturbator,
    SearchSpaceHandler,
)
from flatarch.adapters.confopt import FlatArchOptimizer, attach

import flatarch


def build(seed=0, stochastic=True, regularizer=True, starts=(0, 0), device="cpu"):
    torch.manual_seed(seed)
    space = NB201SearchSpace().to(device)
    if stochastic:
        space.set_sample_function(GumbelSoftmaxSampler().sample)
    w_optimizer = torch.optim.SGD(space.model_weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    # confopt's NAS-Bench-201 profile: Adam, arch_lr 3e-4, weight decay 1e-3 (profile/base.py L1086-1100)
    arch_optimizer = torch.optim.Adam(space.arch_parameters, lr=3e-4, weight_decay=1e-3)
    data = (Loader([make_batch(10 + i) for i in range(3)], starts[0]),
            Loader([make_batch(100 + i) for i in range(4)], starts[1]))
    trainer = ConfigurableTrainer(space, data, w_optimizer, arch_optimizer, None, nn.CrossEntropyLoss(), None, 4)
    trainer.device = torch.device(device)
    handler = SearchSpaceHandler(regularizer=L2ArchRegularizer() if regularizer else None)
    return trainer, handler


def train(trainer, handler, epochs, seed=7):
    torch.manual_seed(seed)
    trainer.train(handler, epochs)


def arch_loss_of(space, handler, batch):
    x, y = batch
    return lambda: handler.add_reg_terms(space, F.cross_entropy(space(x)[1], y))


def test_first_order_is_confopt_bit_for_bit_with_a_stochastic_sampler():
    ours, handler = build()
    attach(ours, arch_update="first-order")
    theirs, _ = build()
    train(ours, handler, 2)
    ours_random = torch.get_rng_state()
    train(theirs, handler, 2)
    assert_bitwise_equal(list(ours.model.state_dict().values()), list(theirs.model.state_dict().values()))
    assert_bitwise_equal([t for record in ours.arch_records for t in record],
                         [t for record in theirs.arch_records for t in record])
    assert torch.equal(ours_random, torch.get_rng_state())  # the generator continues as confopt's own run left it
    assert ours.arch_optimizer.update.steps == 6 and ours.arch_optimizer.last_info.evaluations == 1


@pytest.mark.parametrize("stochastic", [False, True])
def test_a2m_direction_equals_the_paper_formula_on_the_trainers_batch(stochastic):
    rho, eps = 0.2, 1e-2
    trainer, handler = build(stochastic=stochastic)
    flat = attach(trainer, rho=rho, eps=eps)
    spy = StepSpy(flat.optimizer, flat.update.leaves)
    space = copy.deepcopy(trainer.model)  # as the first arch pass finds it (its FLOPs not counted yet)
    seen = {}
    zero_grad = flat.zero_grad

    def recording_zero_grad(*args, **kwargs):  # the first arch pass's batch and random state
        seen.setdefault("batch", flat._context.batch)
        seen.setdefault("random", torch.get_rng_state())
        return zero_grad(*args, **kwargs)

    flat.zero_grad = recording_zero_grad
    before = [a.detach().clone() for a in trainer.model.arch_parameters]

    train(trainer, handler, 1)

    # the formula, every evaluation from the random state the trainer's pass started from (the first
    # also counts the FLOPs, as the trainer's pass did: g(alpha) is that pass's gradient)
    expected = independent_a2m(space.arch_parameters, arch_loss_of(space, handler, seen["batch"]), rho, eps,
                               before_each=lambda: torch.set_rng_state(seen["random"]))
    first = spy.calls[0]
    for got, want in zip(first["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    assert_bitwise_equal(first["alphas"], before)  # restored before Adam stepped
    assert flat.last_info.evaluations == 4 and flat.update.steps == 3
    if stochastic:  # the comparison can fail: with fresh noise at each evaluation the formula gives another G
        fresh = independent_a2m(space.arch_parameters, arch_loss_of(space, handler, seen["batch"]), rho, eps)
        assert (fresh[0] - expected[0]).abs().max() > 1e-6


def test_meters_and_buffers_come_from_the_trainers_own_pass():
    trainer, handler = build()
    attach(trainer, rho=0.3)
    reference, _ = build()
    attach(reference, arch_update="first-order")
    spy = StepSpy(trainer.arch_optimizer.optimizer, trainer.arch_optimizer.update.leaves)
    buffers = {}
    inner = trainer.model_optimizer.zero_grad

    def weight_zero_grad(*args, **kwargs):  # right after the arch step, before the weight pass
        buffers.setdefault("after_arch", [b.clone() for b in trainer.model.buffers()])
        return inner(*args, **kwargs)

    trainer.model_optimizer.zero_grad = weight_zero_grad
    ref_buffers = {}
    ref_inner = reference.model_optimizer.zero_grad

    def ref_zero_grad(*args, **kwargs):
        ref_buffers.setdefault("after_arch", [b.clone() for b in reference.model.buffers()])
        return ref_inner(*args, **kwargs)

    reference.model_optimizer.zero_grad = ref_zero_grad
    train(trainer, handler, 1)
    train(reference, handler, 1)
    # the first arch pass is the same in both (same alphas, weights, batch and noise)
    assert_bitwise_equal(list(trainer.arch_records[0]), list(reference.arch_records[0]))
    assert_bitwise_equal(buffers["after_arch"], ref_buffers["after_arch"])  # one BatchNorm update per arch step
    assert len(spy.calls) == 3


def test_the_sdarts_perturbator_is_refused_at_attach_and_by_the_epoch():
    trainer, _ = build()
    handler = SearchSpaceHandler(perturbation=Perturbator())
    handler.adapt_search_space(trainer.model)  # as confopt's experiment does before training
    with pytest.raises(ValueError, match="perturbator"):
        attach(trainer)
    assert isinstance(trainer.arch_optimizer, torch.optim.Adam) and "_train_epoch" not in vars(trainer)
    trainer, _ = build()
    attach(trainer)  # a handler adapted after attach, or never: refused when its epoch starts
    before = [a.detach().clone() for a in trainer.model.arch_parameters]
    with pytest.raises(ValueError, match="perturbator"):
        train(trainer, handler, 1)
    assert_bitwise_equal([a.detach() for a in trainer.model.arch_parameters], before)


@pytest.mark.parametrize("update,forwards", [("a2m", 5), ("sam", 3), ("first-order", 2)])
def test_the_trainers_own_pass_is_the_updates_first_evaluation(update, forwards):
    """Forwards per search step: the trainer's arch pass (the update's g(alpha)), the update's
    further points, the weight step; A2M 5, where re-evaluating g(alpha) cost 6."""
    trainer, handler = build()
    flat = attach(trainer, arch_update=update)
    calls = []
    forward = trainer.model.model.forward
    trainer.model.model.forward = lambda x: (calls.append(1), forward(x))[1]
    train(trainer, handler, 1)
    assert len(calls) == forwards * flat.update.steps and flat.update.steps == 3
    assert "add_reg_terms" not in vars(handler)  # the loss watch is gone with the epoch


def test_keyword_calls_and_other_optimizers_pass_through():
    trainer, handler = build(stochastic=False)
    flat = attach(trainer, arch_update="sam", rho=0.05)
    train_loader, valid_loader = trainer.data
    # confopt's projection calls it as train() does, positionally (train/projection.py L235-244); by keyword too
    trainer._train_epoch(search_space_handler=handler, train_loader=train_loader, valid_loader=valid_loader,
                         network=trainer.model, criterion=trainer.criterion, w_optimizer=trainer.model_optimizer,
                         arch_optimizer=flat, print_freq=20)
    assert flat.update.steps == 3 and flat.last_info.evaluations == 2
    plain = torch.optim.Adam(trainer.model.arch_parameters, lr=3e-4)
    trainer._train_epoch(handler, train_loader, valid_loader, trainer.model, trainer.criterion,
                         trainer.model_optimizer, plain, 20)
    assert flat.update.steps == 3 and plain.state  # that epoch used the plain optimizer


def test_optimizer_contract():
    trainer, _ = build(stochastic=False)
    adam = trainer.arch_optimizer
    flat = FlatArchOptimizer(adam, rho=0.1)
    alpha = trainer.model.model.arch_parameters
    assert flat and flat.param_groups is adam.param_groups and flat.update.optimizer is adam
    assert isinstance(flat.update, flatarch.A2M) and flat.update.rho == 0.1
    alpha.grad = torch.ones_like(alpha)
    flat.zero_grad()
    assert alpha.grad is None
    alpha.grad = torch.ones_like(alpha)
    flat.zero_grad(set_to_none=False)
    assert torch.equal(alpha.grad, torch.zeros_like(alpha))
    with pytest.raises(RuntimeError, match="attach"):
        flat.step()
    # a closure reading the live alphas works without a trainer
    space = copy.deepcopy(trainer.model)
    batch = make_batch(5)
    expected = independent_a2m(space.arch_parameters, arch_loss_of(space, SearchSpaceHandler(), batch), 0.1, 1e-2)
    spy = StepSpy(adam, [alpha])
    info = flat.step(arch_loss_of(trainer.model, SearchSpaceHandler(), batch))
    torch.testing.assert_close(spy.calls[0]["grads"][0], expected[0], rtol=1e-6, atol=1e-9)
    assert info is flat.last_info and info.evaluations == 4


def test_default_rho_by_the_alphas_layout():
    trainer, _ = build()
    assert FlatArchOptimizer(trainer.arch_optimizer).update.rho == 1e-2  # one [6, ops] tensor: NAS-Bench-201
    darts = [torch.zeros(14, 8, requires_grad=True), torch.zeros(14, 8, requires_grad=True),
             torch.zeros(14, requires_grad=True)]
    assert FlatArchOptimizer(torch.optim.Adam(darts)).update.rho == 1e-1  # normal and reduce: the DARTS space
    assert FlatArchOptimizer(torch.optim.Adam(darts), arch_update="first-order").update.name == "first-order"


def test_state_dict_round_trip_resumes_identically():
    straight, handler = build()
    attach(straight)
    train(straight, handler, 2)

    first_half, _ = build()
    attach(first_half)
    train(first_half, handler, 1)
    buffer = io.BytesIO()
    torch.save(first_half.checkpoint(), buffer)  # what confopt's fvcore Checkpointer does with it
    random_state = torch.get_rng_state()

    resumed, _ = build(seed=99, starts=(first_half.data[0].position, first_half.data[1].position))
    resumed.model.model.flops = first_half.model.model.flops  # counted, as in the run it continues
    flat = attach(resumed)
    buffer.seek(0)
    resumed._load_checkpoint(torch.load(buffer, weights_only=True))
    assert flat.update.steps == 3
    torch.set_rng_state(random_state)
    resumed.train(handler, 1)

    assert_bitwise_equal(list(resumed.model.state_dict().values()), list(straight.model.state_dict().values()))
    assert flat.update.steps == straight.arch_optimizer.update.steps == 6


def test_loads_the_plain_optimizer_state_of_a_confopt_checkpoint():
    plain, handler = build()
    train(plain, handler, 1)
    checkpoint = plain.checkpoint()
    resumed, _ = build(seed=99)
    flat = attach(resumed)
    resumed._load_checkpoint(checkpoint)
    assert torch.equal(flat.optimizer.state_dict()["state"][0]["exp_avg"],
                       plain.arch_optimizer.state_dict()["state"][0]["exp_avg"])
    assert flat.update.steps == 0


def test_attach_refuses_what_it_cannot_do():
    trainer, _ = build()
    with pytest.raises(ValueError, match="arch_update"):
        attach(trainer, arch_update="adam")
    assert isinstance(trainer.arch_optimizer, torch.optim.Adam) and "_train_epoch" not in vars(trainer)
    attach(trainer)
    with pytest.raises(ValueError, match="already"):
        attach(trainer)
    trainer.arch_optimizer = None
    with pytest.raises(ValueError, match="no arch_optimizer"):
        attach(trainer)
    with pytest.raises(TypeError, match="attach takes confopt's ConfigurableTrainer .*, got builtins.object"):
        attach(object())
    with pytest.raises(TypeError, match="torch optimizer"):
        FlatArchOptimizer([torch.zeros(1, requires_grad=True)])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sampler_noise_is_replayed_from_the_cuda_generator():
    ours, handler = build(device="cuda")
    flat = attach(ours, arch_update="first-order")
    theirs, _ = build(device="cuda")
    train(ours, handler, 1)
    train(theirs, handler, 1)
    assert flat.update.leaves[0].is_cuda and flat.update.leaves[0].grad.is_cuda
    # cuDNN may sum in another order from run to run; different noise would differ by far more
    for got, want in zip(ours.model.state_dict().values(), theirs.model.state_dict().values()):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
