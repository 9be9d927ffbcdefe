"""Cost of one architecture step, per update, measured side by side in one run.

Prints each update's step time as a ratio to first-order DARTS, and A2M's ratio to its floor:
the time of 4 bare alpha-gradient evaluations (3 for forward differences), i.e. the passes
themselves and nothing else. Targets: A2M within 5% of its floor; exact mode within 1.5x of fd.

The model is the NAS-Bench-201 search network (C=16, batch 64). Usage::

    python benchmarks/step_cost.py [--device cpu|cuda] [--repeats 10] [--batch 64] [--cells 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import flatarch


def build_model(device, cells_per_stage):
    from flatarch.reference_spaces.nb201.space import NB201Space
    from flatarch.reference_spaces.space import NetworkOptions

    net = NB201Space().build_network(num_classes=10, in_channels=3, options=NetworkOptions(), channels=16,
                                     cells_per_stage=cells_per_stage)
    return net.to(device), f"NAS-Bench-201 search network (C=16, {cells_per_stage} cells/stage)"


def timed_round_robin(fns: dict, repeats: int, device, before=None) -> dict:
    """Median time of each function, measured in interleaved rounds so that load from other
    processes on a shared machine hits every candidate alike. Round ``r`` starts with candidate
    ``r mod k``: each takes every place in the round equally often (with a fixed order, the
    place in the round moved a candidate's median by several percent on the development machine).
    ``before()``, untimed, precedes every call (e.g. a barrier that keeps data-parallel ranks in step)."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for fn in fns.values():  # warm-up (allocator, autograd graph caches, cuDNN autotune)
        fn()
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = fns[name]
            if before is not None:
                before()
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cells", type=int, default=5, help="search cells per stage")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model, label = build_model(device, args.cells)
    names = list(model.arch_parameters())
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    loss = flatarch.module_loss(model, (x, y), names)

    def bare_gradient():
        alpha = {k: v.detach().requires_grad_(True) for k, v in loss.arch_params.items()}
        torch.autograd.grad(loss(alpha), list(alpha.values()))

    configs = {
        "first-order": dict(name="first-order"),
        "sam": dict(name="sam"),
        "usam": dict(name="usam"),
        "a2m (central fd)": dict(name="a2m"),
        "a2m (forward fd)": dict(name="a2m", difference="forward"),
        "a2m (exact)": dict(name="a2m", hessian="exact"),
        "a2m (batch_pair)": dict(name="a2m", batch_pair=True),
    }
    fns = {"bare gradient": bare_gradient}
    for label_, cfg in configs.items():
        cfg = dict(cfg)
        opt = flatarch.make_update(cfg.pop("name"), loss.arch_params, **cfg)
        fns[label_] = lambda opt=opt: opt.step(loss)
    results = timed_round_robin(fns, args.repeats, device)
    t_grad = results.pop("bare gradient")
    base = results["first-order"]
    print(f"step cost on {label}, batch {args.batch}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"one bare alpha gradient: {t_grad * 1e3:.1f} ms")
    for label_, t in results.items():
        print(f"{label_:>18}: {t * 1e3:8.1f} ms  {t / base:5.2f}x first-order")
    print(f"A2M central / floor (4 bare gradients): {results['a2m (central fd)'] / (4 * t_grad):.3f}  (target <= 1.05)")
    print(f"A2M forward / floor (3 bare gradients): {results['a2m (forward fd)'] / (3 * t_grad):.3f}  (target <= 1.05)")
    print(f"A2M exact / central fd: {results['a2m (exact)'] / results['a2m (central fd)']:.3f}  (target <= 1.5)")
    print(f"A2M batch_pair / central fd: {results['a2m (batch_pair)'] / results['a2m (central fd)']:.3f}  "
          "(the difference pair in one vmapped pass; worth it only where this is < 1)")


if __name__ == "__main__":
    main()
