"""Tournament selection with elitism (AgileRL's ``TournamentSelection``)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from offrl.errors import ConfigError


@dataclasses.dataclass
class TournamentSelection:
    """Pick the next generation's parents from the current one's fitness.

    With ``elitism`` the best member goes on unchanged (and is not mutated); every other place goes to the
    winner of a tournament of ``tournament_size`` members drawn at random (without replacement), the
    fittest of them winning. Ties go to the earlier member.
    """

    tournament_size: int = 2
    elitism: bool = True

    def __post_init__(self) -> None:
        if self.tournament_size < 1:
            raise ConfigError(f"tournament_size must be >= 1, not {self.tournament_size}")

    def select(self, fitness: Sequence[float], rng: random.Random) -> tuple[list[int], int | None]:
        """Parent index for each place of the next generation, and the elite's index (or None).

        ``fitness[i]`` is member ``i``'s fitness (higher is better; NaN ranks last).
        """
        size = len(fitness)
        if size < 1:
            raise ConfigError("selection needs at least one member")
        if self.tournament_size > size:
            raise ConfigError(f"tournament_size {self.tournament_size} is larger than the population ({size})")
        ranked = [(f if f == f else float("-inf")) for f in fitness]  # NaN ranks last
        best = max(range(size), key=lambda i: (ranked[i], -i))
        parents: list[int] = [best] if self.elitism else []
        while len(parents) < size:
            entrants = rng.sample(range(size), self.tournament_size)
            parents.append(max(entrants, key=lambda i: (ranked[i], -i)))
        return parents, best if self.elitism else None
