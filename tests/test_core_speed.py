"""The speed options of the core keep the contract: buffer copies, deferred NaN checks, A2M's batched pair."""

import copy

import pytest
import torch
from losses import MixedOp

import flatarch
from flatarch import NonFiniteError
from flatarch.buffers import BufferSnapshot, module_buffers


class BNNet(torch.nn.Module):
    """A mixed op with BatchNorm (running statistics) and dropout (randomness)."""

    def __init__(self, dropout=0.5):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.zeros(3))
        self.lin = torch.nn.Linear(4, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, x):
        w = torch.softmax(self.alpha, 0)
        h = self.lin(x)
        return self.drop(self.bn(w[0] * h + w[1] * torch.tanh(h) + w[2] * h.relu()))


def test_module_buffers_lists_every_buffer_once():
    shared = torch.nn.BatchNorm1d(3)
    net = torch.nn.Sequential(shared, torch.nn.Sequential(shared, torch.nn.BatchNorm2d(2)), torch.nn.Linear(2, 2))
    net.register_buffer("empty", None)
    found = module_buffers(net)
    assert len(found) == len(list(net.buffers())) == 6
    assert {id(b) for b in found} == {id(b) for b in net.buffers()}


def test_buffer_snapshot_reuses_its_storage_and_follows_replaced_buffers():
    bn = torch.nn.BatchNorm1d(3)
    snapshot = BufferSnapshot()
    snapshot.take(module_buffers(bn))
    storage = list(snapshot._store)
    bn.running_mean.add_(1.0)
    snapshot.put_back()
    assert torch.equal(bn.running_mean, torch.zeros(3))
    snapshot.take(module_buffers(bn))
    assert all(a is b for a, b in zip(snapshot._store, storage))  # no new allocation
    bn.running_mean = torch.full((3,), 5.0)  # a new tensor: the copy must follow it
    snapshot.take(module_buffers(bn))
    bn.running_mean.zero_()
    snapshot.put_back()
    assert torch.equal(bn.running_mean, torch.full((3,), 5.0))


def test_buffers_are_protected_across_many_steps_with_reused_storage():
    torch.manual_seed(0)
    net = BNNet(dropout=0.0)
    reference = copy.deepcopy(net)
    opt = flatarch.A2M(flatarch.module_loss(net, (torch.randn(8, 4), None), ["alpha"]).arch_params, rho=0.1)
    for _ in range(3):
        x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
        with torch.no_grad():
            reference.alpha.copy_(net.alpha)
        torch.nn.functional.cross_entropy(reference(x), y)  # one pass at the same alpha, as first-order DARTS
        opt.step(flatarch.module_loss(net, (x, y), ["alpha"]))
        for mine, theirs in zip(net.buffers(), reference.buffers()):
            assert torch.equal(mine, theirs)


# -- A2M's two difference points in one vmapped pass --------------------------------------------
def _a2m_run(batch_pair, net, steps=2):
    torch.manual_seed(7)
    loss = None
    opt = None
    infos = []
    for _ in range(steps):
        x, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
        loss = flatarch.module_loss(net, (x, y), ["alpha"])
        opt = opt or flatarch.A2M(loss.arch_params, rho=0.3, eps=1e-2, batch_pair=batch_pair)
        infos.append(opt.step(loss))
    return net, infos, torch.get_rng_state()


def test_batch_pair_gives_the_same_step_buffers_and_randomness():
    torch.manual_seed(0)
    base = BNNet()
    sequential, infos_s, rng_s = _a2m_run(False, copy.deepcopy(base))
    paired, infos_p, rng_p = _a2m_run(True, copy.deepcopy(base))
    torch.testing.assert_close(paired.alpha, sequential.alpha, rtol=1e-6, atol=1e-7)
    assert not torch.equal(paired.alpha, base.alpha)
    for mine, theirs in zip(paired.buffers(), sequential.buffers()):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
    assert torch.equal(paired.bn.num_batches_tracked, sequential.bn.num_batches_tracked)
    assert paired.bn.track_running_stats  # switched back on after the pair
    assert torch.equal(rng_p, rng_s)
    assert [i.evaluations for i in infos_p] == [4, 4]
    for a, b in zip(infos_p, infos_s):
        torch.testing.assert_close(a.perturbed_loss, b.perturbed_loss)


def test_batch_pair_matches_on_a_reference_search_network():
    from flatarch.reference_spaces.nb201.space import NB201Space
    from flatarch.reference_spaces.space import NetworkOptions

    torch.manual_seed(0)
    net = NB201Space().build_network(num_classes=3, in_channels=3, options=NetworkOptions(), channels=4,
                                     cells_per_stage=1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    directions = []
    for batch_pair in (False, True):
        model = copy.deepcopy(net)
        loss = flatarch.module_loss(model, (x, y), ["arch_alpha"])
        direction, info = flatarch.A2M(loss.arch_params, rho=0.1, batch_pair=batch_pair).direction(loss)
        directions.append(direction["arch_alpha"])
        assert torch.equal(model.arch_alpha, net.arch_alpha) and info.evaluations == 4
    torch.testing.assert_close(directions[1], directions[0], rtol=1e-5, atol=1e-6)


def test_batch_pair_needs_a_functional_loss_and_the_central_difference():
    with pytest.raises(ValueError, match="central difference"):
        flatarch.A2M([torch.zeros(2, requires_grad=True)], difference="forward", batch_pair=True)
    with pytest.raises(ValueError, match="central difference"):
        flatarch.A2M([torch.zeros(2, requires_grad=True)], hessian="exact", batch_pair=True)
    model = MixedOp(seed=1)
    alpha = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    before = alpha.detach().clone()
    opt = flatarch.A2M([alpha], batch_pair=True)
    with pytest.raises(ValueError, match="functional loss_fn"):
        opt.step(lambda: model.loss(alpha))
    assert torch.equal(alpha.detach(), before) and alpha.grad is None
    # functional: the same direction as without batching, and settings-wise the same update
    paired, _ = opt.direction(lambda a: model.loss(a[0]))
    plain, _ = flatarch.A2M([alpha]).direction(lambda a: model.loss(a[0]))
    torch.testing.assert_close(paired[0], plain[0], rtol=1e-10, atol=1e-12)
    assert opt.hyperparameters() == flatarch.A2M([alpha]).hyperparameters()


# -- the NaN/Inf check without waiting for the device --------------------------------------------
def _loss_going_bad(model, bad_calls):
    calls = {"n": 0}

    def loss(a):
        calls["n"] += 1
        value = model.loss(a[0])
        return value * float("nan") if calls["n"] in bad_calls else value

    return loss


def _state(opt):
    return [p.detach().clone() for p in opt.leaves], copy.deepcopy(opt.optimizer.state_dict()["state"])


def _assert_same_state(a, b):
    (params_a, state_a), (params_b, state_b) = a, b
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b))
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        for name in state_a[key]:
            assert torch.equal(torch.as_tensor(state_a[key][name]), torch.as_tensor(state_b[key][name])), name


@pytest.mark.parametrize("name", ["first-order", "sam", "a2m"])
def test_deferred_check_steps_exactly_as_the_host_check(name):
    model = MixedOp(seed=3)
    runs = []
    for deferred in (False, True):
        alpha = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
        opt = flatarch.make_update(name, [alpha], rho=0.05, deferred_check=deferred)
        infos = [opt.step(lambda a: model.loss(a[0])) for _ in range(4)]
        runs.append(_state(opt))
        assert opt.steps == 4 and opt.skipped_steps == 0
        assert not any(bool(i.skipped) for i in infos)
    _assert_same_state(*runs)


def test_deferred_check_skips_on_the_device_and_counts_later():
    model = MixedOp(seed=3)
    alpha = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    opt = flatarch.A2M([alpha], rho=0.05, on_nonfinite="skip", deferred_check=True)
    opt.step(lambda a: model.loss(a[0]))  # the first step creates the optimizer state
    before = _state(opt)
    info = opt.step(_loss_going_bad(model, {4}))  # the last evaluation of the step goes bad
    assert isinstance(info.skipped, torch.Tensor) and bool(info.skipped) and bool(info.found_inf)
    _assert_same_state(_state(opt), before)
    assert opt._pending is not None  # read only when asked
    assert opt.skipped_steps == 1 and opt.steps == 1
    info = opt.step(lambda a: model.loss(a[0]))
    assert not bool(info.skipped) and opt.steps == 2


def test_deferred_check_raises_at_the_next_step_having_changed_nothing():
    model = MixedOp(seed=3)
    alpha = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    opt = flatarch.A2M([alpha], rho=0.05, deferred_check=True)
    opt.step(lambda a: model.loss(a[0]))
    before = _state(opt)
    opt.step(_loss_going_bad(model, {2}))  # returns: the device decided, the host has not looked
    _assert_same_state(_state(opt), before)
    with pytest.raises(NonFiniteError, match="NaN/Inf at alpha_t = alpha \\+ rho\\*g in step 2 "):
        opt.step(lambda a: model.loss(a[0]))
    _assert_same_state(_state(opt), before)
    opt.step(_loss_going_bad(model, {1}))
    with pytest.raises(NonFiniteError, match="at alpha in step 2"):
        opt.state_dict()
    opt.check()  # nothing pending any more
    assert opt.steps == 1


def test_deferred_check_waits_only_for_a_step_older_than_the_last(monkeypatch):
    """While the device has not reached a step's flags, the next step goes ahead; the one after waits."""
    from flatarch.deferred import PendingCheck

    monkeypatch.setattr(PendingCheck, "ready", lambda self: False)  # a device that lags behind the host
    model = MixedOp(seed=3)
    alpha = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    opt = flatarch.A2M([alpha], rho=0.05, deferred_check=True)
    opt.step(lambda a: model.loss(a[0]))
    opt.step(_loss_going_bad(model, {1}))  # step 2 goes bad
    opt.step(lambda a: model.loss(a[0]))  # step 3: step 2's outcome not read yet
    assert len(opt._pending) == 2
    with pytest.raises(NonFiniteError, match="in step 2"):
        opt.step(lambda a: model.loss(a[0]))  # step 4 reads step 2 first
    assert opt.steps == 2  # steps 1 and 3 (read now); step 2 changed nothing, step 4 did not start


def test_deferred_check_falls_back_to_the_host_while_the_optimizer_has_no_state():
    model = MixedOp(seed=3)
    alpha = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    before = alpha.detach().clone()
    opt = flatarch.A2M([alpha], deferred_check=True)
    with pytest.raises(NonFiniteError, match="nothing was changed"):
        opt.step(_loss_going_bad(model, {1}))  # the very first step: raised at once
    assert torch.equal(alpha.detach(), before) and opt.optimizer.state_dict()["state"] == {}


def test_deferred_check_resumes_from_a_state_dict():
    model = MixedOp(seed=3)
    alpha = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    opt = flatarch.A2M([alpha], deferred_check=True)
    for _ in range(2):
        opt.step(lambda a: model.loss(a[0]))
    saved = opt.state_dict()
    assert saved["steps"] == 2
    other = flatarch.A2M([alpha.detach().clone().requires_grad_()], deferred_check=True)
    other.load_state_dict(saved)
    assert other.steps == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deferred_check_on_cuda_builds_adam_on_the_device_and_never_waits():
    model = MixedOp(seed=3).cuda()
    model.x, model.y = model.x.cuda(), model.y.cuda()
    runs = []
    for deferred in (False, True):
        alpha = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).cuda()
        opt = flatarch.A2M([alpha.requires_grad_()], rho=0.05, deferred_check=deferred)
        opt.step(lambda a: model.loss(a[0]))  # the first step creates the Adam state (and checks on the host)
        torch.cuda.synchronize()
        assert opt.optimizer.param_groups[0]["capturable"] is deferred
        if deferred:
            torch.cuda.set_sync_debug_mode("error")  # any host synchronisation now raises
        try:
            for _ in range(3):
                opt.step(lambda a: model.loss(a[0]))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        runs.append(alpha.detach().cpu())
    # capturable Adam keeps its step count as a float32 tensor on the device, so its bias
    # corrections differ from the host's float ones in the 8th digit
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-6, atol=1e-12)
    before = alpha.detach().clone()
    opt.step(_loss_going_bad(model, {3}))
    assert torch.equal(alpha.detach(), before)
    with pytest.raises(NonFiniteError, match="deferred check"):
        opt.check()
