"""flatarch.adapters.naslib: A2MDARTSOptimizer on stand-ins shaped like NASLib's classes."""

from __future__ import annotations

import copy
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from adapter_checks import StepSpy, adam_step_reference, assert_bitwise_equal, independent_a2m, make_batch
from flatarch.adapters import naslib
from naslib_standins import DARTSOptimizer, SearchSpace

import flatarch

FlatDARTS = naslib.flat_darts_optimizer(DARTSOptimizer)


def adapted(cls, seed=0, space_type="nasbench201", **kwargs):
    torch.manual_seed(seed)
    space = SearchSpace(space_type=space_type)
    torch.manual_seed(seed + 1)  # the alphas NASLib draws in adapt_search_space
    opt = cls(**kwargs)
    opt.adapt_search_space(space, "cifar10")
    opt.before_training()
    return opt


def batches(step):
    return make_batch(10 + step), make_batch(100 + step)


def alphas_of(graph):
    return graph.get_all_edge_data("alpha")


def test_alphas_are_shared_edge_data_outside_the_graph_parameters():
    """The stand-in has NASLib's layout: the premise of the closure form."""
    opt = adapted(FlatDARTS)
    alphas = list(opt.architectural_weights)
    assert len(alphas) == 3 and all(a.shape == (3,) for a in alphas)
    assert not {id(a) for a in alphas} & {id(p) for p in opt.graph.parameters()}
    # both copies of the cell hold the same Parameter objects
    first, second = opt.graph.cells
    assert all(first.edge_data[e].alpha is second.edge_data[e].alpha for e in first.EDGES)
    assert opt.update.leaves == tuple(alphas) and opt.update.optimizer is opt.arch_optimizer


def test_first_order_reproduces_naslib_step_bit_for_bit():
    ours = adapted(FlatDARTS, arch_update="first-order")
    theirs = adapted(DARTSOptimizer)
    for step in range(3):
        got, want = ours.step(*batches(step)), theirs.step(*batches(step))
        assert_bitwise_equal([t.detach() for t in got], [t.detach() for t in want])
    assert_bitwise_equal([a.detach() for a in ours.architectural_weights],
                         [a.detach() for a in theirs.architectural_weights])
    assert_bitwise_equal([a.grad for a in ours.architectural_weights], [a.grad for a in theirs.architectural_weights])
    assert_bitwise_equal([p.detach() for p in ours.graph.parameters()],
                         [p.detach() for p in theirs.graph.parameters()])
    assert_bitwise_equal(list(ours.graph.buffers()), list(theirs.graph.buffers()))


@pytest.mark.parametrize("rho,eps", [(1e-2, 1e-2), (0.3, 5e-2)])
def test_a2m_direction_equals_the_paper_formula(rho, eps):
    opt = adapted(FlatDARTS, rho=rho, eps=eps)
    alphas = list(opt.architectural_weights)
    spy = StepSpy(opt.arch_optimizer, alphas)
    train, (x_val, y_val) = batches(0)
    copy_graph = copy.deepcopy(opt.graph)
    expected = independent_a2m(alphas_of(copy_graph), lambda: F.cross_entropy(copy_graph(x_val), y_val), rho, eps)
    before = [a.detach().clone() for a in alphas]

    opt.step(train, (x_val, y_val))

    (call,) = spy.calls
    for got, want in zip(call["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    first_order = [g.detach() for g in torch.autograd.grad(F.cross_entropy(copy_graph(x_val), y_val),
                                                             alphas_of(copy_graph))]
    assert max((g - f).abs().max().item() for g, f in zip(expected, first_order)) > 1e-6  # A2M is not DARTS here
    # restored bit for bit before NASLib's Adam stepped, and changed by that step only
    assert_bitwise_equal(call["alphas"], before)
    assert_bitwise_equal([a.detach() for a in alphas], adam_step_reference(before, call["grads"]))


def test_returns_naslib_tuple_with_val_outputs_at_the_unperturbed_alphas():
    opt = adapted(FlatDARTS, rho=0.3)
    reference = adapted(FlatDARTS, arch_update="first-order")
    (x_train, y_train), (x_val, y_val) = batches(0)
    copy_graph = copy.deepcopy(opt.graph)
    want_logits = copy_graph(x_val).detach()

    logits_train, logits_val, train_loss, val_loss = opt.step((x_train, y_train), (x_val, y_val))

    assert torch.equal(logits_val, want_logits)
    assert torch.equal(val_loss, F.cross_entropy(want_logits, y_val))
    _, fo_logits_val, _, fo_val_loss = reference.step((x_train, y_train), (x_val, y_val))
    assert torch.equal(logits_val, fo_logits_val.detach()) and torch.equal(val_loss, fo_val_loss.detach())
    assert logits_train.shape == (x_train.shape[0], 3) and train_loss.requires_grad  # NASLib's, not detached
    assert torch.equal(train_loss.detach(), F.cross_entropy(logits_train.detach(), y_train))
    # what NASLib's Trainer does with them
    assert isinstance(float(val_loss.detach().cpu()), float) and isinstance(float(train_loss.detach().cpu()), float)
    assert opt.last_info.evaluations == 4


def test_alpha_grad_afterwards_is_the_direction_plus_the_training_gradient():
    opt = adapted(FlatDARTS, rho=0.1)
    alphas = list(opt.architectural_weights)
    arch_spy = StepSpy(opt.arch_optimizer, alphas)
    seen = {}
    inner = opt.op_optimizer.step

    def weight_step(*args, **kwargs):
        seen["grads"] = [a.grad.detach().clone() for a in alphas]
        seen["graph"] = copy.deepcopy(opt.graph)  # the alphas after the arch step, weights before theirs
        return inner(*args, **kwargs)

    opt.op_optimizer.step = weight_step
    (x_train, y_train), val = batches(1)
    opt.step((x_train, y_train), val)

    g_train = torch.autograd.grad(F.cross_entropy(seen["graph"](x_train), y_train), alphas_of(seen["graph"]))
    for got, direction, g in zip(seen["grads"], arch_spy.calls[0]["grads"], g_train):
        torch.testing.assert_close(got, direction + g, rtol=1e-6, atol=1e-9)
    assert_bitwise_equal([a.grad for a in alphas], seen["grads"])  # nothing else touches it afterwards


def test_batchnorm_buffers_as_naslib_leaves_them():
    ours = adapted(FlatDARTS, rho=0.1)
    theirs = adapted(DARTSOptimizer)
    train, val = batches(2)
    ours.step(train, val)
    theirs.step(train, val)
    # one validation pass and one training pass, as NASLib (the weights differ only through the alphas'
    # effect on the training pass, which BatchNorm statistics of the stem do not see)
    assert_bitwise_equal(list(ours.graph.stem[1].buffers()), list(theirs.graph.stem[1].buffers()))
    assert ours.graph.stem[1].num_batches_tracked.item() == 2


@pytest.mark.parametrize("space_type,rho", [("nasbench201", 1e-2), ("nasbench301", 1e-1)])
def test_default_rho_from_the_space_type(space_type, rho):
    assert adapted(FlatDARTS, space_type=space_type).update.rho == rho
    assert adapted(FlatDARTS, space_type=space_type, rho=0.05).update.rho == 0.05


def test_knobs_and_naslib_arguments():
    opt = adapted(FlatDARTS, arch_update="usam", hessian="exact", arch_learning_rate=6e-4, grad_clip=0,
                  batch_size=64, epochs=50)  # unrelated config.search keys go to NASLib's **kwargs
    assert isinstance(opt.update, flatarch.USAM) and opt.update.hessian == "exact"
    assert opt.arch_optimizer.param_groups[0]["lr"] == 6e-4 and opt.grad_clip == 0
    assert isinstance(opt, DARTSOptimizer) and FlatDARTS.__name__ == "A2MDARTSOptimizer"
    opt.new_epoch(0)  # NASLib's own hooks are kept
    assert opt.logged_argmax == [int(a.argmax()) for a in opt.architectural_weights]
    assert opt.get_checkpointables()["arch_optimizer"] is opt.arch_optimizer


def test_bad_settings_fail_before_any_work():
    with pytest.raises(ValueError, match="arch_update"):
        FlatDARTS(arch_update="adam")
    with pytest.raises(ValueError, match="rho"):
        FlatDARTS(rho=-1.0)
    with pytest.raises(ValueError, match="hessian"):
        FlatDARTS(arch_update="sam", hessian="fd")
    opt = FlatDARTS()
    with pytest.raises(ValueError, match="rho="):
        opt.adapt_search_space(SearchSpace(space_type="transbench101_micro"), "cifar10")
    assert opt.update is None and not hasattr(opt, "graph") and len(opt.architectural_weights) == 0
    FlatDARTS(arch_update="first-order").adapt_search_space(SearchSpace(space_type="other"), "cifar10")


def test_step_before_adapting_and_replaced_alphas_are_refused():
    with pytest.raises(RuntimeError, match="adapt_search_space"):
        FlatDARTS().step(*batches(0))
    opt = adapted(FlatDARTS)
    opt.architectural_weights = torch.nn.ParameterList(
        [torch.nn.Parameter(a.detach().clone()) for a in opt.architectural_weights])
    with pytest.raises(RuntimeError, match="replaced"):
        opt.before_training()


def test_naslib_is_imported_only_when_the_class_is_used(monkeypatch):
    assert "naslib" not in sys.modules  # importing flatarch and this module did not need it
    monkeypatch.setitem(sys.modules, "naslib", None)  # NASLib not installed
    with pytest.raises(ImportError, match="install NASLib"):
        naslib.A2MDARTSOptimizer  # noqa: B018

    names = ["naslib", "naslib.optimizers", "naslib.optimizers.oneshot", "naslib.optimizers.oneshot.darts"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    module = types.ModuleType(naslib.NASLIB_DARTS_MODULE)
    module.DARTSOptimizer = DARTSOptimizer
    monkeypatch.setitem(sys.modules, naslib.NASLIB_DARTS_MODULE, module)
    try:
        from flatarch.adapters.naslib import A2MDARTSOptimizer

        assert issubclass(A2MDARTSOptimizer, DARTSOptimizer) and issubclass(A2MDARTSOptimizer, naslib.FlatDARTSStep)
        assert A2MDARTSOptimizer.__module__ == "flatarch.adapters.naslib"
        assert naslib.A2MDARTSOptimizer is A2MDARTSOptimizer  # built once
    finally:
        naslib.__dict__.pop("A2MDARTSOptimizer", None)


class _NaslibOnPython310:
    """NASLib installed, failing to import as it does on Python >= 3.10 (its
    ``naslib/predictors/gp/gpwl_utils/vertex_histogram.py`` imports ``collections.Iterable``)."""

    def find_spec(self, name, path, target=None):
        if name == "naslib":
            raise ImportError("cannot import name 'Iterable' from 'collections'", name="collections")
        return None


def test_a_naslib_that_fails_to_import_is_not_called_missing(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [_NaslibOnPython310(), *sys.meta_path])
    with pytest.raises(ImportError, match="NASLib is installed but does not import") as error:
        naslib.A2MDARTSOptimizer  # noqa: B018
    assert "'Iterable' from 'collections'" in str(error.value) and "install NASLib (" not in str(error.value)
    assert "A2MDARTSOptimizer" not in naslib.__dict__


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_alphas_move_in_place_and_the_step_stays_on_the_device():
    torch.manual_seed(0)
    opt = FlatDARTS(rho=0.1)
    opt.adapt_search_space(SearchSpace(), "cifar10")
    alphas = list(opt.architectural_weights)
    opt.device = torch.device("cuda")  # what NASLib picks when there is a GPU
    opt.before_training()
    assert all(a is b and a.is_cuda for a, b in zip(opt.architectural_weights, alphas))
    assert all(a is b for a, b in zip(opt.update.leaves, alphas))
    (x, y), (xv, yv) = batches(0)
    logits_train, logits_val, train_loss, val_loss = opt.step((x.cuda(), y.cuda()), (xv.cuda(), yv.cuda()))
    assert logits_val.is_cuda and val_loss.is_cuda and all(a.grad.is_cuda for a in alphas)
    assert opt.last_info.evaluations == 4
