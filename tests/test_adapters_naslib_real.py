"""flatarch.adapters.naslib against NASLib's own DARTSOptimizer, search spaces and Trainer (a
checkout named by ``$FLATARCH_NASLIB``, see tests/naslib_checkout.py; skipped without one).

The searches run through NASLib's ``Trainer.search`` on its NAS-Bench-201 space (15 cells sharing
6 alphas, 16-64 channels) with in-memory 8x8 images in place of CIFAR-10: the Trainer draws each
validation batch with ``next(iter(valid_queue))`` (``defaults/trainer.py`` L131), so with
shuffling loaders every later batch depends on the random stream that each step leaves.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from adapter_checks import StepSpy, adam_step_reference, assert_bitwise_equal, independent_a2m
from flatarch.adapters import naslib as adapter
from naslib_checkout import forget_naslib, naslib_imports
from torch.utils.data import DataLoader, TensorDataset

STEPS_PER_EPOCH, EPOCHS = 3, 2

# NASLib's get_final_architecture calls np.argmax on a torch tensor (darts/optimizer.py L206)
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")


@pytest.fixture(scope="module")
def naslib():
    with naslib_imports():
        # the documented import: flatarch looks NASLib's DARTSOptimizer up on first use
        from flatarch.adapters.naslib import A2MDARTSOptimizer
        from naslib.defaults.trainer import Trainer
        from naslib.optimizers.oneshot.darts.optimizer import DARTSOptimizer
        from naslib.search_spaces import NasBench201SearchSpace, NasBench301SearchSpace
        from naslib.search_spaces.nasbench201.conversions import convert_naslib_to_op_indices
        from naslib.utils import AttrDict
    yield SimpleNamespace(
        Trainer=Trainer,
        DARTSOptimizer=DARTSOptimizer,
        A2MDARTSOptimizer=A2MDARTSOptimizer,
        spaces={"nasbench201": NasBench201SearchSpace, "nasbench301": NasBench301SearchSpace},
        op_indices=convert_naslib_to_op_indices,
        AttrDict=AttrDict,
    )
    adapter.__dict__.pop("A2MDARTSOptimizer", None)
    forget_naslib()


def adapted(naslib, cls, space="nasbench201", **kwargs):
    """``cls(**kwargs)`` adapted to a fresh NASLib search space, as NASLib's run_darts.py does."""
    torch.manual_seed(0)
    search_space = naslib.spaces[space]()
    torch.manual_seed(1)  # the alphas DARTSOptimizer.add_alphas draws
    optimizer = cls(**kwargs)
    optimizer.adapt_search_space(search_space, "cifar10")
    return optimizer


def _images(seed: int, n: int = 4 * STEPS_PER_EPOCH):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


def _batch(seed: int):
    return tuple(t[:4] for t in _images(seed).tensors)


def _state(optimizer, data_val):
    return {
        "rng": torch.get_rng_state(),
        "batch": [t.clone() for t in data_val],
        "alphas": [a.detach().clone() for a in optimizer.architectural_weights],
        "grads": [a.grad.clone() for a in optimizer.architectural_weights],
        "model": [t.clone() for t in optimizer.graph.state_dict().values()],
    }


def search(naslib, optimizer, save):
    """NASLib's ``Trainer.search`` with shuffling in-memory loaders; the state after every step."""
    config = naslib.AttrDict(save=str(save), save_arch_weights=False, search=naslib.AttrDict(
        seed=3, epochs=EPOCHS, checkpoint_freq=1, learning_rate_min=1e-3))
    # NASLib's count_parameters_in_MB (for its log only) sums a generator with np.sum, a TypeError under NumPy 2
    optimizer.get_model_size = lambda: sum(p.numel() for n, p in optimizer.graph.named_parameters()
                                           if "auxiliary" not in n) / 1e6
    trainer = naslib.Trainer(optimizer, config)
    loaders = (DataLoader(_images(1), batch_size=4, shuffle=True), DataLoader(_images(2), batch_size=4, shuffle=True))
    trainer.build_search_dataloaders = lambda config: (*loaders, None)  # in place of downloading CIFAR-10
    states, naslib_step = [], optimizer.step

    def step(data_train, data_val):
        out = naslib_step(data_train, data_val)
        states.append(_state(optimizer, data_val))
        return out

    optimizer.step = step
    trainer.search()
    return trainer, states


@pytest.fixture(scope="module")
def naslibs_own(naslib, tmp_path_factory):
    """NASLib's DARTS search, as it runs without flatarch."""
    optimizer = adapted(naslib, naslib.DARTSOptimizer)
    trainer, states = search(naslib, optimizer, tmp_path_factory.mktemp("naslib"))
    return SimpleNamespace(optimizer=optimizer, trainer=trainer, states=states)


def test_the_lookup_extends_naslibs_darts_optimizer_and_takes_its_yaml_search_block(naslib):
    yaml = pytest.importorskip("yaml")
    assert issubclass(naslib.A2MDARTSOptimizer, naslib.DARTSOptimizer)
    assert issubclass(naslib.A2MDARTSOptimizer, adapter.FlatDARTSStep)
    path = os.path.join(os.path.dirname(inspect.getfile(naslib.Trainer)), "darts_defaults.yaml")
    with open(path) as file:
        search_block = yaml.safe_load(file)["search"]
    optimizer = naslib.A2MDARTSOptimizer(**search_block, rho=0.05)  # run_darts.py: DARTSOptimizer(**config.search)
    assert optimizer.grad_clip == search_block["grad_clip"] and optimizer.knobs.rho == 0.05
    optimizer.adapt_search_space(naslib.spaces["nasbench201"](), "cifar10")
    assert optimizer.update.leaves == tuple(optimizer.architectural_weights) and optimizer.update.rho == 0.05
    assert optimizer.update.optimizer is optimizer.arch_optimizer is optimizer.get_checkpointables()["arch_optimizer"]
    assert optimizer.arch_optimizer.param_groups[0]["lr"] == search_block["arch_learning_rate"]


def test_first_order_through_naslibs_trainer_is_naslibs_own_search_bit_for_bit(naslib, naslibs_own, tmp_path):
    ours = adapted(naslib, naslib.A2MDARTSOptimizer, arch_update="first-order")
    trainer, states = search(naslib, ours, tmp_path)
    assert len(states) == len(naslibs_own.states) == EPOCHS * STEPS_PER_EPOCH
    for got, want in zip(states, naslibs_own.states):  # after every step
        assert torch.equal(got["rng"], want["rng"])
        for key in ("batch", "alphas", "grads", "model"):
            assert_bitwise_equal(got[key], want[key])
    for key in ("train_loss", "valid_loss", "train_acc", "valid_acc"):
        assert trainer.search_trajectory[key] == naslibs_own.trainer.search_trajectory[key]
    assert ours.update.steps == EPOCHS * STEPS_PER_EPOCH and ours.last_info.evaluations == 1


def test_a2m_through_naslibs_trainer_keeps_its_random_stream_and_hooks(naslib, naslibs_own, tmp_path, caplog):
    """A2M changes the alphas (and so the weights) and nothing else of the search: the Trainer
    draws the same batches, the random stream after every step is NASLib's own, NASLib's hooks
    run, and its final architecture is the argmax of the alphas A2M trained."""
    caplog.set_level(logging.INFO)
    ours = adapted(naslib, naslib.A2MDARTSOptimizer)
    trainer, states = search(naslib, ours, tmp_path)
    assert len(states) == len(naslibs_own.states)
    for got, want in zip(states, naslibs_own.states):
        assert torch.equal(got["rng"], want["rng"])
        assert_bitwise_equal(got["batch"], want["batch"])
    assert not torch.equal(torch.stack(states[-1]["alphas"]), torch.stack(naslibs_own.states[-1]["alphas"]))
    assert ours.update.rho == 1e-2 and ours.last_info.evaluations == 4
    logged = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("Arch weights (alphas, last column argmax)") for m in logged) == EPOCHS  # new_epoch
    assert len(trainer.search_trajectory.train_loss) == EPOCHS and (tmp_path / "errors.json").exists()
    final = ours.get_final_architecture()
    assert naslib.op_indices(final) == [int(a.argmax()) for a in ours.architectural_weights]


@pytest.mark.parametrize("space,rho", [("nasbench201", 1e-2), ("nasbench301", 1e-1)])
def test_a2m_direction_is_the_paper_formula_on_naslibs_supernet(naslib, space, rho):
    optimizer = adapted(naslib, naslib.A2MDARTSOptimizer, space=space)
    assert optimizer.update.rho == rho  # the paper's, from search_space.get_type()
    alphas = list(optimizer.architectural_weights)
    spy = StepSpy(optimizer.arch_optimizer, alphas)
    (x_train, y_train), (x_val, y_val) = _batch(1), _batch(2)
    graph = copy.deepcopy(optimizer.graph)  # before any forward: NASLib's DARTS graph keeps its auxiliary output
    expected = independent_a2m(graph.get_all_edge_data("alpha"), lambda: F.cross_entropy(graph(x_val), y_val), rho,
                               eps=1e-2)
    first_order = torch.autograd.grad(F.cross_entropy(graph(x_val), y_val), graph.get_all_edge_data("alpha"))
    before = [a.detach().clone() for a in alphas]

    optimizer.step((x_train, y_train), (x_val, y_val))

    (call,) = spy.calls
    for got, want in zip(call["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)
    assert max((g - f).abs().max().item() for g, f in zip(expected, first_order)) > 1e-4  # A2M is not DARTS here
    assert_bitwise_equal(call["alphas"], before)  # restored bit for bit before NASLib's Adam stepped
    assert_bitwise_equal([a.detach() for a in alphas], adam_step_reference(before, call["grads"]))


def _buffers_at_arch_step(optimizer):
    seen, arch_step = [], optimizer.arch_optimizer.step

    def step(*args, **kwargs):
        seen.append([b.clone() for b in optimizer.graph.buffers()])
        return arch_step(*args, **kwargs)

    optimizer.arch_optimizer.step = step
    return seen


def test_a2m_leaves_the_batchnorm_statistics_of_naslibs_one_validation_pass(naslib):
    """NASLib's stem, residual blocks and classifier keep running statistics (its cells do not):
    when the arch optimizer steps they are what NASLib's own validation pass left, after A2M's
    four passes."""
    ours = adapted(naslib, naslib.A2MDARTSOptimizer, rho=0.3)
    theirs = adapted(naslib, naslib.DARTSOptimizer)
    ours_seen, theirs_seen = _buffers_at_arch_step(ours), _buffers_at_arch_step(theirs)
    ours.step(_batch(1), _batch(2))
    theirs.step(_batch(1), _batch(2))
    assert len(ours_seen[0]) > 10 and ours.last_info.evaluations == 4
    assert_bitwise_equal(ours_seen[0], theirs_seen[0])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_naslib_picks_the_device_and_the_alphas_move_in_place(naslib):
    ours = adapted(naslib, naslib.A2MDARTSOptimizer)
    theirs = adapted(naslib, naslib.DARTSOptimizer)
    alphas = list(ours.architectural_weights)
    assert ours.device == torch.device("cuda:0")  # NASLib's own choice when there is a GPU
    ours.before_training()
    theirs.before_training()
    assert all(a is b and a.is_cuda for a, b in zip(ours.architectural_weights, alphas))
    assert ours.update.leaves == tuple(alphas)
    batches = [tuple(t.cuda() for t in _batch(seed)) for seed in (1, 2)]
    random_states = []
    for optimizer in (ours, theirs):
        torch.manual_seed(5)
        logits_train, logits_val, train_loss, val_loss = optimizer.step(*batches)
        random_states.append((torch.get_rng_state(), torch.cuda.get_rng_state()))
        assert logits_val.is_cuda and val_loss.is_cuda and all(a.grad.is_cuda for a in optimizer.architectural_weights)
    assert all(torch.equal(a, b) for a, b in zip(*random_states))
    assert ours.last_info.evaluations == 4
