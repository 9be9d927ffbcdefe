"""Shapes and method mechanics of the DARTS search network; the evaluation network's size."""

import pytest
import torch
import torch.nn.functional as F
from flatarch.reference_spaces.blocks import channel_shuffle
from flatarch.reference_spaces.darts import genotype as G
from flatarch.reference_spaces.darts.evaluation_network import EvaluationNetwork, count_parameters
from flatarch.reference_spaces.darts.known import DARTS_V2, PC_DARTS
from flatarch.reference_spaces.darts.ops import CONVOLUTIONS as OPS_GEOMETRY
from flatarch.reference_spaces.darts.ops import OPS, FactorizedReduce
from flatarch.reference_spaces.darts.space import DartsSpace
from flatarch.reference_spaces.engine.methods import get_method
from flatarch.reference_spaces.space import NetworkOptions, SearchNetwork, SearchSpace
from torch.func import functional_call

METHODS = ["darts", "pcdarts", "betadarts", "sdarts-rs", "darts-minus"]
SPACE = DartsSpace()


def tiny(method: str, ops: str | None = None):
    torch.manual_seed(0)
    options = NetworkOptions(**{**get_method(method).network.__dict__, "ops": ops,  # the method's defaults here
                                "partial_channels": get_method(method).defaults.settings.get("partial_channels", 1),
                                "edge_normalization": method == "pcdarts"})
    return SPACE.build_network(num_classes=5, in_channels=3, options=options, channels=8, cells_per_stage=1)


def test_space_contract():
    assert isinstance(SPACE, SearchSpace) and SPACE.name == "darts"
    assert SPACE.defaults["rho"] == 1e-1 and SPACE.defaults["eps"] == 1e-2
    assert isinstance(tiny("darts"), SearchNetwork)
    assert SPACE.evaluate(DARTS_V2) == {} and SPACE.reference_accuracies() == {}
    # N normal cells per stage -> 3N + 2 cells
    net = SPACE.build_network(num_classes=10, in_channels=1, options=NetworkOptions(), channels=4, cells_per_stage=2)
    assert len(net.cells) == 8 and net.stem[0].in_channels == 1 and net.stem[0].out_channels == 12
    net = SPACE.build_network(num_classes=10, in_channels=3, options=NetworkOptions(), channels=4, cells_per_stage=1)
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert net.cells_per_group() == {"normal": 3, "reduce": 2}
    assert DartsSpace(beta_normal=2.0).beta_decay_weights == {"normal": 2.0, "reduce": 1.0}
    with pytest.raises(ValueError, match="op set"):
        SPACE.build_network(num_classes=10, in_channels=3, options=NetworkOptions(ops="s9"), channels=4,
                            cells_per_stage=1)
    assert [len(nodes) for nodes in SPACE.topology("normal")] == [2, 3, 4, 5]


def test_s5_has_seven_ops_and_never_none():
    net = tiny("darts", ops="s5")
    assert net.alphas_normal.shape == (14, 7) and net.op_names["normal"] == G.OP_SETS["s5"]
    assert "none" not in G.OP_SETS["s5"] and len(G.OP_SETS["s5"]) == 7
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[:, 0] = 5.0  # max_pool_3x3 everywhere
    assert all(op == "max_pool_3x3" for op, _ in SPACE.genotype(net).normal)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    eight = tiny("darts", ops="darts")  # the original DARTS space on request
    assert eight.alphas_normal.shape == (14, 8) and eight.primitives == ("none", *G.OP_SETS["s5"])


def test_forward_takes_mixing_weights_shared_or_per_cell():
    net = tiny("darts").eval()
    x = torch.randn(2, 3, 16, 16)
    default = {g: torch.softmax(a, -1) for g, a in net.alphas().items()}
    with torch.no_grad():
        assert torch.allclose(net(x), net(x, default))
        per_cell = {g: [w] * net.cells_per_group()[g] for g, w in default.items()}
        assert torch.allclose(net(x), net(x, per_cell))
        other = dict(default, normal=torch.full_like(default["normal"], 1 / 8))
        assert not torch.allclose(net(x), net(x, other))
        # one normal cell changed alone changes the output
        cells = [default["normal"]] * 3
        cells[1] = torch.full_like(default["normal"], 1 / 8)
        assert not torch.allclose(net(x), net(x, {"normal": cells}))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_scales_resolution(name, stride):
    op = OPS[name](4, stride, False)
    y = op(torch.randn(2, 4, 8, 8))
    assert y.shape == (2, 4, 8 // stride, 8 // stride)


def test_factorized_reduce_odd_resolution():
    assert FactorizedReduce(4, 6)(torch.randn(1, 4, 7, 7)).shape == (1, 6, 4, 4)


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("method", METHODS)
def test_search_network_shapes_and_parameters(method):
    net = tiny(method)
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5)
    arch = net.arch_parameters()
    assert arch["alphas_normal"].shape == (14, 7) and arch["alphas_reduce"].shape == (14, 7)  # s5, the default
    assert net.primitives == G.OP_SETS["s5"] == G.GENOTYPE_OPS and "none" not in net.primitives
    assert ("betas_normal" in arch) == (method == "pcdarts")
    names = dict(net.named_parameters())
    for name, p in arch.items():
        assert names[name] is p  # addressable by attribute path (module_loss)
    ids = {id(p) for p in arch.values()}
    assert not any(id(p) in ids for p in net.weight_parameters())
    assert len(net.weight_parameters()) + len(arch) == len(list(net.parameters()))
    groups = net.alphas()
    assert set(groups) == {"normal", "reduce"} and groups["normal"] is net.alphas_normal
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]


def test_default_network_is_the_papers():
    net = SPACE.build_network(num_classes=10, in_channels=3, options=NetworkOptions(),
                              channels=SPACE.defaults["channels"], cells_per_stage=SPACE.defaults["cells_per_stage"])
    assert len(net.cells) == 8
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    assert net.stem[0].out_channels == 48 and net.classifier.in_features == 4 * 64


@pytest.mark.parametrize("method", METHODS)
def test_alpha_gradients_and_functional_swap(method):
    net = tiny(method).eval()
    x = torch.randn(2, 3, 16, 16)
    arch = net.arch_parameters()
    net(x).sum().backward()
    for name, p in arch.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    swapped = {k: torch.randn_like(v) for k, v in arch.items()}
    with torch.no_grad():
        y0 = net(x)
        y1 = functional_call(net, swapped, (x,))
    assert not torch.allclose(y0, y1)
    # the live tensors are untouched by the swap
    assert torch.equal(net(x).detach(), y0)


def test_pcdarts_partial_channels_and_genotype_uses_betas():
    net = tiny("pcdarts")
    conv = net.cells[0].sources[0].convolutions.depthwise_1[0]  # sep_conv_3x3's first depthwise conv
    assert conv.in_channels == 4 * 8 // 4  # C/K channels for each of the 4 edges that read the input
    with torch.no_grad():
        net.alphas_normal.zero_()
        op = net.primitives.index
        net.alphas_normal[G.edge_index(1, 0), op("sep_conv_3x3")] = 3.0
        net.alphas_normal[G.edge_index(1, 1), op("sep_conv_5x5")] = 2.5
        net.alphas_normal[G.edge_index(1, 2), op("dil_conv_3x3")] = 2.0
        net.betas_normal.zero_()
        net.betas_normal[G.edge_index(1, 0)] = -3.0
    g = SPACE.genotype(net)
    assert g.normal[2:4] == [("sep_conv_5x5", 1), ("dil_conv_3x3", 2)]
    assert SPACE.genotype_to_json(g)["normal"][2] == ["sep_conv_5x5", 1]


def batch_norm(h: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(h, None, None, training=True, eps=1e-5)


def per_edge_factorized_reduce(module: FactorizedReduce, k: int, h: torch.Tensor) -> torch.Tensor:
    """Copy ``k`` of a FactorizedReduce with copies, the single-edge way."""
    h = F.relu(h)
    half = module.conv_1.out_channels // module.copies
    rows = slice(k * half, (k + 1) * half)
    return batch_norm(torch.cat([F.conv2d(h, module.conv_1.weight[rows], stride=2),
                                 F.conv2d(h[:, :, 1:, 1:], module.conv_2.weight[rows], stride=2)], 1))


def per_edge_op(group, k: int, name: str, x: torch.Tensor, stride: int) -> torch.Tensor:
    """Op ``name`` of the ``k``-th edge of a grouped ``OutgoingEdges``, computed the per-edge way (DARTS
    ``operations.py``) with that edge's kernels cut out of the grouped ones."""
    if name == "none":
        return torch.zeros_like(x[:, :, ::stride, ::stride])
    if name == "max_pool_3x3":
        return batch_norm(F.max_pool2d(x, 3, stride, 1))
    if name == "avg_pool_3x3":
        return batch_norm(F.avg_pool2d(x, 3, stride, 1, count_include_pad=False))
    if name == "skip_connect":
        return x if stride == 1 else per_edge_factorized_reduce(group.skip, k, x)
    convs, c = group.convolutions, x.shape[1]
    separable, kernel, padding, dilation = OPS_GEOMETRY[name]

    def rows(block: int) -> slice:
        return slice(block * c, (block + 1) * c)

    i = convs.names.index(name)
    h = F.conv2d(F.relu(x), convs.depthwise_1[i].weight[rows(k)], stride=stride, padding=padding,
                 dilation=dilation, groups=c)
    h = batch_norm(F.conv2d(h, convs.pointwise_1.weight[rows(i * convs.m + k)]))
    if separable:
        j = convs.separable.index(name)
        h = F.conv2d(F.relu(h), convs.depthwise_2[j].weight[rows(k)], padding=padding, groups=c)
        h = batch_norm(F.conv2d(h, convs.pointwise_2.weight[rows(j * convs.m + k)]))
    return h


def reference_cell(cell, s0, s1, weights, betas, aux_weight, primitives, pc):
    """The DARTS search cell by its per-edge definition (``model_search.py`` ``Cell`` and ``MixedOp``,
    PC-DARTS' partial channels and edge normalisation, DARTS-' auxiliary skip)."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    for node in range(cell.steps):
        total = 0
        for source in range(node + 2):
            e, stride = G.edge_index(node, source), 2 if cell.reduction and source < 2 else 1
            group, x = cell.sources[source], states[source]
            k = [edge for _, edge in cell.outgoing[source]].index(e)
            active = x[:, :x.shape[1] // pc]
            out = sum(weights[e, o] * per_edge_op(group, k, name, active, stride) for o, name in enumerate(primitives))
            if pc > 1:
                rest = x[:, x.shape[1] // pc:]
                out = channel_shuffle(torch.cat([out, F.max_pool2d(rest, 2, 2) if stride == 2 else rest], 1), pc)
            if group.aux_skip is not None:
                out = out + aux_weight * (x if stride == 1 else per_edge_factorized_reduce(group.aux_skip, k, x))
            total = total + (out if betas is None else betas[e] * out)
        states.append(total)
    return torch.cat(states[-cell.multiplier:], 1)


@pytest.mark.parametrize("method,ops,reduction", [
    ("darts", None, False), ("darts", None, True), ("darts", "s5", True), ("pcdarts", None, False),
    ("pcdarts", None, True), ("darts-minus", None, True), ("darts-minus", "s5", False)])
def test_grouped_cell_is_the_per_edge_cell(method, ops, reduction):
    """Grouping the edges by the node they read changes the number of operator calls, not the
    function: values and gradients (alphas, betas, kernels) match the per-edge definition in float64."""
    net = tiny(method, ops).double()
    cell = net.cells[1 if reduction else 0]
    assert cell.reduction == reduction
    c_prev_prev = (cell.preprocess0.conv_1.in_channels if isinstance(cell.preprocess0, FactorizedReduce)
                   else cell.preprocess0[1].in_channels)
    s0 = torch.randn(2, c_prev_prev, 8, 8, dtype=torch.float64)
    s1 = torch.randn(2, cell.preprocess1[1].in_channels, 8, 8, dtype=torch.float64)
    alpha = torch.randn(14, len(net.primitives), dtype=torch.float64, requires_grad=True)
    beta = torch.randn(14, dtype=torch.float64, requires_grad=True)
    normalised = net.options.edge_normalization
    inputs = [alpha, beta, *cell.parameters()] if normalised else [alpha, *cell.parameters()]
    results = []
    for compute in (cell, lambda *a: reference_cell(cell, *a, net.primitives, net.options.partial_channels)):
        out = compute(s0, s1, alpha.softmax(-1), G.edge_normalized_betas(beta) if normalised else None, 0.4)
        probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        results.append((out, torch.autograd.grad((out * probe).sum(), inputs)))
    (got, grads), (want, want_grads) = results
    assert torch.allclose(got, want, atol=1e-10)
    for g, h in zip(grads, want_grads):
        assert torch.allclose(g, h, atol=1e-9)


def test_darts_minus_auxiliary_skip_on_every_edge_input():
    net = tiny("darts-minus").eval()
    x = torch.randn(2, 3, 16, 16)
    assert net.auxiliary_skip_weight == 1.0
    with torch.no_grad():
        y_start = net(x)
        net.set_auxiliary_skip(0.5)
        assert net.auxiliary_skip_weight == 0.5
        y_mid = net(x)
        net.set_auxiliary_skip(0.0)
        y_end = net(x)
    assert not torch.allclose(y_start, y_mid) and not torch.allclose(y_mid, y_end)
    # reduction edges from the cell inputs carry a FactorizedReduce skip, the others an identity
    reduce_cell = net.cells[1]
    assert isinstance(reduce_cell.sources[0].aux_skip, FactorizedReduce)
    assert isinstance(reduce_cell.sources[2].aux_skip, torch.nn.Identity)  # edges from node 2: stride 1
    plain = tiny("darts")
    plain.set_auxiliary_skip(0.5)  # no-op without the auxiliary skip
    assert plain.auxiliary_skip_weight == 0.0


@pytest.mark.parametrize("dataset,classes,size", [("cifar10", 10, 32), ("imagenet16-120", 120, 16)])
def test_evaluation_network_shapes(dataset, classes, size):
    torch.manual_seed(0)
    net = EvaluationNetwork(PC_DARTS, num_classes=classes, C=8, layers=5, input_size=size)
    net.train()
    net.drop_path_prob = 0.2
    logits, aux = net(torch.randn(2, 3, size, size))
    assert logits.shape == (2, classes) and aux.shape == (2, classes)
    net.eval()
    logits, aux = net(torch.randn(2, 3, size, size))
    assert logits.shape == (2, classes) and aux is None


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    net = EvaluationNetwork(DARTS_V2, C=8, layers=3, auxiliary=False)
    x = torch.randn(4, 3, 32, 32)
    net.drop_path_prob = 0.5
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x)[0], net(x)[0])
        net.train()
        torch.manual_seed(1)
        a = net(x)[0]
        torch.manual_seed(2)
        b = net(x)[0]
    assert not torch.allclose(a, b)


def test_darts_v2_parameter_count():
    net = EvaluationNetwork(DARTS_V2, num_classes=10, C=36, layers=20, auxiliary=True)
    n = count_parameters(net)
    n_aux = count_parameters(net, include_auxiliary=True)
    print(f"DARTS_V2 CIFAR-10 evaluation network: {n:,} parameters without the auxiliary head "
          f"({n_aux:,} with it); the DARTS paper reports 3.3M")
    assert 3.2e6 <= n <= 3.5e6
    assert n == 3_349_342  # the count of the original implementation
    assert n_aux > n


def test_pcdarts_backward_with_channels_last_input():
    # Regression: slicing channels of a channels-last activation crashed the CPU backward
    # (segfault in torch 2.14); the partial-channel slices are made contiguous.
    net = SPACE.build_network(num_classes=10, in_channels=1, options=get_method("pcdarts").network, channels=8,
                              cells_per_stage=1)
    x = torch.randn(4, 16, 16, 1).permute(0, 3, 1, 2)  # NHWC strides, as on-device augmentation can produce
    net(x).sum().backward(inputs=net.weight_parameters())
    assert all(p.grad is not None for p in net.weight_parameters() if p.requires_grad)
