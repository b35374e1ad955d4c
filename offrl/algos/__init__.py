"""Algorithms. Importing this package registers the built-in ones."""

from offrl.algos import (  # noqa: F401
    awac,
    bc,
    bc_rnn,
    bc_transformer,
    bcq,
    cal_ql,
    cql,
    crr,
    discrete_bc,
    discrete_bcq,
    discrete_crr,
    discrete_iql,
    dqn,
    dt,
    edac,
    hbc,
    iql,
    plas,
    rebrac,
    sac,
    sac_n,
    td3,
    td3_bc,
)
from offrl.algos.base import Algorithm
from offrl.algos.registry import get_algo_class, list_algos, make_algo, register

__all__ = ["Algorithm", "get_algo_class", "list_algos", "make_algo", "register"]
