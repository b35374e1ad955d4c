"""SAC-N: offline SAC made pessimistic by the minimum over a large critic ensemble.

An, Moon, Kim & Song 2021, "Uncertainty-Based Offline Reinforcement Learning
with Diversified Q-Ensemble". The algorithm is ``sac.py`` with N critics in
one batched ensemble; this file holds the paper's (and CORL's) offline
configuration: N = 10, three hidden layers of 256, EDAC's initialization.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from offrl.algos.registry import register
from offrl.algos.sac import SAC, SACConfig


@dataclasses.dataclass
class SACNConfig(SACConfig):
    num_critics: int = 10  # ensemble size N (the paper tunes it per dataset: 10 to 500)
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # actor and critic widths
    init: Literal["default", "edac"] = "edac"  # hidden biases 0.1, small uniform output layers


@register("sac_n", paper="An et al. 2021, Uncertainty-Based Offline RL with Diversified Q-Ensemble (SAC-N)")
class SACN(SAC):
    """SAC configured as SAC-N: nothing is overridden but the defaults."""

    Config = SACNConfig
