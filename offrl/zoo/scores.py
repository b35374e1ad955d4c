"""Reference returns for D4RL-style normalized scores: 100 * (R - random) / (expert - random).

The MuJoCo references are D4RL's (``d4rl/infos.py``, measured on the v2
environments); offrl applies them to every version of the environment
family. Pendulum's are offrl's own, measured with
``python -m offrl.zoo.pendulum --measure`` (500 episodes each: a uniform
random policy, and the noise-free scripted controller).
A dataset that carries its own references (Minari's ``ref_min_score`` /
``ref_max_score``) takes precedence.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Reference:
    random: float
    expert: float
    source: str


REFERENCES: dict[str, Reference] = {
    "Hopper": Reference(-20.272305, 3234.3, "D4RL hopper"),
    "HalfCheetah": Reference(-280.178953, 12135.0, "D4RL halfcheetah"),
    "Walker2d": Reference(1.629008, 4592.3, "D4RL walker2d"),
    "Ant": Reference(-325.6, 3879.7, "D4RL ant"),
    "Pendulum": Reference(-1209.01, -145.13, "offrl pendulum (scripted controller)"),
}


def reference_returns(env_id: str | None, metadata: dict[str, Any] | None = None) -> Reference | None:
    metadata = metadata or {}
    low, high = metadata.get("minari/ref_min_score"), metadata.get("minari/ref_max_score")
    if low is not None and high is not None and high != low:
        return Reference(float(low), float(high), f"dataset {metadata.get('minari/dataset_id', '')}".strip())
    if not env_id:
        return None
    family = env_id.split("/")[-1].split("-")[0]
    return REFERENCES.get(family)


def normalized_score(value: float, reference: Reference) -> float:
    return 100.0 * (value - reference.random) / (reference.expert - reference.random)
