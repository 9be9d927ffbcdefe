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

    from flatarch.reference_spaces.darts import genotype as G
    from flatarch.reference_spaces.darts import loaders
    from flatarch.reference_spaces.darts.evaluation_network import EvaluationNetwork, count_parameters
    from flatarch.reference_spaces.darts.train import TrainConfig, init_distributed, train

    if args.threads:
        torch.set_num_threads(args.threads)
    genotype = G.load(args.genotype)
    device, rank, world = init_distributed(args.device)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, lr_min=args.lr_min, momentum=args.momentum,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, auxiliary_weight=args.auxiliary_weight,
        drop_path_prob=args.drop_path_prob, seed=args.seed,
        amp=args.amp if args.amp is not None else device.type == "cuda",
        channels_last=args.channels_last, stop_train_loss=args.stop_train_loss, eval_every=args.eval_every,
    )
    load_cfg = loaders.LoaderConfig(dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size,
                                    cutout=args.cutout, workers=args.workers, download=args.download)
    train_set, test_set, num_classes = loaders.datasets_for(load_cfg)
    input_size = int(train_set[0][0].shape[-1])
    torch.manual_seed(args.seed)  # identical initial weights in every process
    model = EvaluationNetwork(genotype, num_classes=num_classes, C=args.init_channels, layers=args.layers,
                              auxiliary=args.auxiliary_weight > 0, input_size=input_size)
    train_loader, test_loader = loaders.make_loaders(load_cfg, train_set, test_set)
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        G.save(genotype, os.path.join(args.out, "genotype.json"))
        print(f"genotype: {G.to_literal(genotype)}")
        print(f"parameters: {count_parameters(model):,} (without auxiliary head), device {device}, "
              f"processes {world}, torch threads {torch.get_num_threads()}")
    extra = {"genotype": G.to_json(genotype), "dataset": args.dataset,
             "parameters": count_parameters(model), "init_channels": args.init_channels, "layers": args.layers}
    result = train(model, train_loader, test_loader, config, device=device, out_dir=args.out,
                   resume=not args.no_resume, extra_state=extra)
    if rank == 0:
        print(f"final test accuracy: {result.final_test_acc:.2f}% after {result.epochs_run} epochs"
              f"{' (stopped early at the training-loss threshold)' if result.stopped_early else ''}; "
              f"report {os.path.join(args.out, 'report.json')}, curve {os.path.join(args.out, 'learning_curve.png')}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
