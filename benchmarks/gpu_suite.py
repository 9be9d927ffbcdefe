"""Speed on the device searches run on: one script, one table, one JSON file.

Sections (every figure is printed with the torch thread count):

* ``alpha_step``: one architecture step per update (first-order, SAM, USAM, A2M central / forward /
  exact / central with ``batch_pair``), on the NAS-Bench-201 search network, as a ratio to
  first-order DARTS and to the pass-count floor (bare alpha-gradient evaluations);
* ``layout``: one alpha-gradient evaluation and one weight pass of each supernet with its edges
  grouped by the node they read (what flatarch ships) against the per-edge layout, ms and operator
  calls (``benchmarks/grouped_edges.py``);
* ``search``: search iterations per second (alpha step + weight step, through the engine's own
  methods, data made on the device) on NAS-Bench-201 and the DARTS space, per update, in fp32,
  bf16 autocast (CUDA), bf16 + channels-last (CUDA) and, with ``--compile``, each cell
  ``torch.compile`` d (``compile_cells``) in the default mode and ``reduce-overhead`` (CUDA graphs),
  with the warm-up's seconds (compilation included); a variant that fails is reported, not fatal;
* ``projection`` (printed after each NAS-Bench-201 A2M search figure): the time of a 50-epoch
  NAS-Bench-201 A2-DARTS search on CIFAR-10 (390 iterations and a validation sweep of 25,000 images
  per epoch) from the measured rates;
* ``train``: DARTS-space evaluation training, images per second (the paper's C=36, 20 cells,
  batch 96), fp32 / bf16 / bf16 + channels-last, batches made on the device;
* ``data``: images per second of the batch makers alone, on-device vs a worker ``DataLoader``;
* ``authors``: flatarch's A2M step vs the A2M authors' ``Architect`` on quark0/darts' network,
  when ``--darts`` and ``--asquaredm`` checkouts are given (skipped with a message otherwise);
* ``scaling``: one search on 2, 4, ... GPUs of this machine (``benchmarks/distributed.py`` under
  torchrun, NAS-Bench-201, global batch 64 and 256): the iteration's speed-up over one GPU at the same
  global batch and the cost of the reductions over a rank's iteration alone, per update, with and
  without ``--sync-bn`` (skipped with fewer than 2 GPUs).

Peak device memory per figure (``torch.cuda.max_memory_allocated``; on a CPU the process's peak
resident memory) and device utilisation (``torch.cuda.utilization``, sampled while timing, when
pynvml is installed). Usage::

    python benchmarks/gpu_suite.py --json gpu_suite.json                  # CUDA, paper sizes, < 5 minutes
    python benchmarks/gpu_suite.py --device cpu --tiny --json tiny.json   # end to end in about a minute
    python benchmarks/gpu_suite.py --darts /tmp/darts --asquaredm /tmp/AsquaredM --json gpu_suite.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import statistics
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling benchmark scripts

from flatarch.reference_spaces.data import ImageData  # noqa: E402
from flatarch.reference_spaces.engine.config import SearchConfig  # noqa: E402
from flatarch.reference_spaces.engine.loop import _Searcher  # noqa: E402
from flatarch.reference_spaces.space import compile_cells  # noqa: E402

import flatarch  # noqa: E402
from flatarch.deferred import PendingCheck  # noqa: E402

# projection: within search
SECTIONS = ("alpha_step", "layout", "search", "projection", "train", "data", "authors", "scaling")

#: network and batch sizes: the papers' ("full") and a smoke-test size ("tiny")
SIZES = {
    "full": {"nb201": dict(channels=16, cells_per_stage=5, batch=64, image=32),
             "darts": dict(channels=16, cells_per_stage=2, batch=64, image=32),
             "train": dict(channels=36, layers=20, batch=96, image=32),
             "iters": 20, "darts_iters": 8, "warmup": 3, "repeats": 10, "data_images": 20_000},
    "tiny": {"nb201": dict(channels=4, cells_per_stage=1, batch=8, image=16),
             "darts": dict(channels=4, cells_per_stage=1, batch=8, image=16),
             "train": dict(channels=4, layers=5, batch=8, image=16),
             "iters": 2, "darts_iters": 1, "warmup": 1, "repeats": 2, "data_images": 256},
}
UPDATES = ("first-order", "sam", "usam", "a2m")
#: NAS-Bench-201 on CIFAR-10: 25,000 training and 25,000 validation images, batch 64, 50 epochs
PROJECTION = {"epochs": 50, "iterations_per_epoch": 25_000 // 64, "validation_images": 25_000}


@dataclass(frozen=True)
class Precision:
    name: str
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    #: torch.compile mode ("reduce-overhead": CUDA graphs); None = the default mode, as ``--compile``
    compile_mode: str | None = None


PRECISIONS = (Precision("fp32"), Precision("bf16", amp=True), Precision("bf16 channels-last", True, True),
              Precision("compiled", compile=True), Precision("bf16 compiled", amp=True, compile=True),
              Precision("compiled reduce-overhead", compile=True, compile_mode="reduce-overhead"))


# -- measuring ---------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Utilisation:
    """Samples ``torch.cuda.utilization`` every 0.1 s in a thread while active (None without pynvml)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.samples: list[int] = []
        self.available = device.type == "cuda" and _has_pynvml()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Utilisation:
        if self.available:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(torch.cuda.utilization(self.device))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def percent(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def _has_pynvml() -> bool:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        return False
    return True


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: allocated on the GPU since the last reset; on a CPU the process's peak resident memory."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def figure(section: str, name: str, value: float, unit: str, device: torch.device, **extra: Any) -> dict[str, Any]:
    return {"section": section, "name": name, "value": value, "unit": unit, "threads": torch.get_num_threads(),
            "peak_memory_bytes": peak_memory(device), **extra}


def skipped(section: str, name: str, reason: str) -> dict[str, Any]:
    return {"section": section, "name": name, "skipped": reason, "threads": torch.get_num_threads()}


# -- data ------------------------------------------------------------------------------------------------
def synthetic(n: int, size: int, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageData("synthetic", images, labels, 10, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 4, True)


# -- alpha step ------------------------------------------------------------------------------------------
ALPHA_VARIANTS = {
    "first-order": ("first-order", {}),
    "sam": ("sam", {}),
    "usam": ("usam", {}),
    "a2m central": ("a2m", {}),
    "a2m forward": ("a2m", {"difference": "forward"}),
    "a2m exact": ("a2m", {"hessian": "exact"}),
    "a2m central batch_pair": ("a2m", {"batch_pair": True}),
}


def alpha_step(size: dict, device: torch.device) -> list[dict[str, Any]]:
    from flatarch.reference_spaces.nb201.space import NB201Space
    from flatarch.reference_spaces.space import NetworkOptions
    from step_cost import timed_round_robin

    s = size["nb201"]
    torch.manual_seed(0)
    net = NB201Space().build_network(num_classes=10, in_channels=3, options=NetworkOptions(),
                                     channels=s["channels"], cells_per_stage=s["cells_per_stage"]).to(device)
    x = torch.randn(s["batch"], 3, s["image"], s["image"], device=device)
    y = torch.randint(0, 10, (s["batch"],), device=device)
    loss = flatarch.module_loss(net, (x, y), list(net.arch_parameters()))

    def bare_gradient():
        alpha = {k: v.detach().requires_grad_(True) for k, v in loss.arch_params.items()}
        torch.autograd.grad(loss(alpha), list(alpha.values()))

    fns = {"bare alpha gradient": bare_gradient}
    for label, (name, kwargs) in ALPHA_VARIANTS.items():
        opt = flatarch.make_update(name, loss.arch_params, rho=1e-2, deferred_check=True, **kwargs)
        fns[label] = lambda opt=opt: opt.step(loss)
    reset_peak(device)
    with Utilisation(device) as use:
        times = timed_round_robin(fns, size["repeats"], device)
    floor_passes = {"first-order": 1, "sam": 2, "usam": 2, "a2m central": 4, "a2m forward": 3,
                    "a2m central batch_pair": 4}
    bare = times.pop("bare alpha gradient")
    rows = [figure("alpha_step", "bare alpha gradient", bare * 1e3, "ms", device, utilisation=use.percent)]
    for label, t in times.items():
        extra = {"vs_first_order": t / times["first-order"]}
        if label in floor_passes:
            extra["vs_floor"] = t / (floor_passes[label] * bare)
        rows.append(figure("alpha_step", label, t * 1e3, "ms", device, utilisation=use.percent, **extra))
    return rows


# -- search iterations -------------------------------------------------------------------------------
def searcher(space: str, update: str, precision: Precision, s: dict, iters: int, device: torch.device) -> _Searcher:
    data = synthetic(2 * s["batch"] * (iters + 1), s["image"])
    cfg = SearchConfig(space=space, optimizer=update, dataset="synthetic", batch_size=s["batch"],
                       channels=s["channels"], cells_per_stage=s["cells_per_stage"], epochs=1, seed=0,
                       device=str(device), amp=precision.amp, compile=precision.compile and not precision.compile_mode,
                       progress=False, plot=False)
    searcher = _Searcher(cfg, data)
    if precision.compile_mode:
        compile_cells(searcher.net, mode=precision.compile_mode)
    if precision.channels_last:
        searcher.net.to(memory_format=torch.channels_last)
    return searcher


def iterations_per_second(searcher: _Searcher, iters: int, warmup: int, channels_last: bool) -> tuple[float, Any]:
    """One alpha step and one weight step per iteration, as the engine's loop makes them."""
    device = searcher.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    searcher.net.train()
    batches = list(zip(searcher.train.epoch(0), searcher.valid.epoch(0)))

    def layout(batch):
        x, y = batch
        return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y

    def iteration(train_batch, val_batch):
        searcher.iteration(layout(train_batch), layout(val_batch), 0, sums)

    sync(device)
    start = time.perf_counter()
    for i in range(warmup):
        iteration(*batches[i % len(batches)])
    searcher.arch_opt.check()
    sync(device)
    warmup_seconds = time.perf_counter() - start  # compilation included, for the compiled variants
    waits = device_waits(lambda: iteration(*batches[0]), device)
    sync(device)
    reset_peak(device)
    before = allocator_counts(device)
    with Utilisation(device) as use, LateChecks() as late:
        start = time.perf_counter()
        for i in range(iters):
            iteration(*batches[i % len(batches)])
        late.stop()  # the epoch-end check() below waits by design
        searcher.arch_opt.check()
        sync(device)
        seconds = time.perf_counter() - start
    allocator = {k: (v - before[k]) / iters for k, v in allocator_counts(device).items()}
    return iters / seconds, {"utilisation": use.percent, "warmup_seconds": warmup_seconds,
                             "waits_per_iteration": waits,
                             "late_checks_per_iteration": late.count / iters,
                             **{f"{k}_per_iteration": v for k, v in allocator.items()}}


class LateChecks(contextlib.AbstractContextManager):
    """Counts the deferred NaN/Inf checks read before their copy reached the host: each is a wait
    (``Event.synchronize``) that torch's sync debug mode does not report."""

    def __init__(self):
        self.count = 0
        self._original = PendingCheck.first_bad

    def __enter__(self):
        original = self._original

        def first_bad(check):
            self.count += not check.ready()
            return original(check)

        PendingCheck.first_bad = first_bad
        return self

    def stop(self) -> None:
        PendingCheck.first_bad = self._original

    def __exit__(self, *exc):
        self.stop()


def device_waits(fn, device: torch.device) -> int | None:
    """How often one call of ``fn`` makes the host wait for the GPU, counted by torch's sync debug
    mode (a warning at each); None on a CPU (tests/host_syncs.py audits the same there)."""
    if device.type != "cuda":
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def allocator_counts(device: torch.device) -> dict[str, int]:
    """The caching allocator's cudaMalloc calls, retries after freeing its cache, and device-wide
    syncs so far: time a search can lose without more operator calls (empty on a CPU)."""
    if device.type != "cuda":
        return {}
    stats = torch.cuda.memory_stats(device)
    return {name: int(stats.get(key, 0)) for name, key in (
        ("cuda_mallocs", "num_device_alloc"), ("alloc_retries", "num_alloc_retries"),
        ("allocator_syncs", "num_sync_all_streams"))}


def validation_images_per_second(searcher: _Searcher) -> float:
    device = searcher.device
    n = len(searcher.valid.labels)
    sync(device)
    start = time.perf_counter()
    searcher.validate(0)
    return n / (time.perf_counter() - start)


def search(size: dict, device: torch.device, precisions: list[Precision], deadline: float,
           spaces: list[str]) -> list[dict[str, Any]]:
    """Search iterations per second for each variant; after each NAS-Bench-201 A2M figure, its projection."""
    rows = []
    # precision outermost: the compiled variants (minutes of compilation each) come last, so a spent
    # budget skips them rather than the eager figures of the DARTS space
    for precision in precisions:
        for space in spaces:
            s = size[space]
            iters = size["iters"] if space == "nb201" else size["darts_iters"]
            for update in UPDATES if not precision.compile else ("first-order", "a2m"):
                name = f"{space} {update} {precision.name}"
                if time.perf_counter() > deadline:
                    rows.append(print_row(skipped("search", name, "time budget spent (--budget)")))
                    continue
                try:
                    row = search_row(space, update, precision, s, iters, size["warmup"], device)
                except Exception as exc:  # a variant that fails (e.g. a compile mode) must not end the suite
                    row = skipped("search", name, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
                rows.append(print_row(row))
                if "validation_images_per_second" in row:
                    rows.append(print_row(projection(row, device)))
    return rows


def search_row(space: str, update: str, precision: Precision, s: dict, iters: int, warmup: int,
               device: torch.device) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        if precision.compile:
            stack.enter_context(_fresh_compile_cache())
        built = searcher(space, update, precision, s, iters + warmup, device)
        rate, diagnostics = iterations_per_second(built, iters, warmup, precision.channels_last)
        extra = {"space": space, "update": update, "precision": precision.name, **diagnostics}
        if space == "nb201" and update == "a2m":
            extra["validation_images_per_second"] = validation_images_per_second(built)
        return figure("search", f"{space} {update} {precision.name}", rate, "iterations/s", device, **extra)


@contextlib.contextmanager
def _fresh_compile_cache():
    """Each compiled variant compiles its own network (and its compile time stays out of the rate)."""
    import torch._dynamo

    torch._dynamo.reset()
    yield


def projection(row: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Minutes of a 50-epoch NAS-Bench-201 A2-DARTS search on CIFAR-10 from a measured A2M rate."""
    epoch_seconds = (PROJECTION["iterations_per_epoch"] / row["value"]
                     + PROJECTION["validation_images"] / row["validation_images_per_second"])
    minutes = PROJECTION["epochs"] * epoch_seconds / 60
    return {**figure("projection", f"nb201 a2m 50 epochs {row['precision']}", minutes, "minutes", device),
            "peak_memory_bytes": row["peak_memory_bytes"], "from": row["name"]}


# -- evaluation training ---------------------------------------------------------------------------------
def train(size: dict, device: torch.device) -> list[dict[str, Any]]:
    from flatarch.reference_spaces.darts import genotype as G
    from flatarch.reference_spaces.darts import loaders
    from flatarch.reference_spaces.darts.evaluation_network import EvaluationNetwork

    s = size["train"]
    n = s["batch"] * (size["iters"] + size["warmup"])
    data = synthetic(n, s["image"])
    dataset = loaders.ImageTensorDataset(data.images, data.labels, augmentation=loaders.Augmentation(
        data.mean, data.std, data.crop_padding, data.flip, 16 if s["image"] >= 32 else 4))
    variants = [("fp32", False, False)]
    if device.type == "cuda":
        variants += [("bf16", True, False), ("bf16 channels-last", True, True)]
    rows = []
    for name, amp, channels_last in variants:
        torch.manual_seed(0)
        model = EvaluationNetwork(G.load("DARTS_V2"), num_classes=10, C=s["channels"], layers=s["layers"],
                                  input_size=s["image"]).to(device)
        model.drop_path_prob = 0.1
        if channels_last:
            model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        loader = loaders.DeviceLoader(dataset, s["batch"], shuffle=True, device=device)

        def step(x, y, model=model, opt=opt, amp=amp, channels_last=channels_last):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits, aux = model(x)
            loss = F.cross_entropy(logits.float(), y) + 0.4 * F.cross_entropy(aux.float(), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()

        batches = iter(loader)
        for _ in range(size["warmup"]):
            step(*next(batches))
        sync(device)
        reset_peak(device)
        with Utilisation(device) as use:
            start = time.perf_counter()
            images = 0
            for x, y in batches:
                step(x, y)
                images += len(y)
            sync(device)
            rate = images / (time.perf_counter() - start)
        rows.append(figure("train", f"darts C={s['channels']} {s['layers']} cells batch {s['batch']} {name}", rate,
                           "images/s", device, utilisation=use.percent, precision=name))
    return rows


def data_paths(size: dict, device: torch.device, workers: int) -> list[dict[str, Any]]:
    from flatarch.reference_spaces.darts import loaders
    from torch.utils.data import DataLoader

    data = synthetic(size["data_images"], 32)
    dataset = loaders.ImageTensorDataset(data.images, data.labels, augmentation=loaders.Augmentation(
        data.mean, data.std, 4, True, 16))
    batch = size["train"]["batch"]
    rows = []
    makers = {"on-device (DeviceLoader)": lambda: loaders.DeviceLoader(dataset, batch, shuffle=True, device=device),
              f"DataLoader, {workers} workers": lambda: DataLoader(dataset, batch, shuffle=True, num_workers=workers,
                                                                   pin_memory=device.type == "cuda")}
    for name, make in makers.items():
        loader = make()
        sync(device)
        start = time.perf_counter()
        images = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            images += len(y)
        sync(device)
        rows.append(figure("data", f"cifar-shaped crop/flip/cutout batches: {name}", images / (time.perf_counter()
                                                                                               - start),
                           "images/s", device))
    return rows


def layout(size: dict, device: torch.device, tiny: bool) -> list[dict[str, Any]]:
    """Grouped against per-edge supernets: the time of a pass and its operator calls."""
    from grouped_edges import build, count_calls, passes
    from step_cost import timed_round_robin

    rows = []
    for space in ("nb201", "darts"):
        torch.manual_seed(0)
        layouts, label, image = build(space, tiny, device)
        batch = size[space]["batch"]
        x = torch.randn(batch, 3, image, image, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        fns = {name: passes(net, x, y) for name, net in layouts.items()}
        for which in ("alpha gradient", "weight pass"):
            reset_peak(device)
            ms = timed_round_robin({name: fns[name][which] for name in layouts}, size["repeats"], device)
            calls = {name: count_calls(fns[name][which]) for name in layouts}
            rows.append(print_row(figure(
                "layout", f"{space} {which}, batch {batch}, grouped", 1e3 * ms["grouped"], "ms", device,
                vs_per_edge=ms["grouped"] / ms["per-edge"], per_edge_ms=1e3 * ms["per-edge"],
                operator_calls=calls["grouped"], per_edge_operator_calls=calls["per-edge"])))
    return rows


def authors(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    if not (args.darts and args.asquaredm):
        message = "pass --darts and --asquaredm checkouts to compare with the A2M authors' Architect"
        print(f"authors: skipped: {message}")
        return [skipped("authors", "a2m step vs the authors' Architect", message)]
    from a2m_vs_authors import FLOOR, compare

    s = SIZES["tiny" if args.tiny else "full"]
    sizes = dict(batch=8, channels=4, layers=5, size=16) if args.tiny else dict(batch=64, channels=16, layers=8,
                                                                               size=32)
    reset_peak(device)
    result = compare(args.darts, args.asquaredm, device, repeats=s["repeats"], **sizes)
    times = result["seconds"]
    return [figure("authors", name, t * 1e3, "ms", device, vs_authors=t / times["authors"], vs_floor=t / times[FLOOR],
                   alpha_difference=result["difference"], operator_calls=result["calls"][name])
            for name, t in times.items()]


# -- output ----------------------------------------------------------------------------------------------
def scaling(tiny: bool) -> list[dict[str, Any]]:
    """``benchmarks/distributed.py`` on 2, 4, ... of this machine's GPUs (its rows, one per update and variant)."""
    import subprocess
    import tempfile

    gpus = torch.cuda.device_count()
    if gpus < 2:
        return [skipped("scaling", "data-parallel search", f"needs 2 GPUs, this machine has {gpus} (on CPUs: "
                        "torchrun --nproc_per_node=2 benchmarks/distributed.py measures the reductions' cost)")]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed.py")
    rows = []
    for world in [n for n in (2, 4, 8) if n <= gpus]:
        for batch in (64, 256):
            with tempfile.TemporaryDirectory() as folder:
                out = os.path.join(folder, "rows.json")
                command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
                           script, "--batch", str(batch), "--json", out, *(["--tiny"] if tiny else [])]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    rows.append(skipped("scaling", f"{world} GPUs batch {batch}", done.stderr.strip()[-300:]))
                    continue
                with open(out) as f:
                    measured = json.load(f)
            for r in measured:
                name = f"{r['update']} {r['variant']} on {world} GPUs, batch {batch}"
                rows.append(figure("scaling", name, r["ms"], "ms/iteration", torch.device("cuda"),
                                   speedup=r["speedup"], vs_alone=r["vs_alone"]))
    return rows


def print_header() -> None:
    print(f"{'section':<11} {'figure':<58} {'value':>12} {'unit':<13} {'ratio':<22} {'peak MiB':>9} "
          f"{'util %':>6} {'threads':>7}")


def print_row(row: dict[str, Any]) -> dict[str, Any]:
    """Print one figure as soon as it is measured (a run cut short still shows what it measured)."""
    if "skipped" in row:
        print(f"{row['section']:<11} {row['name']:<58} skipped: {row['skipped']} (threads {row['threads']})",
              flush=True)
        return row
    ratios = "  ".join(f"{k[3:] if k.startswith('vs_') else k} {row[k]:.2f}x" for k in
                       ("vs_first_order", "vs_floor", "vs_authors", "vs_per_edge", "speedup", "vs_alone") if k in row)
    use = row.get("utilisation")
    # where a GPU search loses time without more operator calls (CUDA only: None or absent on a CPU)
    lost = "  ".join(f"{label} {row[key]:g}" for label, key in (
        ("waits/it", "waits_per_iteration"), ("late checks/it", "late_checks_per_iteration"),
        ("cudaMalloc/it", "cuda_mallocs_per_iteration"),
        ("alloc retries/it", "alloc_retries_per_iteration")) if row.get(key) is not None)
    print(f"{row['section']:<11} {row['name']:<58} {row['value']:>12.2f} {row['unit']:<13} {ratios:<22} "
          f"{row['peak_memory_bytes'] / 2**20:>9.0f} {'-' if use is None else f'{use:.0f}':>6} "
          f"{row['threads']:>7}{'  ' + lost if lost else ''}", flush=True)
    return row


def environment(device: torch.device) -> dict[str, Any]:
    return {"date": datetime.date.today().isoformat(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "pynvml": _has_pynvml(),
            "peak_memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (a CPU run in about a minute)")
    p.add_argument("--json", default=None, help="write every figure to this JSON file")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--compile", action="store_true",
                   help="include the torch.compile variants, each cell compiled as a region (default: off; "
                        "compiling the whole NAS-Bench-201 supernet took over 230 s on an H200)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers in the data section (default: 2)")
    p.add_argument("--budget", type=float, default=270.0, help="seconds after which the remaining search variants "
                   "are skipped (default: 270, so the suite ends within 5 minutes)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})")
    p.add_argument("--spaces", default="nb201,darts", help="search spaces of the search section (default: both)")
    p.add_argument("--precisions", default=None,
                   help="comma-separated search variants to run (default: all that the device supports: "
                        + ", ".join(x.name for x in PRECISIONS) + ")")
    p.add_argument("--darts", default=None, help="a quark0/darts checkout, for the authors section")
    p.add_argument("--asquaredm", default=None, help="an AsquaredM checkout, for the authors section")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    size = SIZES["tiny" if args.tiny else "full"]
    started = time.perf_counter()
    compile_on = args.compile
    reasons = {x.name: "bf16 autocast needs CUDA" for x in PRECISIONS if x.amp and device.type != "cuda"}
    reasons.update({x.name: "compiled variants off (--compile includes them)" for x in PRECISIONS
                    if x.compile and not compile_on and x.name not in reasons})
    if args.precisions:
        chosen = args.precisions.split(",")
        unknown = set(chosen) - {x.name for x in PRECISIONS}
        if unknown:
            p.error(f"unknown --precisions {', '.join(sorted(unknown))}; choose from "
                    + ", ".join(x.name for x in PRECISIONS))
        reasons.update({x.name: "not chosen (--precisions)" for x in PRECISIONS if x.name not in chosen})
    spaces = args.spaces.split(",")
    if set(spaces) - {"nb201", "darts"}:
        p.error("--spaces takes nb201, darts or nb201,darts")
    sections = args.sections.split(",")
    if set(sections) - set(SECTIONS):
        p.error(f"unknown --sections {', '.join(sorted(set(sections) - set(SECTIONS)))}; choose from "
                + ", ".join(SECTIONS))
    precisions = [x for x in PRECISIONS if x.name not in reasons]
    env = environment(device)
    print(f"gpu_suite on {env['device_name']} ({device}), torch {env['torch']}, torch threads {env['threads']}, "
          f"{'tiny' if args.tiny else 'paper'} sizes, {env['date']}")
    print_header()

    def save(rows: list[dict[str, Any]]) -> dict[str, Any]:
        result = {"environment": env, "sizes": size, "seconds": time.perf_counter() - started,
                  **{section: [r for r in rows if r["section"] == section] for section in SECTIONS}}
        if args.json:  # after every section: a run cut short keeps what it measured
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return result

    rows: list[dict[str, Any]] = []
    if "alpha_step" in sections:
        rows += [print_row(r) for r in alpha_step(size, device)]
        save(rows)
    if "layout" in sections:
        rows += layout(size, device, args.tiny)
        save(rows)
    if "search" in sections:
        rows += [print_row(r) for r in [skipped("search", f"{space} {name}", reason) for space in spaces
                                        for name, reason in reasons.items()]]
        rows += search(size, device, precisions, started + args.budget, spaces)
        save(rows)
    later = {"train": lambda: train(size, device), "data": lambda: data_paths(size, device, args.workers),
             "authors": lambda: authors(args, device), "scaling": lambda: scaling(args.tiny)}
    for name, section in later.items():
        if name in sections:
            rows += [print_row(r) for r in section()]
            save(rows)
    result = save(rows)
    print(f"{result['seconds']:.0f} s in all")
    return result


if __name__ == "__main__":
    main()
