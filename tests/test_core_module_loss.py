"""module_loss over parameters, buffers and plain tensor attributes; mixed precision; regularisers."""

import pytest
import torch

import flatarch
from flatarch.regularizers import beta_decay, beta_decay_weight


class LegacyCell(torch.nn.Module):
    """Alphas in all three places the public DARTS code bases keep them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.alphas_normal = torch.randn(2, 3).requires_grad_(True)  # plain attribute (original DARTS)
        self.inner = torch.nn.Module()
        self.inner.betas = torch.nn.Parameter(torch.randn(2))  # registered, nested
        self.register_buffer("temperature", torch.tensor(1.5))
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        w = torch.softmax(self.alphas_normal / self.temperature, -1)
        b = torch.softmax(self.inner.betas, 0)
        h = self.lin(x)
        return sum(b[e] * (w[e, 0] * h + w[e, 1] * h.tanh() + w[e, 2] * h.sin()) for e in range(2))


NAMES = ["alphas_normal", "inner.betas", "temperature"]


def test_module_loss_swaps_every_kind_and_leaves_the_module_untouched():
    net = LegacyCell()
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    loss = flatarch.module_loss(net, (x, y), NAMES)
    live = loss.arch_params
    assert live["alphas_normal"] is net.alphas_normal and live["inner.betas"] is net.inner.betas
    originals = {k: v.detach().clone() for k, v in live.items()}
    shifted = {k: v.detach() + 0.3 for k, v in live.items()}
    value = loss(shifted)

    net.alphas_normal = shifted["alphas_normal"]
    with torch.no_grad():
        net.inner.betas.copy_(shifted["inner.betas"])
        net.temperature.copy_(shifted["temperature"])
    expected = torch.nn.functional.cross_entropy(net(x), y)
    torch.testing.assert_close(value, expected)

    fresh = LegacyCell()
    loss2 = flatarch.module_loss(fresh, (x, y), NAMES)
    loss2(shifted)
    for k, v in loss2.arch_params.items():
        assert torch.equal(v.detach(), originals[k])


def test_module_loss_drives_an_update_like_a_closure_does():
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    a, b = LegacyCell(), LegacyCell()
    la = flatarch.module_loss(a, (x, y), ["alphas_normal", "inner.betas"])
    functional, _ = flatarch.A2M(la.arch_params, rho=0.1).direction(la)
    params_b = {"alphas_normal": b.alphas_normal, "inner.betas": b.inner.betas}
    closure, _ = flatarch.A2M(params_b, rho=0.1).direction(lambda: torch.nn.functional.cross_entropy(b(x), y))
    for k in params_b:
        torch.testing.assert_close(functional[k], closure[k], rtol=1e-6, atol=1e-7)


def test_custom_compute_sees_the_swapped_alphas():
    net = LegacyCell()
    x = torch.randn(5, 4)
    seen = []

    def compute(module, batch):
        seen.append(module.inner.betas.detach().clone())
        return module(batch).sum() + beta_decay(module.inner.betas[None])

    loss = flatarch.module_loss(net, x, ["inner.betas"], compute=compute)
    probe = {"inner.betas": torch.tensor([5.0, -5.0])}
    loss(probe)
    assert torch.equal(seen[-1], probe["inner.betas"])


def test_module_loss_errors():
    net = LegacyCell()
    with pytest.raises(AttributeError, match="not a parameter, buffer or tensor attribute"):
        flatarch.module_loss(net, None, ["lin"])
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        flatarch.module_loss(net, None, ["nope.alpha"])
    with pytest.raises(ValueError, match="arch_names is empty"):
        flatarch.module_loss(net, None, [])
    loss = flatarch.module_loss(net, (torch.randn(2, 4), torch.tensor([0, 1])), ["inner.betas"])
    with pytest.raises(ValueError, match=r"keys \['inner.betas'\]"):
        loss({"betas": torch.zeros(2)})


@pytest.mark.parametrize("name", ["first-order", "sam", "usam", "a2m"])
def test_bf16_autocast_functional_path(name):
    torch.manual_seed(0)
    net = LegacyCell()
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loss = flatarch.module_loss(net, (x, y), ["alphas_normal", "inner.betas"])
    opt = flatarch.make_update(name, loss.arch_params, rho=0.05, eps=0.05)
    full, _ = opt.direction(loss)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half, info = opt.direction(loss)
    assert info.loss.dtype == torch.float32
    assert all(half[k].dtype == torch.float32 for k in full)
    # bf16 has ~3 significant digits; the direction must still point the same way
    flat_half = torch.cat([half[k].flatten() for k in sorted(half)])
    flat_full = torch.cat([full[k].flatten() for k in sorted(full)])
    cosine = torch.nn.functional.cosine_similarity(flat_half, flat_full, dim=0)
    assert cosine > 0.98, cosine
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not opt.step(loss).skipped


def test_grad_scale_unscales_and_overflow_skips_before_any_perturbation():
    net = LegacyCell()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss = flatarch.module_loss(net, (x, y), ["inner.betas"])
    opt = flatarch.A2M(loss.arch_params, rho=0.1)
    plain, _ = opt.direction(loss)
    scaled, _ = opt.direction(loss, grad_scale=1024.0)
    torch.testing.assert_close(scaled["inner.betas"], plain["inner.betas"], rtol=1e-5, atol=1e-7)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    assert scaler.is_enabled()
    with_scaler, _ = opt.direction(loss, grad_scale=scaler)
    torch.testing.assert_close(with_scaler["inner.betas"], plain["inner.betas"], rtol=1e-5, atol=1e-7)

    calls = {"n": 0}

    def overflowing(alpha):
        calls["n"] += 1
        return (alpha["inner.betas"] * 1e38).sum() * 1e38  # inf once scaled

    before = net.inner.betas.detach().clone()
    info = opt.step(overflowing, grad_scale=scaler)
    assert info.skipped and info.found_inf and calls["n"] == 1 and opt.skipped_steps == 1
    assert torch.equal(net.inner.betas.detach(), before) and net.inner.betas.grad is None
    assert scaler.get_scale() == 2.0**10  # the scaler is read, never changed
    with pytest.raises(ValueError, match="grad_scale must be a positive number"):
        opt.step(loss, grad_scale=-1)


def test_beta_decay_matches_its_formula_and_schedule():
    a = torch.randn(6, 5)
    expected = torch.logsumexp(a, -1).mean()
    torch.testing.assert_close(beta_decay(a), expected)
    n, r = torch.randn(14, 8), torch.randn(14, 8)
    both = beta_decay({"normal": n, "reduce": r}, {"normal": 2.0, "reduce": 0.5})
    torch.testing.assert_close(both, 2 * torch.logsumexp(n, -1).mean() + 0.5 * torch.logsumexp(r, -1).mean())
    torch.testing.assert_close(beta_decay([n, r], [1.0, 3.0]),
                               torch.logsumexp(n, -1).mean() + 3 * torch.logsumexp(r, -1).mean())
    with pytest.raises(ValueError, match="missing cell types"):
        beta_decay({"normal": n, "reduce": r}, {"normal": 1.0})
    with pytest.raises(ValueError, match="2 weights for 1"):
        beta_decay([n], [1.0, 2.0])
    assert beta_decay_weight(0) == 0 and beta_decay_weight(10) == 5.0  # the original epoch / 2
    assert beta_decay_weight(5, start=1, end=3, epochs=10) == 2.0


def test_beta_decay_inside_every_evaluation_changes_the_a2m_direction():
    alpha = torch.randn(6, 5, dtype=torch.float64)
    base = lambda a: (a.sin() ** 2).sum()  # noqa: E731
    lam = 3.0
    regularised = lambda a: base(a) + lam * beta_decay(a)  # noqa: E731
    d_reg, _ = flatarch.A2M(alpha.clone().requires_grad_(True), rho=0.1).direction(regularised)
    d_base, _ = flatarch.A2M(alpha.clone().requires_grad_(True), rho=0.1).direction(base)
    # the regulariser's gradient lam * softmax / edges enters G (and its curvature the h term)
    assert (d_reg - d_base).abs().max() > 1e-3
    exact, _ = flatarch.A2M(alpha.clone().requires_grad_(True), rho=0.1, hessian="exact").direction(regularised)
    assert (d_reg - exact).norm() / exact.norm() < 0.05
