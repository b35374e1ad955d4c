"""Cal-QL: CQL whose conservative penalty stops at the Monte-Carlo return of the data.

Nakamoto et al. 2023, "Cal-QL: Calibrated Offline RL Pre-Training for
Efficient Online Fine-Tuning". The only change to CQL is in the regularizer:
the Q-values of policy actions are raised to at least the discounted
return-to-go of the dataset row (computed once by the dataset layer), so the
learned values are calibrated and online fine-tuning does not start by
unlearning a pessimistic critic. Online rows have no known return-to-go and
are not bounded.
"""

from __future__ import annotations

import dataclasses

from offrl.algos.cql import CQL, CQLConfig
from offrl.algos.registry import register


@dataclasses.dataclass
class CalQLConfig(CQLConfig):
    mc_lower_bound: bool = True  # the Cal-QL bound: policy-action Q-values raised to the Monte-Carlo return
    cql_weight: float = 5.0  # CQL weight of the Cal-QL paper


@register("cal_ql", paper="Nakamoto et al. 2023, Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online Fine-Tuning")
class CalQL(CQL):
    """CQL configured with the Monte-Carlo lower bound: nothing is overridden but the defaults."""

    Config = CalQLConfig
