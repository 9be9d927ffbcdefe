"""flatarch.adapters.confopt against confopt's own trainer, supernet and samplers (a checkout named
by ``$FLATARCH_CONFOPT``, see tests/confopt_checkout.py; skipped without one).

``attach(trainer, arch_update="first-order")`` must leave a search bit for bit as confopt's own
loop runs it, over several steps with shuffling loaders: the same weights, alphas and random
stream. The first forward of confopt's operations counts their FLOPs on ``randn_like`` inputs
(``searchspace/common/mixop.py`` L88-89, L125-131), so its trainer's arch pass draws from the
random stream more than any later pass does.
"""

from __future__ import annotations

import pytest
import torch
from adapter_checks import assert_bitwise_equal
from confopt_checkout import confopt_imports
from flatarch.adapters.confopt import attach
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture(scope="module")
def confopt():
    with confopt_imports():
        from confopt.oneshot.archsampler import GDASSampler
        from confopt.searchspace import NASBench201SearchSpace
        from confopt.train.configurable_trainer import ConfigurableTrainer
        from confopt.train.search_space_handler import SearchSpaceHandler

    return GDASSampler, NASBench201SearchSpace, ConfigurableTrainer, SearchSpaceHandler


def _images(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


def build(confopt, seed=0):
    """A confopt NAS-Bench-201 search at toy size: GDAS's Gumbel sampler (noise at every forward),
    Adam on the alphas as confopt's NAS-Bench-201 profile, loaders that shuffle from torch's generator."""
    GDASSampler, NASBench201SearchSpace, ConfigurableTrainer, SearchSpaceHandler = confopt
    torch.manual_seed(seed)
    space = NASBench201SearchSpace(C=4, N=1, num_classes=10)
    handler = SearchSpaceHandler(sampler=GDASSampler(space.arch_parameters, sample_frequency="step"))
    handler.adapt_search_space(space)
    handler.update_sample_function_from_sampler(space)
    w_optimizer = torch.optim.SGD(space.model_weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    arch_optimizer = torch.optim.Adam(space.arch_parameters, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    trainer = ConfigurableTrainer(space, None, w_optimizer, arch_optimizer, None, torch.nn.CrossEntropyLoss(),
                                  None, 4)
    trainer.device = torch.device("cpu")
    loaders = (DataLoader(_images(1), batch_size=4, shuffle=True), DataLoader(_images(2), batch_size=4, shuffle=True))
    return trainer, handler, loaders


def run_epoch(trainer, handler, loaders, seed=7):
    torch.manual_seed(seed)
    train_loader, valid_loader = loaders
    trainer._train_epoch(handler, train_loader, valid_loader, trainer.model, trainer.criterion,
                         trainer.model_optimizer, trainer.arch_optimizer, print_freq=100)
    return torch.get_rng_state()


def test_first_order_is_confopts_own_loop_bit_for_bit(confopt):
    ours, ours_handler, ours_loaders = build(confopt)
    attach(ours, arch_update="first-order")
    theirs, theirs_handler, theirs_loaders = build(confopt)
    random_ours = run_epoch(ours, ours_handler, ours_loaders)
    random_theirs = run_epoch(theirs, theirs_handler, theirs_loaders)
    assert torch.equal(random_ours, random_theirs)  # the host's random stream, as its own step left it
    assert_bitwise_equal(list(ours.model.state_dict().values()), list(theirs.model.state_dict().values()))
    assert ours.arch_optimizer.update.steps == 4


def test_a2m_changes_the_alphas_and_nothing_else_of_the_hosts_run(confopt):
    """A2M's further evaluations replay the trainer's draws and the stream continues as the trainer's
    pass left it: GDAS draws as many numbers whatever the alphas, so after an epoch the random
    stream is confopt's own; the alphas (and so the weights) are A2M's."""
    ours, ours_handler, ours_loaders = build(confopt)
    flat = attach(ours, arch_update="a2m", rho=0.1)
    theirs, theirs_handler, theirs_loaders = build(confopt)
    assert torch.equal(run_epoch(ours, ours_handler, ours_loaders), run_epoch(theirs, theirs_handler, theirs_loaders))
    assert not torch.equal(ours.model.arch_parameters[0], theirs.model.arch_parameters[0])
    assert flat.update.steps == 4 and flat.last_info.evaluations == 4
