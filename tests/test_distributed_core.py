"""Data parallelism in the core: every update, the Hessian measurement, lambda-DARTS' correction and
SDARTS-ADV's attack, run on 2 gloo ranks with half the batch each, equal one device on the whole
batch (float64: the two differ only by the order of the float sums); a per-rank A2M does not."""

import pytest
import torch
import torch.distributed as dist
from dist_core_cases import UPDATE_CASES, core_cases
from ranks import on_ranks

import flatarch
from flatarch import distributed
from flatarch.sync_batch_norm import GlobalBatchNorm, convert_global_batch_norm

# float64 sums in another order: relative differences of a few 1e-16, grown by the steps
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def ranks():
    return on_ranks(core_cases, 2)


def close(a, b):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    return (a - b).abs().max().item() <= TOLERANCE * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("case", list(UPDATE_CASES))
def test_every_update_on_two_ranks_equals_one_device(ranks, case):
    for rank in ranks:
        reference, parallel = rank[case]["reference"], rank[case]["parallel"]
        for key in ("direction", "alpha", "losses", "running_mean"):
            assert close(parallel[key], reference[key]), (case, key)
    # every rank took the same steps, bit for bit
    for key in ("direction", "alpha", "running_mean"):
        assert torch.equal(ranks[0][case]["parallel"][key], ranks[1][case]["parallel"][key])


def test_a_per_rank_a2m_is_another_algorithm(ranks):
    """Perturbing with each rank's own gradient and averaging the directions misses the global step by
    far more than the tolerance the data-parallel A2M meets."""
    reference, per_rank = ranks[0]["per-rank-a2m"]["reference"], ranks[0]["per-rank-a2m"]["parallel"]
    assert (per_rank - reference).abs().max().item() > 1e4 * TOLERANCE * reference.abs().max().item()


@pytest.mark.parametrize("case", ["sharpness", "lambda", "pgd", "adapter"])
def test_hessian_lambda_pgd_and_adapters_on_two_ranks_equal_one_device(ranks, case):
    for rank in ranks:
        reference, parallel = rank[case]["reference"], rank[case]["parallel"]
        if case == "lambda":
            assert all(close(p, r) for p, r in zip(parallel, reference))
        else:
            assert close(parallel, reference)


def test_reduction_keywords_are_checked():
    with pytest.raises(ValueError, match="not both"):
        flatarch.A2M([torch.zeros(2, requires_grad=True)], process_group=object(), grad_reduce=lambda t: t)
    with pytest.raises(ValueError, match="init_process_group"):
        flatarch.SAM([torch.zeros(2, requires_grad=True)], process_group=object())
    with pytest.raises(TypeError, match="callable"):
        flatarch.make_update("usam", [torch.zeros(2, requires_grad=True)], grad_reduce=3)


def test_grad_reduce_sees_every_evaluation_and_its_result_is_used():
    """A user's reduction is applied to the loss and gradients of each of A2M's four evaluations (here a
    stand-in that doubles them: the direction doubles on a quadratic)."""
    calls = []

    def doubling(tensors):
        calls.append(len(tensors))
        return [2 * t for t in tensors]

    alpha = [torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)]
    plain, _ = flatarch.A2M(alpha, rho=0.1).direction(lambda a: (a[0] ** 2).sum())
    doubled, _ = flatarch.A2M(alpha, rho=0.1, grad_reduce=doubling).direction(lambda a: (a[0] ** 2).sum())
    assert calls == [2, 2, 2, 2]  # loss and gradient, at each of the four points
    assert not torch.allclose(plain[0], doubled[0])
    with pytest.raises(ValueError, match="same shape"):
        flatarch.FirstOrder(alpha, grad_reduce=lambda t: t[:1]).step(lambda a: (a[0] ** 2).sum())


def test_one_rank_needs_no_process_group():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and not dist.is_initialized()
    x = torch.randn(4, 3, 2, 2)
    net = convert_global_batch_norm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))
    assert isinstance(net[0], GlobalBatchNorm)
    assert torch.equal(net(x), torch.nn.functional.batch_norm(x, None, None, training=True))
