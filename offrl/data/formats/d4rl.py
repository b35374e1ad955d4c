"""D4RL HDF5: top-level ``observations, actions, rewards, terminals, timeouts``,
optional ``next_observations``, per-step ``infos/*`` and scalar ``metadata/*``."""

from __future__ import annotations

from pathlib import Path

import h5py

from offrl.data.dataset import Dataset
from offrl.data.formats.columns import dataset_from_columns
from offrl.data.formats.hdf5util import open_hdf5, read_array, read_flat_group

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
    metadata = {f"d4rl/{key}": value for key, value in metadata.items()}
    return dataset_from_columns(path, columns, infos=infos, metadata=metadata)
