"""``flatarch train``: train a DARTS-space genotype from scratch and report its test accuracy.

A thin layer over :func:`flatarch.reference_spaces.darts.train.train_genotype`; the options are
:class:`~flatarch.reference_spaces.darts.train.TrainConfig` fields and share their names with
``flatarch search`` (``--channels``, ``--cells``, ``--out``, ``--resume``, ``--restart``,
``--amp``, ``--threads``). Single process: ``flatarch train --genotype DARTS_V2 --dataset
cifar10``. Several GPUs: ``torchrun --nproc_per_node=4 -m flatarch train ...`` (each process
takes ``--batch-size`` images per step; scale ``--lr`` as you see fit). Options the command does
not give are ``None`` after parsing: ``--out X --resume`` takes them from the checkpoint, a fresh
run from :data:`DEFAULTS` and the paper's settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from flatarch.cli.options import add_options, given_fields

#: defaults of the command's own options (the TrainConfig fields default to the paper's settings)
DEFAULTS: dict[str, Any] = {"dataset": "digits", "device": "auto", "threads": 1}


def _options() -> list[tuple[str, str, dict[str, Any], str]]:
    """``(field, flag, argparse keywords, help)`` of every TrainConfig field on the command line."""
    from flatarch.reference_spaces.darts.train import DATASET_DEFAULTS, PAPER_DEFAULTS, TRAIN_RECIPES
    from flatarch.reference_spaces.recipes import PAPER_RECIPE

    p, demo = PAPER_DEFAULTS, DATASET_DEFAULTS["digits"]
    number, whole = {"type": float}, {"type": int}

    def default(name: str, note: str = "") -> str:
        digits = f"; {demo[name]} on digits" if name in demo else ""
        return f"(default: {p[name]}{note}{digits})"

    return [
        ("epochs", "--epochs", whole, f"training epochs {default('epochs')}"),
        ("batch_size", "--batch-size", whole, f"images per step per process {default('batch_size')}"),
        ("lr", "--lr", number, f"initial SGD learning rate, cosine-annealed {default('lr')}"),
        ("lr_min", "--lr-min", number, "final learning rate of the cosine schedule "
         f"{default('lr_min', ', the original DARTS code; paper table 5: 0.001')}"),
        ("momentum", "--momentum", number, f"SGD momentum {default('momentum')}"),
        ("weight_decay", "--weight-decay", number, f"SGD weight decay {default('weight_decay')}"),
        ("grad_clip", "--grad-clip", number, f"gradient-norm clip, 0 = off {default('grad_clip')}"),
        ("channels", "--channels", whole, f"initial channels C {default('channels')}"),
        ("cells_per_stage", "--cells", whole, "normal cells between reductions N, 3N + 2 cells in all "
         f"{default('cells_per_stage', ': 20 cells')}"),
        ("auxiliary_weight", "--auxiliary-weight", number, "weight of the auxiliary head's loss, 0 = no auxiliary "
         f"head {default('auxiliary_weight')}"),
        ("drop_path_prob", "--drop-path-prob", number, "final drop-path probability, ramped up linearly "
         f"{default('drop_path_prob')}"),
        ("cutout", "--cutout", whole, f"cutout length in pixels, 0 = off {default('cutout')}"),
        ("recipe", "--recipe", {}, f"{' | '.join([PAPER_RECIPE, *TRAIN_RECIPES])}: settings the command does not give, "
         "per dataset, as a table's trainings ran them; a2m-authors: no cutout on imagenet16-120, as the A2M "
         f"authors' code (docs/reproduce.md) (default: {PAPER_RECIPE}, the paper's table 5)"),
        ("seed", "--seed", whole, "seed of initial weights, shuffling, augmentation and drop path (default: 0)"),
        ("amp", "--amp", {"action": "store_true"}, "bf16 mixed precision; needs CUDA (default: off, slower than "
         "fp32 at the paper's size on an H200: docs/performance.md)"),
        ("channels_last", "--channels-last", {"action": "store_true"},
         "channels-last memory format (default: off, slower there too)"),
        ("device_data", "--device-data", {"action": argparse.BooleanOptionalAction},
         "make the batches on the device: the images held there once, crop, flip, normalisation and cutout done "
         "per batch there, no loader processes (default: on with CUDA)"),
        ("stop_train_loss", "--stop-train-loss", number, "stop after the first epoch whose mean training objective "
         "(cross-entropy + weighted auxiliary loss, as the original DARTS script logs it) is <= this; the paper's "
         "neighbourhood study: 0.43 on CIFAR-10, 1.0 on CIFAR-100 (default: off)"),
        ("eval_every", "--eval-every", whole, "test-set evaluation every N epochs and after the last (default: 1)"),
        ("loader_workers", "--loader-workers", whole, "data-loading processes (default: 2)"),
    ]


def register(subparsers: argparse._SubParsersAction) -> None:
    from flatarch.reference_spaces.darts.known import KNOWN_GENOTYPES
    from flatarch.reference_spaces.data import DATASETS

    p = subparsers.add_parser(
        "train",
        help="train a DARTS-space genotype from scratch (evaluation protocol of the paper, table 5)",
        description="Train a DARTS-space genotype from scratch with the evaluation protocol of the paper "
        "(table 5) and report its test accuracy. The options share their names with flatarch search. Several "
        "GPUs: torchrun --nproc_per_node=4 -m flatarch train ... (each process takes --batch-size images per step).",
    )
    a = p.add_argument
    a("--genotype", help="genotype JSON file (e.g. the search's OUT/genotype.json), a file with a "
      f"Genotype(...) literal, or a known name ({', '.join(KNOWN_GENOTYPES)}); with --resume, the checkpoint's")
    a("--dataset", choices=DATASETS, help="dataset to train and test on; digits is the offline "
      "demo, its last 360 images the test set (default: digits)")
    a("--data-dir", default=None, help="folder holding the dataset (CIFAR: the torchvision folders; "
      "ImageNet16-120: train_data_batch_1..10 and val_data) (default: ./data)")
    a("--download", action="store_true", help="download CIFAR if missing (default: off)")
    a("--out", default=None, help="output folder: checkpoint.pt, report.json, learning_curve.png, genotype.json "
      "(default: runs/train-GENOTYPE-DATASET-TIME, a new one)")
    a("--resume", action="store_true", help="continue the training in --out from its checkpoint, with the "
      "settings it records (options given must match them; a larger --epochs extends it) (default: off)")
    a("--restart", action="store_true", help="start over in an --out that holds a training; its files are moved "
      "into OUT/replaced-TIME/, never deleted (default: off)")
    a("--device", choices=["auto", "cpu", "cuda"], help="auto picks CUDA when available (default: auto)")
    a("--threads", type=int, help="torch CPU threads (default: 1)")
    add_options(p, _options())
    p.set_defaults(func=run)


def _default_out(genotype: str, dataset: str) -> str:
    name = os.path.splitext(os.path.basename(genotype))[0] if os.path.isfile(genotype) else genotype
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"train-{name}-{dataset}-{stamp}")


def run(args: argparse.Namespace) -> int:
    from flatarch.cli.stops import resume_hint, stopped
    from flatarch.reference_spaces.errors import UsageError

    out = args.out
    try:
        if not (args.resume or args.restart or out):
            out = _default_out(args.genotype or "genotype", args.dataset or DEFAULTS["dataset"])
        return _run(args, out)
    except UsageError as exc:
        print(f"flatarch train: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, OSError) as exc:
        return stopped("flatarch train", exc, resume_hint(f"flatarch train --out {out} --resume", out, [out]))


def invocation(args: argparse.Namespace) -> dict[str, Any]:
    """The command's own options (``data_dir``, ``download``, ``device``, ``threads``), defaults filled."""
    from flatarch.reference_spaces.darts.train import TrainError

    given = {"data_dir": args.data_dir, "download": bool(args.download), "device": args.device, "threads": args.threads}
    filled = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    if filled["threads"] < 1:
        raise TrainError(f"--threads must be a whole number >= 1, got {filled['threads']}")
    return {k: filled.get(k) for k in given}


def config_from_args(args: argparse.Namespace):
    """The :class:`~flatarch.reference_spaces.darts.train.TrainConfig` of parsed ``flatarch train``
    arguments (its numbers checked; the command's own options are :func:`invocation`'s)."""
    from flatarch.reference_spaces.darts.train import TrainConfig

    return TrainConfig(**_given_fields(args))


def _given_fields(args: argparse.Namespace) -> dict[str, Any]:
    return given_fields(args, _options())


def _run(args: argparse.Namespace, out: str | None) -> int:
    import torch

    from flatarch.reference_spaces.darts.train import (
        CURVE_NAME,
        RECORDED_ARGUMENTS,
        REPORT_NAME,
        TrainConfig,
        TrainError,
        from_checkpoint,
        train_genotype,
    )

    given = {k: getattr(args, k) for k in RECORDED_ARGUMENTS if getattr(args, k) is not None}
    fields = _given_fields(args)
    if args.resume:
        given, fields = from_checkpoint(out, given, fields)
    if "genotype" not in given:
        raise TrainError("--genotype is needed: the genotype to train (a JSON file, a literal or a known name)")
    own = {**invocation(args), **{k: given[k] for k in ("data_dir", "device") if k in given}}
    torch.set_num_threads(own["threads"])
    result = train_genotype(given["genotype"], given.get("dataset", DEFAULTS["dataset"]),
                            config=TrainConfig(**fields), data_dir=own["data_dir"], download=own["download"],
                            device=own["device"], out_dir=out, resume=args.resume, restart=args.restart)
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        early = " (stopped early at the training-objective threshold)" if result.stopped_early else ""
        print(f"final test accuracy: {result.final_test_acc:.2f}% after {result.epochs_run} epochs{early}; "
              f"report {os.path.join(out, REPORT_NAME)}, curve {os.path.join(out, CURVE_NAME)}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
