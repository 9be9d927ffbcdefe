"""Loss functions shared by the core tests (imported as a module, not a conftest fixture)."""

import torch


def quadratic(dim: int, seed: int, dtype=torch.float64):
    """``L(a) = 0.5 a^T H a + b^T a`` with a random symmetric (possibly indefinite) ``H``."""
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=gen, dtype=dtype)
    hessian = (m + m.T) / 2
    b = torch.randn(dim, generator=gen, dtype=dtype)
    return (lambda a: 0.5 * a @ hessian @ a + b @ a), hessian


class MixedOp(torch.nn.Module):
    """A DARTS-like mixed op on 2 edges x 4 ops: out = sum_o softmax(alpha_e)_o * op_o(x).

    Non-quadratic in alpha (softmax, then a non-linear head and cross entropy), so the finite
    differences of A2M have a real O(eps^2) error to measure.
    """

    def __init__(self, seed: int = 0, dtype=torch.float64):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(4, 6, 6, generator=gen, dtype=dtype) * 0.5)
        self.head = torch.nn.Parameter(torch.randn(6, 3, generator=gen, dtype=dtype))
        self.x = torch.randn(16, 6, generator=gen, dtype=dtype)
        self.y = torch.randint(0, 3, (16,), generator=gen)

    def loss(self, alpha: torch.Tensor) -> torch.Tensor:
        h = self.x
        for edge in range(alpha.shape[0]):
            weights = torch.softmax(alpha[edge], dim=-1)
            ops = torch.stack([torch.tanh(h @ self.w[o]) if o % 2 else h @ self.w[o] for o in range(4)])
            h = (weights[:, None, None] * ops).sum(0)
        return torch.nn.functional.cross_entropy(h @ self.head, self.y)
