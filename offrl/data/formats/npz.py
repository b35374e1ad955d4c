"""numpy ``.npz``: D4RL column names (dict observations as ``observations/<key>``),
``infos/<key>``, and, when offrl wrote it, a format version, spaces and metadata as JSON."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.formats.columns import dataset_from_columns
from offrl.data.tree import tree_items
from offrl.errors import DatasetError
from offrl.io import atomic_path, to_jsonable
from offrl.spaces import space_from_json, space_to_json

FORMAT_VERSION = 1
HEADER_KEYS = ("offrl_format_version", "observation_space", "action_space", "metadata")


ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a member first; an empty archive
NPY_SIGNATURE = b"\x93NUMPY"


def is_zip(path: Path) -> bool:
    """Whether the file starts as a zip archive (every ``.npz`` does, compressed or not)."""
    return _head(path)[:4] in ZIP_SIGNATURES


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(8)
    except OSError:
        return b""


def read(path: Path) -> Dataset:
    if not is_zip(path):
        if _head(path)[:6] == NPY_SIGNATURE:
            raise DatasetError(path, "holds one .npy array, not an .npz archive of columns (write it with numpy.savez)")
        raise DatasetError(path, "is not an npz archive (no zip signature: truncated or corrupt file?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise DatasetError(path, "holds pickled Python objects, which offrl never loads") from None
        raise DatasetError(path, f"cannot be read as npz: {error}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DatasetError(path, f"cannot be read as npz (truncated or corrupt file?): {error}") from None

    observation_space = action_space = None
    metadata: dict[str, Any] = {}
    if "offrl_format_version" in arrays:
        version = int(arrays["offrl_format_version"])
        if version > FORMAT_VERSION:
            raise DatasetError(
                path, f"written by a newer offrl (format version {version}); this offrl reads up to {FORMAT_VERSION}"
            )
        try:
            observation_space = space_from_json(json.loads(str(arrays["observation_space"])))
            action_space = space_from_json(json.loads(str(arrays["action_space"])))
            metadata = json.loads(str(arrays.get("metadata", "{}")))
        except (KeyError, ValueError, TypeError) as error:
            raise DatasetError(path, f"header entries are missing or malformed: {error}") from None

    columns: dict[str, Any] = {}
    infos: dict[str, np.ndarray] = {}
    for key, array in arrays.items():
        if key in HEADER_KEYS:
            continue
        head, _, rest = key.partition("/")
        if head == "infos" and rest:
            infos[rest] = array
        elif rest:
            columns.setdefault(head, {})[rest] = array
        else:
            columns[key] = array
    return dataset_from_columns(
        path, columns, infos=infos, metadata=metadata, observation_space=observation_space, action_space=action_space
    )


def write(dataset: Dataset, path: Path, *, compress: bool = False) -> None:
    arrays: dict[str, np.ndarray] = {
        "offrl_format_version": np.asarray(FORMAT_VERSION),
        "observation_space": np.asarray(json.dumps(space_to_json(dataset.observation_space))),
        "action_space": np.asarray(json.dumps(space_to_json(dataset.action_space))),
        "metadata": np.asarray(json.dumps(to_jsonable(dataset.metadata))),
    }
    for name in ("observations", "next_observations"):
        arrays.update(dict(tree_items(getattr(dataset, name), name)))
    for name in ("actions", "rewards", "terminals", "timeouts"):
        arrays[name] = getattr(dataset, name)
    arrays.update({f"infos/{key}": np.asarray(value) for key, value in dataset.infos.items()})
    save = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save(handle, **arrays)
