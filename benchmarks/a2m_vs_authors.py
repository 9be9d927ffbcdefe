"""flatarch's A2M step against the A2M authors' own ``Architect``, side by side in one process.

The network is the original DARTS search network (``cnn/model_search.py`` of quark0/darts: C=16,
8 cells, 8 ops, CIFAR-shaped inputs), loaded from a checkout given on the command line; the
authors' step is ``Architect._backward_step_SAM`` of AsquaredM ``optimizers/darts/architect.py``
(``sam=True``, ``k_sam=1``: USAM shift, then a central finite difference), also loaded from a
checkout. Neither is part of flatarch: pass their paths, e.g. ::

    python benchmarks/a2m_vs_authors.py --darts /tmp/darts --asquaredm /tmp/AsquaredM

Timed, interleaved (round robin, median of ``--repeats`` rounds), each on its own copy of the network:

* ``authors``: ``architect.step(...)`` of the authors' ``Architect`` (twice, on two copies: the spread
  between the two is the noise of the measurement on this machine);
* ``adapter``: ``flatarch.adapters.darts.Architect(...).step(...)`` (closure convention, in place);
* ``module_loss``: ``flatarch.A2M(loss.arch_params).step(loss)`` with ``loss = flatarch.module_loss(...)``
  (functional convention), which reads its NaN/Inf check on the host (one wait for the device per
  step), and ``module_loss, deferred_check``: the same with ``deferred_check=True`` (no wait; on CUDA
  its Adam is capturable, so the new alphas agree with the others to rounding, not bit for bit);
* ``floor``: four bare alpha gradients (``torch.autograd.grad(model._loss(x, y), alphas)``).

Each variant's operator calls per step are counted too (below Python, so the same on any device).

It also checks that one step from the same alphas gives the same new alphas in all three (they
differ in the BatchNorm running statistics only: the authors' four passes all update them).
Without the paths the comparison with the authors is skipped with a message; the floor and the two
flatarch variants still run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import os
import sys
from types import SimpleNamespace

import torch
from flatarch.adapters.darts import Architect as FlatArchitect
from grouped_edges import count_calls
from step_cost import timed_round_robin

import flatarch

RHO, EPS = 1e-1, 1e-2  # the paper's DARTS-space settings (appendix C.3)


@contextlib.contextmanager
def _cuda_calls_to(device: torch.device):
    """quark0/darts builds its alphas with ``.cuda()``; on a CPU run send them to the CPU."""
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self.to(device)
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def load_darts_network(darts_root: str):
    """The ``Network`` class of ``DARTS_ROOT/cnn/model_search.py``."""
    cnn = os.path.join(darts_root, "cnn")
    if not os.path.isfile(os.path.join(cnn, "model_search.py")):
        raise SystemExit(f"--darts {darts_root}: no cnn/model_search.py there (a quark0/darts checkout is expected)")
    sys.path.insert(0, cnn)
    try:
        import model_search  # noqa: PLC0415  (the checkout's module)
    finally:
        sys.path.remove(cnn)
    return model_search.Network


def load_authors_architect(asquaredm_root: str):
    """The ``Architect`` class of ``ASQUAREDM_ROOT/optimizers/darts/architect.py``."""
    path = os.path.join(asquaredm_root, "optimizers", "darts", "architect.py")
    if not os.path.isfile(path):
        raise SystemExit(f"--asquaredm {asquaredm_root}: no optimizers/darts/architect.py there")
    spec = importlib.util.spec_from_file_location("asquaredm_architect", path)
    module = importlib.util.module_from_spec(spec)
    with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115 (its __init__ prints)
        spec.loader.exec_module(module)
    return module.Architect


def args_namespace() -> SimpleNamespace:
    return SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3,
                           sam=True, rho_alpha_sam=RHO, epsilon_sam=EPS, k_sam=1, betadecay=False,
                           arch_update="a2m", rho=RHO, eps=EPS)


def build(args, device):
    network_class = load_darts_network(args.darts)
    torch.manual_seed(0)
    with _cuda_calls_to(device):
        base = network_class(args.channels, 10, args.layers, torch.nn.CrossEntropyLoss()).to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    return base, x, y


def make_steps(base, x, y, authors_class):
    """``{name: (model, step function)}`` over copies of ``base``."""
    ns = args_namespace()
    steps = {}
    # the authors' step twice, on two copies: their spread is the noise of the measurement
    for name in ("authors", "authors, again") if authors_class is not None else ():
        model = copy.deepcopy(base)
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
            authors = authors_class(model, ns)
        steps[name] = (model, lambda authors=authors: authors.step(x, y, x, y, 0.025, None, epoch=0, unrolled=False))
    model = copy.deepcopy(base)
    adapter = FlatArchitect(model, ns)
    steps["adapter"] = (model, lambda: adapter.step(x, y, x, y, 0.025, None, unrolled=False))
    # the functional convention, checking each step on the host (the default) and on the device
    for name, deferred in (("module_loss", False), ("module_loss, deferred_check", True)):
        model = copy.deepcopy(base)
        loss = flatarch.module_loss(model, (x, y), ["alphas_normal", "alphas_reduce"],
                                    compute=lambda m, b: m._loss(*b))
        opt = flatarch.A2M(loss.arch_params, rho=RHO, eps=EPS, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3,
                           deferred_check=deferred)
        steps[name] = (model, lambda opt=opt, loss=loss: opt.step(loss))
    return steps


def check_agreement(steps) -> float:
    """Largest difference between the alphas after one step from the same start."""
    results = []
    for model, step in steps.values():
        step()
        results.append(torch.cat([a.detach().flatten() for a in model.arch_parameters()]))
    return max(float((r - results[0]).abs().max()) for r in results)


def compare(darts: str, asquaredm: str | None, device: torch.device, *, batch: int = 64, channels: int = 16,
            layers: int = 8, size: int = 32, repeats: int = 7) -> dict:
    """Median seconds per step of each variant (and the floor), and the largest difference of the
    alphas after one step from the same start."""
    authors_class = load_authors_architect(asquaredm) if asquaredm else None
    sizes = argparse.Namespace(darts=darts, batch=batch, channels=channels, layers=layers, size=size)
    base, x, y = build(sizes, device)
    difference = check_agreement(make_steps(base, x, y, authors_class))
    steps = make_steps(base, x, y, authors_class)
    model = steps["adapter"][0]

    def floor():
        for _ in range(4):
            torch.autograd.grad(model._loss(x, y), model.arch_parameters())

    fns = {FLOOR: floor, **{name: step for name, (_, step) in steps.items()}}
    seconds = timed_round_robin(fns, repeats, device)
    # counted after the timing (the counter slows each call): the same on any device, so a gap in
    # time with equal calls is waiting (host syncs), not more host work
    return {"seconds": seconds, "calls": {name: count_calls(fn) for name, fn in fns.items()},
            "difference": difference}


FLOOR = "floor (4 bare alpha gradients)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--darts", default=None, help="a quark0/darts checkout (its cnn/model_search.py)")
    p.add_argument("--asquaredm", default=None, help="an AsquaredM checkout (its optimizers/darts/architect.py)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32, help="input resolution (32: CIFAR)")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.darts is None:
        print("no --darts checkout given: skipping the comparison (the benchmark needs quark0/darts' network)")
        return
    if args.asquaredm is None:
        print("no --asquaredm checkout given: skipping the comparison with the authors' Architect")
    result = compare(args.darts, args.asquaredm, device, batch=args.batch, channels=args.channels,
                     layers=args.layers, size=args.size, repeats=args.repeats)
    times = result["seconds"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"A2M step on quark0/darts' search network (C={args.channels}, {args.layers} cells, batch {args.batch}, "
          f"{args.size}x{args.size}), device {device} ({name}), torch {torch.__version__}, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats} interleaved rounds")
    reference = times.get("authors")
    for label, t in times.items():
        vs_authors = f"{t / reference:6.3f}x authors" if reference else ""
        print(f"{label:>32}: {t * 1e3:9.1f} ms  {t / times[FLOOR]:6.3f}x floor  {vs_authors:>16}  "
              f"{result['calls'][label]:>8,} operator calls")
    print(f"largest difference of the new alphas between the variants after one step: {result['difference']:.2e}")


if __name__ == "__main__":
    main()
