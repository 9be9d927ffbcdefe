"""``flatarch geometry``: neighbourhoods, paths and accuracy barriers (paper section 4.1).

* ``flatarch geometry nb201 [--table PATH] [--dataset D ...] --out DIR``: exact analysis of the
  NAS-Bench-201 table (the one shipped with flatarch unless ``--table`` or
  ``$FLATARCH_NB201_TABLE`` names another): KS table (paper table 8 layout, CSV + Markdown),
  barriers.json, locality.json and PNG plots.
* ``flatarch geometry nb201 --arch ARCH --out DIR``: one cell (e.g. the found one): its radius-r
  neighbourhoods and the accuracy barrier to each dataset's optimum, printed and in DIR/cell.json.
* ``flatarch geometry darts --genotype FILE|NAME --radius R [--samples K] [--seed S] --out DIR``:
  sample neighbour genotypes to train with ``flatarch train --genotype FILE``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from flatarch.cli.nb201 import TABLE_HELP, guarded
from flatarch.reference_spaces.nb201.benchmark import ARCH_SPELLINGS

PROG = "flatarch geometry"


# -------------------------------------------------------------------- nb201: settings
def _parse_refs(text: str) -> dict[str, float]:
    """``A=94.3,B=85.86,C=75.44`` -> ``{"A": 94.3, ...}``."""
    refs = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            refs[name.strip()] = float(value if sep else "missing")
        except ValueError:
            raise ValueError(
                f"--tier-refs {text!r}: give tier reference accuracies like A=94.3,B=85.86,C=75.44"
            ) from None
    return refs


def _parse_thresholds(text: str) -> tuple[float, float]:
    """``70,50`` -> ``(70.0, 50.0)``."""
    try:
        high, low = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--tier-thresholds {text!r}: give two accuracies HIGH,LOW like 93,85") from None
    return high, low


def _per_dataset(values: list[str] | None, datasets: list[str], flag: str) -> dict[str, str]:
    """``[DATASET:]VALUE`` items -> {dataset: VALUE}; an unprefixed VALUE needs exactly one dataset."""
    out = {}
    for item in values or []:
        head, sep, rest = item.partition(":")
        if sep and head in datasets:
            out[head] = rest
        elif len(datasets) == 1:
            out[datasets[0]] = item
        else:
            raise ValueError(f"{flag} {item!r}: prefix it with the dataset (e.g. cifar10:...) when analysing several")
    return out


def _datasets(wanted: list[str] | None) -> list[str]:
    from flatarch.reference_spaces.nb201.benchmark import DATASETS, canonical_dataset

    wanted = wanted or ["all"]
    return list(DATASETS) if "all" in wanted else list(dict.fromkeys(canonical_dataset(d) for d in wanted))


def _tier_settings(args, datasets: list[str]) -> dict[str, tuple]:
    """Per dataset: ``(reference accuracies or None, (high, low) thresholds or None)``, all parsed
    before any analysis so that a bad value stops the command before it writes anything."""
    refs = _per_dataset(args.tier_refs, datasets, "--tier-refs")
    thresholds = _per_dataset(args.tier_thresholds, datasets, "--tier-thresholds")
    return {
        ds: (
            _parse_refs(refs[ds]) if ds in refs else None,
            _parse_thresholds(thresholds[ds]) if ds in thresholds else None,
        )
        for ds in datasets
    }


# -------------------------------------------------------------------- nb201: the whole space
def _analyse_space(table, datasets: list[str], args):
    from flatarch.reference_spaces.nb201.geometry_report import NB201Report, analyse_dataset, make_tiers

    settings = _tier_settings(args, datasets)
    report = NB201Report()
    for ds in datasets:
        acc = table.accuracies(ds)
        tiers = make_tiers(acc, ds, *settings[ds], args.tier_window)
        report.datasets[ds] = analyse_dataset(
            acc, ds, tiers, table.code_of_index, args.pairs, tuple(args.radii), args.random_pairs, args.seed
        )
    return report


def _print_barriers(report) -> None:
    for ds, g in report.datasets.items():
        for warning in g.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for name, p in g.paths.items():
            b = p.barrier
            print(
                f"{ds} {name}: acc {p.accuracy_path[0]:.2f} -> {p.accuracy_path[-1]:.2f}, "
                f"barrier min-cell {b.raw_min_cell:.2f} (norm {b.normalised_min_cell:.4f}), "
                f"min-level-mean {b.raw_min_level_mean:.2f} (norm {b.normalised_min_level_mean:.4f})"
            )


def _run_space(table, datasets: list[str], args) -> int:
    from flatarch.reference_spaces.nb201.geometry_report import write_report

    start = time.perf_counter()
    report = _analyse_space(table, datasets, args)
    analysis_s = time.perf_counter() - start
    cell_stats = {ds: table.accuracies(ds) for ds in datasets} if args.cell_stats else None
    written = write_report(report, args.out, make_plots=not args.no_plots, cell_stats=cell_stats)
    print(f"analysis of {', '.join(datasets)} (radii {args.radii}) took {analysis_s:.2f} s")
    _print_barriers(report)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


# -------------------------------------------------------------------- nb201: one cell
def _run_cell(table, datasets: list[str], args) -> int:
    from flatarch.geometry.report import atomic_write_json
    from flatarch.reference_spaces.nb201.benchmark import code_of_argument
    from flatarch.reference_spaces.nb201.cell_report import cell_report, report_dict, report_lines

    code = code_of_argument(table, args.arch, "--arch")
    report = cell_report(table, code, datasets, tuple(args.radii))
    print(f"cell {table.arch_at(int(table.index_of_code[code]))} (index {int(table.index_of_code[code])}, code {code})")
    print("\n".join(report_lines(report)))
    path = os.path.join(args.out, "cell.json")
    atomic_write_json(path, report_dict(table, code, report))
    print(f"wrote {path}")
    return 0


def _run_nb201(args) -> int:
    from flatarch.reference_spaces.nb201.benchmark import load_table
    from flatarch.reference_spaces.run_folder import check_writable

    datasets = _datasets(args.dataset)
    table = load_table(args.table)
    check_writable(args.out)
    return (_run_cell if args.arch else _run_space)(table, datasets, args)


# -------------------------------------------------------------------- darts
def _run_darts(args) -> int:
    from flatarch.reference_spaces.darts.genotype import load
    from flatarch.reference_spaces.darts.geometry import (
        neighbour_bound,
        path_tree_genotypes,
        sample_neighbour_genotypes,
        write_neighbours,
        write_path,
    )
    from flatarch.reference_spaces.run_folder import check_writable

    # everything is read, sampled and checked before the first file is written
    genotype = load(args.genotype)
    target = load(args.target) if args.target else None
    cells = ("normal", "reduce") if args.cells == "both" else (args.cells,)
    if args.samples < 1:
        raise ValueError(f"--samples must be a whole number >= 1, got {args.samples}")
    for radius in args.radius:
        if radius < 1:
            raise ValueError(f"--radius must be whole numbers >= 1, got {radius}")
        most = neighbour_bound(genotype, radius, cells)
        if args.samples > most:
            exact = "has exactly" if radius == 1 else "has at most"
            raise ValueError(f"--samples {args.samples} is more than the {most} distinct radius-{radius} neighbours "
                             f"this genotype {exact} (--cells {args.cells}); give --samples {most} or fewer")
    sample = sample_neighbour_genotypes(genotype, tuple(args.radius), args.samples, args.seed, cells)
    levels = path_tree_genotypes(genotype, target, args.max_path_archs) if target else None
    check_writable(args.out)
    manifest = write_neighbours(sample, args.out)
    print(f"wrote {len(manifest['neighbours'])} neighbour genotypes under {args.out} (manifest.json lists them)")
    if levels is not None:
        path = write_path(genotype, levels, args.out)
        print(f"wrote the path tree (distance {path['distance']}) under {args.out}/path")
    print("train each with: flatarch train --genotype FILE (see docs/geometry.md for the early-stop flag)")
    return 0


# -------------------------------------------------------------------- parsers
def _add_nb201_tiers(nb) -> None:
    nb.add_argument(
        "--tier-window", type=float, default=0.5, metavar="W",
        help="tiers are [ref - w, ref + w] around the reference accuracies (default: 0.5)",
    )
    nb.add_argument(
        "--tier-refs", action="append", metavar="[DATASET:]A=acc,B=acc,C=acc",
        help="tier reference accuracies (default: the paper's A/B/C models, section 5.1.1); repeatable",
    )
    nb.add_argument(
        "--tier-thresholds", action="append", metavar="[DATASET:]HIGH,LOW",
        help="tiers as bands: A >= HIGH > B >= LOW > C (instead of windows); repeatable",
    )
    nb.add_argument(
        "--pairs", choices=["paper", "auto"], default="paper",
        help="path endpoints: the paper's benchmark-index pairs, or picked per tier (model nearest the tier "
        "centre and its closest-accuracy radius-3 neighbour within 1 point) (default: paper)",
    )
    nb.add_argument(
        "--random-pairs", type=int, default=100_000, metavar="N",
        help="random pairs for the difference baseline (default: 100000)",
    )


def _add_nb201(sub) -> None:
    nb = sub.add_parser(
        "nb201", help="exact analysis of the NAS-Bench-201 accuracy table, or of one cell in it (--arch)",
        description="Whole-space locality, KS table and A/B/C barriers of the NAS-Bench-201 table; with --arch, "
        "the neighbourhoods of one cell and its accuracy barrier to each dataset's optimum.",
    )
    nb.add_argument("--out", required=True, metavar="DIR", help="output folder")
    nb.add_argument("--table", metavar="PATH", help=TABLE_HELP)
    nb.add_argument(
        "--dataset", action="append",
        help="cifar10, cifar100, imagenet16-120 or all; repeatable (default: all)",
    )
    nb.add_argument(
        "--arch", metavar="ARCH",
        help=f"analyse this cell only ({ARCH_SPELLINGS}); writes DIR/cell.json. "
        "Only --dataset, --radii, --table and --out apply to it",
    )
    nb.add_argument(
        "--radii", type=int, nargs="+", default=[1, 2, 3], metavar="R", help="neighbourhood radii (default: 1 2 3)"
    )
    _add_nb201_tiers(nb)
    nb.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random pairs (default: 0)")
    nb.add_argument("--no-plots", action="store_true", help="skip the PNG plots (default: off)")
    nb.add_argument(
        "--cell-stats", action="store_true",
        help="also write every cell's radius-r neighbourhood statistics (cell_stats_<dataset>.csv) (default: off)",
    )
    nb.set_defaults(func=guarded(PROG, _run_nb201))


def _add_darts(sub) -> None:
    da = sub.add_parser("darts", help="sample neighbour genotypes in the DARTS space")
    da.add_argument("--out", required=True, metavar="DIR", help="output folder")
    da.add_argument(
        "--genotype", required=True,
        help="genotype JSON file, file with a Genotype(...) literal, or a known name (DARTS_V2, PC_DARTS, ...)",
    )
    da.add_argument("--radius", type=int, nargs="+", default=[1], metavar="R", help="neighbour radii (default: 1)")
    da.add_argument("--samples", type=int, default=30, metavar="K", help="neighbours per radius (default: 30)")
    da.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed; radius r uses S + r (default: 0)")
    da.add_argument(
        "--cells", choices=["both", "normal", "reduce"], default="both",
        help="which cell matrices moves modify (default: both)",
    )
    da.add_argument("--target", help="also write the path tree to this genotype (file or name)")
    da.add_argument(
        "--max-path-archs", type=int, default=200, metavar="N",
        help="refuse a path tree holding more architectures than this (default: 200)",
    )
    da.set_defaults(func=guarded(PROG, _run_darts))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "geometry",
        help="neighbourhoods, paths and accuracy barriers in architecture space",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="space", metavar="SPACE")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    _add_nb201(sub)
    _add_darts(sub)
