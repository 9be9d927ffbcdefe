"""SDARTS' smoothing of the mixing probabilities (flatarch.smoothing) against its definition."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flatarch import smoothing


def test_radius_grows_linearly_per_epoch_as_smoothdarts():
    assert smoothing.smoothing_radius(0, 50) == pytest.approx(0.03)
    assert smoothing.smoothing_radius(25, 50) == pytest.approx(0.165)
    assert smoothing.smoothing_radius(49, 50) == pytest.approx(0.2946)  # never quite e_max
    with pytest.raises(ValueError):
        smoothing.smoothing_radius(0, 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), epsilon=st.floats(0.0, 0.5))
def test_random_smoothing_keeps_rows_on_the_simplex_and_never_writes_its_input(seed, epsilon):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(14, 8, generator=g), -1)
    before = probs.clone()
    out = smoothing.random_smoothing(probs, epsilon, generator=g)
    assert torch.equal(probs, before) and out.shape == probs.shape
    assert torch.allclose(out.sum(-1), torch.ones(14), atol=1e-6) and (out >= 0).all()
    if epsilon == 0:
        assert torch.allclose(out, probs)


def test_zero_probabilities_stay_exactly_zero_about_half_the_time():
    g = torch.Generator().manual_seed(0)
    probs = torch.zeros(2000, 5)
    probs[:, 0] = 1.0
    out = smoothing.random_smoothing(probs, 0.1, generator=g)
    zeros = (out[:, 1:] == 0).float().mean().item()
    assert 0.45 < zeros < 0.55  # negative noise is clamped to exactly 0


def test_a_row_clamped_to_zero_becomes_one_hot_at_its_pre_clamp_argmax():
    p = torch.tensor([[-0.3, -0.1, -0.2], [0.2, 0.6, 0.2]])
    out = smoothing.project_rows(p)
    assert torch.equal(out[0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(out[1], torch.tensor([0.2, 0.6, 0.2]))


def test_same_generator_state_same_noise_and_bad_input_is_refused():
    probs = torch.full((6, 5), 0.2)
    a = smoothing.random_smoothing(probs, 0.1, generator=torch.Generator().manual_seed(1))
    b = smoothing.random_smoothing(probs, 0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="epsilon"):
        smoothing.random_smoothing(probs, float("nan"))
    with pytest.raises(TypeError):
        smoothing.random_smoothing([0.5, 0.5], 0.1)


def test_adversarial_smoothing_ascends_within_the_ball_and_touches_no_grad():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(5))
    clean = {"normal": torch.softmax(torch.randn(14, 5), -1), "reduce": torch.softmax(torch.randn(14, 5), -1)}

    def loss_fn(p):  # increases with the weight of the ops whose weight is positive
        return (p["normal"] @ weight).sum() + (p["reduce"] @ weight).square().sum()

    out = smoothing.adversarial_smoothing(loss_fn, clean, 0.1, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"normal", "reduce"} and weight.grad is None
    with torch.no_grad():
        assert loss_fn(out) > loss_fn(clean)
    for key in clean:
        assert torch.allclose(out[key].sum(-1), torch.ones(14), atol=1e-6)
        # projected to the ball, then back onto the simplex (which can move an entry a little further)
        assert (out[key] - clean[key]).abs().max() <= 0.1 * 2


def test_adversarial_smoothing_keeps_the_clean_weights_when_the_attack_fails():
    clean = torch.full((3, 4), 0.25)
    calls = []

    def loss_fn(p):
        calls.append(p)
        # any move away from the centre lowers this loss: the attack cannot raise it
        return -((p - 0.25) ** 2).sum()

    out = smoothing.adversarial_smoothing(loss_fn, clean, 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, clean) and len(calls) == 1 + 7 + 1
    with pytest.raises(ValueError, match="steps"):
        smoothing.adversarial_smoothing(loss_fn, clean, 0.1, steps=0)
