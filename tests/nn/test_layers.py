from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.algos import make_algo
from offrl.nn import (
    ActionScaler,
    EnsembleLinear,
    EnsembleMLP,
    FlatEncoder,
    GaussianPolicy,
    QEnsemble,
    TanhGaussianPolicy,
    gaussian_log_prob,
)
from offrl.nn.layers import Dropout, TransformerBlock, causal_attention_bias


def test_ensemble_linear_equals_independent_linears():
    layer = EnsembleLinear(3, 5, 4)
    x = torch.randn(3, 7, 5)
    out = layer(x)
    for member in range(3):
        expected = x[member] @ layer.weight[member] + layer.bias[member]
        torch.testing.assert_close(out[member], expected)
    torch.testing.assert_close(layer(x[1:2], members=slice(1, 2)), out[1:2])


def test_ensemble_members_are_initialised_independently_with_linear_scale():
    layer = EnsembleLinear(4, 256, 256)
    assert not torch.allclose(layer.weight[0], layer.weight[1])
    bound = 1 / 16
    assert layer.weight.abs().max() <= bound and layer.weight.std() > 0.5 * bound / np.sqrt(3)


def test_ensemble_mlp_shared_input_and_member_slice():
    net = EnsembleMLP(2, 3, (8, 8), 1, layer_norm=True)
    x = torch.randn(5, 3)
    both = net(x)
    assert both.shape == (2, 5, 1)
    torch.testing.assert_close(net(x, members=slice(0, 1))[0], both[0])


def test_q_ensemble_shape():
    q = QEnsemble(3, 2, (16,), ensemble_size=4)
    assert q(torch.randn(6, 3), torch.randn(6, 2)).shape == (4, 6)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_frozen_critic_passes_gradients_to_the_actions_only(layer_norm):
    torch.manual_seed(0)
    q = QEnsemble(3, 2, (16, 16), ensemble_size=2, layer_norm=layer_norm)
    if layer_norm:  # away from LayerNorm's initial identity, so its parameters matter
        for norm in q.net.norms:
            torch.nn.init.normal_(norm.weight)
            torch.nn.init.normal_(norm.bias)
    features = torch.randn(6, 3)
    results = {}
    for frozen in (False, True):
        actions = torch.randn(6, 2, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        q.zero_grad(set_to_none=True)
        value = q(features, actions, members=slice(0, 1), frozen=frozen)
        value.sum().backward()
        results[frozen] = (value.detach(), actions.grad, [p.grad for p in q.parameters()])
    torch.testing.assert_close(results[True][0], results[False][0])
    torch.testing.assert_close(results[True][1], results[False][1])
    assert all(grad is None for grad in results[True][2])
    assert any(grad is not None and grad.abs().sum() > 0 for grad in results[False][2])


def test_dropout_keeps_one_minus_p_scaled_and_passes_the_same_mask_back():
    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.full((1000, 1000), 2.0, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 1e6 draws: the standard error is 0.0003
    lanes = kept.flatten().view(-1, 4).float().mean(dim=0)  # each element's 16 bits are one lane of a 64-bit word
    assert (lanes - 0.9).abs().max() < 0.004, lanes  # a lane short of random bits (the sign's) would keep all
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / 0.9))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.9)
    drop.eval()
    assert drop(x) is x
    assert Dropout(1.0)(x).abs().sum() == 0
    half = Dropout(0.5)(torch.ones(100_000, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16 and set(half.unique().tolist()) == {0.0, 2.0}
    assert abs((half == 0).float().mean().item() - 0.5) < 0.01


def test_transformer_blocks_place_dropout_as_gpt2_and_use_the_fast_one():
    obs = gym.spaces.Box(-1, 1, (4,), np.float32)
    act = gym.spaces.Box(-1, 1, (2,), np.float32)
    for name in ("dt", "bc_transformer"):
        algo = make_algo(name, obs, act, seed=0)
        dropouts = [m for m in algo.modules() if isinstance(m, torch.nn.Dropout)]
        assert len(dropouts) >= 4 and all(isinstance(m, Dropout) for m in dropouts), name
        layers = [m for m in algo.modules() if isinstance(m, torch.nn.TransformerEncoderLayer)]
        # GPT-2's placement: attention and residual dropout, none on the 4x feed-forward hidden layer
        assert layers and all(isinstance(layer.dropout, torch.nn.Identity) for layer in layers), name
        assert all(layer.attention_dropout.p == 0.1 and layer.dropout2.p == 0.1 for layer in layers), name


def test_transformer_block_computes_torchs_encoder_layer():
    """The written-out attention is torch's pre-norm layer: same parameter names (checkpoints load either
    way), outputs and gradients under a causal mask with padded steps and two heads."""
    torch.manual_seed(0)
    ours = TransformerBlock(16, 2, 0.0)
    torchs = torch.nn.TransformerEncoderLayer(16, 2, 64, 0.0, activation="gelu", batch_first=True, norm_first=True)
    assert sorted(ours.state_dict()) == sorted(torchs.state_dict())
    torchs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, 16, requires_grad=True)
    mask = torch.ones(3, 2, dtype=torch.bool)
    mask[0, 0] = False  # a padded step at the start of the first sequence
    bias = causal_attention_bias(mask, 2, tokens_per_step=3)
    mine, theirs = ours(x, src_mask=bias), torchs(x, src_mask=bias)
    torch.testing.assert_close(mine, theirs)
    mine_grads = torch.autograd.grad(mine.square().sum(), [x, *ours.parameters()])
    their_grads = torch.autograd.grad(theirs.square().sum(), [x, *torchs.parameters()])
    for a, b in zip(mine_grads, their_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    unmasked = ours(x)  # without a mask every token sees every other: a different output
    assert (unmasked - mine).abs().max() > 1e-3


def test_flat_encoder_normalizes_and_concatenates_dicts():
    space = gym.spaces.Dict(
        {"b": gym.spaces.Box(-np.inf, np.inf, (2,)), "a": gym.spaces.Box(-np.inf, np.inf, (1,))}
    )
    encoder = FlatEncoder(space)
    encoder.set_statistics({"a": np.array([1.0]), "b": np.array([0.0, 10.0])}, {"a": np.array([2.0]), "b": np.array([1.0, 5.0])})
    out = encoder({"a": torch.tensor([[3.0]]), "b": torch.tensor([[1.0, 20.0]])})
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 2.0]]))  # keys in sorted order: a, then b


def test_flat_encoder_rejects_images():
    try:
        FlatEncoder(gym.spaces.Box(0, 255, (3, 8, 8), np.uint8))
    except ValueError as error:
        assert "image" in str(error)
    else:
        raise AssertionError("expected a ValueError")


def test_action_scaler_round_trip_on_asymmetric_bounds():
    scaler = ActionScaler(gym.spaces.Box(np.array([0.0, -3.0], np.float32), np.array([1.0, 1.0], np.float32)))
    actions = torch.tensor([[0.0, -3.0], [1.0, 1.0], [0.25, 0.0]])
    normalized = scaler.normalize(actions)
    torch.testing.assert_close(normalized[0], torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(normalized[1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(scaler.denormalize(normalized), actions)


def test_gaussian_log_prob_matches_torch_distributions():
    mean, log_std, actions = torch.randn(4, 3), torch.randn(4, 3) * 0.3, torch.randn(4, 3)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, actions), expected)
    policy = GaussianPolicy(3, 2, (8,), state_dependent_std=False)
    mean_action, log_std = policy(torch.randn(5, 3))
    assert mean_action.abs().max() < 1 and log_std.shape == (5, 2)


def test_tanh_gaussian_log_prob_matches_a_transformed_normal():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(3, 2, (16,))
    features = torch.randn(64, 3)
    actions, log_prob = policy.sample(features)
    assert actions.abs().max() < 1
    mean, log_std = policy(features)
    squashed = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)]
    )
    expected = squashed.log_prob(actions).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(policy.log_prob(features, actions), expected, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(policy.deterministic(features), torch.tanh(mean))
