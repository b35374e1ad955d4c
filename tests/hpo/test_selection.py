"""Tournament selection with elitism."""

from __future__ import annotations

import random

import pytest

from offrl.errors import ConfigError
from offrl.hpo import TournamentSelection


def test_elitism_always_keeps_the_best_in_the_first_place():
    rng = random.Random(0)
    selection = TournamentSelection(tournament_size=2, elitism=True)
    for _ in range(500):
        fitness = [rng.gauss(0, 1) for _ in range(rng.randint(2, 9))]
        parents, elite = selection.select(fitness, rng)
        best = max(range(len(fitness)), key=fitness.__getitem__)
        assert elite == best and parents[0] == best
        assert len(parents) == len(fitness)


def test_every_tournament_is_won_by_the_fittest_entrant():
    fitness = [3.0, 1.0, 2.0, 0.0]
    parents, elite = TournamentSelection(tournament_size=4, elitism=False).select(fitness, random.Random(1))
    assert elite is None and parents == [0, 0, 0, 0]  # everyone enters: the best always wins
    counts = [0] * 4
    rng = random.Random(2)
    for _ in range(2000):
        for parent in TournamentSelection(tournament_size=2, elitism=False).select(fitness, rng)[0]:
            counts[parent] += 1
    # with 2 of 4 entrants the worst never wins, the best wins half the tournaments
    assert counts[3] == 0 and counts[0] / sum(counts) == pytest.approx(0.5, abs=0.03)


def test_nan_fitness_ranks_last():
    parents, elite = TournamentSelection(tournament_size=3, elitism=True).select([float("nan"), -5.0, float("nan")], random.Random(0))
    assert elite == 1 and parents == [1, 1, 1]


def test_a_tournament_larger_than_the_population_is_an_error():
    with pytest.raises(ConfigError, match="larger than the population"):
        TournamentSelection(tournament_size=5).select([1.0, 2.0], random.Random(0))
    with pytest.raises(ConfigError, match="tournament_size must be >= 1"):
        TournamentSelection(tournament_size=0)
