"""Evolutionary hyperparameter and architecture search over populations of agents (AgileRL's HPO),
in process or on Ray: ``Population``, ``TournamentSelection``, ``Mutations``, ``HyperparameterSpace``,
``train_population``. See docs/search.md."""

from offrl.hpo.mutation import Mutation, Mutations
from offrl.hpo.search import Member, Population, SearchResult, train_population
from offrl.hpo.selection import TournamentSelection
from offrl.hpo.space import Hyperparameter, HyperparameterSpace, default_space, parse_hyperparameter

__all__ = [
    "Hyperparameter",
    "HyperparameterSpace",
    "Member",
    "Mutation",
    "Mutations",
    "Population",
    "SearchResult",
    "TournamentSelection",
    "default_space",
    "parse_hyperparameter",
    "train_population",
]
