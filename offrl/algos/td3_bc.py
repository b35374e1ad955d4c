"""TD3+BC: TD3 with a behaviour-cloning term in the actor loss.

Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement
Learning". The algorithm is TD3 (``td3.py``) with ``alpha`` set; this file
holds the paper's MuJoCo configuration: alpha 2.5, policy noise 0.2 clipped
at 0.5, actor updated every second step, states standardized.
"""

from __future__ import annotations

import dataclasses

from offrl.algos.registry import register
from offrl.algos.td3 import TD3, TD3Config


@dataclasses.dataclass
class TD3BCConfig(TD3Config):
    alpha: float = 2.5  # lambda = alpha / mean|Q| weighs Q against the BC term
    normalize_observations: bool = True  # standardize states with dataset mean/std (+1e-3), as the paper


@register("td3_bc", paper="Fujimoto & Gu 2021, A Minimalist Approach to Offline Reinforcement Learning")
class TD3BC(TD3):
    """TD3 configured as TD3+BC: nothing is overridden but the defaults."""

    Config = TD3BCConfig
