"""Build a Dataset from D4RL-style columns, deriving next observations when a file lacks them.

D4RL files store ``observations, actions, rewards, terminals, timeouts`` and
often no ``next_observations``. Inside an episode the next observation is the
next row. At a timeout the next row is the first observation of the *next*
episode, so the true next observation is unknown: that transition is dropped
(as ``d4rl.qlearning_dataset`` does) and the row before it becomes the
episode's last, flagged as a timeout. The same holds for a final row that is
not terminal. At a terminal the next observation is never bootstrapped from;
the row's own observation stands in for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from offrl.data import validation
from offrl.data.dataset import Dataset
from offrl.data.tree import tree_map, tree_map2
from offrl.errors import DatasetError

REQUIRED = ("observations", "actions", "rewards", "terminals")


def dataset_from_columns(
    source: Path | str,
    columns: dict[str, Any],
    *,
    infos: dict[str, np.ndarray] | None = None,
    metadata: dict[str, Any] | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> Dataset:
    source = str(source)
    for key in REQUIRED:
        if key not in columns:
            found = ", ".join(sorted(columns)) or "nothing"
            raise DatasetError(source, f"missing required key (found: {found})", key=key)
    infos = dict(infos or {})
    metadata = dict(metadata or {})
    present = {k: v for k, v in columns.items() if k in (*REQUIRED, "timeouts", "next_observations")}
    n = validation.check_lengths(source, {**present, **{f"infos/{k}": v for k, v in infos.items()}})
    terminals = validation.as_flags(source, "terminals", columns["terminals"])
    timeouts = (
        validation.as_flags(source, "timeouts", columns["timeouts"]) if "timeouts" in columns else np.zeros(n, bool)
    )
    validation.check_flags_exclusive(source, terminals, timeouts)
    observations, actions, rewards = columns["observations"], columns["actions"], columns["rewards"]

    if "next_observations" in columns:
        next_observations = columns["next_observations"]
    else:
        following = tree_map(lambda a: np.concatenate([a[1:], a[-1:]]), observations)

        def own_row_at_terminals(after: np.ndarray, own: np.ndarray) -> np.ndarray:
            mask = terminals.reshape(n, *([1] * (own.ndim - 1)))
            return np.where(mask, own, after)

        next_observations = tree_map2(own_row_at_terminals, following, observations)
        keep = ~timeouts
        keep[-1] = terminals[-1]
        dropped = np.flatnonzero(~keep)
        if len(dropped):
            before = dropped - 1
            before = before[before >= 0]
            before = before[keep[before] & ~terminals[before]]
            timeouts = timeouts.copy()
            timeouts[before] = True
            rows = np.flatnonzero(keep)
            if len(rows) == 0:
                raise DatasetError(source, "no transition has a known next observation (every episode is one step)")
            observations = tree_map(lambda a: a[rows], observations)
            next_observations = tree_map(lambda a: a[rows], next_observations)
            actions, rewards, terminals, timeouts = actions[rows], rewards[rows], terminals[rows], timeouts[rows]
            infos = {key: value[rows] for key, value in infos.items()}
        metadata["next_observations"] = "derived"
        metadata["dropped_transitions"] = int(len(dropped))

    return Dataset(
        observations=observations,
        actions=actions,
        rewards=rewards,
        next_observations=next_observations,
        terminals=terminals,
        timeouts=timeouts,
        observation_space=observation_space,
        action_space=action_space,
        infos=infos,
        metadata=metadata,
        source=source,
    )
