"""The same contract on CUDA (runs only where a GPU is present; CPU covers the logic)."""

import pytest
import torch
from losses import MixedOp

import flatarch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("name", ["first-order", "sam", "usam", "a2m"])
def test_cuda_direction_matches_cpu_and_keeps_device(name):
    model = MixedOp(seed=1, dtype=torch.float64)
    alpha = torch.randn(2, 4, dtype=torch.float64)
    cpu, _ = flatarch.make_update(name, [alpha.clone().requires_grad_(True)]).direction(lambda a: model.loss(a[0]))
    model.cuda()
    model.x, model.y = model.x.cuda(), model.y.cuda()
    gpu, _ = flatarch.make_update(name, [alpha.cuda().requires_grad_(True)]).direction(lambda a: model.loss(a[0]))
    assert gpu[0].device.type == "cuda"
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-7, atol=1e-9)


def test_cuda_fp16_autocast_with_grad_scaler():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).cuda()
    alpha = torch.zeros(3, device="cuda", requires_grad=True)
    x, y = torch.randn(32, 8, device="cuda"), torch.randint(0, 3, (32,), device="cuda")

    def loss(a):
        return torch.nn.functional.cross_entropy(net(x) + a, y)

    scaler = torch.amp.GradScaler("cuda")
    opt = flatarch.A2M([alpha], rho=0.1)
    full, _ = opt.direction(lambda a: loss(a[0]))
    with torch.autocast("cuda", dtype=torch.float16):
        half, info = opt.direction(lambda a: loss(a[0]), grad_scale=scaler)
    assert not info.skipped
    torch.testing.assert_close(half[0], full[0], rtol=2e-2, atol=2e-3)
