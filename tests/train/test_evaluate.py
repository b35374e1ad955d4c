from __future__ import annotations

import numpy as np
import pytest

from offrl.train.evaluate import evaluate, make_vector_env
from offrl.zoo.pendulum import energy_pump
from offrl.zoo.scores import D4RL_REFERENCES, normalized_score, reference_returns


@pytest.mark.parametrize("episodes, envs", [(5, 3), (4, 4), (2, 5)])
def test_exactly_the_requested_episodes(episodes, envs):
    vector = make_vector_env("Pendulum-v1", envs)
    result = evaluate(energy_pump, vector, env_id="Pendulum-v1", episodes=episodes, seed=0)
    assert result.episodes == episodes and len(result.returns) == episodes
    assert result.lengths == [200] * episodes
    assert result.mean_return == pytest.approx(np.mean(result.returns))


def test_same_seed_same_returns_and_scripted_controller_scores_near_expert():
    vector = make_vector_env("Pendulum-v1", 4)
    first = evaluate(energy_pump, vector, env_id="Pendulum-v1", episodes=8, seed=3)
    second = evaluate(energy_pump, vector, env_id="Pendulum-v1", episodes=8, seed=3)
    assert first.returns == second.returns
    assert first.reference == "offrl zoo pendulum"
    assert 60 < first.normalized_score < 140


def test_reference_scores():
    assert reference_returns("Hopper-v2") == D4RL_REFERENCES["Hopper"]
    assert reference_returns("Unknown-v0") is None
    pendulum = reference_returns("Pendulum-v1")
    assert pendulum.source == "offrl zoo pendulum" and pendulum.random < -1000 < -200 < pendulum.expert
    minari = reference_returns("Hopper-v5", {"minari/ref_min_score": 0.0, "minari/ref_max_score": 10.0})
    assert normalized_score(5.0, minari) == 50.0
    zoo = reference_returns("Hopper-v5", {"ref_min_score": 1.0, "ref_max_score": 3.0, "ref_source": "offrl zoo hopper"})
    assert zoo.source == "offrl zoo hopper" and normalized_score(2.0, zoo) == 50.0
    assert normalized_score(3234.3, D4RL_REFERENCES["Hopper"]) == pytest.approx(100.0)


def test_evaluation_can_be_stopped():
    vector = make_vector_env("Pendulum-v1", 2)
    assert evaluate(energy_pump, vector, env_id="Pendulum-v1", episodes=2, seed=0, should_stop=lambda: True) is None
