"""Minari datasets, read through the ``minari`` package's own reader.

Accepted: a dataset directory (holding ``data/``), its ``data/`` directory,
its ``main_data.hdf5`` file, or a dataset id found in the local Minari root
(``MINARI_DATASETS_PATH``). offrl never downloads: a remote-only id is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.tree import tree_map
from offrl.errors import DatasetError


def data_directory(path: Path) -> Path | None:
    """The directory MinariDataset reads, if ``path`` is laid out as a Minari dataset."""
    candidates = [path / "data", path] if path.is_dir() else [path.parent]
    for candidate in candidates:
        if (candidate / "metadata.json").is_file() and any(candidate.glob("main_data.*")):
            return candidate
    return None


def local_dataset_directory(dataset_id: str) -> Path | None:
    """The data directory of ``dataset_id`` in the local Minari root (``MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets``, as minari places them), if it is there. Looked up without minari's
    ``get_dataset_path``, which creates the root: a mistyped path must leave nothing behind."""
    root = Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
    if not dataset_id or not root.is_dir():
        return None
    try:
        return data_directory(root / dataset_id)
    except (OSError, ValueError):  # a name the file system refuses
        return None


def read(path: Path, *, data_dir: Path | None = None) -> Dataset:
    try:
        import minari
    except ImportError:
        raise DatasetError(path, "reading Minari datasets needs the minari package: pip install 'offrl[minari]'") from None
    data_dir = data_dir or data_directory(path)
    if data_dir is None:
        raise DatasetError(path, "not a Minari dataset (no data/metadata.json beside a main_data file)")
    try:
        source = minari.MinariDataset(data_dir)
        episodes = list(source.iterate_episodes())
        observation_space, action_space = source.observation_space, source.action_space
        raw_metadata = json.loads((data_dir / "metadata.json").read_text())
    except DatasetError:
        raise
    except Exception as error:  # the minari reader's errors for a broken file are not one type
        raise DatasetError(path, f"cannot be read as a Minari dataset: {type(error).__name__}: {error}") from None
    if not episodes:
        raise DatasetError(path, "the dataset is empty (0 episodes)")

    parts: dict[str, list[Any]] = {k: [] for k in ("obs", "next", "actions", "rewards", "terminals", "timeouts")}
    for episode in episodes:
        steps = len(episode.rewards)
        parts["obs"].append(tree_map(lambda a, s=steps: np.asarray(a)[:s], episode.observations))
        parts["next"].append(tree_map(lambda a, s=steps: np.asarray(a)[1 : s + 1], episode.observations))
        parts["actions"].append(np.asarray(episode.actions))
        parts["rewards"].append(np.asarray(episode.rewards))
        terminals = np.asarray(episode.terminations, dtype=bool).copy()
        timeouts = np.asarray(episode.truncations, dtype=bool).copy() & ~terminals
        if steps and not (terminals[-1] or timeouts[-1]):
            timeouts[-1] = True  # the episode's recording stops here: cut off, not terminal
        parts["terminals"].append(terminals)
        parts["timeouts"].append(timeouts)

    def concat(items: list[Any]) -> Any:
        if isinstance(items[0], dict):
            return {key: concat([item[key] for item in items]) for key in items[0]}
        return np.concatenate(items)

    metadata: dict[str, Any] = {"minari/dataset_id": raw_metadata.get("dataset_id")}
    for key in ("ref_min_score", "ref_max_score", "algorithm_name"):
        if raw_metadata.get(key) is not None:
            metadata[f"minari/{key}"] = raw_metadata[key]
    env_id = _env_id(raw_metadata)
    if env_id:
        metadata["env_id"] = env_id
    return Dataset(
        observations=concat(parts["obs"]),
        actions=concat(parts["actions"]),
        rewards=concat(parts["rewards"]),
        next_observations=concat(parts["next"]),
        terminals=concat(parts["terminals"]),
        timeouts=concat(parts["timeouts"]),
        observation_space=observation_space,
        action_space=action_space,
        metadata=metadata,
        source=str(path),
    )


def _env_id(metadata: dict[str, Any]) -> str | None:
    spec = metadata.get("env_spec")
    try:
        spec = json.loads(spec) if isinstance(spec, str) else spec
        return spec.get("id") if isinstance(spec, dict) else None
    except ValueError:
        return None
