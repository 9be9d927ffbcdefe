"""What each rank computes in tests/test_distributed_core.py (a module, so spawned ranks can import it).

Every case runs twice on each rank: the *reference*, one device's computation on the whole batch
(plain BatchNorm, no reduction), and the *data-parallel* one, on this rank's half of the batch with
``process_group=WORLD`` and :class:`flatarch.sync_batch_norm.GlobalBatchNorm`. Float64, so the two
differ only by the order of the float sums (about 1e-16 relative).
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F

import flatarch
from flatarch import distributed, regularizers, sharpness, smoothing
from flatarch.sync_batch_norm import convert_global_batch_norm

#: update cases: (name, settings, convention)
UPDATE_CASES = {
    "first-order": ("first-order", {}, "functional"),
    "sam": ("sam", {"rho": 0.5}, "functional"),
    "sam-exact": ("sam", {"rho": 0.5, "hessian": "exact"}, "functional"),
    "usam": ("usam", {"rho": 0.5}, "functional"),
    "usam-exact-closure": ("usam", {"rho": 0.5, "hessian": "exact"}, "closure"),
    "a2m": ("a2m", {"rho": 0.5}, "functional"),
    "a2m-closure": ("a2m", {"rho": 0.5}, "closure"),
    "a2m-forward": ("a2m", {"rho": 0.5, "difference": "forward"}, "functional"),
    "a2m-exact": ("a2m", {"rho": 0.5, "hessian": "exact"}, "functional"),
    "a2m-batch-pair": ("a2m", {"rho": 0.5, "batch_pair": True}, "functional"),
}
STEPS = 2


class TinySupernet(torch.nn.Module):
    """Two mixed edges of three ops (3x3 conv, average pool, identity) between BatchNorm layers, a
    linear head: a supernet with few layers, so each pass costs few all-reduces."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4))
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(2))
        self.norm = torch.nn.BatchNorm2d(4, affine=False)
        self.head = torch.nn.Linear(4, 5)
        self.arch_alpha = torch.nn.Parameter(torch.zeros(2, 3))

    def arch_parameters(self):  # what the DARTS code bases' Architect reads
        return [self.arch_alpha]

    def _loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def weight_parameters(self):
        return [p for n, p in self.named_parameters() if n != "arch_alpha"]

    def forward(self, x, weights=None):
        weights = torch.softmax(self.arch_alpha, -1) if weights is None else weights["cell"]
        h = self.stem(x)
        for edge, conv in enumerate(self.convs):
            w = weights[edge] if isinstance(weights, torch.Tensor) else weights[edge][edge]
            h = self.norm(w[0] * conv(torch.relu(h)) + w[1] * F.avg_pool2d(h, 3, 1, 1) + w[2] * h)
        return self.head(h.mean((2, 3)))


def setup(seed: int = 0):
    """The reference network, the whole batch, and this rank's shard of it."""
    torch.manual_seed(seed)
    net = TinySupernet().double()
    with torch.no_grad():
        net.arch_alpha.normal_(0, 0.5)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(8, 3, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=gen)
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = slice(rank * 8 // world, (rank + 1) * 8 // world)
    return net, (x, y), (x[shard], y[shard])


def parallel(net):
    return convert_global_batch_norm(copy.deepcopy(net), dist.group.WORLD)


def loss_of(net, batch, convention):
    loss = flatarch.module_loss(net, batch, ["arch_alpha"])
    if convention == "closure":
        x, y = batch
        return lambda: F.cross_entropy(net(x), y)
    return loss


def run_update(net, batch, name, settings, convention, **reduce):
    """The first step's direction (what it leaves in ``.grad``), then the alphas, the losses and a
    BatchNorm running mean after STEPS steps."""
    opt = flatarch.make_update(name, {"arch_alpha": net.arch_alpha}, **settings, **reduce)
    losses = [float(opt.step(loss_of(net, batch, convention)).loss)]
    direction = net.arch_alpha.grad.clone()
    losses += [float(opt.step(loss_of(net, batch, convention)).loss) for _ in range(STEPS - 1)]
    return {"direction": direction, "alpha": net.arch_alpha.detach().clone(), "losses": losses,
            "running_mean": net.stem[1].running_mean.clone()}


def per_rank_a2m(net, shard):
    """The algorithm data parallelism must not be: each rank perturbs with its own gradient, and the
    four-point directions are averaged at the end."""
    opt = flatarch.A2M({"arch_alpha": net.arch_alpha}, rho=0.5)
    direction = opt.direction(loss_of(net, shard, "functional"))[0]["arch_alpha"]
    return distributed.mean_across_ranks([direction])[0]


def core_cases():
    out = {}
    for case, (name, settings, convention) in UPDATE_CASES.items():
        net, batch, shard = setup()
        out[case] = {"reference": run_update(copy.deepcopy(net), batch, name, settings, convention),
                     "parallel": run_update(parallel(net), shard, name, settings, convention,
                                            process_group=dist.group.WORLD)}
    net, batch, shard = setup()
    out["per-rank-a2m"] = {"reference": out["a2m"]["reference"]["direction"],
                           "parallel": per_rank_a2m(parallel(net), shard)}
    alpha = {"arch_alpha": net.arch_alpha}
    out["sharpness"] = {
        "reference": sharpness.power_iteration(loss_of(copy.deepcopy(net), batch, "functional"), alpha, iters=5).value,
        "parallel": sharpness.power_iteration(loss_of(parallel(net), shard, "functional"), alpha, iters=5,
                                              process_group=dist.group.WORLD).value,
    }
    out["adapter"] = {"reference": adapter_case(copy.deepcopy(net), batch),
                      "parallel": adapter_case(parallel(net), shard, process_group=dist.group.WORLD)}
    out["lambda"] = {"reference": lambda_case(copy.deepcopy(net), batch),
                     "parallel": lambda_case(parallel(net), shard, process_group=dist.group.WORLD)}
    out["pgd"] = {"reference": pgd_case(copy.deepcopy(net), batch),
                  "parallel": pgd_case(parallel(net), shard, process_group=dist.group.WORLD)}
    return out


def adapter_case(net, batch, **reduce):
    """The DARTS drop-in Architect's A2M step (the closure convention): the alphas after it."""
    from flatarch.adapters.darts import Architect

    Architect(net, None, rho=0.5, **reduce).step(*batch, *batch)
    return net.arch_alpha.detach().clone()


def lambda_case(net, batch, **reduce):
    """lambda-DARTS' correction with one copy of the mixing weights per edge ("cell")."""
    x, y = batch
    weights = torch.softmax(net.arch_alpha.detach(), -1)
    cells = [weights.clone().requires_grad_(True) for _ in range(2)]
    params = net.weight_parameters()
    loss = F.cross_entropy(net(x, {"cell": cells}), y)
    layer_grads = torch.autograd.grad(loss, cells)
    return regularizers.lambda_correction(lambda ws: F.cross_entropy(net(x, {"cell": ws}), y), cells, params,
                                          layer_grads=layer_grads, **reduce)


def pgd_case(net, batch, **reduce):
    """SDARTS-ADV's attack on the mixing weights (eval mode, as the engine runs it)."""
    x, y = batch
    net.eval()
    clean = {"cell": torch.softmax(net.arch_alpha.detach(), -1)}
    return smoothing.adversarial_smoothing(lambda w: F.cross_entropy(net(x, w), y), clean, 0.2,
                                           generator=torch.Generator().manual_seed(3), **reduce)["cell"]
