"""Each mutation does what it says; architecture changes keep what the network learned."""

from __future__ import annotations

import random

import pytest
import torch

from offrl.algos.registry import make_algo
from offrl.config import config_to_dict
from offrl.data.sampler import UniformSampler
from offrl.errors import ConfigError
from offrl.hpo import HyperparameterSpace, Mutation, Mutations
from offrl.hpo.mutation import add_parameter_noise, apply_mutation
from tests.conftest import random_dataset


@pytest.fixture(scope="module")
def data():
    return random_dataset(n=400, obs_dim=5, action_dim=2)


def trained(name: str, data, steps: int = 20, **config):
    algo = make_algo(name, data.observation_space, data.action_space, seed=0, hidden_dims=(32, 32), batch_size=32, **config)
    sampler = UniformSampler(data.to("cpu"), 32, seed=0)
    for _ in range(steps):  # non-trivial weights and Adam moments
        algo.update(sampler.sample())
    return algo, sampler


def outputs(algo, observations, actions):
    features = algo.encoder(observations)
    result = {"actor": algo.act(observations)}
    if hasattr(algo, "critic"):
        result["critic"] = algo.critic(features, actions)
        result["critic_target"] = algo.critic_target(features, actions)
    return result


def mutate(algo, kind: str, seed: int = 1, **changes):
    return apply_mutation(algo, Mutation(kind, "", {**config_to_dict(algo.config), **changes}, seed))


@pytest.mark.parametrize("name", ["td3_bc", "iql", "bc"])
@pytest.mark.parametrize("hidden", [(32, 64), (48, 32), (32, 32, 32)], ids=["widen-last", "widen-first", "deepen"])
def test_growing_preserves_outputs(name, hidden, data):
    algo, _ = trained(name, data)
    observations, actions = torch.randn(64, 5), torch.rand(64, 2) * 2 - 1
    before = outputs(algo, observations, actions)
    grown = mutate(algo, "architecture", hidden_dims=list(hidden))
    assert grown.config.hidden_dims == hidden
    after = outputs(grown, observations, actions)
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=1e-5, atol=1e-5, msg=key)


def test_growing_carries_adam_moments_and_keeps_training(data):
    algo, sampler = trained("td3_bc", data)
    old_state = algo.optimizers["critic"].state[algo.critic.net.layers[1].weight]
    grown = mutate(algo, "architecture", hidden_dims=[32, 48])
    new_weight = grown.critic.net.layers[1].weight  # [E, in 32, out 48]
    state = grown.optimizers["critic"].state[new_weight]
    torch.testing.assert_close(state["exp_avg"][:, :, :32], old_state["exp_avg"])
    assert state["exp_avg"][:, :, 32:].abs().sum() == 0 and state["exp_avg_sq"][:, :, 32:].abs().sum() == 0
    assert float(state["step"]) == float(old_state["step"])
    assert grown.num_updates == algo.num_updates
    before = new_weight.detach().clone()
    metrics = grown.update(sampler.sample())
    assert torch.isfinite(metrics["critic_loss"]) and not torch.equal(before, new_weight.detach())


def test_shrinking_keeps_the_remaining_weights(data):
    algo, _ = trained("td3_bc", data)
    shrunk = mutate(algo, "architecture", hidden_dims=[32, 16])
    torch.testing.assert_close(shrunk.actor.net[0].weight, algo.actor.net[0].weight)
    torch.testing.assert_close(shrunk.actor.net[2].weight, algo.actor.net[2].weight[:16])
    shallow = mutate(algo, "architecture", hidden_dims=[32])
    torch.testing.assert_close(shallow.actor.net[2].weight, algo.actor.net[4].weight[:, :32])


def test_parameter_noise_has_the_given_relative_scale_and_touches_only_the_actor(data):
    algo, _ = trained("td3_bc", data)
    actor = [p.detach().clone() for p in algo.actor.parameters()]
    critic = [p.detach().clone() for p in algo.critic.parameters()]
    add_parameter_noise(algo, sd=0.05, seed=3)
    ratios = torch.cat([((p - q) / q.abs()).flatten() for p, q in zip(algo.actor.parameters(), actor)])
    ratios = ratios[torch.isfinite(ratios)]
    assert ratios.mean().abs() < 0.01
    assert ratios.std().item() == pytest.approx(0.05, rel=0.1)
    assert all(torch.equal(p, q) for p, q in zip(algo.critic.parameters(), critic))


def test_activation_and_hyperparameter_mutations_rebuild_with_the_same_weights(data):
    algo, _ = trained("td3_bc", data)
    changed = mutate(algo, "activation", activation="elu")
    assert isinstance(changed.actor.net[1], torch.nn.ELU)
    torch.testing.assert_close(changed.actor.net[0].weight, algo.actor.net[0].weight)
    faster = mutate(algo, "rl_hp", critic_lr=1e-3)
    assert faster.optimizers["critic"].param_groups[0]["lr"] == 1e-3
    assert faster.optimizers["actor"].param_groups[0]["lr"] == algo.config.actor_lr
    torch.testing.assert_close(
        faster.optimizers["critic"].state[faster.critic.net.layers[0].weight]["exp_avg"],
        algo.optimizers["critic"].state[algo.critic.net.layers[0].weight]["exp_avg"],
    )


def test_draws_follow_the_probabilities_and_bounds(data):
    algo, _ = trained("td3_bc", data, steps=1)
    space = HyperparameterSpace.parse(["critic_lr=1e-4:1e-3:log"])
    rng = random.Random(0)
    only = {kind: Mutations(**{k: float(k == kind) for k in ("no_mutation", "architecture", "parameters", "activation", "rl_hp")})
            for kind in ("no_mutation", "architecture", "parameters", "activation", "rl_hp")}
    assert {only["no_mutation"].draw("td3_bc", algo.config, space, rng).kind for _ in range(20)} == {"none"}
    assert {only["parameters"].draw("td3_bc", algo.config, space, rng).kind for _ in range(20)} == {"parameters"}
    assert {only["activation"].draw("td3_bc", algo.config, space, rng).config["activation"] for _ in range(50)} == {"elu", "gelu"}
    for _ in range(50):
        plan = only["rl_hp"].draw("td3_bc", algo.config, space, rng)
        assert 1e-4 <= plan.config["critic_lr"] <= 1e-3 and plan.config["actor_lr"] == algo.config.actor_lr
    bounded = Mutations(no_mutation=0, architecture=1, parameters=0, rl_hp=0, max_layers=2, min_layers=2, min_nodes=16, max_nodes=48)
    for _ in range(50):
        hidden = bounded.draw("td3_bc", algo.config, space, rng).config["hidden_dims"]
        assert len(hidden) == 2 and all(16 <= h <= 48 for h in hidden)
    mixed = Mutations()
    kinds = [mixed.draw("td3_bc", algo.config, space, rng).kind for _ in range(2000)]
    assert kinds.count("none") / len(kinds) == pytest.approx(0.4, abs=0.04)
    assert "activation" not in kinds  # probability 0 by default, as AgileRL's offline examples


def test_inapplicable_mutations_become_none_with_the_reason(data):
    algo, _ = trained("td3_bc", data, steps=1)
    plan = Mutations(no_mutation=0, architecture=0, parameters=0, rl_hp=1).draw("td3_bc", algo.config, HyperparameterSpace([]), random.Random(0))
    assert plan.kind == "none" and "empty search space" in plan.detail
    with pytest.raises(ConfigError, match="not all 0"):
        Mutations(no_mutation=0, architecture=0, parameters=0, activation=0, rl_hp=0)


def test_a_discrete_algorithms_default_widths_are_written_out_so_architecture_mutations_apply(cartpole_dataset):
    from offrl.hpo import Population

    population = Population("discrete_bc", cartpole_dataset, size=2)
    assert population.base_config.hidden_dims == (256, 256)  # what None builds after vector observations
    plan = Mutations(no_mutation=0, architecture=1, parameters=0, activation=0, rl_hp=0).draw(
        "discrete_bc", population.base_config, population.space, random.Random(0))
    assert plan.kind == "architecture" and plan.config["hidden_dims"] != [256, 256]
