"""NAS-Bench-201 benchmark table: the shipped table, formats, validation, official-API export and
the `flatarch nb201` CLI."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from flatarch.reference_spaces.errors import UsageError
from flatarch.reference_spaces.nb201 import benchmark as bm
from flatarch.reference_spaces.nb201.arch_strings import all_arch_strings
from flatarch.reference_spaces.nb201.benchmark import (
    CSV_HEADER,
    DATASETS,
    BenchmarkTable,
    BenchmarkTableError,
    canonical_dataset,
    find_table,
    load_table,
    packaged_table,
)
from flatarch.reference_spaces.nb201.encoding import NUM_ARCHS, arch_to_code, code_to_arch, sequence_to_code
from flatarch.reference_spaces.nb201.evaluation_network import cell_profile
from flatarch.reference_spaces.nb201.isomorphism import unique_string

from flatarch.atomic_files import atomic_write
from flatarch.cli import build_parser, main

CIFAR100_OPTIMUM = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def synthetic():
    """A made-up full table: a random benchmark order and random accuracies."""
    rng = np.random.default_rng(0)
    codes = rng.permutation(NUM_ARCHS)
    acc = np.round(rng.uniform(0, 100, size=(NUM_ARCHS, 3)), 3)
    return BenchmarkTable(codes, acc, source="synthetic")


@pytest.fixture
def table():
    """The table shipped with flatarch (no CSV needed)."""
    return packaged_table()


# ------------------------------------------------------------------ the real table (shipped with flatarch)
def test_real_table_known_cells(table):
    assert len(table) == NUM_ARCHS
    skip = table.lookup(ALL_SKIP)
    assert [round(skip[d], 2) for d in DATASETS] == [54.30, 15.61, 16.32]
    spec = table.lookup(CIFAR100_OPTIMUM)
    assert list(spec) == list(DATASETS)
    assert round(spec["cifar100"], 2) == 73.51


def test_real_table_optima_from_argmax(table):
    """The per-dataset optima, found by argmax, are 94.37 / 73.51 / 47.31 (the "Optimal" row of the A2M
    paper's table 2, citing NAS-Bench-201, prints 94.37 / 73.51 / 46.71).

    They are three different cells: the often-quoted cell CIFAR100_OPTIMUM is the CIFAR-100 optimum; on
    CIFAR-10 it is 0.01 short (94.36) and on ImageNet16-120 it scores 46.34.
    """
    best = {d: int(np.argmax(table.accuracies(d))) for d in DATASETS}
    assert [round(float(table.accuracies(d)[best[d]]), 2) for d in DATASETS] == [94.37, 73.51, 47.31]
    assert code_to_arch(best["cifar100"]) == CIFAR100_OPTIMUM
    assert best["cifar10"] != best["cifar100"] != best["imagenet16-120"]
    assert code_to_arch(best["cifar10"]) == (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    spec = table.lookup(CIFAR100_OPTIMUM)
    assert [round(spec[d], 2) for d in DATASETS] == [94.36, 73.51, 46.34]


def test_accuracies_agree_with_lookup(table):
    rng = np.random.default_rng(1)
    for code in rng.choice(NUM_ARCHS, size=50, replace=False).tolist():
        arch = code_to_arch(code)
        looked = table.lookup(arch)
        for d in DATASETS:
            acc = table.accuracies(d)
            assert acc.dtype == np.float64 and acc.shape == (NUM_ARCHS,)
            assert acc[code] == looked[d] == table.accuracy(arch, d)
        index = table.index_of(arch)
        assert table.arch_at(index) == arch
        assert list(table.test_accuracy[index]) == [looked[d] for d in DATASETS]


def test_shipped_table_equals_the_csv(table, nats_bench_csv):
    """Every cell at the same index, every accuracy bit for bit equal to the CSV's text."""
    with open(nats_bench_csv, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert [table.arch_at(i) for i in range(NUM_ARCHS)] == [r[3] for r in rows]
    assert table.test_accuracy.tolist() == [[float(x) for x in r[:3]] for r in rows]
    assert table.accuracy("index:9930", "cifar10") == float(rows[9930][0])


def test_permutations_are_inverse(table):
    n = np.arange(NUM_ARCHS)
    assert np.array_equal(table.index_of_code[table.code_of_index], n)
    assert np.array_equal(table.code_of_index[table.index_of_code], n)
    assert sorted(table.code_of_index.tolist()) == n.tolist()


def test_unique_string_column_reproduced(nats_bench_csv):
    with open(nats_bench_csv, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert all(unique_string(r[3]) == r[4] for r in rows)


def test_csv_npz_round_trip(nats_bench_csv, tmp_path):
    npz, out_csv = tmp_path / "t.npz", tmp_path / "t.csv"
    table = BenchmarkTable.load(nats_bench_csv)
    table.to_npz(npz)
    again = BenchmarkTable.load(npz)
    assert np.array_equal(again.code_of_index, table.code_of_index)
    assert np.array_equal(again.test_accuracy, table.test_accuracy)  # bit-for-bit floats
    again.to_csv(out_csv)
    # Writing back gives the original file byte for byte (same header, floats, unique strings).
    assert out_csv.read_bytes() == open(nats_bench_csv, "rb").read()
    assert os.path.getsize(npz) < os.path.getsize(nats_bench_csv) / 5


def test_load_is_fast(nats_bench_csv):
    import time

    start = time.perf_counter()
    BenchmarkTable.from_csv(nats_bench_csv)
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------ API details on synthetic tables
def test_arch_forms(synthetic):
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    code = arch_to_code(arch)
    assert code == sequence_to_code((3,) * 6)
    forms = [
        arch,
        "333333",
        "3,3,3,3,3,3",
        " 3 3 3 3 3 3 ",
        (3,) * 6,
        [3] * 6,
        np.full(6, 3),
        f"code:{code}",
        f"index:{synthetic.index_of_code[code]}",
        types.SimpleNamespace(tostr=lambda: arch),
    ]
    for form in forms:
        assert synthetic.code_of(form) == code, form
        assert synthetic.lookup(form) == synthetic.lookup(arch)
    with pytest.raises(TypeError, match="ambiguous"):
        synthetic.lookup(5)
    for bad in (
        "33333",
        "3,3,3",
        "555555",
        "index:15625",
        "code:-1",
        "index:x",
        "|foo~0|+|x|+|y|",
        "nonsense",
    ):
        with pytest.raises(ValueError):
            synthetic.lookup(bad)


def test_dataset_aliases(synthetic):
    for alias in ("ImageNet16-120", "imagenet", "IMAGENET16", "in16"):
        assert canonical_dataset(alias) == "imagenet16-120"
    assert canonical_dataset("CIFAR-10") == "cifar10" and canonical_dataset("C100") == "cifar100"
    assert synthetic.accuracy("333333", "ImageNet16-120") == synthetic.lookup("333333")["imagenet16-120"]
    with pytest.raises(ValueError, match="unknown NAS-Bench-201 dataset 'svhn'"):
        synthetic.accuracies("svhn")


def test_arrays_are_read_only(synthetic):
    with pytest.raises(ValueError):
        synthetic.accuracies("cifar10")[0] = 1.0
    with pytest.raises(ValueError):
        synthetic.code_of_index[0] = 1


def test_template_arch_strings_match_encoding():
    assert all_arch_strings() == tuple(code_to_arch(c) for c in range(NUM_ARCHS))


def test_constructor_validation():
    codes = np.arange(NUM_ARCHS)
    acc = np.full((NUM_ARCHS, 3), 50.0)
    with pytest.raises(BenchmarkTableError, match="exactly once"):
        BenchmarkTable(np.r_[codes[:-1], 0], acc)
    bad = acc.copy()
    bad[7, 2] = np.nan
    with pytest.raises(BenchmarkTableError, match=r"index 7 \(imagenet16-120\)"):
        BenchmarkTable(codes, bad)
    with pytest.raises(BenchmarkTableError, match="shape"):
        BenchmarkTable(codes, acc[:, :2])


def test_find_table(tmp_path, monkeypatch):
    assert find_table() is None
    path = tmp_path / "t.csv"
    path.write_text("x")
    assert find_table(path) == str(path)
    monkeypatch.setenv(bm.TABLE_ENV, str(path))
    assert find_table() == str(path)
    monkeypatch.setenv(bm.TABLE_ENV, str(tmp_path / "gone.csv"))
    with pytest.raises(BenchmarkTableError, match=rf"gone.csv \(from \${bm.TABLE_ENV}\): does not exist; point"):
        find_table()
    with pytest.raises(BenchmarkTableError, match=r"missing.csv \(from --table\): does not exist; give --table"):
        find_table(tmp_path / "missing.csv")


# ------------------------------------------------------------------ load_table: which table, errors
def test_load_table_without_path_or_env_is_the_shipped_table():
    assert load_table() is packaged_table() is packaged_table()  # read once per process
    assert packaged_table().source.endswith(os.path.join("nb201", "data", "nb201_table.npz"))


def test_shipped_table_optima_and_all_skip():
    """The benchmark's reference numbers from the shipped table alone (no CSV needed)."""
    table = load_table()
    best = [round(float(table.accuracies(d).max()), 2) for d in DATASETS]
    assert best == [94.37, 73.51, 47.31]
    assert [round(v, 2) for v in table.lookup(ALL_SKIP).values()] == [54.30, 15.61, 16.32]


def test_load_table_explicit_path_beats_env_beats_shipped(tmp_path, monkeypatch, synthetic):
    explicit, env = tmp_path / "explicit.npz", tmp_path / "env.csv"
    synthetic.to_npz(explicit)
    BenchmarkTable(synthetic.code_of_index, synthetic.test_accuracy / 2, source="half").to_csv(env)
    monkeypatch.setenv(bm.TABLE_ENV, str(env))
    assert load_table(explicit).source == str(explicit)
    assert np.array_equal(load_table(explicit).test_accuracy, synthetic.test_accuracy)
    assert load_table().source == str(env)
    assert np.array_equal(load_table().test_accuracy, synthetic.test_accuracy / 2)


@pytest.mark.parametrize("origin", ["--table", "env"])
def test_load_table_errors_name_path_origin_and_fix_once(tmp_path, monkeypatch, origin):
    bad = tmp_path / "bad.csv"
    bad.write_text("CIFAR10TestAccuracy200Epochs\n")
    missing = tmp_path / "missing.npz"
    for path, problem in [(bad, "line 1: header lacks column"), (missing, "does not exist")]:
        if origin == "env":
            monkeypatch.setenv(bm.TABLE_ENV, str(path))
        with pytest.raises(BenchmarkTableError) as info:
            load_table(path if origin == "--table" else None)
        where = "--table" if origin == "--table" else f"${bm.TABLE_ENV}"
        message = str(info.value)
        assert message.startswith(f"{path} (from {where}): {problem}"), message
        assert "table shipped with flatarch" in message and "\n" not in message
        assert message.count(str(path)) == 1 and "NAS-Bench-201 table:" not in message
    assert issubclass(BenchmarkTableError, UsageError)


def test_wheel_ships_the_table(tmp_path):
    """An installed wheel holds data/nb201_table.npz and its README, and load_table() reads it."""
    root = Path(__file__).resolve().parents[1]
    wheel_dir = tmp_path / "wheel"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w"]
    built = subprocess.run([*pip_wheel, str(wheel_dir), str(root)], capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    with zipfile.ZipFile(next(wheel_dir.glob("flatarch-*.whl"))) as wheel:
        names = set(wheel.namelist())
        wheel.extractall(tmp_path / "site")
    data = "flatarch/reference_spaces/nb201/data/"
    assert {data + "nb201_table.npz", data + "README.md"} <= names and data + "make_table.py" not in names
    probe = "from flatarch.reference_spaces.nb201.benchmark import load_table as l; t = l(); print(t.source, len(t))"
    env = {k: v for k, v in os.environ.items() if k != bm.TABLE_ENV} | {"PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [str(tmp_path / "site" / data / "nb201_table.npz"), str(NUM_ARCHS)]


# ------------------------------------------------------------------ corrupt files give clear errors
@pytest.fixture(scope="module")
def synthetic_lines(synthetic, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "synthetic.csv"
    synthetic.to_csv(path)
    return path.read_text().splitlines()


def _write_rows(path, lines, edit=None):
    lines = list(lines)
    if edit is not None:
        lines = edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _replace_field(lines, line_no, field, value):
    row = next(csv.reader([lines[line_no - 1]]))
    row[field] = value
    lines[line_no - 1] = ",".join(row)
    return lines


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda ls: ls[:-1], r"15624 data rows; .* exactly 15625"),
        (lambda ls: ls + [ls[5]], r"line 15627: more than 15625 data rows"),
        (
            lambda ls: _replace_field(ls, 10, 3, "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
            r"line 10: bad ArchitectureString: unknown op 'conv'",
        ),
        (
            lambda ls: _replace_field(ls, 4, 1, "abc"),
            r"line 4: CIFAR100TestAccuracy200Epochs is 'abc', not a number",
        ),
        (
            lambda ls: _replace_field(ls, 4, 2, "101.5"),
            r"line 4: ImageNetTestAccuracy200Epochs is '101.5'; .*\[0, 100\]",
        ),
        (lambda ls: _replace_field(ls, 4, 0, "nan"), r"line 4: CIFAR10TestAccuracy200Epochs is 'nan'"),
        (lambda ls: ls[:20] + [ls[3]] + ls[21:], r"line 21: cell .* already appeared on line 4"),
        (lambda ls: ["a,b,c"] + ls[1:], r"line 1: header lacks column\(s\) CIFAR10TestAccuracy200Epochs"),
        (lambda ls: ls[:6] + [ls[6] + ",extra"] + ls[7:], r"line 7: 6 fields, the header has 5"),
        (lambda ls: [], r"empty file"),
    ],
)
def test_corrupt_csv_errors(tmp_path, synthetic_lines, edit, message):
    path = _write_rows(tmp_path / "bad.csv", synthetic_lines, edit)
    with pytest.raises(BenchmarkTableError, match=message) as info:
        BenchmarkTable.load(path)
    assert str(path) in str(info.value)


def test_csv_without_unique_column_and_trailing_blank(tmp_path, synthetic, synthetic_lines):
    def drop_unique(lines):
        return [line.rsplit(",", 1)[0] for line in lines] + [""]

    path = _write_rows(tmp_path / "short.csv", synthetic_lines, drop_unique)
    again = BenchmarkTable.load(path)
    assert np.array_equal(again.test_accuracy, synthetic.test_accuracy)


def test_corrupt_npz_errors(tmp_path, synthetic):
    good = tmp_path / "t.npz"
    synthetic.to_npz(good)
    data = dict(np.load(good))
    for name, change, message in [
        ("missing.npz", lambda d: d.pop("code_of_index"), "missing arrays code_of_index"),
        ("version.npz", lambda d: d.update(version=np.array(99)), "version 99"),
        ("dup.npz", lambda d: d.update(code_of_index=np.zeros(NUM_ARCHS, np.int32)), "exactly once"),
        ("range.npz", lambda d: d.update(test_accuracy=-d["test_accuracy"] - 1), "percent in"),
    ]:
        broken = dict(data)
        change(broken)
        np.savez(tmp_path / name, **broken)
        with pytest.raises(BenchmarkTableError, match=message) as info:
            BenchmarkTable.load(tmp_path / name)
        assert name in str(info.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BenchmarkTableError, match="not a readable .npz"):
        BenchmarkTable.load(tmp_path / "junk.npz")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01")
    with pytest.raises(BenchmarkTableError, match="not a NAS-Bench-201 table"):
        BenchmarkTable.load(tmp_path / "junk.bin")


def test_sniffs_format_without_suffix(tmp_path, synthetic):
    synthetic.to_npz(tmp_path / "a.npz")
    os.rename(tmp_path / "a.npz", tmp_path / "a_table")
    synthetic.to_csv(tmp_path / "b_table")
    for name in ("a_table", "b_table"):
        assert np.array_equal(BenchmarkTable.load(tmp_path / name).test_accuracy, synthetic.test_accuracy)


def test_writes_are_atomic(tmp_path, synthetic):
    path = tmp_path / "keep.csv"
    path.write_text("precious")

    def fail(handle):
        handle.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "precious"
    assert os.listdir(tmp_path) == ["keep.csv"]
    synthetic.to_csv(path)
    assert path.read_text().startswith(",".join(CSV_HEADER) + "\n")
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.npz"
        synthetic.to_npz(fresh)  # temp files are 0600; the result gets ordinary permissions
        assert os.stat(fresh).st_mode & 0o777 == 0o644
    finally:
        os.umask(old_umask)


# ------------------------------------------------------------------ export through the official APIs
class FakeNATSTopology:
    """Mimics the official topology API: len, arch(i), get_more_info(i, dataset, iepoch, hp, is_random)."""

    def __init__(self, table: BenchmarkTable):
        self.meta_archs = [table.arch_at(i) for i in range(len(table))]
        self._acc = table.test_accuracy
        self.calls = 0

    def __len__(self):
        return len(self.meta_archs)

    def arch(self, index):
        return self.meta_archs[index]

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        self.calls += 1
        column = {"cifar10": 0, "cifar100": 1, "ImageNet16-120": 2}[dataset]  # official spellings only
        # The 12-epoch runs and single random seeds give other numbers: a wrong call shows up.
        value = self._acc[index, column]
        if hp != "200":
            value = value / 2
        if is_random is not False:
            value = value / 3
        info = {"train-loss": 0.1, "train-accuracy": 99.0, "test-loss": 0.5, "test-accuracy": value}
        if dataset != "cifar10":
            info.update({"valid-accuracy": 1.0, "valtest-accuracy": 2.0})
        return info


class FakeLegacyNB201(FakeNATSTopology):
    """NAS-Bench-201 API v1.0: 200 epochs selected by use_12epochs_result=False."""

    def get_more_info(self, index, dataset, iepoch=None, use_12epochs_result=False, is_random=True):
        return super().get_more_info(
            index, dataset, iepoch, "12" if use_12epochs_result else "200", is_random
        )


@pytest.mark.parametrize("fake", [FakeNATSTopology, FakeLegacyNB201])
def test_from_api(synthetic, fake):
    api = fake(synthetic)
    seen = []
    table = BenchmarkTable.from_api(api, progress=lambda it: (seen.append(1), it)[1])
    assert seen == [1] and api.calls == 3 * NUM_ARCHS
    assert np.array_equal(table.code_of_index, synthetic.code_of_index)
    assert np.array_equal(table.test_accuracy, synthetic.test_accuracy)


def test_from_api_rejects_bad_api(synthetic):
    api = FakeNATSTopology(synthetic)
    api.meta_archs[3] = "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(BenchmarkTableError, match="index 3: bad architecture"):
        BenchmarkTable.from_api(api)
    api.meta_archs = api.meta_archs[:10]
    with pytest.raises(BenchmarkTableError, match="lists 10 architectures"):
        BenchmarkTable.from_api(api)


def test_open_official_api_dispatch(tmp_path, monkeypatch, synthetic):
    created = []
    fake_nats = types.ModuleType("nats_bench")

    def create(path, space, fast_mode=False, verbose=True):
        created.append((path, space, fast_mode, verbose))
        return FakeNATSTopology(synthetic)

    fake_nats.create = create
    fake_201 = types.ModuleType("nas_201_api")
    fake_201.NASBench201API = lambda path, verbose=True: (
        created.append((path, verbose)),
        FakeLegacyNB201(synthetic),
    )[1]
    monkeypatch.setitem(sys.modules, "nats_bench", fake_nats)
    monkeypatch.setitem(sys.modules, "nas_201_api", fake_201)

    archive = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    archive.mkdir()
    pbz2 = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    pth = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    pbz2.write_bytes(b"x")
    pth.write_bytes(b"x")
    for path, expected in [
        (archive, (str(archive), "tss", True, False)),
        (pbz2, (str(pbz2), "tss", False, False)),
        (pth, (str(pth), False)),
    ]:
        table = BenchmarkTable.load(path)
        assert created[-1] == expected
        assert np.array_equal(table.test_accuracy, synthetic.test_accuracy)


def test_official_api_missing_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nas_201_api", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "nats_bench", None)
    pth = tmp_path / "b.pth"
    pth.write_bytes(b"x")
    with pytest.raises(BenchmarkTableError, match=r"b.pth: reading it needs .*pip install nas-bench-201"):
        BenchmarkTable.load(pth)
    with pytest.raises(BenchmarkTableError, match="pip install nats_bench"):
        BenchmarkTable.load(tmp_path)


# ------------------------------------------------------------------ CLI
def test_cli_lookup_uses_the_shipped_table_by_default(table, capsys):
    rc = main(["nb201", "lookup", CIFAR100_OPTIMUM, "111111", "index:0"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].split() == ["arch", "index", *DATASETS, "params(M)", "FLOPs(M)"]
    assert out[1].split()[:5] == [CIFAR100_OPTIMUM, str(table.index_of(CIFAR100_OPTIMUM)), "94.36", "73.51", "46.34"]
    assert out[2].split()[2:5] == ["54.30", "15.61", "16.32"]
    assert out[3].split()[:2] == [table.arch_at(0), "0"]
    assert len({len(line) for line in out}) == 1  # aligned columns


def test_cli_lookup_json_with_the_csv_from_env(table, nats_bench_csv, capsys, monkeypatch):
    monkeypatch.setenv(bm.TABLE_ENV, nats_bench_csv)
    assert main(["nb201", "lookup", "1,1,1,1,1,1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "arch": ALL_SKIP,
            "index": table.index_of(ALL_SKIP),
            "code": arch_to_code(ALL_SKIP),
            "test_accuracy": table.lookup(ALL_SKIP),
            "profile": cell_profile(ALL_SKIP),
        }
    ]


def test_cli_table_option_overrides_env_and_shipped(tmp_path, synthetic, capsys, monkeypatch):
    path = tmp_path / "t.npz"
    synthetic.to_npz(path)
    monkeypatch.setenv(bm.TABLE_ENV, str(tmp_path / "ignored.csv"))
    assert main(["nb201", "lookup", "333333", "--table", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["test_accuracy"] == synthetic.lookup("333333")


@pytest.mark.parametrize(
    "args, message",
    [
        (["|nor_conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "ARCH: unknown op 'nor_conv'"),
        (["33333"], "ARCH: a NAS-Bench-201 op sequence has 6 op indices"),
        (["index:x"], "ARCH: 'index:x': index must be followed by an integer"),
        (["code:15625"], r"ARCH: 'code:15625': code must be in \[0, 15624\]"),
        (["333333", "--table", "nope.csv"], r"nope.csv \(from --table\): does not exist; give --table"),
        (["333333", "--table", "bad.csv"], r"bad.csv \(from --table\): line 1: header lacks"),
    ],
)
def test_cli_lookup_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.csv").write_text("CIFAR10TestAccuracy200Epochs\n")
    assert main(["nb201", "lookup", *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert re.match("flatarch nb201: error: " + message, err), err
    assert len(err.splitlines()) == 1 and captured.out == ""


def test_cli_lookup_bad_env_table_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(bm.TABLE_ENV, str(tmp_path / "gone.npz"))
    assert main(["nb201", "lookup", "333333"]) == 2
    err = capsys.readouterr().err
    assert f"gone.npz (from ${bm.TABLE_ENV}): does not exist; point ${bm.TABLE_ENV} at" in err
    assert "unset it to use the table shipped with flatarch" in err


def _subcommand(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize(
    "command", [("nb201", "lookup"), ("nb201", "export"), ("geometry", "nb201"), ("geometry", "darts")]
)
def test_cli_help_has_text_for_every_option_and_no_none_defaults(command):
    parser = _subcommand(build_parser(), *command)
    assert all(action.help for action in parser._actions), [a.dest for a in parser._actions if not a.help]
    assert "default: None" not in parser.format_help()


def test_cli_export(tmp_path, synthetic, monkeypatch, capsys):
    fake_nats = types.ModuleType("nats_bench")
    fake_nats.create = lambda path, space, fast_mode=False, verbose=True: FakeNATSTopology(synthetic)
    monkeypatch.setitem(sys.modules, "nats_bench", fake_nats)
    archive = tmp_path / "archive"
    archive.mkdir()
    out = tmp_path / "table.csv"
    assert main(["nb201", "export", "--from", str(archive), "--out", str(out), "--quiet"]) == 0
    with open(out, newline="") as handle:
        assert tuple(next(csv.reader(handle))) == CSV_HEADER
    exported = BenchmarkTable.load(out)
    assert np.array_equal(exported.test_accuracy, synthetic.test_accuracy)
    # CSV -> npz conversion through the same command.
    assert main(["nb201", "export", "--from", str(out), "--out", str(tmp_path / "t.npz")]) == 0
    assert "wrote 15625 cells" in capsys.readouterr().err
    assert np.array_equal(BenchmarkTable.load(tmp_path / "t.npz").code_of_index, synthetic.code_of_index)

    monkeypatch.setitem(sys.modules, "nats_bench", None)
    assert main(["nb201", "export", "--from", str(archive), "--out", str(tmp_path / "x.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: {archive}: reading it needs the official `nats_bench` package" in err
    assert "pip install nats_bench" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()
    assert main(["nb201", "export", "--from", str(out), "--out", str(tmp_path), "--quiet"]) == 2
    assert f"--out {tmp_path} is a folder" in capsys.readouterr().err
    # an existing table is never replaced silently: refused, byte-identical; --overwrite replaces it
    mine = tmp_path / "mine.csv"
    mine.write_text("my own table\n")
    assert main(["nb201", "export", "--from", str(out), "--out", str(mine), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {mine} exists; choose another path, or pass --overwrite" in err and err.count("\n") == 1
    assert mine.read_text() == "my own table\n"
    assert main(["nb201", "export", "--from", str(out), "--out", str(mine), "--quiet", "--overwrite"]) == 0
    assert np.array_equal(BenchmarkTable.load(mine).test_accuracy, synthetic.test_accuracy)
