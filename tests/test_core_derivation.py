"""Property tests of the update formulas (A2M paper section 4.2 and appendix B), against torch.func as the oracle."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from losses import MixedOp, quadratic
from torch.func import grad, hessian

import flatarch

SETTINGS = settings(max_examples=25, deadline=None)


def usam_objective_grad(loss, alpha, rho, scale=None):
    """Autograd of L(alpha + rho T^2 g(alpha)) (T constant), the quantity A2M approximates."""
    t2 = 1.0 if scale is None else scale**2

    def objective(a):
        return loss(a + rho * t2 * grad(loss)(a))

    return grad(objective)(alpha)


def a2m_hessian_form(loss, alpha, rho):
    """g1 + rho * H(alpha_t) g1: A2M's limit as eps -> 0."""
    alpha_t = alpha + rho * grad(loss)(alpha)
    g1 = grad(loss)(alpha_t)
    return g1 + rho * hessian(loss)(alpha_t) @ g1


def param(values):
    return values.clone().requires_grad_(True)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    rho=st.floats(1e-4, 0.3),
    eps=st.floats(1e-3, 1.0),
    difference=st.sampled_from(["central", "forward"]),
)
def test_a2m_is_exact_on_quadratics_for_any_rho_and_eps(seed, rho, eps, difference):
    loss, _ = quadratic(5, seed)
    alpha = torch.randn(5, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    direction, _ = flatarch.A2M(param(alpha), rho=rho, eps=eps, difference=difference).direction(loss)
    expected = usam_objective_grad(loss, alpha, rho)
    torch.testing.assert_close(direction, expected, rtol=1e-9, atol=1e-9 * (1 + expected.abs().max().item()))


@SETTINGS
@given(seed=st.integers(0, 10_000), rho=st.floats(1e-4, 0.3), eps=st.floats(1e-3, 1.0))
def test_adaptive_a2m_is_exact_on_quadratics(seed, rho, eps):
    loss, _ = quadratic(4, seed)
    alpha = torch.randn(4, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    opt = flatarch.A2M(param(alpha), rho=rho, eps=eps, adaptive=True, adaptive_eta=0.05)
    direction, _ = opt.direction(loss)
    expected = usam_objective_grad(loss, alpha, rho, scale=alpha.abs() + 0.05)
    torch.testing.assert_close(direction, expected, rtol=1e-9, atol=1e-9 * (1 + expected.abs().max().item()))


@pytest.mark.parametrize("difference, order", [("central", 2), ("forward", 1)])
def test_a2m_converges_to_the_hessian_form_at_the_expected_order(difference, order):
    model = MixedOp(seed=3)
    alpha = torch.randn(2, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rho = 0.05
    flat_loss = lambda a: model.loss(a.reshape(2, 4))  # noqa: E731
    limit = a2m_hessian_form(flat_loss, alpha.reshape(-1), rho).reshape(2, 4)
    errors = []
    for eps in (0.1, 0.05, 0.025):
        direction, _ = flatarch.A2M(param(alpha), rho=rho, eps=eps, difference=difference).direction(model.loss)
        errors.append((direction - limit).norm().item())
    rates = [errors[i] / errors[i + 1] for i in range(2)]
    expected_rate = 2**order
    assert all(0.75 * expected_rate < r < 1.3 * expected_rate for r in rates), (errors, rates)


def test_finite_differences_match_exact_hessian_vector_product_on_mixed_op_loss():
    """The check that would have caught the `/ 2 * eps` precedence bug of public DARTS code."""
    model = MixedOp(seed=11)
    alpha = torch.randn(2, 4, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    rho, eps = 0.1, 1e-4
    direction, _ = flatarch.A2M(param(alpha), rho=rho, eps=eps).direction(model.loss)
    flat_loss = lambda a: model.loss(a.reshape(2, 4))  # noqa: E731
    limit = a2m_hessian_form(flat_loss, alpha.reshape(-1), rho).reshape(2, 4)
    torch.testing.assert_close(direction, limit, rtol=1e-6, atol=1e-9)
    # and it differs from the exact USAM gradient only at O(rho^2)
    exact, _ = flatarch.A2M(param(alpha), rho=rho, hessian="exact").direction(model.loss)
    gap = (direction - exact).norm() / exact.norm()
    assert gap < 5 * rho**2


@SETTINGS
@given(seed=st.integers(0, 10_000), rho=st.floats(1e-3, 0.5))
def test_exact_modes_equal_autograd_of_their_objectives(seed, rho):
    model = MixedOp(seed=seed % 50)
    alpha = torch.randn(2, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    usam = usam_objective_grad(model.loss, alpha, rho)
    for opt in (flatarch.A2M(param(alpha), rho=rho, hessian="exact"), flatarch.USAM(param(alpha), rho=rho,
                                                                                    hessian="exact")):
        torch.testing.assert_close(opt.direction(model.loss)[0], usam, rtol=1e-9, atol=1e-12)
        live = opt.leaves[0]
        torch.testing.assert_close(opt.direction(lambda live=live: model.loss(live))[0], usam, rtol=1e-9, atol=1e-12)

    def sam_objective(a):
        g = grad(model.loss)(a)
        return model.loss(a + rho * g / g.norm())

    sam = flatarch.SAM(param(alpha), rho=rho, hessian="exact").direction(model.loss)[0]
    torch.testing.assert_close(sam, grad(sam_objective)(alpha), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda p, r: flatarch.SAM(p, rho=r),
    lambda p, r: flatarch.USAM(p, rho=r),
    lambda p, r: flatarch.A2M(p, rho=r),
    lambda p, r: flatarch.A2M(p, rho=r, difference="forward"),
    lambda p, r: flatarch.A2M(p, rho=r, hessian="exact"),
    lambda p, r: flatarch.SAM(p, rho=r, hessian="exact"),
])
def test_every_update_tends_to_the_plain_gradient_as_rho_goes_to_zero(make):
    model = MixedOp(seed=5)
    alpha = torch.randn(2, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    g = grad(model.loss)(alpha)
    exact_zero, _ = make(param(alpha), 0.0).direction(model.loss)
    torch.testing.assert_close(exact_zero, g, rtol=1e-12, atol=1e-12)
    errors = [(make(param(alpha), rho).direction(model.loss)[0] - g).norm().item() for rho in (1e-2, 1e-3)]
    assert errors[1] < errors[0] / 5  # linear in rho


def test_sam_direction_matches_its_formula_and_survives_a_zero_gradient():
    loss, _ = quadratic(3, 1)
    alpha = torch.randn(3, dtype=torch.float64)
    rho = 0.2
    g0 = grad(loss)(alpha)
    expected = grad(loss)(alpha + rho * g0 / g0.norm())
    torch.testing.assert_close(flatarch.SAM(param(alpha), rho=rho).direction(loss)[0], expected)
    flat = lambda a: (a * 0).sum() + 1.0  # noqa: E731  gradient exactly zero
    for hessian_mode in ("none", "exact"):
        direction, info = flatarch.SAM(param(alpha), rho=rho, hessian=hessian_mode).direction(flat)
        assert torch.equal(direction, torch.zeros_like(alpha)) and not info.skipped


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["first-order", "sam", "usam", "a2m"])
def test_structure_dtype_device_preserved_and_alpha_untouched_until_inner_step(name, dtype):
    gen = torch.Generator().manual_seed(0)
    tree = {"normal": torch.randn(3, 4, generator=gen, dtype=dtype), "cells": [torch.randn(2, 4, generator=gen,
                                                                                          dtype=dtype)],
            "betas": (torch.randn(5, generator=gen, dtype=dtype),)}
    params = {"normal": param(tree["normal"]), "cells": [param(tree["cells"][0])], "betas": (param(tree["betas"][0]),)}
    before = [t.detach().clone() for t in (params["normal"], params["cells"][0], params["betas"][0])]

    def loss(a):
        return (a["normal"].sin().sum() * a["cells"][0].cos().sum() + (a["betas"][0] ** 3).sum())

    opt = flatarch.make_update(name, params)
    direction, _ = opt.direction(loss)
    assert set(direction) == {"normal", "cells", "betas"} and isinstance(direction["cells"], list)
    assert isinstance(direction["betas"], tuple)
    for d, p in zip((direction["normal"], direction["cells"][0], direction["betas"][0]), before):
        assert d.dtype == dtype and d.device == p.device and d.shape == p.shape
    leaves = (params["normal"], params["cells"][0], params["betas"][0])
    assert all(torch.equal(p, b) for p, b in zip(leaves, before))
    assert all(p.grad is None for p in leaves)

    # step == the inner optimizer applied to G
    reference = [param(b) for b in before]
    ref_opt = torch.optim.Adam(reference, **flatarch.DARTS_ADAM_DEFAULTS)
    for r, d in zip(reference, (direction["normal"], direction["cells"][0], direction["betas"][0])):
        r.grad = d.clone()
    ref_opt.step()
    opt.step(loss)
    for p, r in zip(leaves, reference):
        assert torch.equal(p.detach(), r.detach())
