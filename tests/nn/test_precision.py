"""Mixed precision (``precision="bf16"``): hidden products in bfloat16, outputs, parameters and optimizer states in float32."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from offrl.algos import list_algos
from offrl.errors import OffrlError
from offrl.nn.layers import MLP, EnsembleMLP
from offrl.nn.precision import check_precision, update_context
from tests.algos.test_smoke import build, dataset_for

ALGOS = [cls.name for cls in list_algos()]


def bf16():
    return update_context("bf16", "cpu")()


def test_mlp_hidden_layers_run_in_bfloat16_and_its_output_layer_in_float32():
    torch.manual_seed(0)
    mlp = MLP(11, [64, 64], 3)
    x = torch.randn(32, 11)
    with bf16():
        hidden = torch.nn.Sequential(*list(mlp)[:-1])(x)
        out = mlp(x)
    assert hidden.dtype == torch.bfloat16 and out.dtype == torch.float32
    last = mlp[-1]
    assert torch.equal(out, F.linear(hidden.float(), last.weight, last.bias))  # the last product in float32, on bf16 features
    assert not torch.equal(out, mlp(x))  # and it is not the float32 network: the hidden products were bfloat16
    torch.testing.assert_close(out, mlp(x), rtol=0.05, atol=0.02)


def test_ensemble_output_layer_computes_in_float32():
    torch.manual_seed(0)
    net = EnsembleMLP(3, 14, [64, 64], 1)
    x = torch.randn(32, 14)
    with bf16():
        out = net(x)
        frozen = net(x, members=slice(0, 1), frozen=True)
    assert out.dtype == frozen.dtype == torch.float32
    torch.testing.assert_close(frozen, out[:1])
    torch.testing.assert_close(out, net(x), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("name", ALGOS)
def test_every_algorithm_updates_in_bf16_with_float32_weights_and_moments(name):
    algo, sampler = build(name, dataset_for(name))
    reference = copy.deepcopy(algo)
    batches = [sampler.sample() for _ in range(3)]
    for batch in batches:
        with bf16():
            metrics = algo.update(batch)
        assert all(value.dim() == 0 and torch.isfinite(value) for value in metrics.values()), metrics
        reference.update(batch)
    state = algo.state_dict()
    assert all(value.dtype == reference.state_dict()[key].dtype for key, value in state.items())
    for optimizer in algo.optimizers.values():
        for moments in optimizer.state.values():
            assert all(v.dtype == torch.float32 for v in moments.values() if torch.is_tensor(v) and v.is_floating_point())
    difference = max(float((value - reference.state_dict()[key]).abs().max()) for key, value in state.items() if value.is_floating_point())
    assert 0 < difference < 0.05  # the same algorithm, at another precision


def test_unknown_precision_is_one_clear_error():
    with pytest.raises(OffrlError, match="precision must be one of fp32, bf16, not 'fp16'"):
        check_precision("fp16", "cpu")


def test_bf16_without_native_bfloat16_arithmetic_warns(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16 arithmetic; torch emulates it, slower than fp32"):
        update_context("bf16", "cpu")


def updated_state(algo, batches, autocast) -> dict[str, torch.Tensor]:
    """``algo``'s parameters after one update per batch under ``autocast()``, from the same random draws."""
    with torch.random.fork_rng():
        torch.manual_seed(5)
        for batch in batches:
            with autocast():
                algo.update(batch)
    return algo.state_dict()


# read their critic twice in one loss: with autocast's cache the two gradients meet in bfloat16 (tested below)
READ_TWICE = {"cql", "cal_ql", "edac"}


@pytest.mark.parametrize("name", ALGOS)
def test_bf16_updates_read_each_network_as_it_is_after_the_steps_before(name):
    """autocast's weight cache does not see an optimizer step change a weight in place. offrl's bf16 casts
    every read (and ``step`` empties the cache of an autocast that has one): IQL's value network, BCQ's
    VAE, AWAC's and CRR's critic, read after their step in the same update, are read as stepped."""
    algo, sampler = build(name, dataset_for(name))
    batches = [sampler.sample() for _ in range(3)]
    uncached = updated_state(copy.deepcopy(algo), batches, lambda: torch.autocast("cpu", torch.bfloat16, cache_enabled=False))
    state = updated_state(copy.deepcopy(algo), batches, update_context("bf16", "cpu"))
    assert all(torch.equal(state[key], value) for key, value in uncached.items())
    if name not in READ_TWICE:  # torch's default autocast, with its cache: the same update
        cached = updated_state(algo, batches, lambda: torch.autocast("cpu", torch.bfloat16))
        assert all(torch.equal(cached[key], value) for key, value in uncached.items())


def test_a_weight_read_twice_in_bf16_sums_its_gradients_in_float32():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    first, second = torch.randn(32, 64), torch.randn(32, 64)

    def weight_grad(*inputs, autocast=update_context("bf16", "cpu")):
        layer.weight.grad = None
        with autocast():
            loss = sum(layer(x).float().pow(2).sum() for x in inputs)
        loss.backward()
        return layer.weight.grad.clone()

    both = weight_grad(first, second)
    assert torch.equal(both, weight_grad(first) + weight_grad(second))
    # torch's default cache shares one bfloat16 copy of the weight, whose two gradients add in bfloat16
    assert not torch.equal(weight_grad(first, second, autocast=lambda: torch.autocast("cpu", torch.bfloat16)), both)
