"""The dominant Hessian eigenvalue of several searches on one figure (docs/sharpness.md).

    python docs/sharpness/plot_eigenvalues.py RUN [RUN ...] --out docs/sharpness/digits-darts-vs-a2m.png

Each RUN is a ``flatarch search --hessian-every K --out RUN`` folder; its ``search.jsonl`` gives the
curve, its ``result.json`` the label (method and update). A second panel shows the NAS-Bench-201
CIFAR-10 test accuracy of each epoch's genotype, where the space has the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from flatarch.atomic_files import atomic_save_figure  # noqa: E402


def _records(run: str) -> list[dict]:
    with open(os.path.join(run, "search.jsonl")) as f:
        return [r for r in map(json.loads, f) if "projection" not in r]


def _label(run: str) -> str:
    with open(os.path.join(run, "result.json")) as f:
        config = json.load(f)["config"]
    update = {"first-order": "DARTS (first-order)", "a2m": "A2-DARTS (A2M)"}.get(config["optimizer"],
                                                                                config["optimizer"])
    return update if config["method"] == "darts" else f"{config['method']} + {config['optimizer']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="search output folders")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args()

    fig, (eigen, bench) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in args.runs:
        records, label = _records(run), _label(run)
        measured = [r for r in records if "hessian" in r]
        eigen.plot([r["epoch"] for r in measured], [r["hessian"]["eigenvalue"] for r in measured], marker="o",
                   label=label)
        scored = [r for r in records if (r.get("benchmark") or {}).get("cifar10") is not None]
        bench.plot([r["epoch"] for r in scored], [r["benchmark"]["cifar10"] for r in scored], marker="o", label=label)
    eigen.set(title="dominant eigenvalue of the Hessian w.r.t. alpha", xlabel="epoch", ylabel="eigenvalue")
    bench.set(title="NAS-Bench-201 CIFAR-10 test accuracy of the epoch's cell", xlabel="epoch",
              ylabel="accuracy (%)")
    bench.set_visible(bench.has_data())
    for ax in (eigen, bench):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.title.set_fontsize(10)
        ax.legend(fontsize=8)
    fig.suptitle(args.title)
    fig.tight_layout()
    atomic_save_figure(fig, args.out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
