"""Reference returns for D4RL-style normalized scores: 100 * (R - random) / (expert - random).

In order of precedence:

1. references carried by the dataset (zoo datasets' ``ref_min_score`` /
   ``ref_max_score``; Minari's, read as ``minari/ref_*``);
2. offrl's zoo references for the exact environment id the zoo was built on
   (``offrl/zoo/policies/<env>/manifest.json``: uniform random actions, and
   the expert SAC policy sampled as in its dataset, measured here);
3. D4RL's published references (``d4rl/infos.py``, measured on the v2
   MuJoCo environments) for other versions of Hopper, HalfCheetah, Walker2d
   and Ant.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

POLICY_DIR = Path(__file__).parent / "policies"


@dataclasses.dataclass(frozen=True)
class Reference:
    random: float
    expert: float
    source: str


D4RL_REFERENCES: dict[str, Reference] = {
    "Hopper": Reference(-20.272305, 3234.3, "D4RL hopper"),
    "HalfCheetah": Reference(-280.178953, 12135.0, "D4RL halfcheetah"),
    "Walker2d": Reference(1.629008, 4592.3, "D4RL walker2d"),
    "Ant": Reference(-325.6, 3879.7, "D4RL ant"),
}


@lru_cache(maxsize=None)
def zoo_manifest(family: str) -> dict[str, Any] | None:
    path = POLICY_DIR / family / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def zoo_reference(env_id: str) -> Reference | None:
    family = env_id.split("/")[-1].split("-")[0].lower()
    info = zoo_manifest(family)
    if info is None or info["env_id"] != env_id:
        return None
    return Reference(float(info["reference"]["random"]), float(info["reference"]["expert"]), f"offrl zoo {family}")


def reference_returns(env_id: str | None, metadata: dict[str, Any] | None = None) -> Reference | None:
    metadata = metadata or {}
    for prefix, label in (("", metadata.get("ref_source", "dataset")), ("minari/", f"dataset {metadata.get('minari/dataset_id', '')}".strip())):
        low, high = metadata.get(f"{prefix}ref_min_score"), metadata.get(f"{prefix}ref_max_score")
        if low is not None and high is not None and high != low:
            return Reference(float(low), float(high), label)
    if not env_id:
        return None
    return zoo_reference(env_id) or D4RL_REFERENCES.get(env_id.split("/")[-1].split("-")[0])


def normalized_score(value: float, reference: Reference) -> float:
    return 100.0 * (value - reference.random) / (reference.expert - reference.random)
