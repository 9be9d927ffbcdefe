"""``flatarch geometry``: neighbourhoods, paths and accuracy barriers (paper section 4.1).

* ``flatarch geometry nb201 --table CSV [--dataset D ...] --out DIR``: exact analysis of a
  NAS-Bench-201 table: KS table (paper table 8 layout, CSV + Markdown), barriers.json,
  locality.json and PNG plots.
* ``flatarch geometry darts --genotype FILE|NAME --radius R [--samples K] [--seed S] --out DIR``:
  sample neighbour genotypes to train with ``flatarch train --genotype FILE``.
"""

from __future__ import annotations

import argparse
import sys
import time


def _parse_refs(text: str) -> dict[str, float]:
    refs = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"tier references look like A=94.3,B=85.86,C=75.44; got {text!r}")
        refs[name.strip()] = float(value)
    return refs


def _per_dataset(values: list[str] | None, datasets: list[str], flag: str) -> dict[str, str]:
    """``[DATASET:]SPEC`` items -> {dataset: SPEC}; an unprefixed SPEC needs exactly one dataset."""
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


def _run_nb201(args) -> int:
    import numpy as np

    from flatarch.reference_spaces.nb201.benchmark import (
        DATASETS,
        TABLE_ENV,
        BenchmarkTable,
        canonical_dataset,
        find_table,
    )
    from flatarch.reference_spaces.nb201.geometry_report import (
        NB201Report,
        analyse_dataset,
        make_tiers,
        write_report,
    )

    wanted = args.dataset or ["all"]
    datasets = list(DATASETS) if "all" in wanted else list(dict.fromkeys(canonical_dataset(d) for d in wanted))
    table_path = find_table(args.table)
    if table_path is None:
        raise ValueError(f"no NAS-Bench-201 table: give --table PATH (CSV, .npz or official file) or set {TABLE_ENV}")
    refs = _per_dataset(args.tier_refs, datasets, "--tier-refs")
    thresholds = _per_dataset(args.tier_thresholds, datasets, "--tier-thresholds")
    table = BenchmarkTable.load(table_path)
    code_of_index = np.asarray(table.code_of_index)
    report = NB201Report()
    start = time.perf_counter()
    for ds in datasets:
        acc = table.accuracies(ds)
        th = None
        if ds in thresholds:
            high, low = (float(x) for x in thresholds[ds].split(","))
            th = (high, low)
        tiers = make_tiers(acc, ds, _parse_refs(refs[ds]) if ds in refs else None, th, args.tier_window)
        report.datasets[ds] = analyse_dataset(
            acc, ds, tiers, code_of_index, args.pairs, tuple(args.radii), args.random_pairs, args.seed
        )
    analysis_s = time.perf_counter() - start
    cell_stats = {ds: table.accuracies(ds) for ds in datasets} if args.cell_stats else None
    written = write_report(report, args.out, make_plots=not args.no_plots, cell_stats=cell_stats)
    print(f"analysis of {', '.join(datasets)} (radii {args.radii}) took {analysis_s:.2f} s")
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
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def _run_darts(args) -> int:
    from flatarch.reference_spaces.darts.genotype import load
    from flatarch.reference_spaces.darts.geometry import (
        path_tree_genotypes,
        sample_neighbour_genotypes,
        write_neighbours,
        write_path,
    )

    # everything is read, sampled and checked before the first file is written
    genotype = load(args.genotype)
    target = load(args.target) if args.target else None
    cells = ("normal", "reduce") if args.cells == "both" else (args.cells,)
    sample = sample_neighbour_genotypes(genotype, tuple(args.radius), args.samples, args.seed, cells)
    levels = path_tree_genotypes(genotype, target, args.max_path_archs) if target else None
    manifest = write_neighbours(sample, args.out)
    print(f"wrote {len(manifest['neighbours'])} neighbour genotypes under {args.out} (manifest.json lists them)")
    if levels is not None:
        path = write_path(genotype, levels, args.out)
        print(f"wrote the path tree (distance {path['distance']}) under {args.out}/path")
    print("train each with: flatarch train --genotype FILE (see docs/geometry.md for the early-stop flag)")
    return 0


def _guarded(fn):
    def run(args) -> int:
        try:
            return fn(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"flatarch geometry: error: {exc}", file=sys.stderr)
            return 2

    return run


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "geometry",
        help="neighbourhoods, paths and accuracy barriers in architecture space",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="space", metavar="SPACE")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    nb = sub.add_parser(
        "nb201",
        help="exact analysis of a NAS-Bench-201 accuracy table",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    nb.add_argument(
        "--table", help="benchmark table: compact CSV, flatarch .npz or official file (default: $FLATARCH_NB201_TABLE)"
    )
    nb.add_argument(
        "--dataset",
        action="append",
        help="cifar10, cifar100, imagenet16-120 or all (repeatable; default all)",
    )
    nb.add_argument("--out", required=True, help="output directory")
    nb.add_argument("--radii", type=int, nargs="+", default=[1, 2, 3], help="neighbourhood radii")
    nb.add_argument(
        "--tier-window",
        type=float,
        default=0.5,
        help="tiers are [ref - w, ref + w] around the reference accuracies",
    )
    nb.add_argument(
        "--tier-refs",
        action="append",
        metavar="[DATASET:]A=acc,B=acc,C=acc",
        help="tier reference accuracies (default: the paper's A/B/C models)",
    )
    nb.add_argument(
        "--tier-thresholds",
        action="append",
        metavar="[DATASET:]HIGH,LOW",
        help="tiers as bands: A >= HIGH > B >= LOW > C (instead of windows)",
    )
    nb.add_argument(
        "--pairs",
        choices=["paper", "auto"],
        default="paper",
        help="path endpoints: the paper's benchmark-index pairs, or picked per tier "
        "(model nearest the tier centre and its closest-accuracy radius-3 neighbour within 1 point)",
    )
    nb.add_argument("--random-pairs", type=int, default=100_000, help="random pairs for the difference baseline")
    nb.add_argument("--seed", type=int, default=0)
    nb.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    nb.add_argument(
        "--cell-stats",
        action="store_true",
        help="also write every cell's radius-r neighbourhood statistics (cell_stats_<dataset>.csv)",
    )
    nb.set_defaults(func=_guarded(_run_nb201))

    da = sub.add_parser(
        "darts",
        help="sample neighbour genotypes in the DARTS space",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    da.add_argument(
        "--genotype", required=True, help="genotype JSON file, file with a Genotype(...) literal, or a known name"
    )
    da.add_argument("--radius", type=int, nargs="+", default=[1], help="radius (or radii) of the neighbours")
    da.add_argument("--samples", type=int, default=30, help="neighbours per radius (the paper samples 30)")
    da.add_argument("--seed", type=int, default=0)
    da.add_argument(
        "--cells",
        choices=["both", "normal", "reduce"],
        default="both",
        help="which cell matrices moves modify",
    )
    da.add_argument("--target", help="also write the path tree to this genotype (file or name)")
    da.add_argument("--max-path-archs", type=int, default=200)
    da.add_argument("--out", required=True, help="output directory")
    da.set_defaults(func=_guarded(_run_darts))
