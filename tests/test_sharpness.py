"""flatarch.sharpness against the eigenvalues of the full Hessian (torch.autograd.functional.hessian
and torch.linalg.eigvalsh), and its contract: alpha, buffers and random state untouched, bad input
named."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flatarch
from flatarch import sharpness


def _flat(tree) -> torch.Tensor:
    return torch.cat([leaf.reshape(-1) for leaf in torch.utils._pytree.tree_leaves(tree)])


def _dominant(values: torch.Tensor) -> float:
    return float(values[values.abs().argmax()])


def _full_hessian(loss_fn, alpha: dict) -> torch.Tensor:
    """The Hessian over the flattened leaves of a dict of tensors (keys in insertion order)."""
    shapes = {k: v.shape for k, v in alpha.items()}
    sizes = [v.numel() for v in alpha.values()]

    def flat_loss(x):
        parts = dict(zip(shapes, x.split(sizes)))
        return loss_fn({k: parts[k].reshape(shapes[k]) for k in shapes})

    return torch.autograd.functional.hessian(flat_loss, _flat(alpha).detach())


def _quadratic_with_spectrum(values, seed):
    """``0.5 a^T H a + b^T a`` over ``{"a": [m], "b": [n - m]}`` with ``H = Q diag(values) Q^T``."""
    gen = torch.Generator().manual_seed(seed)
    n = len(values)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    hessian = q @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    m = n // 2

    def loss(alpha):
        x = torch.cat([alpha["a"], alpha["b"]])
        return 0.5 * x @ hessian @ x + b @ x

    alpha = {"a": torch.randn(m, generator=gen, dtype=torch.float64),
             "b": torch.randn(n - m, generator=gen, dtype=torch.float64)}
    return loss, alpha, hessian


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), top=st.floats(0.5, 50.0), sign=st.sampled_from([1.0, -1.0]),
       rest=st.lists(st.floats(-0.6, 0.6), min_size=6, max_size=6), seed=st.integers(0, 2**16))
def test_power_iteration_finds_the_dominant_eigenvalue_of_random_quadratics(n, top, sign, rest, seed):
    # the other eigenvalues are at most 0.6 |top|: power iteration then converges geometrically
    values = [sign * top] + [r * top for r in rest[: n - 1]]
    loss, alpha, hessian = _quadratic_with_spectrum(values, seed)
    expected = _dominant(torch.linalg.eigvalsh(_full_hessian(loss, alpha)))
    assert math.isclose(expected, sign * top, rel_tol=1e-9)  # the reference sees the built spectrum

    found = sharpness.power_iteration(loss, alpha, iters=400, tol=1e-12)
    assert found.converged and found.iterations <= 400
    assert math.isclose(found.value, expected, rel_tol=1e-8)
    vector = _flat(found.vector)
    assert math.isclose(float(vector.norm()), 1.0, rel_tol=1e-12)
    assert set(found.vector) == {"a", "b"} and found.vector["a"].shape == alpha["a"].shape
    torch.testing.assert_close(hessian @ vector, found.value * vector, atol=1e-5 * top, rtol=0)

    value, vector2 = sharpness.dominant_eigenvalue(loss, alpha, iters=400, tol=1e-12)
    assert value == found.value and torch.equal(_flat(vector2), vector)


def test_a_negative_dominant_eigenvalue_keeps_its_sign():
    loss, alpha, _ = _quadratic_with_spectrum([-5.0, 2.0, 1.0, -0.5], seed=1)
    value, vector = sharpness.dominant_eigenvalue(loss, alpha, iters=200, tol=1e-12)
    assert math.isclose(value, -5.0, rel_tol=1e-9)
    # the most *positive* eigenvalue is 2: the dominant one is chosen by magnitude
    values, _ = sharpness.top_eigenvalues(loss, alpha, 2)
    assert values[0] == pytest.approx(-5.0, rel=1e-9) and values[1] == pytest.approx(2.0, rel=1e-9)


class MixedNet(torch.nn.Module):
    """A tiny DARTS-like network: a normal and a reduction cell of 3 edges x 4 ops, each edge a
    softmax-weighted sum of its ops, then a linear head and cross entropy (float64)."""

    def __init__(self, seed=0, batch_norm=False):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(2, 4, 6, 6, generator=gen, dtype=torch.float64) * 0.6)
        self.head = torch.nn.Parameter(torch.randn(6, 3, generator=gen, dtype=torch.float64))
        self.norm = torch.nn.BatchNorm1d(6).double() if batch_norm else None
        self.alphas = torch.nn.ParameterDict({
            "normal": torch.nn.Parameter(torch.randn(3, 4, generator=gen, dtype=torch.float64) * 0.5),
            "reduce": torch.nn.Parameter(torch.randn(3, 4, generator=gen, dtype=torch.float64) * 0.5)})

    def cell(self, h, alpha, w):
        for edge in range(alpha.shape[0]):
            weights = torch.softmax(alpha[edge], -1)
            ops = torch.stack([h, torch.tanh(h @ w[1]), h @ w[2], torch.sigmoid(h @ w[3]) - 0.5])
            h = (weights[:, None, None] * ops).sum(0)
        return h

    def forward(self, x, alpha=None):
        alpha = alpha if alpha is not None else dict(self.alphas)
        h = self.cell(x, alpha["normal"], self.w[0])
        if self.norm is not None:
            h = self.norm(h)
        return self.cell(h, alpha["reduce"], self.w[1]) @ self.head


def _batch(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (32,), generator=gen)


def _mixed_loss(net, batch):
    x, y = batch
    return lambda alpha: torch.nn.functional.cross_entropy(net(x, alpha), y)


def test_mixed_op_network_matches_the_full_hessian():
    net, batch = MixedNet(), _batch()
    alpha = {k: v.detach().clone() for k, v in net.alphas.items()}
    loss = _mixed_loss(net, batch)
    eigenvalues = torch.linalg.eigvalsh(_full_hessian(loss, alpha))
    by_magnitude = sorted(eigenvalues.tolist(), key=abs, reverse=True)
    assert abs(by_magnitude[1]) < 0.9 * abs(by_magnitude[0])  # a gap: power iteration can converge

    found = sharpness.power_iteration(loss, alpha, iters=1000, tol=1e-13)
    assert found.converged
    assert found.value == pytest.approx(by_magnitude[0], rel=1e-7)
    values, vectors = sharpness.top_eigenvalues(loss, alpha, 4)
    assert values == pytest.approx(by_magnitude[:4], rel=1e-8)
    assert set(vectors[0]) == {"normal", "reduce"} and vectors[0]["normal"].shape == (3, 4)
    # the top Lanczos vector is the power iteration's, up to sign
    cosine = float(_flat(vectors[0]) @ _flat(found.vector))
    assert abs(cosine) == pytest.approx(1.0, abs=1e-5)


def test_default_iterations_estimate_the_dominant_eigenvalue_from_below():
    net, batch = MixedNet(seed=3), _batch(4)
    alpha = {k: v.detach().clone() for k, v in net.alphas.items()}
    loss = _mixed_loss(net, batch)
    exact = max(abs(v) for v in torch.linalg.eigvalsh(_full_hessian(loss, alpha)).tolist())
    found = sharpness.power_iteration(loss, alpha)  # iters 20, tol 1e-3
    assert 1 <= found.iterations <= 20
    # a Rayleigh quotient never exceeds the largest magnitude
    assert abs(found.value) <= exact * (1 + 1e-12)
    if found.converged:
        assert abs(found.value) == pytest.approx(exact, rel=0.05)


def test_alpha_is_unchanged_bit_for_bit_and_gets_no_grad():
    net, batch = MixedNet(), _batch()
    alpha = dict(net.alphas)  # the live parameters themselves
    before = {k: v.detach().clone() for k, v in alpha.items()}
    sharpness.dominant_eigenvalue(_mixed_loss(net, batch), alpha)
    sharpness.top_eigenvalues(_mixed_loss(net, batch), alpha, 2)
    for k, v in alpha.items():
        assert torch.equal(v.detach(), before[k]) and v.grad is None
    assert all(p.grad is None for p in net.parameters())


def test_module_loss_with_batch_norm_leaves_buffers_and_random_state_as_they_were():
    net = MixedNet(batch_norm=True)
    net.train()
    x, y = _batch()

    def compute(module, batch):
        # dropout draws from the global generator: every pass must see the same mask
        h = torch.nn.functional.dropout(module(batch[0]), p=0.2, training=True)
        return torch.nn.functional.cross_entropy(h, batch[1])

    loss = flatarch.module_loss(net, (x, y), ["alphas.normal", "alphas.reduce"], compute=compute)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    rng = torch.get_rng_state()
    found = sharpness.power_iteration(loss, loss.arch_params, iters=300, tol=1e-12)
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert torch.equal(torch.get_rng_state(), rng)

    # the same value as the full Hessian of the same loss (same dropout mask, same batch statistics)
    def replayed(alpha):
        torch.set_rng_state(rng)
        return loss(alpha)

    alpha = {k: v.detach().clone() for k, v in loss.arch_params.items()}
    exact = _dominant(torch.linalg.eigvalsh(_full_hessian(replayed, alpha)))
    assert found.converged and found.value == pytest.approx(exact, rel=1e-7)


def test_a_closure_over_the_live_tensors_gives_the_functional_value():
    net, batch = MixedNet(), _batch()
    x, y = batch
    functional = sharpness.power_iteration(_mixed_loss(net, batch), dict(net.alphas), iters=50, tol=1e-9)
    closure = sharpness.power_iteration(lambda: torch.nn.functional.cross_entropy(net(x), y), dict(net.alphas),
                                        iters=50, tol=1e-9)
    assert closure.value == pytest.approx(functional.value, rel=1e-12)


def test_the_start_vector_comes_from_the_generator_not_the_global_state():
    loss, alpha, _ = _quadratic_with_spectrum([3.0, 2.9, 1.0], seed=2)  # slow: the start shows
    rng = torch.get_rng_state()
    a = sharpness.power_iteration(loss, alpha, iters=3)
    torch.manual_seed(123)
    b = sharpness.power_iteration(loss, alpha, iters=3)
    c = sharpness.power_iteration(loss, alpha, iters=3, generator=torch.Generator().manual_seed(5))
    assert a.value == b.value and a.value != c.value
    torch.set_rng_state(rng)


def test_a_zero_hessian_converges_to_zero():
    found = sharpness.power_iteration(lambda a: 3.0 * a.sum(), torch.ones(4, dtype=torch.float64))
    assert found.value == 0.0 and found.converged and found.iterations == 1


@pytest.mark.parametrize("kwargs,match", [
    ({"iters": 0}, "iters must be a whole number >= 1"),
    ({"iters": 2.5}, "iters must be a whole number >= 1"),
    ({"tol": 0.0}, "tol must be a finite number > 0"),
    ({"tol": -1e-3}, "tol must be a finite number > 0"),
    ({"tol": float("nan")}, "tol must be a finite number > 0"),
])
def test_bad_settings_are_named(kwargs, match):
    loss, alpha, _ = _quadratic_with_spectrum([2.0, 1.0], seed=0)
    with pytest.raises(ValueError, match=match):
        sharpness.dominant_eigenvalue(loss, alpha, **kwargs)


def test_bad_alpha_and_k_are_named():
    loss, alpha, _ = _quadratic_with_spectrum([2.0, 1.0, 0.5], seed=0)
    with pytest.raises(ValueError, match="alpha is empty"):
        sharpness.dominant_eigenvalue(loss, {})
    with pytest.raises(TypeError, match="not a floating-point torch.Tensor"):
        sharpness.dominant_eigenvalue(loss, {"a": torch.ones(2, dtype=torch.long), "b": torch.ones(1)})
    with pytest.raises(ValueError, match=r"k must be a whole number from 1 to 2 \(alpha has 3 entries\)"):
        sharpness.top_eigenvalues(loss, alpha, 3)


def test_nonfinite_loss_or_curvature_raises_nonfinite_error():
    alpha = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(flatarch.NonFiniteError, match="loss or its gradient at alpha is NaN/Inf"):
        sharpness.dominant_eigenvalue(lambda a: (a / 0.0).sum() + a.pow(2).sum(), alpha)
    # finite loss and gradient, infinite second derivative at 0
    with pytest.raises(flatarch.NonFiniteError, match="Hessian-vector product 1 is NaN/Inf"):
        sharpness.dominant_eigenvalue(lambda a: a.abs().pow(1.5).sum(), alpha)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_and_keeps_the_device():
    net, (x, y) = MixedNet(batch_norm=True), _batch()
    cpu_loss = flatarch.module_loss(net, (x, y), ["alphas.normal", "alphas.reduce"])
    cpu = sharpness.power_iteration(cpu_loss, cpu_loss.arch_params, iters=300, tol=1e-12)
    net.cuda()
    gpu_loss = flatarch.module_loss(net, (x.cuda(), y.cuda()), ["alphas.normal", "alphas.reduce"])
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    gpu = sharpness.power_iteration(gpu_loss, gpu_loss.arch_params, iters=300, tol=1e-12)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-7) and gpu.vector["alphas.normal"].device.type == "cuda"
    assert all(torch.equal(v, buffers[k]) for k, v in net.named_buffers())
