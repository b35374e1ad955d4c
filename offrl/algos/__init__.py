"""Algorithms. Importing this package registers the built-in ones."""

from offrl.algos import bc, iql, sac, td3, td3_bc  # noqa: F401  (registration)
from offrl.algos.base import Algorithm
from offrl.algos.registry import get_algo_class, list_algos, make_algo, register

__all__ = ["Algorithm", "get_algo_class", "list_algos", "make_algo", "register"]
