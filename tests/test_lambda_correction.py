"""lambda-DARTS' weight-gradient correction against an independent autograd computation and the
repository's own formula (float64, a tiny model of several cells)."""

import pytest
import torch
from torch import nn

from flatarch.regularizers import lambda_correction


class Cells(nn.Module):
    """``cells`` cells, each mixing 3 ops on 2 edges by its own weights ``A_l`` ([2, 3])."""

    def __init__(self, cells=4, width=5):
        super().__init__()
        self.linear = nn.ModuleList(nn.Linear(width, width) for _ in range(cells))
        self.gate = nn.ModuleList(nn.Linear(width, width) for _ in range(cells))
        self.head = nn.Linear(width, 3)

    def forward(self, x, layer_weights):
        for lin, gate, a in zip(self.linear, self.gate, layer_weights):
            for e in range(2):
                x = a[e, 0] * x + a[e, 1] * torch.tanh(lin(x)) + a[e, 2] * torch.sigmoid(gate(x)) * x
        return self.head(x)


def setup(seed=0, cells=4):
    torch.manual_seed(seed)
    model = Cells(cells).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    weights = [torch.softmax(torch.randn(2, 3, dtype=torch.float64), -1) for _ in range(cells)]
    loss_fn = lambda ws: nn.functional.cross_entropy(model(x, ws), y)  # noqa: E731
    return model, loss_fn, weights


def correlation(grads, corr):
    flat = [g.reshape(-1) for g in grads]
    L = len(flat)
    c = 1.0 / (L * (L - 1) / 2)
    total = 0.0
    for i in range(L):
        for j in range(i + 1, L):
            if corr == "corr":
                total = total + torch.dot(flat[i], flat[j]) / (flat[i].norm() * flat[j].norm())
            else:
                total = total + torch.dot(flat[i], flat[j]) / torch.dot(flat[i].abs(), flat[j].abs())
    return c * total


@pytest.mark.parametrize("corr", ["corr", "signcorr"])
def test_equals_minus_the_gradient_of_the_cell_correlation(corr):
    model, loss_fn, weights = setup()
    params = list(model.parameters())
    # independent: C(dL/dA(w)) by double backward, then -grad_w C
    leaves = [w.clone().requires_grad_(True) for w in weights]
    grads = torch.autograd.grad(loss_fn(leaves), leaves, create_graph=True)
    expected = torch.autograd.grad(-correlation(grads, corr), params)
    got = lambda_correction(loss_fn, weights, params, eps0=1e-6, corr=corr)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-9)


def repository_formula(loss_fn, weights, params, eps0, corr):
    """The Lambda-DARTS code's own computation, written out with its dense projector and loops."""
    leaves = [w.clone().requires_grad_(True) for w in weights]
    grads = [g.reshape(-1) for g in torch.autograd.grad(loss_fn(leaves), leaves)]
    L = len(grads)
    c = 1 / ((L * (L - 1)) / 2)
    if corr == "corr":
        u = [g / g.norm(p=2.0) for g in grads]
        total = sum(u)
        eye = torch.eye(total.shape[0], dtype=total.dtype)
        pert = [c * ((1 / g.norm(p=2.0)) * (eye - torch.outer(ul, ul)) @ total) for g, ul in zip(grads, u)]
    else:
        pert = []
        for i in range(L):
            d = 0
            for j in range(L):
                if i != j:
                    g, h = grads[i], grads[j]
                    dot, abs_dot = torch.dot(g, h), torch.dot(g.abs(), h.abs())
                    d = d + (torch.ones_like(h) - (dot / abs_dot) * torch.sign(g) * torch.sign(h)) * h / abs_dot
            pert.append(c * d)
    eps = eps0 / torch.cat(pert).norm(p=2.0).item()
    pert = [p.reshape(w.shape) * eps for p, w in zip(pert, weights)]
    f = torch.autograd.grad(loss_fn([w - p for w, p in zip(weights, pert)]), params)
    b = torch.autograd.grad(loss_fn([w + p for w, p in zip(weights, pert)]), params)
    return [(fi - bi) / (2 * eps) for fi, bi in zip(f, b)]


@pytest.mark.parametrize("corr", ["corr", "signcorr"])
def test_equals_the_repository_two_pass_formula(corr):
    model, loss_fn, weights = setup(seed=1, cells=6)
    params = list(model.parameters())
    expected = repository_formula(loss_fn, weights, params, 1e-4, corr)
    got = lambda_correction(loss_fn, weights, params, eps0=1e-4, corr=corr)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=1e-8, atol=1e-12)


def test_changes_nothing_and_uses_the_given_layer_grads():
    model, loss_fn, weights = setup(seed=2)
    params = list(model.parameters())
    before = [p.detach().clone() for p in params] + [w.clone() for w in weights]
    for p in params:
        p.grad = torch.ones_like(p)
    leaves = [w.clone().requires_grad_(True) for w in weights]
    grads = torch.autograd.grad(loss_fn(leaves), leaves)
    calls = []

    def counting(ws):
        calls.append(1)
        return loss_fn(ws)

    with_grads = lambda_correction(counting, weights, params, layer_grads=grads)
    assert len(calls) == 2  # the two extra passes only
    without = lambda_correction(loss_fn, weights, params)
    assert all(torch.equal(a, b) for a, b in zip(with_grads, without))
    after = [p.detach() for p in params] + list(weights)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in params)


def test_bad_input_is_named():
    model, loss_fn, weights = setup()
    params = list(model.parameters())
    with pytest.raises(ValueError, match="corr must be"):
        lambda_correction(loss_fn, weights, params, corr="cosine")
    for eps0 in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps0"):
            lambda_correction(loss_fn, weights, params, eps0=eps0)
    with pytest.raises(ValueError, match="at least 2"):
        lambda_correction(loss_fn, weights[:1], params)


def test_cells_already_aligned_get_a_zero_correction_decided_on_the_device():
    """Identical cell gradients are already perfectly correlated: the sign variant's direction is
    exactly zero, where the repository would divide by a zero norm; the correction is zero, not NaN."""
    model, loss_fn, weights = setup(seed=3)
    params = list(model.parameters())
    same = [torch.full((2, 3), 0.5, dtype=torch.float64) for _ in weights]
    got = lambda_correction(loss_fn, weights, params, corr="signcorr", layer_grads=same)
    assert all(torch.equal(g, torch.zeros_like(p)) for g, p in zip(got, params))
