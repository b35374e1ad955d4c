"""The search space: parsing, sampling and mutating within ranges, and the default space per algorithm."""

from __future__ import annotations

import random

import pytest

from offrl.algos.registry import get_algo_class
from offrl.config import make_config
from offrl.errors import ConfigError
from offrl.hpo import Hyperparameter, HyperparameterSpace, default_space, parse_hyperparameter


def test_parse_each_kind():
    assert parse_hyperparameter("lr=1e-4:1e-2:log") == Hyperparameter("lr", "log", 1e-4, 1e-2)
    assert parse_hyperparameter("batch_size=64:512:int") == Hyperparameter("batch_size", "int", 64, 512)
    assert parse_hyperparameter("tau = 0.001:0.01") == Hyperparameter("tau", "float", 0.001, 0.01)
    assert parse_hyperparameter("activation=relu,tanh,elu") == Hyperparameter("activation", "choice", choices=("relu", "tanh", "elu"))
    assert parse_hyperparameter("num_critics=2,5,10").choices == (2, 5, 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "--space expects name=low:high"),
        ("lr=1e-2:1e-4:log", "low <= high"),
        ("lr=-1:1:log", "a log range must be positive"),
        ("lr=a:b", "low and high must be numbers"),
        ("lr=1:2:3:log", "expected low:high"),
        ("lr=1e-3", "at least two choices"),
        ("lr=1e-4:inf:log", "finite ends"),
    ],
)
def test_malformed_ranges_are_one_clear_error(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_hyperparameter(text)


def test_unknown_or_ill_typed_field_names_the_algorithm_and_close_matches():
    config_class = get_algo_class("td3_bc").Config
    with pytest.raises(ConfigError, match=r"unknown key 'bach_size'.*did you mean 'batch_size'"):
        HyperparameterSpace.parse(["bach_size=64:512:int"]).check(config_class, "td3_bc")
    with pytest.raises(ConfigError, match="activation"):
        HyperparameterSpace.parse(["activation=1:2"]).check(config_class, "td3_bc")
    with pytest.raises(ConfigError, match="twice"):
        HyperparameterSpace.parse(["tau=0.1:0.2", "tau=0.2:0.3"])


def test_lr_sets_every_learning_rate_when_the_config_has_no_lr_field():
    config_class = get_algo_class("td3_bc").Config
    space = HyperparameterSpace.parse(["lr=1e-4:1e-2:log"])
    space.check(config_class, "td3_bc")
    config = space.apply(make_config(config_class), {"lr": 5e-3})
    assert config.actor_lr == config.critic_lr == 5e-3
    assert space.values(config) == {"lr": 5e-3}


def test_samples_and_mutations_stay_in_range():
    rng = random.Random(0)
    space = HyperparameterSpace.parse(["lr=1e-4:1e-2:log", "batch_size=64:512:int", "tau=0.001:0.01", "activation=relu,tanh"])
    config = make_config(get_algo_class("td3_bc").Config)
    for _ in range(300):
        config = space.sample(config, rng)
        values = space.values(config)
        assert all(h.contains(values[h.name]) for h in space)
        assert isinstance(values["batch_size"], int)
        for h in space:
            mutated = h.mutate(values[h.name], rng)
            assert h.contains(mutated), (h, mutated)
            if h.kind == "choice":
                assert mutated != values[h.name]


def test_int_mutation_moves_even_when_the_factor_rounds_to_no_change():
    h = Hyperparameter("n", "int", 1, 10)
    rng = random.Random(0)
    moved = {h.mutate(3, rng) for _ in range(50)}
    assert moved == {2, 4}


def test_default_space_covers_learning_rates_batch_size_and_the_papers_knobs():
    config = make_config(get_algo_class("iql").Config)
    space = default_space("iql", config)
    names = set(space.names)
    assert {"actor_lr", "critic_lr", "value_lr", "batch_size", "expectile", "temperature"} <= names
    actor_lr = space.hyperparameters["actor_lr"]
    assert actor_lr.kind == "log" and actor_lr.low == pytest.approx(config.actor_lr / 10) and actor_lr.high == pytest.approx(config.actor_lr * 10)
    assert HyperparameterSpace.from_json(space.to_json()).hyperparameters == space.hyperparameters


def test_an_integer_field_needs_an_int_range_and_every_choice_is_checked():
    config_class = get_algo_class("td3_bc").Config
    with pytest.raises(ConfigError, match="batch_size is an integer, the range gives fractions: write batch_size=64:512:int"):
        HyperparameterSpace.parse(["batch_size=64:512"]).check(config_class, "td3_bc")
    with pytest.raises(ConfigError, match="batch_size=128.5: expected an integer"):
        HyperparameterSpace.parse(["batch_size=64,128.5"]).check(config_class, "td3_bc")
    HyperparameterSpace.parse(["batch_size=64:512:int", "tau=0.001:0.01"]).check(config_class, "td3_bc")
