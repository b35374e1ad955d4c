from __future__ import annotations

import math

import pytest
import torch

from offrl.algos.common import advantage_weights, cosine_lr, expectile_loss, soft_update, td_target


def test_expectile_loss_is_asymmetric():
    diff = torch.tensor([2.0, -2.0])
    assert math.isclose(expectile_loss(diff[:1], 0.7).item(), 0.7 * 4, rel_tol=1e-6)
    assert math.isclose(expectile_loss(diff[1:], 0.7).item(), 0.3 * 4, rel_tol=1e-6)
    assert expectile_loss(diff, 0.5).item() == 2.0  # 0.5 is half the squared error


def test_expectile_regression_finds_the_expectile():
    samples = torch.randn(20_000)
    value = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([value], lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        expectile_loss(samples - value, 0.9).backward()
        optimizer.step()
    assert value.item() > 0.7  # the 0.9-expectile of N(0, 1) is about 0.86; the mean is 0


def test_soft_update_is_polyak_averaging():
    target, online = [torch.zeros(3), torch.ones(2)], [torch.ones(3), torch.zeros(2)]
    soft_update(target, online, 0.25)
    torch.testing.assert_close(target[0], torch.full((3,), 0.25))
    torch.testing.assert_close(target[1], torch.full((2,), 0.75))


def test_td_target_masks_terminals_only():
    target = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), 0.9, torch.tensor([10.0, 10.0]))
    torch.testing.assert_close(target, torch.tensor([10.0, 1.0]))


def test_advantage_weights_clip_and_cosine_schedule():
    torch.testing.assert_close(advantage_weights(torch.tensor([0.0, 10.0]), 3.0, 100.0), torch.tensor([1.0, 100.0]))
    assert cosine_lr(1.0, 0, 100) == 1.0 and math.isclose(cosine_lr(1.0, 50, 100), 0.5)
    assert cosine_lr(1.0, 100, 100) == 0.0 and cosine_lr(1.0, 150, 100) == 0.0 and cosine_lr(1.0, 7, 0) == 1.0


def _two_layer_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
def test_step_is_torch_fused_adam_bit_for_bit_and_keeps_its_state_dict(decoupled):
    from offrl.algos.common import adam, step

    ours, reference = _two_layer_net(0), _two_layer_net(0)
    opt_ours = adam(list(ours.parameters()), 1e-2, weight_decay=1e-3, decoupled=decoupled)
    torch_class = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt_ref = torch_class(reference.parameters(), lr=1e-2, weight_decay=1e-3, fused=True)
    data = torch.randn(32, 4)
    for index in range(5):
        if index == 3:  # a learning-rate change between steps (schedules) is honoured
            for optimizer in (opt_ours, opt_ref):
                optimizer.param_groups[0]["lr"] = 5e-3
        step(opt_ours, ours(data).pow(2).mean() if index != 4 else ours[0](data).sum())
        opt_ref.zero_grad(set_to_none=True)
        (reference(data).pow(2).mean() if index != 4 else reference[0](data).sum()).backward()
        opt_ref.step()
    for mine, theirs in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(mine, theirs)
    saved, expected = opt_ours.state_dict(), opt_ref.state_dict()
    # the last loss does not reach the output layer: its parameters were left alone, as torch does
    assert [s["step"].item() for s in saved["state"].values()] == [5.0, 5.0, 4.0, 4.0]
    for key in expected["state"]:
        for name, value in expected["state"][key].items():
            assert torch.equal(saved["state"][key][name], value), (key, name)
    restored = adam(list(_two_layer_net(1).parameters()), 1e-2)
    restored.load_state_dict(saved)
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], saved["state"][0]["exp_avg"])


def test_adam_and_adamw_steps_differ():
    """The comparison above tells the two kernels apart: with weight decay their first steps differ."""
    from offrl.algos.common import adam, step

    nets = [_two_layer_net(0), _two_layer_net(0)]
    data = torch.randn(32, 4)
    for net, decoupled in zip(nets, (False, True)):
        step(adam(list(net.parameters()), 1e-2, weight_decay=0.5, decoupled=decoupled), net(data).pow(2).mean())
    assert (nets[0][0].weight - nets[1][0].weight).abs().max() > 1e-5


def test_k_policy_samples_per_state_match_repeated_rows():
    from offrl.algos.common import repeat_rows
    from offrl.nn.heads import GaussianPolicy, TanhGaussianPolicy

    features = torch.randn(6, 5)
    for policy in (TanhGaussianPolicy(5, 3, (16,)), GaussianPolicy(5, 3, (16,), state_dependent_std=True)):
        torch.manual_seed(7)
        grouped = policy.sample(features, samples=4)
        torch.manual_seed(7)
        rows = policy.sample(repeat_rows(features, 4))
        if isinstance(grouped, tuple):  # actions and log-densities
            assert grouped[0].shape == (6, 4, 3) and grouped[1].shape == (6, 4)
            torch.testing.assert_close(grouped[0].reshape(24, 3), rows[0])
            torch.testing.assert_close(grouped[1].reshape(24), rows[1])
        else:
            assert grouped.shape == (6, 4, 3)
            torch.testing.assert_close(grouped.reshape(24, 3), rows)
        actions = grouped[0] if isinstance(grouped, tuple) else grouped
        assert not torch.allclose(actions[:, 0], actions[:, 1])  # the K draws differ
