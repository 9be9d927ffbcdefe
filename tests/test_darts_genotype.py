"""Genotype derivation (DARTS / PC-DARTS ``genotype()``) on hand-built alphas, the JSON / literal formats, names."""

import ast
import json
import os
import stat

import pytest
import torch
from flatarch.reference_spaces.darts import genotype as G
from flatarch.reference_spaces.darts import known
from flatarch.reference_spaces.darts.known import DARTS_V1, DARTS_V2, KNOWN_GENOTYPES, PC_DARTS

OP = {name: i for i, name in enumerate(G.PRIMITIVES)}


def blank() -> torch.Tensor:
    return torch.zeros(G.num_edges(), len(G.PRIMITIVES))


def test_edge_layout():
    assert G.num_edges() == 14
    assert [G.edge_index(0, 0), G.edge_index(0, 1), G.edge_index(1, 0), G.edge_index(3, 4)] == [0, 1, 2, 13]
    with pytest.raises(ValueError):
        G.edge_index(0, 2)


def test_all_ties_resolve_to_lowest_predecessors_and_ops():
    g = G.derive_genotype(blank(), blank())
    expected = [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
    assert g.normal == expected and g.reduce == expected
    assert g.normal_concat == [2, 3, 4, 5]


def test_strongest_edges_and_ops_are_kept():
    a = blank()
    # node 0: only two preds; node 1 (rows 2..4): prefer pred 2 (sep5) and pred 0 (dil3)
    a[G.edge_index(0, 0), OP["sep_conv_3x3"]] = 3.0
    a[G.edge_index(0, 1), OP["skip_connect"]] = 2.0
    a[G.edge_index(1, 2), OP["sep_conv_5x5"]] = 4.0
    a[G.edge_index(1, 0), OP["dil_conv_3x3"]] = 3.0
    a[G.edge_index(1, 1), OP["avg_pool_3x3"]] = 1.0
    # node 3: preds 4 and 3 strongest
    a[G.edge_index(3, 4), OP["dil_conv_5x5"]] = 5.0
    a[G.edge_index(3, 3), OP["max_pool_3x3"]] = 4.0
    g = G.derive_genotype(a, blank())
    assert g.normal[0:2] == [("sep_conv_3x3", 0), ("skip_connect", 1)]
    assert g.normal[2:4] == [("dil_conv_3x3", 0), ("sep_conv_5x5", 2)]  # listed by predecessor
    assert g.normal[6:8] == [("max_pool_3x3", 3), ("dil_conv_5x5", 4)]


def test_none_is_never_chosen_and_does_not_rank_edges():
    a = blank()
    # edge 0->node1 is dominated by `none`: its best real op has tiny weight, so it loses its place
    a[G.edge_index(1, 0), OP["none"]] = 10.0
    a[G.edge_index(1, 0), OP["sep_conv_3x3"]] = 5.0
    a[G.edge_index(1, 1), OP["skip_connect"]] = 1.0
    a[G.edge_index(1, 2), OP["avg_pool_3x3"]] = 1.0
    # every edge of node 0 dominated by none: still two real ops are kept
    a[G.edge_index(0, 0), OP["none"]] = 9.0
    a[G.edge_index(0, 1), OP["none"]] = 9.0
    a[G.edge_index(0, 1), OP["dil_conv_5x5"]] = 1.0
    g = G.derive_genotype(a, blank())
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    assert g.normal[2:4] == [("skip_connect", 1), ("avg_pool_3x3", 2)]
    assert g.normal[0:2] == [("max_pool_3x3", 0), ("dil_conv_5x5", 1)]


def test_two_strong_ops_on_one_edge_still_give_distinct_predecessors():
    a = blank()
    for node in range(4):
        a[G.edge_index(node, 0), OP["sep_conv_3x3"]] = 6.0
        a[G.edge_index(node, 0), OP["sep_conv_5x5"]] = 5.9
        a[G.edge_index(node, node + 1), OP["skip_connect"]] = 0.5
    g = G.derive_genotype(a, a)
    for cell in (g.normal, g.reduce):
        for node in range(4):
            inputs = [inp for _, inp in cell[2 * node: 2 * node + 2]]
            assert len(set(inputs)) == 2, cell
            assert inputs == [0, node + 1]


def test_pcdarts_betas_reweight_edges():
    a = blank()
    a[G.edge_index(1, 0), OP["sep_conv_3x3"]] = 3.0
    a[G.edge_index(1, 1), OP["sep_conv_5x5"]] = 2.5
    a[G.edge_index(1, 2), OP["dil_conv_3x3"]] = 2.0
    without = G.derive_cell(a)
    assert without[2:4] == [("sep_conv_3x3", 0), ("sep_conv_5x5", 1)]
    betas = torch.zeros(14)
    betas[G.edge_index(1, 0)] = -3.0  # node 1's edge from input 0 is down-weighted by edge normalisation
    with_betas = G.derive_cell(a, betas)
    assert with_betas[2:4] == [("sep_conv_5x5", 1), ("dil_conv_3x3", 2)]
    # betas only rescale whole edges: the op chosen on each kept edge is unchanged
    assert with_betas[:2] == without[:2]


def test_edge_normalized_betas_sum_to_one_per_node():
    b = torch.randn(14)
    w = G.edge_normalized_betas(b)
    sums = [w[0:2].sum(), w[2:5].sum(), w[5:9].sum(), w[9:14].sum()]
    assert torch.allclose(torch.stack(sums), torch.ones(4))


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="7 \\(s5\\) or 8 \\(darts\\) columns.*got 6"):
        G.derive_cell(torch.zeros(14, 6))
    with pytest.raises(ValueError, match="shape"):
        G.derive_cell(torch.zeros(13, 7))
    with pytest.raises(ValueError, match="betas"):
        G.derive_cell(blank(), torch.zeros(13))


@pytest.mark.parametrize("g", [DARTS_V1, DARTS_V2, PC_DARTS])
def test_json_and_literal_round_trip(g, tmp_path):
    assert G.from_json(json.loads(json.dumps(G.to_json(g)))) == g
    lit = G.to_literal(g)
    assert lit.startswith("Genotype(normal=[('") and "normal_concat=range(2, 6)" in lit
    assert G.from_literal(lit) == g
    path = tmp_path / "g.json"
    G.save(g, path)
    assert G.load(str(path)) == g
    (tmp_path / "g.py").write_text("PC = " + lit + "\n")
    assert G.load(str(tmp_path / "g.py")) == g


def test_original_repository_literal_parses():
    text = ("Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
            "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], "
            "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), "
            "('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 2)], reduce_concat=range(2, 6))")
    assert G.from_literal(text) == PC_DARTS
    assert G.from_literal(G.to_literal(DARTS_V2).replace("range(2, 6)", "[2, 3, 4, 5]")) == DARTS_V2


def test_literal_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = (f"Genotype(normal=__import__('os').system('touch {marker}'), normal_concat=[2], "
            "reduce=[], reduce_concat=[2])")
    with pytest.raises(ValueError):
        G.from_literal(evil)
    assert not marker.exists()
    with pytest.raises(ValueError):
        G.from_literal("Genotype(normal=[('sep_conv_3x3', 0)]*8, normal_concat=range(2, 6), "
                       "reduce=[], reduce_concat=range(2, 6))")


def test_invalid_genotypes_are_rejected():
    bad_op = G.to_json(DARTS_V2)
    bad_op["normal"][0][0] = "conv_7x7"
    with pytest.raises(ValueError, match="unknown op"):
        G.from_json(bad_op)
    bad_input = G.to_json(DARTS_V2)
    bad_input["normal"][0][1] = 2  # node 0 can only read inputs 0 and 1
    with pytest.raises(ValueError, match="input"):
        G.from_json(bad_input)
    with pytest.raises(ValueError, match="lacks"):
        G.from_json({"normal": []})


def test_known_names():
    assert G.load("DARTS_V2") == DARTS_V2 == G.load("darts-v2") == G.load(" Darts_V2 ")
    assert KNOWN_GENOTYPES["DARTS"] == DARTS_V2
    for name, genotype in KNOWN_GENOTYPES.items():
        assert G.load(name) == G.validate(genotype)
    with pytest.raises(ValueError, match="known name; give a JSON file.*known names DARTS_V1, DARTS_V2"):
        G.load("NOT_A_GENOTYPE")


def test_known_genotypes_import_nothing_from_flatarch():
    """genotype.load looks names up in known.py, so known.py must not import genotype.py (no cycle)."""
    tree = ast.parse(open(known.__file__).read())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.module in ("__future__", "collections") for n in imported)
    assert G.Genotype is known.Genotype


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"normal": 5, "normal_concat": [2], "reduce": [], "reduce_concat": [2]}', "lists of \\[op, input\\]"),
        ('{"normal": [["sep_conv_3x3", 0]], "normal_concat": 3, "reduce": [], "reduce_concat": [2]}', "concats"),
        ("{not json", "invalid JSON"),
        ("just some notes", "not a Python Genotype"),
    ],
)
def test_bad_genotype_files_name_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "g.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        G.load(str(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_unreadable_genotype_file(tmp_path):
    path = tmp_path / "g.json"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="cannot be read as a genotype file"):
        G.load(str(path))


def test_saved_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        G.save(DARTS_V2, tmp_path / "g.json")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "g.json").st_mode) == 0o644


def test_save_is_atomic_on_failure(tmp_path):
    path = tmp_path / "g.json"
    G.save(DARTS_V2, path)
    before = path.read_text()
    with pytest.raises(ValueError):
        G.save(G.Genotype(normal=[("bogus", 0)] * 2, normal_concat=[2], reduce=[], reduce_concat=[2]), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]
