"""Time per search iteration: first-order DARTS vs A2-DARTS (central and forward differences).

The NAS-Bench-201 search network (C=16, 5 cells per stage, CIFAR-shaped 3x32x32 inputs,
batch 64) on the current device, through the engine's own loop (batch gathering and
augmentation included). Variants run round-robin in one process, so their ratios share the
machine's state; the median iteration time of each is reported.

Floor by counting passes. Per iteration the weight step costs one forward ``F`` and one full
backward ``B_w`` (weight and input gradients); every alpha-gradient evaluation costs one
forward and one alpha-only backward ``B_a`` (input gradients, no weight gradients)::

    DARTS (1 evaluation):           (F + B_a) + (F + B_w)
    A2M central (4 evaluations):   4(F + B_a) + (F + B_w)
    A2M forward (3 evaluations):   3(F + B_a) + (F + B_w)

With the usual ``B_a ~ F`` and ``B_w ~ 2F`` the floors are 11/5 = 2.2x and 9/5 = 1.8x; the
script also measures F, B_a and B_w on this device and prints the floors they predict, then
each variant's iteration against its alpha step and weight step timed alone, and the operator
calls of each step.

    python benchmarks/search_epoch.py [--iters 5] [--device auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from flatarch.reference_spaces.data import ImageData
from flatarch.reference_spaces.engine.config import SearchConfig
from flatarch.reference_spaces.engine.loop import _Searcher
from grouped_edges import count_calls  # this folder is on the path when a script here runs
from step_cost import timed_round_robin

VARIANTS = {
    "DARTS (first-order)": dict(optimizer="first-order"),
    "A2-DARTS central": dict(optimizer="a2m", difference="central"),
    "A2-DARTS forward": dict(optimizer="a2m", difference="forward"),
}
EVALUATIONS = {"DARTS (first-order)": 1, "A2-DARTS central": 4, "A2-DARTS forward": 3}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cifar(n: int, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData("synthetic-cifar", images, labels, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 4, True)


def time_passes(searcher: _Searcher, reps: int) -> dict[str, float]:
    """Median seconds of F, F + B_a and F + B_w on one batch."""
    net, device = searcher.net, searcher.device
    x, y = next(searcher.train.epoch(0))
    alphas = list(searcher.arch.values())
    out = {"F": [], "F+B_a": [], "F+B_w": []}
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        with torch.no_grad():
            net(x)
        _sync(device)
        out["F"].append(time.perf_counter() - t)
        t = time.perf_counter()
        torch.autograd.grad(F.cross_entropy(net(x), y), alphas)
        _sync(device)
        out["F+B_a"].append(time.perf_counter() - t)
        t = time.perf_counter()
        F.cross_entropy(net(x), y).backward(inputs=searcher.weights)
        _sync(device)
        out["F+B_w"].append(time.perf_counter() - t)
    net.zero_grad(set_to_none=True)
    return {k: statistics.median(v) for k, v in out.items()}


def iteration_calls(searcher: _Searcher) -> dict[str, int]:
    """Operator calls (counted below Python, the same on any device) of one alpha-gradient
    evaluation, one alpha step and one weight step of the engine."""
    train_batch, val_batch = next(searcher.train.epoch(0)), next(searcher.valid.epoch(0))
    sums = torch.zeros(3, dtype=torch.float64, device=searcher.device)

    def evaluation():
        loss = searcher.arch_loss(val_batch, 0)
        alpha = {k: v.detach().requires_grad_(True) for k, v in loss.arch_params.items()}
        torch.autograd.grad(loss(alpha), list(alpha.values()))

    return {"E": count_calls(evaluation),
            "alpha step": count_calls(lambda: searcher.arch_opt.step(searcher.arch_loss(val_batch, 0))),
            "weight step": count_calls(lambda: searcher.weight_step(train_batch, 0, sums))}


def iteration_and_parts(searchers: dict[str, _Searcher], repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of one iteration (``_Searcher.iteration``) and of its alpha step and weight
    step alone, all on one batch pair and interleaved, per variant: an iteration should cost its
    parts (on the H200 an A2M iteration cost 158 ms more than they did)."""
    fns = {}
    for name, s in searchers.items():
        train_batch, val_batch = next(s.train.epoch(0)), next(s.valid.epoch(0))
        sums = torch.zeros(3, dtype=torch.float64, device=s.device)
        fns[(name, "iteration")] = lambda s=s, t=train_batch, v=val_batch, sums=sums: s.iteration(t, v, 0, sums)
        fns[(name, "alpha step")] = lambda s=s, v=val_batch: s.arch_opt.step(s.arch_loss(v, 0))
        fns[(name, "weight step")] = lambda s=s, t=train_batch, sums=sums: s.weight_step(t, 0, sums)
    device = next(iter(searchers.values())).device
    times = timed_round_robin(fns, repeats, device)
    for s in searchers.values():
        s.arch_opt.check()
    return {name: {part: times[(name, part)] for part in ("iteration", "alpha step", "weight step")}
            for name in searchers}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=5, help="timed iterations per variant per round (default: 5)")
    p.add_argument("--rounds", type=int, default=2, help="round-robin rounds (default: 2)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = synthetic_cifar(2 * args.batch_size * (args.iters + 1))
    base = SearchConfig(dataset="synthetic", batch_size=args.batch_size, channels=args.channels,
                        cells_per_stage=args.cells, epochs=1, progress=False, plot=False, device=args.device,
                        max_batches=args.iters, seed=0)
    searchers = {name: _Searcher(base.replace(**kw), data) for name, kw in VARIANTS.items()}
    device = next(iter(searchers.values())).device
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"network: NAS-Bench-201 search network C={args.channels}, {args.cells} cells/stage, "
          f"batch {args.batch_size}, 3x32x32")

    for s in searchers.values():  # warm-up (allocator, kernels)
        s.iters = 1
        s.run_epoch(0)
        s.iters = args.iters
    times: dict[str, list[float]] = {name: [] for name in searchers}
    for r in range(args.rounds):
        for name, s in searchers.items():
            times[name].append(s.run_epoch(r + 1)["seconds_per_iteration"])
    per_iter = {name: statistics.median(v) for name, v in times.items()}
    passes = time_passes(searchers["DARTS (first-order)"], reps=max(3, args.iters))
    step_a = passes["F+B_a"]  # one alpha-gradient evaluation
    weight = passes["F+B_w"]  # the weight step's passes

    base_t = per_iter["DARTS (first-order)"]
    print(f"\npasses: F {passes['F'] * 1e3:.1f} ms, F+B_a {step_a * 1e3:.1f} ms, F+B_w {weight * 1e3:.1f} ms "
          f"(B_a/F {(step_a - passes['F']) / passes['F']:.2f}, B_w/F {(weight - passes['F']) / passes['F']:.2f})")
    print(f"{'variant':<22} {'ms/iter':>9} {'ratio':>7} {'floor 2.2/1.8':>14} {'floor (measured passes)':>24}")
    for name, t in per_iter.items():
        k = EVALUATIONS[name]
        nominal = (2 * k + 3) / 5
        measured_floor = (k * step_a + weight) / (step_a + weight)
        print(f"{name:<22} {t * 1e3:>9.1f} {t / base_t:>7.2f} {nominal:>14.2f} {measured_floor:>24.2f}")
    overhead = {n: per_iter[n] - (EVALUATIONS[n] * step_a + weight) for n in per_iter}
    print("time outside the passes per iteration (data, optimizer steps, bookkeeping): "
          + ", ".join(f"{n} {o * 1e3:.1f} ms" for n, o in overhead.items()))
    parts = iteration_and_parts(searchers, repeats=max(3, args.iters))
    print("an iteration against its parts timed alone (one batch pair, interleaved):")
    for name, t in parts.items():
        alone = t["alpha step"] + t["weight step"]
        print(f"  {name:<22} iteration {t['iteration'] * 1e3:.1f} ms, alpha step {t['alpha step'] * 1e3:.1f} + "
              f"weight step {t['weight step'] * 1e3:.1f} ms: {(t['iteration'] - alone) * 1e3:+.1f} ms "
              f"({t['iteration'] / alone:.2f}x)")
    # on a GPU the host's time per call is what a pass costs: compare these ratios with the timed ones
    calls = {name: iteration_calls(s) for name, s in searchers.items()}
    first = calls["DARTS (first-order)"]
    print("operator calls per iteration (counted, the same on any device):")
    for name, c in calls.items():
        extra = c["alpha step"] - EVALUATIONS[name] * c["E"]
        total = c["alpha step"] + c["weight step"]
        print(f"  {name:<22} alpha step {c['alpha step']} = {EVALUATIONS[name]} x {c['E']} + {extra}; "
              f"weight step {c['weight step']}; iteration {total / (first['alpha step'] + first['weight step']):.2f}x"
              " first-order's")

if __name__ == "__main__":
    main()
