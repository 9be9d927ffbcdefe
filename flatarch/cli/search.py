"""``flatarch search``: a differentiable architecture search on a reference space.

A thin layer over :func:`flatarch.reference_spaces.engine.search`. With no arguments it runs a
short A2-DARTS search on NAS-Bench-201 over scikit-learn's digits (offline, about a minute on
one CPU core) and prints the genotype.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_METHODS = ("darts", "pcdarts", "betadarts", "sdarts-rs", "darts-minus")
_UPDATES = ("first-order", "sam", "usam", "a2m")
_DATASETS = ("digits", "cifar10", "cifar100", "imagenet16-120")


def register(subparsers) -> None:
    from flatarch.reference_spaces.registry import available_spaces

    p = subparsers.add_parser(
        "search",
        help="run an architecture search on a reference space (NAS-Bench-201, DARTS)",
        description=(
            "Bi-level differentiable architecture search: per iteration one architecture step "
            "(the chosen update) on a validation batch, then one SGD weight step on a training batch. "
            "Writes OUT/search.jsonl (one record per epoch), OUT/checkpoint.pt (atomic, every epoch), "
            "OUT/result.json and OUT/search.png. With no arguments: a one-minute A2-DARTS demo on "
            "NAS-Bench-201 over scikit-learn's digits (offline). Paper setting, e.g.: "
            "flatarch search --dataset cifar10 --data-dir data --download --seeds 1 2 3 4 5"
        ),
    )
    a = p.add_argument
    a("--space", default="nb201", choices=available_spaces(), help="search space (default: nb201)")
    a("--method", default="darts", choices=_METHODS,
      help="method: darts (first order), pcdarts (partial channels K=4 + edge normalisation), betadarts "
           "(beta-decay regulariser), sdarts-rs (uniform alpha noise 0.03 before weight steps), darts-minus "
           "(decaying auxiliary skip) (default: darts)")
    a("--optimizer", default="a2m", choices=_UPDATES,
      help="architecture update: first-order, sam, usam or a2m; e.g. --method pcdarts --optimizer a2m is "
           "A2-PC-DARTS (default: a2m)")
    a("--rho", type=float, default=None, help="perturbation radius of sam/usam/a2m (default: the space's, "
      "1e-2 on nb201, 1e-1 on darts)")
    a("--eps", type=float, default=None, help="a2m finite-difference step (default: the space's, 1e-2)")
    a("--difference", default=None, choices=("central", "forward"),
      help="a2m Hessian-vector product by central (4 gradient evaluations, the paper's) or forward (3) "
           "differences (default: central)")
    a("--epochs", type=int, default=None, help="search epochs (default: 50, the paper's; 5 on digits)")
    a("--batch-size", type=int, default=64, help="images per batch, train and validation (default: 64)")
    a("--seed", type=int, default=0, help="random seed of one search (default: 0)")
    a("--seeds", type=int, nargs="+", default=None, metavar="SEED",
      help="several seeds, e.g. --seeds 1 2 3 4 5: one search each in OUT/seed-N and a mean ± std table "
           "over all seeds (never the best seed) (default: off, one search with --seed)")
    a("--workers", type=int, default=1, help="with --seeds: searches run at once in separate processes, "
      "one torch thread each (default: 1, one after another)")
    a("--dataset", default="digits", choices=_DATASETS,
      help="search data: the training set split 50/50 into weight and architecture halves; digits is "
           "scikit-learn's 8x8 digits upsampled to 16x16, shipped with scikit-learn (default: digits)")
    a("--data-dir", default=None,
      help="folder with the dataset: cifar-10-batches-py / cifar-100-python, or the ImageNet16 "
           "train_data_batch_1..10 pickles (default: ./data; unused for digits)")
    a("--download", action="store_true", help="download CIFAR-10/100 into --data-dir if missing (default: off)")
    a("--subset", type=int, default=None, help="use only the first N training images (default: all)")
    a("--out", default=None, help="output folder (default: runs/SPACE-METHOD-OPTIMIZER-DATASET-TIME, a new one)")
    a("--resume", action="store_true",
      help="continue the search whose checkpoint is in --out; same settings give the same result as an "
           "uninterrupted run (default: off)")
    a("--device", default="auto", choices=("auto", "cpu", "cuda"),
      help="auto picks CUDA when available (default: auto)")
    a("--amp", action="store_true", help="bf16 mixed precision on CUDA (default: off)")
    a("--threads", type=int, default=1,
      help="torch CPU threads per search (default: 1: the search network's small convolutions gain little "
           "from more, and oversubscribed cores lose a lot)")
    a("--val-augment", action=argparse.BooleanOptionalAction, default=None,
      help="augment the validation half too (default: off for darts, on for the other methods, as in the "
           "paper's appendix C.4)")
    a("--channels", type=int, default=None, help="initial channels C (default: 16; 8 on digits)")
    a("--cells", type=int, default=None,
      help="search cells per stage N (default: 5; 1 on digits); darts: normal cells between reductions, "
           "3N + 2 cells in all (default: 2, the paper's 8 cells; 1 on digits)")
    a("--lr", type=float, default=0.025, help="weight SGD learning rate, cosine-annealed (default: 0.025)")
    a("--lr-min", type=float, default=0.001, help="final weight learning rate (default: 0.001)")
    a("--arch-lr", type=float, default=3e-4, help="learning rate of the alpha Adam (default: 3e-4)")
    a("--table", default=None,
      help="NAS-Bench-201 benchmark table for the found cells' test accuracies (default: the "
           "FLATARCH_NB201_TABLE environment variable; none: no lookup)")
    a("--beta-weights", type=float, nargs=2, default=None, metavar=("W_NORMAL", "W_REDUCE"),
      help="darts space, --method betadarts: weights of the beta-decay regulariser on the normal and "
           "reduction alphas (paper appendix C.5) (default: 1 1)")
    a("--no-progress", action="store_true", help="no progress bars (default: bars on)")
    a("--no-plot", action="store_true", help="do not write OUT/search.png (default: write it)")
    p.set_defaults(func=run)


def _default_out(args) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{args.space}-{args.method}-{args.optimizer}-{args.dataset}-{stamp}")


def _space_options(args) -> dict:
    from flatarch.reference_spaces.engine import SearchError

    if args.beta_weights is not None and args.space != "darts":
        raise SearchError("--beta-weights applies to --space darts only")
    if args.space == "darts":
        if args.table:
            raise SearchError("--table is a NAS-Bench-201 benchmark table; the darts space has none")
        if args.beta_weights is None:
            return {}
        return {"beta_normal": args.beta_weights[0], "beta_reduce": args.beta_weights[1]}
    return {"table": args.table} if args.table else {}


def _config(args):
    from flatarch.reference_spaces.engine import SearchConfig, SearchError

    if args.resume and not args.out:
        raise SearchError("--resume needs --out, the folder of the search to continue")
    return SearchConfig(
        space=args.space, method=args.method, optimizer=args.optimizer, rho=args.rho, eps=args.eps,
        difference=args.difference, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        dataset=args.dataset, data_dir=args.data_dir, download=args.download, subset=args.subset,
        out=args.out or _default_out(args), resume=args.resume, device=args.device, amp=args.amp,
        threads=args.threads,
        val_augment=args.val_augment, channels=args.channels, cells_per_stage=args.cells, lr=args.lr,
        lr_min=args.lr_min, arch_lr=args.arch_lr, space_options=_space_options(args),
        progress=not args.no_progress, plot=not args.no_plot,
    )


def _print_single(result) -> None:
    print()
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'val loss':>8} {'val acc':>7}  genotype")
    for h in result.history:
        print(f"{h['epoch']:>5} {h['train_loss']:>10.4f} {h['train_acc']:>9.2f} {h['val_loss']:>8.4f} "
              f"{h['val_acc']:>7.2f}  {h['genotype']}")
    print(f"\ngenotype: {result.genotype_json}")
    if result.benchmark:
        accs = "  ".join(f"{k} {v:.2f}" for k, v in result.benchmark.items())
        print(f"benchmark test accuracy: {accs}")
    elif result.config["space"] == "nb201":
        print("benchmark test accuracy: no table (pass --table or set FLATARCH_NB201_TABLE)")
    print(f"time: {result.seconds:.1f} s, {result.seconds_per_iteration * 1000:.0f} ms per iteration")
    if result.out:
        extra = ", genotype.json, genotype.png" if os.path.exists(os.path.join(result.out, "genotype.json")) else ""
        print(f"files: {result.out}/ (search.jsonl, checkpoint.pt, result.json, search.png{extra})")


def run(args) -> int:
    from flatarch.reference_spaces.engine import format_summary, search
    from flatarch.reference_spaces.errors import UsageError

    config = None
    try:
        config = _config(args)
        if args.seeds:
            multi = search(config, seeds=args.seeds, workers=args.workers)
            print()
            for seed, r in zip(multi.seeds, multi.results):
                print(f"seed {seed}: {r.genotype_json}")
            print()
            print(format_summary(multi))
            print(f"files: {config.out}/seed-N/, {config.out}/summary.json")
        else:
            _print_single(search(config))
    except UsageError as exc:
        print(f"flatarch search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" --out {config.out}" if config is not None else ""
        print(f"\ninterrupted; continue with the same command plus{where} --resume", file=sys.stderr)
        return 130
    return 0
