"""A one-minute demonstration: first-order DARTS against A2M on a small mixed-op model.

Both updates search the alphas of the same two-edge, four-op supernet on the same synthetic
task (weights and alphas trained in the usual alternation). Printed per epoch: validation loss,
the sharpness estimate ``L(alpha + rho g) - L(alpha)`` at the current alphas, and the softmax
weights of the first edge. Run with ``python -m flatarch.demo`` or ``flatarch demo``.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import flatarch


class TinySupernet(nn.Module):
    """Two mixed edges over {zero, identity, linear, tanh-linear}, then a classifier."""

    OPS = ("none", "skip", "linear", "tanh")

    def __init__(self, width: int = 16, classes: int = 4):
        super().__init__()
        self.alpha = nn.Parameter(1e-3 * torch.randn(2, len(self.OPS)))
        self.linear = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.nonlinear = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for edge in range(2):
            w = torch.softmax(self.alpha[edge], -1)
            x = w[1] * x + w[2] * self.linear[edge](x) + w[3] * torch.tanh(self.nonlinear[edge](x))
        return self.head(x)

    def weights(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]


def make_task(seed: int, n: int = 512, width: int = 16, classes: int = 4):
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(width, classes, generator=gen)
    x = torch.randn(n, width, generator=gen)
    y = (torch.tanh(x) @ teacher).argmax(-1)
    half = n // 2
    return (x[:half], y[:half]), (x[half:], y[half:])


def run(update: str, *, epochs: int, rho: float, seed: int) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    (xt, yt), (xv, yv) = make_task(seed)
    net = TinySupernet()
    weight_opt = torch.optim.SGD(net.weights(), lr=0.05, momentum=0.9)
    arch_opt = flatarch.make_update(update, {"alpha": net.alpha}, rho=rho, lr=3e-2)
    history = []
    for _ in range(epochs):
        for i in range(0, len(xt), 32):
            batch_v = (xv[i:i + 32], yv[i:i + 32])
            info = arch_opt.step(flatarch.module_loss(net, batch_v, ["alpha"]))
            weight_opt.zero_grad()
            F.cross_entropy(net(xt[i:i + 32]), yt[i:i + 32]).backward()
            weight_opt.step()
        # sharpness of the full validation loss at the current alphas, with the same rho for both
        probe = flatarch.USAM({"alpha": net.alpha}, rho=rho)
        _, full = probe.direction(flatarch.module_loss(net, (xv, yv), ["alpha"]))
        history.append({
            "val_loss": float(full.loss),
            "sharpness": float(full.sharpness),
            "evaluations": info.evaluations,
            "edge0": torch.softmax(net.alpha[0].detach(), -1).tolist(),
        })
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rho", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {name: run(name, epochs=args.epochs, rho=args.rho, seed=args.seed) for name in ("first-order", "a2m")}
    print(f"first-order DARTS vs A2M (rho={args.rho}) on a 2-edge mixed-op supernet, torch threads: 1")
    print(f"{'epoch':>5} | {'DARTS val loss':>14} {'sharpness':>10} | {'A2M val loss':>12} {'sharpness':>10}")
    for epoch, (d, a) in enumerate(zip(results["first-order"], results["a2m"]), start=1):
        print(f"{epoch:>5} | {d['val_loss']:>14.4f} {d['sharpness']:>10.4f} | {a['val_loss']:>12.4f} "
              f"{a['sharpness']:>10.4f}")
    for name, hist in results.items():
        ops = ", ".join(f"{op}={w:.2f}" for op, w in zip(TinySupernet.OPS, hist[-1]["edge0"]))
        print(f"{name:>11}: edge 0 softmax [{ops}]  ({hist[-1]['evaluations']} loss evaluations per alpha step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
