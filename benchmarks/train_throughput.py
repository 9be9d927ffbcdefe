"""Images per second training a DARTS evaluation network (one SGD step = forward with the
auxiliary head, backward, gradient clipping, update), on synthetic data already on the device.

CUDA: fp32, fp32 + channels-last, mixed precision (fp16 autocast + gradient scaling) and mixed
precision + channels-last, at the paper's size (C=36, 20 cells, batch 96) by default; ratios
against fp32. CPU: fp32 only, at a tiny size by default (C=8, 5 cells, batch 16).

    python benchmarks/train_throughput.py                 # current device, its default size
    python benchmarks/train_throughput.py --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from flatarch.reference_spaces.darts import genotype as G
from flatarch.reference_spaces.darts.evaluation_network import EvaluationNetwork, count_parameters


def measure(genotype, args, device, amp: bool, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = EvaluationNetwork(genotype, num_classes=10, C=args.channels, layers=args.layers,
                              input_size=args.size).to(device)
    model.drop_path_prob = 0.1
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits, aux = model(x)
            loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(opt)
        scaler.update()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when available")
    p.add_argument("--genotype", default="DARTS_V2", help="genotype name or file")
    p.add_argument("--channels", type=int, default=None, help="C (default: 36 on CUDA, 8 on CPU)")
    p.add_argument("--layers", type=int, default=None, help="cells (default: 20 on CUDA, 5 on CPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 96 on CUDA, 16 on CPU")
    p.add_argument("--size", type=int, default=32, help="input resolution (32 CIFAR, 16 ImageNet16-120)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 on CUDA, 5 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 CUDA, 2 CPU)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    device = torch.device("cuda" if cuda else "cpu")
    args.channels = args.channels or (36 if cuda else 8)
    args.layers = args.layers or (20 if cuda else 5)
    args.batch_size = args.batch_size or (96 if cuda else 16)
    args.steps = args.steps or (50 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    if cuda:
        torch.backends.cudnn.benchmark = True
    genotype = G.load(args.genotype)
    n = count_parameters(EvaluationNetwork(genotype, C=args.channels, layers=args.layers, input_size=args.size))
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"device {name}; torch {torch.__version__}; threads {torch.get_num_threads()}; genotype {args.genotype}; "
          f"C={args.channels} layers={args.layers} batch={args.batch_size} input {args.size}x{args.size}; "
          f"{n:,} parameters; {args.steps} timed steps after {args.warmup} warm-up")
    variants = [("fp32", False, False)]
    if cuda:
        variants += [("fp32 channels-last", False, True), ("amp fp16", True, False),
                     ("amp fp16 channels-last", True, True)]
    base = None
    for label, amp, cl in variants:
        ips = measure(genotype, args, device, amp, cl)
        base = base or ips
        print(f"{label:24s} {ips:10.1f} images/s   x{ips / base:.2f} vs fp32")


if __name__ == "__main__":
    main()
