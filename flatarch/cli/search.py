"""``flatarch search``: a differentiable architecture search on a reference space.

A thin layer over :func:`flatarch.reference_spaces.engine.search`: each option is a
:class:`~flatarch.reference_spaces.engine.SearchConfig` field of the same name, its choices come
from the registries (spaces, methods, updates, recipes, datasets) and its default from the
engine's defaults. With no arguments it runs a short A2-DARTS search on NAS-Bench-201 over
scikit-learn's digits (offline, about a minute on one CPU core) and prints the found cell.

Every option's parser default is ``None`` ("not given"), so that ``--out X --resume`` takes the
settings the command does not give from the run's checkpoint; a fresh run gets the engine's
defaults (:class:`~flatarch.reference_spaces.engine.SearchConfig`), which the help texts quote.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from flatarch.cli.options import add_options, given_fields


def _options() -> list[tuple[str, str, dict[str, Any], str]]:
    """``(field, flag, argparse keywords, help)`` for every SearchConfig field on the command line."""
    import flatarch
    from flatarch.reference_spaces.darts.genotype import DEFAULT_OPS, OP_SETS
    from flatarch.reference_spaces.data import DATASETS
    from flatarch.reference_spaces.engine.components import BETA_INDICES
    from flatarch.reference_spaces.engine.config import (
        DATASET_DEFAULTS,
        IMAGENET,
        PAPER_DEFAULTS,
        SELECTIONS,
        STEP_ORDERS,
    )
    from flatarch.reference_spaces.engine.methods import METHODS, recipe_names
    from flatarch.reference_spaces.registry import available_spaces
    from flatarch.updates import RUNNING_STATS

    p, m, demo = PAPER_DEFAULTS, METHODS, DATASET_DEFAULTS["digits"]
    lam = m["lambda-darts"].defaults.settings
    methods = "; ".join(f"{name}: {m.summary}" for name, m in METHODS.items())
    number = {"type": float}
    whole = {"type": int}
    return [
        ("space", "--space", {"choices": available_spaces()}, "search space (default: nb201)"),
        ("method", "--method", {"choices": list(METHODS)}, f"method (default: darts). {methods}"),
        ("optimizer", "--optimizer", {"choices": list(flatarch.UPDATES)},
         "architecture update; e.g. --method pcdarts --optimizer a2m is A2-PC-DARTS (default: a2m)"),
        ("recipe", "--recipe", {"choices": recipe_names()},
         "named settings of the method: original, its own authors' (e.g. pcdarts: batch 256, lr 0.1, arch lr 6e-4, "
         "15 epochs without alpha steps); a2m-authors (every method), what the A2M authors' code ran for the "
         "paper's table 2 (docs/reproduce.md) (default: paper, the common settings of the A2M paper)"),
        ("rho", "--rho", number, "perturbation radius of sam/usam/a2m (default: the space's, 1e-2 on nb201, 1e-1 on "
         "darts)"),
        ("eps", "--eps", number, "a2m finite-difference step (default: the space's, 1e-2)"),
        ("difference", "--difference", {"choices": ("central", "forward")},
         "a2m Hessian-vector product by central (4 gradient evaluations, the paper's) or forward (3) differences "
         "(default: central)"),
        ("epochs", "--epochs", whole,
         f"search epochs (default: {p['epochs']}, the paper's; {demo['epochs']} on digits)"),
        ("batch_size", "--batch-size", whole, f"images per batch, train and validation (default: {p['batch_size']})"),
        ("seed", "--seed", whole, "random seed of one search (default: 0)"),
        ("dataset", "--dataset", {"choices": (*DATASETS, IMAGENET)},
         "search data: the training set split 50/50 into weight and architecture halves; digits is scikit-learn's "
         "8x8 digits upsampled to 16x16, shipped with scikit-learn; imagenet: an ImageFolder tree (--data-dir/train/"
         "CLASS/IMAGE) read by loader processes, PC-DARTS' 10%% and 2.5%% per-class subsets, the darts space "
         "(with --method pcdarts --recipe imagenet: PC-DARTS' ImageNet search) (default: digits)"),
        ("data_dir", "--data-dir", {}, "folder with the dataset: cifar-10-batches-py / cifar-100-python, the "
         "ImageNet16 train_data_batch_1..10 pickles, or imagenet's train/ (default: ./data; unused for digits)"),
        ("image_size", "--image-size", whole, "imagenet: the random-resized crop of the training images in pixels "
         "(default: 224, PC-DARTS')"),
        ("loader_workers", "--loader-workers", whole, "imagenet: processes decoding images, per rank (default: 4, "
         "PC-DARTS')"),
        ("download", "--download", {"action": "store_true"}, "download CIFAR-10/100 into --data-dir if missing "
         "(default: off)"),
        ("subset", "--subset", whole, "use only the first N training images (default: all)"),
        ("out", "--out", {}, "output folder (default: runs/SPACE-METHOD-OPTIMIZER-DATASET-TIME, a new one)"),
        ("resume", "--resume", {"action": "store_true"}, "continue the search in --out from its checkpoint, with "
         "the settings it records (options given must match them; a larger --epochs extends it); the result is "
         "that of an uninterrupted run (default: off)"),
        ("restart", "--restart", {"action": "store_true"}, "start over in an --out that holds a search; its files "
         "are moved into OUT/replaced-TIME/, never deleted (default: off)"),
        ("device", "--device", {"choices": ("auto", "cpu", "cuda")},
         "auto picks CUDA when available (default: auto)"),
        ("amp", "--amp", {"action": "store_true"}, "bf16 mixed precision; needs CUDA (default: off)"),
        ("compile", "--compile", {"action": "store_true"}, "torch.compile each cell of the search network: "
         "slow first iterations, then fused kernels; see docs/performance.md (default: off)"),
        ("sync_bn", "--sync-bn", {"action": "store_true"}, "with several ranks (torchrun "
         "--nproc_per_node N -m flatarch search ...): BatchNorm statistics over the global batch, so the search "
         "equals the one-device search; see docs/distributed.md (default: off, each rank's own shard, as DDP)"),
        ("dtype", "--dtype", {"choices": ("float32", "float64")}, "floating-point type of the network, the batches "
         "and the steps; float64 makes an N-rank search equal the one-device search to 1e-9, a check of a "
         "data-parallel setup (default: float32)"),
        ("threads", "--threads", whole, "torch CPU threads per search (default: 1: the search "
         "network's small convolutions gain little from more, and oversubscribed cores lose a lot)"),
        ("val_augment", "--val-augment", {"action": argparse.BooleanOptionalAction},
         "augment the validation half too (default: off for darts on nb201, on otherwise, as in the paper's "
         "appendix C.4)"),
        ("channels", "--channels", whole,
         f"initial channels C (default: 16; {demo['channels']} on digits)"),
        ("cells_per_stage", "--cells", whole,
         f"search cells per stage N (default: 5 on nb201; {demo['cells_per_stage']} on digits); darts: normal "
         "cells between reductions, 3N + 2 cells in all (default: 2, the paper's 8 cells)"),
        ("ops", "--ops", {"choices": sorted({*OP_SETS, "nb201"})}, "candidate-op set: darts space: s5 (7 ops, no "
         "none: the space the A2M authors, SDARTS and DARTS-PT searched) or darts (the 8 of the original DARTS) "
         f"(default: the space's, {DEFAULT_OPS} on darts)"),
        ("running_stats", "--running-stats", {"choices": tuple(RUNNING_STATS)},
         "BatchNorm running statistics in an alpha step of several passes (sam, usam, a2m): first-pass keeps what "
         "its first pass left, as one first-order pass would; every-pass lets every pass update them, as the A2M "
         f"authors' code (default: {p['running_stats']})"),
        ("step_order", "--step-order", {"choices": STEP_ORDERS}, "which step of an iteration comes first: the alpha "
         "step (DARTS) or the weight step (lambda-DARTS' NAS-Bench-201 code) (default: "
         f"{p['step_order']})"),
        ("lr", "--lr", number, f"weight SGD learning rate, cosine-annealed (default: {p['lr']})"),
        ("lr_min", "--lr-min", number, f"final weight learning rate (default: {p['lr_min']})"),
        ("momentum", "--momentum", number, f"weight SGD momentum (default: {p['momentum']})"),
        ("weight_decay", "--weight-decay", number, f"weight SGD weight decay (default: {p['weight_decay']})"),
        ("grad_clip", "--grad-clip", number, f"weight gradient-norm clip, 0 = off (default: {p['grad_clip']})"),
        ("arch_lr", "--arch-lr", number,
         f"learning rate of the alpha Adam (default: {p['arch_lr']}; {demo['arch_lr']} on digits)"),
        ("arch_weight_decay", "--arch-weight-decay", number,
         f"weight decay of the alpha Adam (default: {p['arch_weight_decay']})"),
        ("lr_warmup_epochs", "--lr-warmup-epochs", whole, "the weights' learning rate rises linearly to --lr over "
         "the first N epochs, then follows the cosine (default: 0; pcdarts --recipe imagenet: 5)"),
        ("warmup_epochs", "--warmup-epochs", whole, "epochs of weight steps only before the first alpha step "
         f"(default: {p['warmup_epochs']}; {demo['warmup_epochs']} on digits; pcdarts --recipe original: 15)"),
        ("smoothing_epsilon", "--smoothing-epsilon", number, "sdarts-rs/sdarts-adv: the final smoothing radius; it "
         f"grows linearly from 0.03 (default: {m['sdarts-rs'].defaults.settings['smoothing_epsilon']})"),
        ("beta_index", "--beta-index", {"choices": BETA_INDICES}, "betadarts: what its coefficient 0.5 t counts: "
         "the epoch (beta-DARTS) or the batch index within the epoch (the A2M authors' DARTS-space runs) "
         f"(default: {m['betadarts'].defaults.settings['beta_index']})"),
        ("edge_normalization", "--edge-normalization", {"action": argparse.BooleanOptionalAction},
         "pcdarts on the darts space: PC-DARTS' edge normalisation (default: on; the A2M authors' runs: off)"),
        ("partial_channels", "--partial-channels", whole, "pcdarts: K, the mixed ops see 1/K of each edge's channels "
         f"(default: {m['pcdarts'].defaults.settings['partial_channels']}; --recipe imagenet: 2)"),
        ("lambda_coef", "--lambda", number, "lambda-darts: the regulariser's strength, ramped up linearly from 0 over "
         f"the epochs (default: {lam['lambda_coef']})"),
        ("lambda_eps0", "--lambda-eps0", number, "lambda-darts: the finite-difference radius of its correction "
         f"(default: {lam['lambda_eps0']})"),
        ("lambda_corr", "--lambda-corr", {"choices": ("corr", "signcorr")}, "lambda-darts: the correlation it raises, "
         f"cosine (corr) or the sign variant (default: {lam['lambda_corr']})"),
        ("projection_interval", "--projection-interval", whole, "darts-pt: tuning epochs between projections "
         f"(default: {m['darts-pt'].defaults.settings['projection_interval']}, the repository's)"),
        ("tune_epochs", "--tune-epochs", whole, "darts-pt: tuning epochs after the supernet search (default: the "
         "repository's schedule: K (edges - 1) on nb201, K (edges + nodes - 1) + 1 on darts)"),
        ("select", "--select", {"choices": SELECTIONS}, "genotype to report: best-val-loss (the paper's: the "
         "genotype at the start of the epoch with the lowest validation loss) or final; darts-pt always reports its "
         "projection's (default: best-val-loss)"),
        ("early_stop", "--early-stop", whole, "stop once more than N epochs passed without a lower validation loss, "
         f"as the A2M authors' code; 0 = off (default: {p['early_stop']}; darts-pt: 0)"),
        ("hessian_every", "--hessian-every", whole,
         "log the dominant eigenvalue of the Hessian of the architecture loss w.r.t. alpha, on a fixed validation "
         "batch, at the end of every this many epochs (up to 20 Hessian-vector products each); 0 = off (default: 0)"),
        ("hessian_stop", "--hessian-stop", number, "R-DARTS' early stop: end the search once the local mean of that "
         "eigenvalue grew by more than this ratio (theirs: 1.3; not before epoch 17 with --hessian-every 1) and "
         "report the genotype from before the growth; needs --hessian-every (default: off)"),
        ("log_to", "--log-to", {"metavar": "TRACKERS"}, "also log every epoch record, the settings and the result "
         "to experiment trackers, comma-separated: tensorboard (OUT/tensorboard), wandb (offline with "
         "WANDB_MODE=offline), mlflow ($MLFLOW_TRACKING_URI, else OUT/mlruns); each needs its extra, e.g. pip install "
         "\"flatarch[tensorboard]\"; search.jsonl stays the full record (default: none)"),
        ("on_nonfinite", "--on-nonfinite", {"choices": ("raise", "skip")},
         "an architecture step that meets NaN/Inf: raise (stop with a message) or skip it (default: raise)"),
    ]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "search",
        help="run an architecture search on a reference space (NAS-Bench-201, DARTS)",
        description=(
            "Bi-level differentiable architecture search: per iteration one architecture step (the chosen update) "
            "on a validation batch, then one SGD weight step on a training batch. Writes OUT/search.jsonl (one "
            "record per epoch), OUT/checkpoint.pt (atomic, every epoch), OUT/result.json, OUT/genotype.json and "
            "OUT/search.png. With no arguments: a one-minute A2-DARTS demo on NAS-Bench-201 over scikit-learn's "
            "digits (offline). Paper setting, e.g.: flatarch search --dataset cifar10 --data-dir data --download "
            "--seeds 1 2 3 4 5"
        ),
    )
    add_options(p, _options())
    a = p.add_argument
    a("--seeds", type=int, nargs="+", default=None, metavar="SEED",
      help="several seeds, e.g. --seeds 1 2 3 4 5: one search each in OUT/seed-N and a mean ± std table over all "
           "seeds (never the best seed) (default: off, one search with --seed)")
    a("--workers", type=int, default=1, help="with --seeds: searches run at once in separate processes, one torch "
      "thread each (default: 1, one after another)")
    a("--table", default=None, help="NAS-Bench-201 benchmark table for the found cells' test accuracies (default: "
      "$FLATARCH_NB201_TABLE, else the table shipped with flatarch)")
    a("--beta-weights", type=float, nargs=2, default=None, metavar=("W_NORMAL", "W_REDUCE"),
      help="darts space, --method betadarts: weights of the beta-decay regulariser on the normal and reduction "
           "alphas (paper appendix C.5) (default: 1 1)")
    a("--no-progress", action="store_true", help="no progress bars; the line per epoch stays (default: bars on "
      "when stderr is a terminal, never in a file)")
    a("--no-plot", action="store_true", help="do not write OUT/search.png (default: write it)")
    p.set_defaults(func=run)


def _default_out(config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{config.space}-{config.method}-{config.optimizer}-{config.dataset}-{stamp}")


def _space_options(args, space: str, method: str) -> dict | None:
    """``space_options`` from ``--table`` and ``--beta-weights``; ``None`` when neither is given."""
    from flatarch.reference_spaces.engine import SearchError

    if args.beta_weights is not None and (space != "darts" or method != "betadarts"):
        raise SearchError("--beta-weights applies to --space darts --method betadarts only; drop it")
    if args.table and space == "darts":
        raise SearchError("--table is a NAS-Bench-201 benchmark table; the darts space has none; drop it")
    if args.beta_weights is not None:
        return {"beta_normal": args.beta_weights[0], "beta_reduce": args.beta_weights[1]}
    return {"table": args.table} if args.table else None


def settings_from_args(args) -> dict:
    """The :class:`SearchConfig` fields the command gives (``--resume`` takes the others from the
    run's checkpoint), with the command's own: its output folder, threads and progress bars."""
    from flatarch.reference_spaces.engine import SearchConfig

    given = given_fields(args, _options())
    defaults = SearchConfig().replace(**given)
    space_options = _space_options(args, defaults.space, defaults.method)
    if space_options is not None:
        given["space_options"] = space_options
    if args.no_plot:
        given["plot"] = False
    given.setdefault("threads", 1)
    if not (args.resume or args.restart):  # a run to continue must be named
        given["out"] = args.out or _default_out(defaults)
    # bars only on a terminal: redirected to a file, tqdm's redraws would be lines of their own
    return {**given, "progress": not args.no_progress and sys.stderr.isatty()}


def config_from_args(args):
    """The :class:`SearchConfig` of parsed ``flatarch search`` arguments, as a fresh run resolves them."""
    from flatarch.reference_spaces.engine import SearchConfig

    return SearchConfig().replace(**settings_from_args(args))


def _print_files(out: str | None, plot: bool) -> None:
    if not out or not os.path.isdir(out):
        return
    names = [n for n in ("search.jsonl", "checkpoint.pt", "result.json", "genotype.json", "genotype.png",
                         "search.png") if os.path.exists(os.path.join(out, n))]
    print(f"files: {out}/ ({', '.join(names)})")


def print_result(result) -> None:
    """The reported genotype, how it was chosen, its accuracies beside the reference cells, its
    network's parameters and FLOPs, the time."""
    from flatarch.reference_spaces.profile import describe

    print(f"\ngenotype: {result.genotype_json}")
    print(f"selected: {result.selection}" + (" (stopped early)" if result.stopped_early else ""))
    last = result.history[-1] if result.history else {}
    if "decided_edges" in last:
        print(f"op probabilities after epoch {last['epoch']}: mean entropy {last['alpha_entropy']:.3f}, smallest "
              f"top-1/top-2 margin {last['alpha_margin']:.3g}, {last['decided_edges']} of {last['edges']} edges "
              "decided" + (" (undecided: the cell is within noise of its initialisation)" if last["undecided"] else ""))
    if result.benchmark:
        optimum, skip = result.reference.get("optimum", {}), result.reference.get("all-skip", {})
        print("NAS-Bench-201 test accuracy of this cell (optimum / all-skip collapse):")
        for dataset, acc in result.benchmark.items():
            print(f"  {dataset:<15} {acc:6.2f}   ({optimum.get(dataset, float('nan')):.2f} / "
                  f"{skip.get(dataset, float('nan')):.2f})")
    for dataset, figures in result.profile.items():
        print(f"evaluation network on {dataset}: {describe(figures)}")
    if result.config["space"] == "darts" and result.out and result.config["dataset"] != "imagenet":  # trainable
        print(f"next: flatarch train --genotype {os.path.join(result.out, 'genotype.json')} "
              f"--dataset {result.config['dataset']} --out {os.path.join(result.out, 'train')}")
    print(f"time: {result.seconds:.1f} s, {result.seconds_per_iteration * 1000:.0f} ms per iteration")
    _print_files(result.out, result.config.get("plot", True))


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def _launcher() -> str:
    """How this command was started: ``flatarch``, or under torchrun the same number of ranks (a
    checkpoint of N ranks resumes on N ranks only); on several nodes ``...`` stands for the rendezvous."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return "flatarch"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    nodes = f"--nnodes={world // local} --nproc_per_node={local} ..." if world > local else f"--nproc_per_node={world}"
    return f"torchrun {nodes} -m flatarch"


def run(args) -> int:
    import flatarch
    from flatarch.cli.stops import resume_hint, stopped
    from flatarch.reference_spaces.engine import format_summary, search
    from flatarch.reference_spaces.engine.multiseed import seed_folder
    from flatarch.reference_spaces.engine.ranks import PeerFailed
    from flatarch.reference_spaces.errors import UsageError

    settings = {}
    try:
        settings = settings_from_args(args)
        if args.seeds:
            multi = search(seeds=args.seeds, workers=args.workers, **settings)
            if _rank() != 0:  # torchrun: rank 0 alone prints
                return 0
            print()
            for seed, r in zip(multi.seeds, multi.results):
                print(f"seed {seed}: {r.genotype_json if r is not None else 'no result'}")
            print()
            print(format_summary(multi))
            print(f"files: {settings.get('out')}/seed-N/, {settings.get('out')}/summary.json")
            return 1 if multi.excluded else 0
        result = search(workers=args.workers, **settings)
        if _rank() == 0:
            print_result(result)
    except (UsageError, flatarch.NonFiniteError) as exc:
        if not (isinstance(exc, PeerFailed) and _rank() != 0):  # rank 0 reports another rank's failure
            print(f"flatarch search: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, OSError) as exc:
        out, seeds = settings.get("out"), args.seeds
        folders = [seed_folder(out, s) for s in seeds] if out and seeds else [out]
        resume = f"{_launcher()} search --out {out}{' --seeds ' + ' '.join(map(str, seeds)) if seeds else ''} --resume"
        return stopped("flatarch search", exc, resume_hint(resume, out, folders))
    return 0
