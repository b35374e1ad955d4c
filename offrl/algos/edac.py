"""EDAC: SAC-N plus a penalty that diversifies the critics' action-gradients, so fewer critics suffice.

An, Moon, Kim & Song 2021, "Uncertainty-Based Offline Reinforcement Learning
with Diversified Q-Ensemble". The penalty, ``gradient_diversity`` in
``sac.py``, is the mean pairwise cosine similarity of dQ_e/da over the
ensemble, weighted by ``eta``. Defaults as CORL's: N = 10, eta = 1.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from offrl.algos.registry import register
from offrl.algos.sac import SAC, SACConfig


@dataclasses.dataclass
class EDACConfig(SACConfig):
    num_critics: int = 10  # ensemble size N
    eta: float = 1.0  # weight of the gradient-diversity penalty
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # actor and critic widths
    init: Literal["default", "edac"] = "edac"  # hidden biases 0.1, small uniform output layers


@register("edac", paper="An et al. 2021, Uncertainty-Based Offline RL with Diversified Q-Ensemble (EDAC)")
class EDAC(SAC):
    """SAC configured as EDAC: nothing is overridden but the defaults."""

    Config = EDACConfig
