"""Algorithms. Importing this package registers the built-in ones."""

from offrl.algos import awac, bc, bcq, cal_ql, cql, crr, dt, edac, iql, plas, rebrac, sac, sac_n, td3, td3_bc  # noqa: F401
from offrl.algos.base import Algorithm
from offrl.algos.registry import get_algo_class, list_algos, make_algo, register

__all__ = ["Algorithm", "get_algo_class", "list_algos", "make_algo", "register"]
