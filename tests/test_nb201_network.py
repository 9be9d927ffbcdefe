"""The NAS-Bench-201 search network: shapes, parameter count, method options, genotype."""

import pytest
import torch
import torch.nn.functional as F
from flatarch.reference_spaces.blocks import channel_shuffle
from flatarch.reference_spaces.engine.methods import get_method
from flatarch.reference_spaces.nb201 import EDGES, OPS, sequence_to_arch
from flatarch.reference_spaces.nb201.search_network import NB201SearchNetwork, SearchCell
from flatarch.reference_spaces.nb201.space import NB201Space
from flatarch.reference_spaces.registry import available_spaces, get_space
from flatarch.reference_spaces.space import SearchNetwork, SearchSpace


def expected_weight_count(C: int, N: int, classes: int, in_ch: int = 3) -> int:
    """Counted from the architecture definition (NAS-Bench-201, Dong & Yang 2020, section 3), independently
    of the code:

    stem conv 3x3 in->C + BN(C) affine; per search cell 6 edges x (conv1x1 + conv3x3, BN without
    affine) = 6 * 10 c^2; reduction c->2c: conv3x3 c->2c + BN, conv3x3 2c->2c + BN, shortcut
    conv1x1 c->2c; final BN(4C) affine; linear 4C->classes with bias.
    """
    total = 9 * in_ch * C + 2 * C
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        total += N * 6 * (c * c + 9 * c * c)
        if stage < 2:
            d = 2 * c
            total += 9 * c * d + 2 * d + 9 * d * d + 2 * d + c * d
    total += 2 * 4 * C + 4 * C * classes + classes
    return total


def test_parameter_count_matches_nb201_search_network():
    net = NB201SearchNetwork(num_classes=10, in_channels=3, channels=16, cells_per_stage=5)
    weights = sum(p.numel() for p in net.weight_parameters())
    # The NAS-Bench-201 DARTS search network (C=16, N=5, CIFAR-10) has 1,686,106 weights
    # (about 1.69 M) plus 6 x 5 = 30 alphas.
    assert weights == expected_weight_count(16, 5, 10) == 1_686_106
    assert sum(p.numel() for p in net.arch_parameters().values()) == 30
    assert sum(p.numel() for p in net.parameters()) == 1_686_136
    assert len([m for m in net.cells if isinstance(m, SearchCell)]) == 15


def test_output_shapes_and_parameter_split():
    for in_ch, size, classes in [(3, 32, 10), (3, 16, 120), (1, 16, 10)]:
        net = NB201SearchNetwork(num_classes=classes, in_channels=in_ch, channels=4, cells_per_stage=1)
        out = net(torch.randn(2, in_ch, size, size))
        assert out.shape == (2, classes)
        arch = {id(p) for p in net.arch_parameters().values()}
        weights = {id(p) for p in net.weight_parameters()}
        assert not arch & weights and arch | weights == {id(p) for p in net.parameters()}
        assert expected_weight_count(4, 1, classes, in_ch) == sum(p.numel() for p in net.weight_parameters())


def edge_position(edge: int) -> int:
    """Where an edge's kernels sit among those of the edges that read the same node (by target)."""
    source = EDGES[edge][1]
    return sorted((e for e, (_, s) in enumerate(EDGES) if s == source), key=lambda e: EDGES[e][0]).index(edge)


def edge_convolutions(cell: SearchCell, edge: int, h: torch.Tensor) -> dict[str, torch.Tensor]:
    """The edge's two convolutions before BatchNorm, with its kernels cut out of the grouped ones."""
    group, k, c = cell.sources[EDGES[edge][1]], edge_position(edge), h.shape[1]
    return {"nor_conv_1x1": F.conv2d(F.relu(h), group.conv1.weight[k * c:(k + 1) * c]),
            "nor_conv_3x3": F.conv2d(F.relu(h), group.conv3.weight[k * c:(k + 1) * c], padding=1)}


def reference_nodes(cell: SearchCell, x: torch.Tensor, w: torch.Tensor, aux_skip: float = 0.0) -> list[torch.Tensor]:
    """The cell's nodes by the per-edge definition (NAS-Bench-201's ``SearchCell``: node j sums
    ``sum_o w[e, o] * o(h_i)`` over its incoming edges e = (j <- i)), each BatchNorm on its own
    channels."""
    nodes = [x]
    for target in (1, 2, 3):
        total = 0
        for e, (t, source) in enumerate(EDGES):
            if t != target:
                continue
            h = nodes[source]
            convs = {name: F.batch_norm(out, None, None, training=True, eps=1e-5)
                     for name, out in edge_convolutions(cell, e, h).items()}
            outputs = {"none": torch.zeros_like(h), "skip_connect": h,
                       "avg_pool_3x3": F.avg_pool2d(h, 3, stride=1, padding=1, count_include_pad=False), **convs}
            total = total + sum(w[e, o] * outputs[name] for o, name in enumerate(OPS)) + aux_skip * x
        nodes.append(total)
    return nodes


@pytest.mark.parametrize("aux_skip", [0.0, 0.3])
def test_grouped_cell_is_the_per_edge_cell(aux_skip):
    """Grouping the edges by the node they read changes the number of operator calls, not the
    function: values and gradients (alphas and kernels) match the per-edge definition in float64."""
    torch.manual_seed(0)
    cell = SearchCell(4).double()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    alpha = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    got = cell(x, alpha.softmax(-1), aux_skip)
    want = reference_nodes(cell, x, alpha.softmax(-1), aux_skip)[-1]
    assert torch.allclose(got, want, atol=1e-12)
    probe = torch.randn_like(got)
    inputs = [alpha, *cell.parameters()]
    grads = torch.autograd.grad((got * probe).sum(), inputs)
    want_grads = torch.autograd.grad((want * probe).sum(), inputs)
    for g, h in zip(grads, want_grads):
        assert torch.allclose(g, h, atol=1e-10)


def test_grouped_batchnorm_keeps_per_edge_running_statistics():
    """One BatchNorm over the grouped channels tracks each edge's statistics as its own would."""
    torch.manual_seed(0)
    cell = SearchCell(4)
    x = torch.randn(8, 4, 5, 5)
    w = torch.softmax(torch.randn(6, 5), -1)
    cell(x, w)
    with torch.no_grad():
        nodes = reference_nodes(cell, x, w)
        for e, (_, source) in enumerate(EDGES):
            bn, k, m = cell.sources[source].bn, edge_position(e), cell.sources[source].m
            convs = edge_convolutions(cell, e, nodes[source])
            for offset, name in ((0, "nor_conv_3x3"), (m * 4, "nor_conv_1x1")):
                rows = slice(offset + k * 4, offset + (k + 1) * 4)
                # momentum 0.1 from zero: the running mean is a tenth of the batch mean
                assert torch.allclose(bn.running_mean[rows], 0.1 * convs[name].mean((0, 2, 3)), atol=1e-6)


def test_every_alpha_gets_a_gradient():
    net = NB201SearchNetwork(channels=4, cells_per_stage=1, partial_channels=2)
    assert isinstance(net, SearchNetwork) and set(net.arch_parameters()) == {"arch_alpha"}
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert net.arch_alpha.grad.abs().sum() > 0


def test_pcdarts_runs_the_whole_cell_on_a_quarter_of_the_channels():
    """AsquaredM nasbench201/model.py forward_pc: the cell on x[:, :C/K], then one concat with the rest
    and one channel shuffle per cell; no edge-normalisation betas."""
    torch.manual_seed(0)
    net = NB201SearchNetwork(channels=8, cells_per_stage=1, partial_channels=4).eval()
    cell = net.cells[0]
    conv = cell.sources[0].conv3
    assert conv.in_channels == 2 and conv.out_channels == 3 * 2  # 1/K of C = 8, for node 0's 3 edges
    x = torch.randn(2, 8, 6, 6)
    w = torch.softmax(torch.randn(6, 5), -1)
    with torch.no_grad():
        expected = channel_shuffle(torch.cat([cell._body(x[:, :2], w, 0.0), x[:, 2:]], dim=1), 4)
        assert torch.equal(cell(x, w), expected)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_darts_minus_adds_the_cell_input_on_every_edge():
    """AsquaredM nasbench201/model.py default_forward: every edge adds a * x, x the cell's input."""
    torch.manual_seed(0)
    net = NB201SearchNetwork(channels=4, cells_per_stage=1, auxiliary_skip=True).eval()
    cell = net.cells[0]
    x = torch.randn(2, 4, 6, 6)
    w = torch.softmax(torch.randn(6, 5), -1)
    with torch.no_grad():
        plain = cell(x, w, 0.0)
        # node 1 gets 1 skip, node 2 gets 2 (and node 1's), node 3 three: the output grows by a * x
        # through each edge; with every op but skip weighted 0 the cell is linear in x
        only_skip = torch.zeros(6, 5)
        only_skip[:, 1] = 1.0
        n1 = x + 0.5 * x
        n2 = (x + 0.5 * x) + (n1 + 0.5 * x)
        n3 = (x + 0.5 * x) + (n1 + 0.5 * x) + (n2 + 0.5 * x)
        assert torch.allclose(cell(x, only_skip, 0.5), n3)
    assert not torch.allclose(plain, cell(x, w, 0.5))
    assert net.aux_skip_weight == 1.0
    net.set_auxiliary_skip(0.25)
    assert net.aux_skip_weight == 0.25
    plain_net = NB201SearchNetwork(channels=4, cells_per_stage=1)
    plain_net.set_auxiliary_skip(0.5)
    assert plain_net.aux_skip_weight == 0.0


def test_genotype_is_argmax_per_edge():
    space = get_space("nb201")
    assert isinstance(space, SearchSpace) and "nb201" in available_spaces()
    assert space.defaults["rho"] == 1e-2 and space.defaults["eps"] == 1e-2
    net = space.build_network(num_classes=10, in_channels=3, options=get_method("pcdarts").network, channels=8,
                              cells_per_stage=1)
    seq = (3, 3, 3, 1, 3, 0)
    with torch.no_grad():
        net.arch_alpha.zero_()
        for e, op in enumerate(seq):
            net.arch_alpha[e, op] = 1.0
    assert space.genotype(net) == sequence_to_arch(seq)
    assert net.alphas()["cell"] is net.arch_alpha and space.beta_decay_weights == {"cell": 1.0}
    assert net.op_names == {"cell": OPS} and net.edge_names["cell"][2] == "2<-1"
    assert space.genotype_from_json(space.genotype_to_json(space.genotype(net))) == sequence_to_arch(seq)


def test_evaluate_uses_the_table(monkeypatch):
    class FakeTable:
        def lookup(self, arch):
            return {"cifar10": 1.0, "cifar100": 2.0, "imagenet16-120": 3.0}

    space = NB201Space()
    monkeypatch.setattr(space, "table", lambda: FakeTable())
    assert space.evaluate("x") == {"cifar10": 1.0, "cifar100": 2.0, "imagenet16-120": 3.0}


def test_evaluate_with_the_real_table(nats_bench_csv):
    from flatarch.reference_spaces.nb201 import code_to_arch

    space = NB201Space(table=nats_bench_csv)
    # the optimal cell of each dataset (they differ: the CIFAR-10 optimum scores 46.34 on ImageNet16-120)
    for dataset, best in [("cifar10", 94.37), ("cifar100", 73.51), ("imagenet16-120", 47.31)]:
        arch = code_to_arch(int(space.table().accuracies(dataset).argmax()))
        assert space.evaluate(arch)[dataset] == pytest.approx(best, abs=0.005)
        assert space.reference_accuracies()["optimum"][dataset] == pytest.approx(best, abs=0.005)
    skips = sequence_to_arch((1,) * 6)
    assert space.reference_accuracies()["all-skip"] == space.evaluate(skips)
    assert space.evaluate(skips) == pytest.approx(
        {"cifar10": 54.30, "cifar100": 15.61, "imagenet16-120": 16.32}, abs=0.01)


def test_bad_table_path_fails_early(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--table"):
        NB201Space(table=str(tmp_path / "missing.csv"))
    monkeypatch.setenv("FLATARCH_NB201_TABLE", str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="FLATARCH_NB201_TABLE"):
        NB201Space()
