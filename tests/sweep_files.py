"""Tiny sweep files for the sweep tests: digits searches of a few iterations each."""

import json
import os

import numpy as np
from flatarch.reference_spaces.nb201.benchmark import BenchmarkTable
from flatarch.reference_spaces.nb201.encoding import NUM_ARCHS

# 32 digits (16 per half), batches of 8: 2 iterations per epoch on a C = 4, one-cell-per-stage network
TINY_SETTINGS = {"dataset": "digits", "subset": 32, "batch-size": 8, "channels": 4, "cells": 1, "epochs": 1,
                 "no-plot": True}
# a DARTS-space genotype trained for one epoch on digits, C = 4, 5 cells, no loader processes
TINY_TRAIN = {"datasets": ["digits"], "epochs": 1, "channels": 4, "cells": 1, "batch-size": 64,
              "loader-workers": 0}


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def write_sweep(path, **tables):
    """A TOML file with the given tables (``grid=..., settings=..., train=..., run=...``)."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in table.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return str(path)


def synthetic_table(folder):
    """A made-up NAS-Bench-201 table (random accuracies), so that searches carry benchmark values."""
    path = os.path.join(folder, "nb201-synthetic.npz")
    if not os.path.exists(path):
        rng = np.random.default_rng(0)
        BenchmarkTable(rng.permutation(NUM_ARCHS), np.round(rng.uniform(10, 90, (NUM_ARCHS, 3)), 3),
                       source="synthetic").save(path)
    return path
