"""D4RL HDF5: top-level ``observations, actions, rewards, terminals, timeouts``,
optional ``next_observations``, per-step ``infos/*`` and scalar ``metadata/*``.

When offrl writes this layout it adds ``metadata/offrl/observation_space`` and
``metadata/offrl/action_space`` (JSON strings), so the action bounds survive
the round trip; other tools ignore them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.formats.columns import dataset_from_columns
from offrl.data.formats.hdf5util import open_hdf5, read_array, read_flat_group
from offrl.errors import DatasetError
from offrl.io import atomic_path
from offrl.spaces import space_from_json, space_to_json

COLUMNS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def looks_like(handle: h5py.File) -> bool:
    return "observations" in handle and "actions" in handle and "offrl_format" not in handle.attrs


def read(path: Path) -> Dataset:
    with open_hdf5(path) as handle:
        columns = {key: read_array(handle, key, path) for key in COLUMNS if key in handle}
        infos = read_flat_group(handle["infos"], path) if isinstance(handle.get("infos"), h5py.Group) else {}
        metadata = (
            read_flat_group(handle["metadata"], path, scalars_only=True)
            if isinstance(handle.get("metadata"), h5py.Group)
            else {}
        )
    spaces: dict[str, Any] = {}
    for name in ("observation_space", "action_space"):
        text = metadata.pop(f"offrl/{name}", None)
        if text is not None:
            try:
                spaces[name] = space_from_json(json.loads(text))
            except (ValueError, KeyError, TypeError) as error:
                raise DatasetError(path, f"malformed space description: {error}", key=f"metadata/offrl/{name}") from None
    plain = {key[len("offrl/") :]: v for key, v in metadata.items() if key.startswith("offrl/")}
    metadata = {f"d4rl/{key}": value for key, value in metadata.items() if not key.startswith("offrl/")}
    metadata.update(plain)
    return dataset_from_columns(path, columns, infos=infos, metadata=metadata, **spaces)


def write(dataset: Dataset, path: Path) -> None:
    """Write the D4RL layout (with ``next_observations``); dict observations have no D4RL form."""
    if isinstance(dataset.observations, dict):
        raise DatasetError(path, "dict observations cannot be written in the D4RL layout: use .npz or offrl HDF5")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            handle.create_dataset(name, data=getattr(dataset, name))
        for key, value in dataset.infos.items():
            handle.create_dataset(f"infos/{key}", data=np.asarray(value))
        handle.create_dataset("metadata/offrl/observation_space", data=json.dumps(space_to_json(dataset.observation_space)))
        handle.create_dataset("metadata/offrl/action_space", data=json.dumps(space_to_json(dataset.action_space)))
        for key, value in dataset.metadata.items():
            if isinstance(value, (str, int, float, bool)) and key != "format":
                handle.create_dataset(f"metadata/offrl/{key}", data=value)
