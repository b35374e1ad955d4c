from __future__ import annotations

import math

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
