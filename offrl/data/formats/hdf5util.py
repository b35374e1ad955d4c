"""h5py access that turns low-level failures into DatasetErrors naming the file and key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.errors import DatasetError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def has_hdf5_signature(path: Path) -> bool:
    """Whether the file's bytes are HDF5 (the signature at its start, or after a user block), whatever its name."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return head == HDF5_SIGNATURE or (bool(head) and h5py.is_hdf5(str(path)))


def is_hdf5(path: Path) -> bool:
    """HDF5 by content, or by name (so a truncated ``.hdf5`` file is reported as a broken HDF5 file)."""
    return has_hdf5_signature(path) or path.suffix.lower() in (".hdf5", ".h5", ".hdf")


@contextlib.contextmanager
def open_hdf5(path: Path) -> Iterator[h5py.File]:
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(path, f"cannot be opened as HDF5 (truncated or corrupt file?): {error}") from None
    with handle:
        yield handle


def read_array(group: h5py.Group, key: str, source: Path) -> np.ndarray:
    try:
        node = group[key]
    except KeyError:
        raise DatasetError(source, "missing required key", key=_full_key(group, key)) from None
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(source, "expected an array, found a group", key=_full_key(group, key))
    try:
        return node[()]
    except (OSError, RuntimeError, ValueError, TypeError) as error:
        raise DatasetError(source, f"cannot be read (truncated or corrupt file?): {error}", key=_full_key(group, key)) from None


def read_tree(group: h5py.Group, key: str, source: Path) -> np.ndarray | dict[str, Any]:
    """An array, or a group of arrays as a dict (dict observations)."""
    node = group.get(key)
    if isinstance(node, h5py.Group):
        return {name: read_tree(node, name, source) for name in node}
    return read_array(group, key, source)


def read_flat_group(group: h5py.Group, source: Path, *, scalars_only: bool = False) -> dict[str, Any]:
    """Every dataset under ``group`` keyed by its path relative to the group."""
    out: dict[str, Any] = {}

    def visit(name: str, node: Any) -> None:
        if not isinstance(node, h5py.Dataset):
            return
        if scalars_only and node.shape not in ((), (1,)):
            return
        value = read_array(group, name, source)
        if scalars_only:
            value = np.asarray(value).reshape(-1)[0]
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            elif hasattr(value, "item"):
                value = value.item()
        out[name] = value

    group.visititems(visit)
    return out


def _full_key(group: h5py.Group, key: str) -> str:
    prefix = group.name.strip("/")
    return f"{prefix}/{key}" if prefix else key
