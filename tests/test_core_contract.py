"""The ArchOptimizer contract: errors that change nothing, state, closures, buffers, randomness."""

import copy

import pytest
import torch
from losses import MixedOp

import flatarch
from flatarch import NonFiniteError

UPDATES = ["first-order", "sam", "usam", "a2m"]


def make_params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, generator=gen).requires_grad_(True)]


def snapshot(opt):
    return [p.detach().clone() for p in opt.leaves], copy.deepcopy(opt.optimizer.state_dict()), \
        [None if p.grad is None else p.grad.clone() for p in opt.leaves]


def assert_unchanged(opt, snap):
    params, state, grads = snap
    assert all(torch.equal(p.detach(), q) for p, q in zip(opt.leaves, params))
    assert all((g is None and p.grad is None) or torch.equal(p.grad, g) for p, g in zip(opt.leaves, grads))
    now = opt.optimizer.state_dict()
    assert now["param_groups"] == state["param_groups"]
    for key, value in state["state"].items():
        for name, tensor in value.items():
            assert torch.equal(torch.as_tensor(now["state"][key][name]), torch.as_tensor(tensor))


def warmed_up(name, **kwargs):
    """An update that has stepped once (so there is inner-optimizer state to protect)."""
    model = MixedOp(seed=1, dtype=torch.float32)
    opt = flatarch.make_update(name, make_params(), **kwargs)
    opt.step(lambda a: model.loss(a[0]))
    return opt, model


@pytest.mark.parametrize("name", UPDATES)
@pytest.mark.parametrize(
    "bad_loss, error, match",
    [
        (lambda a: a[0].sum().item(), TypeError, r"scalar torch.Tensor, got float \(did you call .item\(\)\?\)"),
        (lambda a: "loss", TypeError, "got str"),
        (lambda a: a[0].sum(dim=0), ValueError, r"got shape \[4\]"),
        (lambda a: torch.tensor(1.0), ValueError, "does not depend on any architecture parameter"),
    ],
)
def test_bad_losses_raise_clear_errors_and_change_nothing(name, bad_loss, error, match):
    opt, _ = warmed_up(name)
    snap = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.step(bad_loss)
    assert_unchanged(opt, snap)


@pytest.mark.parametrize("name", UPDATES)
def test_a_leaf_without_gradient_path_is_named(name):
    params = {"normal": torch.zeros(2, 3, requires_grad=True), "reduce": torch.zeros(2, 3, requires_grad=True)}
    opt = flatarch.make_update(name, params)
    with pytest.raises(ValueError, match=r"\['reduce'\] have no gradient path"):
        opt.step(lambda a: (a["normal"] ** 2).sum())
    assert params["normal"].grad is None and torch.equal(params["normal"], torch.zeros(2, 3))


@pytest.mark.parametrize("name", UPDATES)
@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_values_raise_or_skip_and_change_nothing(name, where):
    opt, model = warmed_up(name)
    calls = {"n": 0}

    def loss(a):
        calls["n"] += 1
        value = model.loss(a[0])
        if calls["n"] == opt_evaluations:  # the last evaluation of the step goes bad
            value = value * float("nan") if where == "loss" else value + (a[0] * float("inf")).sum()
        return value

    opt_evaluations = {"first-order": 1, "sam": 2, "usam": 2, "a2m": 4}[name]
    snap = snapshot(opt)
    with pytest.raises(NonFiniteError, match="NaN/Inf"):
        opt.step(loss)
    assert_unchanged(opt, snap)

    opt.on_nonfinite = "skip"
    calls["n"] = 0
    info = opt.step(loss)
    assert info.skipped and info.found_inf and opt.skipped_steps == 1 and opt.steps == 1
    assert_unchanged(opt, snap)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rho": -0.1}, "rho must be a finite number >= 0"),
        ({"rho": float("nan")}, "rho must be"),
        ({"eps": 0.0}, "eps must be a finite number > 0"),
        ({"eps": -1.0}, "eps must be"),
        ({"hessian": "bfgs"}, "hessian must be one of"),
        ({"difference": "backward"}, "difference must be one of"),
        ({"on_nonfinite": "ignore"}, "on_nonfinite must be one of"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        flatarch.A2M(make_params(), **kwargs)


def test_bad_params():
    with pytest.raises(ValueError, match="params is empty"):
        flatarch.A2M([])
    with pytest.raises(ValueError, match=r"\[1\] do not require grad"):
        flatarch.A2M([torch.zeros(2, requires_grad=True), torch.zeros(2)])
    with pytest.raises(TypeError, match=r"\['a'\] is a float"):
        flatarch.SAM({"a": 1.0})
    leaf = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="not leaf tensors"):
        flatarch.USAM([leaf * 2])
    with pytest.raises(ValueError, match="appears twice"):
        flatarch.FirstOrder([leaf, leaf])
    with pytest.raises(ValueError, match="exactly the architecture parameters"):
        flatarch.A2M([leaf], optimizer=torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1))
    with pytest.raises(ValueError, match="would be ignored"):
        flatarch.A2M([leaf], optimizer=torch.optim.SGD([leaf], lr=0.1), lr=0.2)


def test_gradients_of_another_structure_are_refused():
    params = {"a": torch.zeros(2, requires_grad=True), "b": torch.zeros(3, requires_grad=True)}
    opt = flatarch.A2M(params)

    def wrong_structure(alpha):
        return alpha["a"].sum(), [torch.ones(2), torch.ones(3)]

    def wrong_shape(alpha):
        return alpha["a"].sum(), {"a": torch.ones(2), "b": torch.ones(4)}

    with pytest.raises(ValueError, match="another structure"):
        opt.step(wrong_structure, returns_grad=True)
    with pytest.raises(ValueError, match=r"\['b'\] returned by loss_fn has shape \[4\], expected \[3\]"):
        opt.step(wrong_shape, returns_grad=True)
    assert params["a"].grad is None


def test_loss_that_returns_its_own_gradients_gives_the_same_direction():
    model = MixedOp(seed=2)
    alpha = torch.randn(2, 4, dtype=torch.float64)

    def value_and_grad(a):
        x = a.detach().requires_grad_(True)
        loss = model.loss(x)
        return loss, torch.autograd.grad(loss, x)[0]

    opt = flatarch.A2M(alpha.clone().requires_grad_(True), rho=0.1)
    torch.testing.assert_close(opt.direction(value_and_grad, returns_grad=True)[0], opt.direction(model.loss)[0])


def test_optimizer_choices():
    leaf = torch.zeros(3, requires_grad=True)
    default = flatarch.A2M([leaf])
    assert isinstance(default.optimizer, torch.optim.Adam)
    group = default.optimizer.param_groups[0]
    assert group["lr"] == 3e-4 and group["betas"] == (0.5, 0.999) and group["weight_decay"] == 1e-3
    assert flatarch.A2M([leaf], lr=1e-3).param_groups[0]["lr"] == 1e-3
    sgd = flatarch.SAM([leaf], optimizer=torch.optim.SGD, lr=0.5, momentum=0.9)
    assert isinstance(sgd.optimizer, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    built = torch.optim.Adam([leaf], lr=0.1)
    assert flatarch.USAM([leaf], optimizer=built).optimizer is built
    for name in UPDATES:
        assert isinstance(flatarch.make_update(name, [leaf], rho=0.1, eps=0.1), flatarch.ArchOptimizer)
    with pytest.raises(ValueError, match="unknown update 'adam'"):
        flatarch.make_update("adam", [leaf])


@pytest.mark.parametrize("name", UPDATES)
def test_state_dict_round_trip_resumes_exactly(name):
    model = MixedOp(seed=4, dtype=torch.float32)
    loss = lambda a: model.loss(a[0])  # noqa: E731
    opt = flatarch.make_update(name, make_params(7))
    for _ in range(3):
        opt.step(loss)
    saved_params = [p.detach().clone() for p in opt.leaves]
    state = copy.deepcopy(opt.state_dict())
    for _ in range(2):
        opt.step(loss)

    resumed = flatarch.make_update(name, [p.clone().requires_grad_(True) for p in saved_params])
    resumed.load_state_dict(state)
    assert resumed.steps == 3
    for _ in range(2):
        resumed.step(loss)
    assert all(torch.equal(a.detach(), b.detach()) for a, b in zip(opt.leaves, resumed.leaves))
    with pytest.raises(ValueError, match="from a 'sam' update"):
        flatarch.A2M(make_params()).load_state_dict(flatarch.SAM(make_params()).state_dict())


@pytest.mark.parametrize("name", ["sam", "usam", "a2m"])
def test_closure_restores_parameters_bit_for_bit_when_the_loss_raises(name):
    model = MixedOp(seed=5, dtype=torch.float32)
    alpha = torch.randn(2, 4).requires_grad_(True)
    original = alpha.detach().clone()
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        if calls["n"] == 2:  # alpha holds the perturbed point now
            assert not torch.equal(alpha.detach(), original)
            raise RuntimeError("data loader died")
        return model.loss(alpha)

    opt = flatarch.make_update(name, [alpha])
    with pytest.raises(RuntimeError, match="data loader died"):
        opt.step(closure)
    assert torch.equal(alpha.detach(), original) and alpha.grad is None


@pytest.mark.parametrize("name", UPDATES)
def test_closure_and_functional_conventions_agree(name):
    model = MixedOp(seed=6, dtype=torch.float64)
    alpha = torch.randn(2, 4, dtype=torch.float64)
    live = alpha.clone().requires_grad_(True)
    functional, _ = flatarch.make_update(name, [alpha.clone().requires_grad_(True)]).direction(
        lambda a: model.loss(a[0]))
    closure, _ = flatarch.make_update(name, [live]).direction(lambda: model.loss(live))
    torch.testing.assert_close(closure, functional, rtol=0, atol=0)
    assert torch.equal(live.detach(), alpha)


class BNNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.zeros(3))
        self.lin = torch.nn.Linear(4, 4)
        self.bn = torch.nn.BatchNorm1d(4)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        w = torch.softmax(self.alpha, 0)
        h = self.lin(x)
        return self.drop(self.bn(w[0] * h + w[1] * torch.tanh(h) + w[2] * h.relu()))


@pytest.mark.parametrize("name", ["sam", "usam", "a2m"])
def test_extra_passes_leave_buffers_as_the_first_pass_left_them(name):
    torch.manual_seed(0)
    net = BNNet()
    x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    reference = copy.deepcopy(net)
    torch.nn.functional.cross_entropy(reference(x), y)  # exactly one forward pass in train mode
    loss = flatarch.module_loss(net, (x, y), ["alpha"])
    flatarch.make_update(name, loss.arch_params).step(loss)
    assert torch.equal(net.bn.running_mean, reference.bn.running_mean)
    assert torch.equal(net.bn.num_batches_tracked, reference.bn.num_batches_tracked)

    unprotected = copy.deepcopy(reference)
    loss = flatarch.module_loss(unprotected, (x, y), ["alpha"])
    flatarch.make_update(name, loss.arch_params, protect_buffers=False).step(loss)
    assert unprotected.bn.num_batches_tracked.item() > reference.bn.num_batches_tracked.item()


def test_buffers_restored_to_pre_step_values_when_the_step_fails():
    net = BNNet()
    before = net.bn.running_mean.clone()
    x = torch.randn(8, 4)
    calls = {"n": 0}

    def compute(module, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return module(batch[0]).pow(2).mean()

    loss = flatarch.module_loss(net, (x, None), ["alpha"], compute=compute)
    with pytest.raises(RuntimeError, match="boom"):
        flatarch.A2M(loss.arch_params).step(loss)
    assert torch.equal(net.bn.running_mean, before)


@pytest.mark.parametrize("name", UPDATES)
def test_same_seed_same_result_and_randomness_replayed_across_evaluations(name):
    def run():
        torch.manual_seed(123)
        net = BNNet()
        x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
        loss = flatarch.module_loss(net, (x, y), ["alpha"])
        opt = flatarch.make_update(name, loss.arch_params, rho=0.05)
        infos = [opt.step(loss) for _ in range(3)]
        return net.alpha.detach().clone(), infos, torch.rand(1)

    (a1, i1, r1), (a2, i2, r2) = run(), run()
    assert torch.equal(a1, a2) and torch.equal(r1, r2)
    assert [i.as_dict() for i in i1] == [i.as_dict() for i in i2]


def test_replayed_randomness_makes_the_difference_pair_see_one_function():
    """With dropout, A2M's central difference must compare the same random function."""
    torch.manual_seed(0)
    net = BNNet()
    x, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    loss = flatarch.module_loss(net, (x, y), ["alpha"])
    rng = torch.get_rng_state()
    replayed, _ = flatarch.A2M(loss.arch_params, rho=0.0, eps=1e-3).direction(loss)
    torch.set_rng_state(rng)
    plain, _ = flatarch.FirstOrder(loss.arch_params).direction(loss)
    # rho = 0: G = g1 = g(alpha) with the same dropout masks as the first-order pass
    torch.testing.assert_close(replayed["alpha"], plain["alpha"], rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), rng) is False  # the step consumed randomness once


def test_step_info_fields():
    model = MixedOp(seed=8, dtype=torch.float64)
    alpha = torch.randn(2, 4, dtype=torch.float64)
    info = flatarch.A2M(alpha.clone().requires_grad_(True), rho=0.1).step(model.loss)
    assert info.evaluations == 4 and not info.skipped
    assert torch.isclose(info.loss, model.loss(alpha))
    g = torch.func.grad(model.loss)(alpha)
    assert torch.isclose(info.perturbed_loss, model.loss(alpha + 0.1 * g))
    assert torch.isclose(info.grad_norm, g.norm())
    assert info.as_dict()["sharpness"] == pytest.approx(float(info.perturbed_loss - info.loss))
    assert flatarch.A2M(alpha.clone().requires_grad_(True), difference="forward").step(model.loss).evaluations == 3
    assert flatarch.FirstOrder(alpha.clone().requires_grad_(True)).step(model.loss).evaluations == 1


def test_flatarch_search_is_the_engine_loaded_on_first_use():
    from flatarch.reference_spaces.engine import search

    assert flatarch.search is search
    with pytest.raises(AttributeError, match="no attribute 'serach'"):
        flatarch.serach  # noqa: B018


def test_state_dict_loads_by_name_not_by_position():
    torch.manual_seed(0)
    normal, reduce = torch.randn(3, 4).requires_grad_(True), torch.randn(2, 4).requires_grad_(True)
    loss = lambda a: (a["normal"] ** 2).sum() + (a["reduce"] ** 3).sum()  # noqa: E731
    opt = flatarch.A2M({"normal": normal, "reduce": reduce}, rho=0.1)
    opt.step(loss)
    state = copy.deepcopy(opt.state_dict())
    n2, r2 = normal.detach().clone().requires_grad_(True), reduce.detach().clone().requires_grad_(True)
    crossed = flatarch.A2M({"reduce": r2, "normal": n2}, rho=0.1)  # the other insertion order
    crossed.load_state_dict(state)
    saved = opt.optimizer.state_dict()["state"]
    loaded = crossed.optimizer.state_dict()["state"]
    # normal is leaf 0 in opt, leaf 1 in crossed: its Adam moments must follow it
    assert torch.equal(loaded[1]["exp_avg"], saved[0]["exp_avg"])
    assert torch.equal(loaded[0]["exp_avg"], saved[1]["exp_avg"])
    opt.step(loss)
    crossed.step(loss)
    assert torch.equal(n2, normal) and torch.equal(r2, reduce)


def test_state_dict_with_other_shapes_names_or_settings_is_refused_before_loading():
    leaf = torch.randn(3, 4).requires_grad_(True)
    opt = flatarch.A2M({"alpha": leaf}, rho=0.1)
    opt.step(lambda a: (a["alpha"] ** 2).sum())
    state = opt.state_dict()
    other_shape = flatarch.A2M({"alpha": torch.randn(2, 4).requires_grad_(True)}, rho=0.1)
    with pytest.raises(flatarch.StateDictError, match=r"shape \[2, 4\] here but \[3, 4\]"):
        other_shape.load_state_dict(state)
    other_name = flatarch.A2M({"beta": torch.randn(3, 4).requires_grad_(True)}, rho=0.1)
    with pytest.raises(flatarch.StateDictError, match="only in the state_dict"):
        other_name.load_state_dict(state)
    other_rho = flatarch.A2M({"alpha": torch.randn(3, 4).requires_grad_(True)}, rho=0.01)
    before = copy.deepcopy(other_rho.optimizer.state_dict())
    with pytest.raises(flatarch.StateDictError, match="rho=0.1 saved, 0.01 here"):
        other_rho.load_state_dict(state)
    assert other_rho.optimizer.state_dict() == before and other_rho.steps == 0


def test_returns_grad_accepts_the_tuple_autograd_gives_for_a_list_of_parameters():
    a, b = torch.randn(3).requires_grad_(True), torch.randn(2).requires_grad_(True)

    def loss_and_grads():
        loss = (a ** 2).sum() + (b ** 3).sum()
        return loss, torch.autograd.grad(loss, [a, b])  # a tuple

    direction, _ = flatarch.FirstOrder([a, b]).direction(loss_and_grads, returns_grad=True)
    assert torch.allclose(direction[0], 2 * a) and torch.allclose(direction[1], 3 * b ** 2)
    with pytest.raises(ValueError, match="another structure"):
        flatarch.FirstOrder([a, b]).direction(lambda: ((a ** 2).sum(), {"x": a, "y": b}), returns_grad=True)


@pytest.mark.parametrize("update, setting", [(flatarch.FirstOrder, "rho"), (flatarch.FirstOrder, "eps"),
                                             (flatarch.SAM, "eps"), (flatarch.USAM, "difference")])
def test_a_setting_the_update_does_not_have_is_named_not_passed_to_adam(update, setting):
    alpha = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(TypeError, match=rf"{update.__name__} has no setting '{setting}'.*update_settings"):
        update([alpha], **{setting: 0.1})
    flatarch.make_update(update.name, [alpha], **{setting: 0.1})  # the by-name factory drops it
