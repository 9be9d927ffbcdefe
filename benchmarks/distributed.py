"""What the reductions of a data-parallel search cost per iteration, measured side by side in one run.

Run under torchrun (gloo on CPUs, NCCL on GPUs)::

    torchrun --nproc_per_node=2 benchmarks/distributed.py [--space nb201] [--batch 64] [--repeats 10]
    torchrun --nproc_per_node=2 benchmarks/distributed.py --json out.json   # figures for gpu_suite's scaling

Each rank times, interleaved round by round (``step_cost.timed_round_robin``), one search iteration
(alpha step + weight step, the engine's own ``_Searcher.iteration``) on its shard of the global
batch (``--batch / N`` images) two ways:

* **alone**: the same shard with no reduction at all (one process's iteration at that batch);
* **data-parallel**: the iteration of the ``N``-rank search: every gradient evaluation of the update,
  the weight gradients and (``sync-bn``) every BatchNorm layer's statistics reduced over the ranks;
* **one device**: the whole global batch on one device, no reduction: the one-device search the
  ``N`` ranks replace (each rank runs it on its own device at once, so on GPUs it is one GPU's time).

The ratio data-parallel / alone is the cost of the reductions (and of waiting for the slower rank),
one device / data-parallel the speed-up of the search (``benchmarks/gpu_suite.py``'s ``scaling``
section runs this script on 2, 4, ... GPUs), per update: first-order DARTS reduces once per alpha
step, A2M four times, plus one all-reduce of the weight gradients; with ``--sync-bn`` each
BatchNorm layer adds one small all-reduce per pass. Rank 0 prints one row per update and variant,
with the torch thread count. A barrier before every timed call (untimed) keeps the ranks in step,
so the data-parallel time holds no wait for the other rank's previous call; it does hold the wait
for the slower rank within the call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flatarch.reference_spaces.engine.config import SearchConfig  # noqa: E402
from flatarch.reference_spaces.engine.loop import _Searcher  # noqa: E402
from flatarch.reference_spaces.engine.ranks import Ranks, joined, rank_device  # noqa: E402
from gpu_suite import SIZES, synthetic  # noqa: E402
from step_cost import timed_round_robin  # noqa: E402

UPDATES = ("first-order", "a2m")
SPACES = ("nb201", "darts")


def iteration(searcher: _Searcher):
    """One alpha step and one weight step on the searcher's first batches, as run_epoch makes them."""
    train, valid = next(iter(searcher.train.epoch(0))), next(iter(searcher.valid.epoch(0)))
    sums = torch.zeros(3, dtype=torch.float64, device=searcher.device)

    def run():
        searcher.iteration(train, valid, 0, sums)
        searcher.arch_opt.check()

    return run


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="nb201", choices=SPACES)
    p.add_argument("--batch", type=int, default=64, help="the global batch (default: 64, the paper's)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--json", default=None, help="rank 0 writes the rows to this JSON file")
    args = p.parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        p.error("run it under torchrun with 2 or more ranks: torchrun --nproc_per_node=2 benchmarks/distributed.py")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with joined(device) as ranks:  # the process group, as a search joins it
        return _measure(args, ranks, rank_device(device, ranks))


def _measure(args: argparse.Namespace, ranks: Ranks, device: torch.device) -> list[dict]:
    size = SIZES["tiny" if args.tiny else "full"][args.space]
    data = synthetic(4 * args.batch, size["image"])
    base = SearchConfig(space=args.space, dataset="synthetic", channels=size["channels"],
                        cells_per_stage=size["cells_per_stage"], epochs=1, progress=False, plot=False,
                        device=device.type)
    rows = []
    for update in UPDATES:
        cfg = base.replace(optimizer=update)
        variants = {
            "alone": _Searcher(cfg.replace(batch_size=args.batch // ranks.world), data, Ranks()),
            "one device": _Searcher(cfg.replace(batch_size=args.batch), data, Ranks()),
            "data-parallel": _Searcher(cfg.replace(batch_size=args.batch), data, ranks),
            "data-parallel sync-bn": _Searcher(cfg.replace(batch_size=args.batch, sync_bn=True), data, ranks),
        }
        timed = timed_round_robin({name: iteration(s) for name, s in variants.items()}, args.repeats, device,
                                  before=dist.barrier)
        for name in ("data-parallel", "data-parallel sync-bn"):
            rows.append({"space": args.space, "update": update, "variant": name, "world": ranks.world,
                         "batch": args.batch, "ms": 1000 * timed[name], "alone_ms": 1000 * timed["alone"],
                         "vs_alone": timed[name] / timed["alone"], "speedup": timed["one device"] / timed[name],
                         "threads": torch.get_num_threads(),
                         "device": str(device)})
    if ranks.writer:
        print(f"{args.space}, global batch {args.batch} on {ranks.world} ranks ({device}), torch threads "
              f"{torch.get_num_threads()}: one iteration on a rank's shard of {args.batch // ranks.world} images")
        for row in rows:
            print(f"{row['update']:<12} {row['variant']:<22} {row['ms']:8.1f} ms  alone {row['alone_ms']:8.1f} ms  "
                  f"reductions cost {row['vs_alone']:.2f}x  speed-up over one device {row['speedup']:.2f}x", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
