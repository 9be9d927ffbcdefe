"""``flatarch train``: train a DARTS-space genotype from scratch and report its test accuracy.

Single process: ``flatarch train --genotype DARTS_V2 --dataset cifar10``. Several GPUs:
``torchrun --nproc_per_node=4 -m flatarch train ...`` (each process takes ``--batch-size``
images per step; scale ``--lr`` as you see fit).
"""

from __future__ import annotations

import argparse
import os
import sys


def _tristate(value: str) -> bool | None:
    v = value.lower()
    if v not in ("auto", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {value!r}")
    return None if v == "auto" else v == "on"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a DARTS-space genotype from scratch (evaluation protocol of the paper, table 5)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--genotype", required=True,
                   help="genotype JSON file, file with a Genotype(...) literal, or a known name "
                        "(DARTS_V1, DARTS_V2, PC_DARTS, PC_DARTS_IMAGENET)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "imagenet16-120"],
                   help="dataset to train and test on")
    p.add_argument("--data-dir", default="data", help="folder holding the dataset (CIFAR: the torchvision "
                   "folders; ImageNet16-120: train_data_batch_1..10 and val_data)")
    p.add_argument("--download", action="store_true", help="download CIFAR if missing")
    p.add_argument("--out", default=os.path.join("runs", "train"),
                   help="output folder: checkpoint.pt, report.json, learning_curve.png, genotype.json")
    p.add_argument("--no-resume", action="store_true",
                   help="ignore an existing checkpoint in --out and start over (it is overwritten)")
    p.add_argument("--epochs", type=int, default=600, help="training epochs")
    p.add_argument("--batch-size", type=int, default=96, help="images per step per process")
    p.add_argument("--lr", type=float, default=0.025, help="initial SGD learning rate")
    p.add_argument("--lr-min", type=float, default=0.0,
                   help="final learning rate of the cosine schedule (original DARTS code: 0; paper table 5: 0.001)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=3e-4, help="SGD weight decay")
    p.add_argument("--grad-clip", type=float, default=5.0, help="gradient-norm clip (0 = off)")
    p.add_argument("--init-channels", type=int, default=36, help="C of the first cells")
    p.add_argument("--layers", type=int, default=20, help="number of cells")
    p.add_argument("--auxiliary-weight", type=float, default=0.4,
                   help="weight of the auxiliary head's loss (0 = no auxiliary head)")
    p.add_argument("--drop-path-prob", type=float, default=0.2, help="final drop-path probability (linear ramp)")
    p.add_argument("--cutout", type=int, default=16, help="cutout length in pixels (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed of initial weights, shuffling, augmentation, drop path")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when available")
    p.add_argument("--amp", type=_tristate, default="auto", metavar="{auto,on,off}",
                   help="mixed precision (auto: on with CUDA)")
    p.add_argument("--channels-last", type=_tristate, default="auto", metavar="{auto,on,off}",
                   help="channels-last memory format (auto: on with CUDA)")
    p.add_argument("--workers", type=int, default=2, help="data-loading worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--stop-train-loss", type=float, default=None,
                   help="stop after the first epoch whose mean training objective (cross-entropy + weighted "
                        "auxiliary loss, as the original DARTS script logs it) is <= this "
                        "(the paper's neighbourhood study: 0.43 on CIFAR-10, 1.0 on CIFAR-100)")
    p.add_argument("--eval-every", type=int, default=1, help="test-set evaluation every N epochs (and at the end)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flatarch.reference_spaces.data import DataError

    try:
        return _run(args)
    except (ValueError, FileNotFoundError, DataError) as exc:
        print(f"flatarch train: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from flatarch.reference_spaces.darts.train import CURVE_NAME, REPORT_NAME, TrainConfig, train_genotype

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, lr_min=args.lr_min, momentum=args.momentum,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, auxiliary_weight=args.auxiliary_weight,
        drop_path_prob=args.drop_path_prob, seed=args.seed, amp=args.amp, channels_last=args.channels_last,
        stop_train_loss=args.stop_train_loss, eval_every=args.eval_every,
    )
    result = train_genotype(
        args.genotype, args.dataset, config=config, data_dir=args.data_dir, download=args.download,
        batch_size=args.batch_size, cutout=args.cutout, workers=args.workers, init_channels=args.init_channels,
        layers=args.layers, device=args.device, out_dir=args.out, resume=not args.no_resume,
    )
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        early = " (stopped early at the training-objective threshold)" if result.stopped_early else ""
        print(f"final test accuracy: {result.final_test_acc:.2f}% after {result.epochs_run} epochs{early}; "
              f"report {os.path.join(args.out, REPORT_NAME)}, curve {os.path.join(args.out, CURVE_NAME)}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
