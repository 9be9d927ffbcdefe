"""Make ``nb201_table.npz``, the NAS-Bench-201 table shipped with flatarch, from the compact CSV.

Usage (from the repository root)::

    python reference_spaces/nb201/data/make_table.py /path/to/nats_bench.csv

The CSV is the NATS-Bench topology export (columns ``CIFAR10TestAccuracy200Epochs``,
``CIFAR100TestAccuracy200Epochs``, ``ImageNetTestAccuracy200Epochs``, ``ArchitectureString``,
``UniqueString``; one row per cell in benchmark index order). The script writes the ``.npz`` beside
itself (float64 accuracies: lossless), reads it back, checks every accuracy and every cell against
the CSV's own text, bit for bit, and prints the file's size and SHA-256. The same conversion is
``flatarch nb201 export --from nats_bench.csv --out nb201_table.npz``; this script adds the checks.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import sys

import numpy as np
from flatarch.reference_spaces.nb201.benchmark import BenchmarkTable, read_table
from flatarch.reference_spaces.nb201.table_formats import CSV_ACCURACY_COLUMNS, CSV_ARCH_COLUMN

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nb201_table.npz")


def check_against_csv(table: BenchmarkTable, csv_path: str) -> None:
    """Every row of the CSV: the same cell at the same index and exactly the same accuracies."""
    with open(csv_path, newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle)):
            assert table.arch_at(index) == row[CSV_ARCH_COLUMN], index
            expected = [float(row[c]) for c in CSV_ACCURACY_COLUMNS]
            assert table.test_accuracy[index].tolist() == expected, index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="the NATS-Bench topology CSV (nats_bench.csv)")
    args = parser.parse_args(argv)
    read_table(args.csv).to_npz(OUT)
    table = read_table(OUT)
    check_against_csv(table, args.csv)
    assert np.array_equal(table.test_accuracy, read_table(args.csv).test_accuracy)
    with open(OUT, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes, sha256 {digest}; every value equals the CSV's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
