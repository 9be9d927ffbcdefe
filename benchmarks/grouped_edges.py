"""Operator calls and time per pass: the supernet with its edges grouped by the node they read
(what flatarch ships) against the same network built edge by edge (the textbook layout, one
module per candidate op per edge, as NAS-Bench-201's and DARTS' own search code build it).

On a GPU the search is bound by the host's work per operator call, not by arithmetic
(docs/performance.md), so the number of calls per pass predicts the GPU speed-up. The script
counts the calls of one alpha-gradient evaluation (forward + backward to alpha) and one weight
pass (forward + full backward) with a dispatch-mode counter, which does not depend on the
device, and times both layouts side by side (interleaved rounds, medians) at a host-bound batch
of 2 and at the paper's batch of 64. Both layouts compute the same function (tests/test_benchmarks.py
gives this script's per-edge networks the grouped ones' kernels and compares logits and alpha
gradients); their parameters are drawn independently here.

    python benchmarks/grouped_edges.py [--spaces nb201,darts] [--batches 2,64] [--device cpu] [--repeats 3] [--tiny]
"""

from __future__ import annotations

import argparse
import collections
import copy

import torch
import torch.nn.functional as F
from flatarch.reference_spaces.blocks import ReLUConvBN, partial_channels
from flatarch.reference_spaces.darts import search_network as darts
from flatarch.reference_spaces.darts.ops import OPS as DARTS_OPS
from flatarch.reference_spaces.nb201.encoding import EDGES, OPS
from flatarch.reference_spaces.nb201.ops import AvgPool
from flatarch.reference_spaces.nb201.search_network import NB201SearchNetwork, SearchCell
from step_cost import timed_round_robin  # this folder is on the path when a script here runs
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


def mix(ops, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_o w_o * op_o(x)`` over one edge's modules (``none`` already left out)."""
    out = None
    for w, op in zip(weights, ops):
        term = w * op(x)
        out = term if out is None else out + term
    return out


class PerEdgeNB201Cell(SearchCell):
    """The NAS-Bench-201 cell built edge by edge: 6 mixed ops of 5 candidate modules each (a
    SearchCell only so that the network routes the mixing weights to it)."""

    def __init__(self, channels: int):
        nn.Module.__init__(self)  # not SearchCell's: none of the grouped modules
        make = {"none": lambda: nn.Identity(), "skip_connect": lambda: nn.Identity(),
                "nor_conv_1x1": lambda: ReLUConvBN(channels, channels, 1, 1, 0, affine=False),
                "nor_conv_3x3": lambda: ReLUConvBN(channels, channels, 3, 1, 1, affine=False),
                "avg_pool_3x3": AvgPool}
        # `none` is left out of the sum (as flatarch's mix does): drop its module
        self.edges = nn.ModuleList(nn.ModuleList(make[name]() for name in OPS[1:]) for _ in EDGES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_skip: float = 0.0) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            total = None
            for e, (t, source) in enumerate(EDGES):
                if t == target:
                    out = mix(self.edges[e], weights[e][1:], nodes[source])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[-1]


def per_edge_nb201(grouped: NB201SearchNetwork) -> NB201SearchNetwork:
    net = copy.deepcopy(grouped)
    for i, cell in enumerate(net.cells):
        if isinstance(cell, SearchCell):
            net.cells[i] = PerEdgeNB201Cell(cell.sources[0].conv1.in_channels)
    return net.to(next(grouped.parameters()).device)


class PerEdgeDartsOp(nn.Module):
    """DARTS' ``MixedOp`` (``model_search.py``): the candidate modules of one edge, a non-affine
    BatchNorm after each pool, PC-DARTS' partial channels."""

    def __init__(self, c: int, stride: int, primitives, k: int):
        super().__init__()
        self.k = k
        ops = []
        for name in primitives:
            if name == "none":
                continue  # adds nothing to the sum
            op = DARTS_OPS[name](c // k, stride, False)
            ops.append(nn.Sequential(op, nn.BatchNorm2d(c // k, affine=False)) if "pool" in name else op)
        self.ops = nn.ModuleList(ops)
        self.bypass = nn.MaxPool2d(2, 2) if k > 1 and stride == 2 else None
        self.kept = [o for o, name in enumerate(primitives) if name != "none"]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        weights = weights[self.kept]
        if self.k > 1:
            return partial_channels(x, self.k, lambda active: mix(self.ops, weights, active), self.bypass)
        return mix(self.ops, weights, x)


class PerEdgeDartsCell(darts.SearchCell):
    """The DARTS search cell built edge by edge (a SearchCell only so that the network routes the
    mixing weights to it; it keeps the grouped cell's preprocessing)."""

    def __init__(self, grouped: darts.SearchCell, primitives, k: int):
        nn.Module.__init__(self)  # not SearchCell's: none of the grouped modules
        self.reduction, self.steps, self.multiplier = grouped.reduction, grouped.steps, grouped.multiplier
        self.preprocess0, self.preprocess1 = grouped.preprocess0, grouped.preprocess1
        c = grouped.preprocess1[1].out_channels
        self.edges = nn.ModuleList(
            PerEdgeDartsOp(c, 2 if self.reduction and source < 2 else 1, primitives, k)
            for node in range(self.steps) for source in range(node + 2))

    def forward(self, s0, s1, weights, edge_weights, aux_weight):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            terms = []
            for j, h in enumerate(states):
                out = self.edges[offset + j](h, weights[offset + j])
                terms.append(out if edge_weights is None else edge_weights[offset + j] * out)
            offset += len(states)
            states.append(sum(terms))
        return torch.cat(states[-self.multiplier:], dim=1)


def per_edge_darts(grouped: darts.DartsSearchNetwork) -> darts.DartsSearchNetwork:
    net = copy.deepcopy(grouped)
    for i, cell in enumerate(net.cells):
        net.cells[i] = PerEdgeDartsCell(cell, net.primitives, net.options.partial_channels)
    return net.to(next(grouped.parameters()).device)


class CallCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def passes(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    alphas = list(net.arch_parameters().values())
    weights = net.weight_parameters()

    def alpha_gradient():
        torch.autograd.grad(F.cross_entropy(net(x), y), alphas)

    def weight_pass():
        torch.autograd.grad(F.cross_entropy(net(x), y), weights)

    return {"alpha gradient": alpha_gradient, "weight pass": weight_pass}


def count_calls(fn) -> int:
    fn()  # warm-up outside the count
    with CallCounter() as counter:
        fn()
    return sum(counter.calls.values())


SPACES = ("nb201", "darts")


def build(space: str, tiny: bool, device: torch.device) -> tuple[dict[str, nn.Module], str, int]:
    """The two layouts of a space's supernet at the paper's size (or a smoke-test one)."""
    if space == "nb201":
        channels, cells, image = (4, 1, 8) if tiny else (16, 5, 32)
        grouped = NB201SearchNetwork(channels=channels, cells_per_stage=cells).to(device)
        label = f"NAS-Bench-201 supernet C={channels}, {cells} cells/stage"
        return {"per-edge": per_edge_nb201(grouped), "grouped": grouped}, label, image
    channels, layers, image = (4, 5, 8) if tiny else (16, 8, 32)
    grouped = darts.DartsSearchNetwork(C=channels, layers=layers).to(device)
    label = f"DARTS supernet C={channels}, {layers} cells"
    return {"per-edge": per_edge_darts(grouped), "grouped": grouped}, label, image


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--spaces", default=",".join(SPACES), help="comma-separated, from " + ", ".join(SPACES))
    p.add_argument("--batches", default="2,64", help="comma-separated batch sizes (2: host-bound; 64: the paper's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes, batch 2 only (seconds on a CPU)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for space in args.spaces.split(","):
        torch.manual_seed(0)
        layouts, label, image = build(space, args.tiny, device)
        print(f"{label}, {image}x{image} inputs; device {device}, torch threads {torch.get_num_threads()}")
        print(f"{'pass':<16}{'batch':>6}{'calls per-edge':>16}{'calls grouped':>15}{'ratio':>7}"
              f"{'ms per-edge':>13}{'ms grouped':>12}{'ratio':>7}")
        for batch in (2,) if args.tiny else (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, 3, image, image, device=device)
            y = torch.randint(0, 10, (batch,), device=device)
            fns = {layout: passes(net, x, y) for layout, net in layouts.items()}
            for name in ("alpha gradient", "weight pass"):
                calls = {layout: count_calls(fns[layout][name]) for layout in layouts}
                ms = timed_round_robin({layout: fns[layout][name] for layout in layouts}, args.repeats, device)
                print(f"{name:<16}{batch:>6}{calls['per-edge']:>16,}{calls['grouped']:>15,}"
                      f"{calls['grouped'] / calls['per-edge']:>7.2f}{1e3 * ms['per-edge']:>13.1f}"
                      f"{1e3 * ms['grouped']:>12.1f}{ms['grouped'] / ms['per-edge']:>7.2f}")


if __name__ == "__main__":
    main()
