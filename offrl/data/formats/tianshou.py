"""Tianshou's ``ReplayBuffer.save_hdf5`` files, read with h5py (Tianshou itself is not needed).

``save_hdf5`` writes the buffer's ``__dict__`` with ``tianshou.data.utils.converter.to_hdf5``:
numbers become attributes of the root (``maxsize``, ``_size``, ``_index`` or, since Tianshou 1.0,
``_insertion_idx``), arrays become datasets tagged ``__data_type__="ndarray"`` (or ``"Tensor"``),
Batches and dicts become groups, and anything else is pickled into a byte dataset. The
transitions are the Batch group ``_meta``, every array ``maxsize`` rows long:

    _meta/obs            array, or a group of arrays for dict observations
    _meta/act, _meta/rew
    _meta/terminated, _meta/truncated, _meta/done     (before Tianshou 0.5: done only)
    _meta/obs_next       absent when the buffer ignored it (``ignore_obs_next=True``)
    _meta/info/<key>, _meta/policy/<key>              per-step extras, possibly nested

The buffer is a ring: once full, row ``_index`` is the oldest. Rows are returned oldest
first. Without terminated/truncated, ``done`` is a terminal unless ``info/TimeLimit.truncated``
(gym's time-limit flag) says it was a cut-off. The newest row, unless its episode ended, is cut
off by the end of the data: a timeout. Pickled entries are never loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.formats.columns import dataset_from_columns
from offrl.data.formats.hdf5util import open_hdf5
from offrl.data.tree import tree_map
from offrl.errors import DatasetError

ARRAY_TYPES = ("ndarray", "Tensor")
INDEX_ATTRS = ("_insertion_idx", "_index")  # Tianshou >= 1.0, before


def looks_like(handle: h5py.File) -> bool:
    return isinstance(handle.get("_meta"), h5py.Group) and "maxsize" in handle.attrs


def read(path: Path) -> Dataset:
    with open_hdf5(path) as handle:
        if "buffer_num" in handle.attrs or "buffers" in handle:
            raise DatasetError(
                path,
                "is a VectorReplayBuffer (ReplayBufferManager): its sub-buffers' positions are stored pickled, "
                "which offrl never loads; save each environment's ReplayBuffer (or a merged one) instead",
                key="buffers",
            )
        maxsize = _int_attr(handle, "maxsize", path)
        size = _int_attr(handle, "_size", path)
        index_key = next((key for key in INDEX_ATTRS if key in handle.attrs), INDEX_ATTRS[-1])
        index = _int_attr(handle, index_key, path)
        if not 0 < size <= maxsize:
            raise DatasetError(path, f"holds {size} transitions of a buffer of {maxsize}", key="_size")
        if not 0 <= index < maxsize:
            raise DatasetError(path, f"is {index}, outside the buffer of {maxsize} rows", key=index_key)
        # oldest first: a full ring starts at the insertion index
        order = slice(0, size) if size < maxsize or index == 0 else np.roll(np.arange(maxsize), -index)

        meta = handle["_meta"]

        def column(key: str) -> Any:
            return tree_map(lambda array: array[order], _read_tree(meta, key, path, maxsize))

        columns = {"observations": column("obs"), "actions": column("act"), "rewards": column("rew")}
        if "terminated" in meta and "truncated" in meta:
            layout = "terminated/truncated"
            terminated, truncated = column("terminated").astype(bool), column("truncated").astype(bool)
        else:
            layout = "done"
            done = column("done").astype(bool)
            cut = _time_limit_flags(meta, path, maxsize)
            truncated = done & cut[order] if cut is not None else np.zeros_like(done)
            terminated = done & ~truncated
        if "obs_next" in meta:
            columns["next_observations"] = column("obs_next")
        infos: dict[str, np.ndarray] = {}
        for group in ("info", "policy"):
            if isinstance(meta.get(group), h5py.Group):
                for key, array in _per_row_arrays(meta[group], maxsize).items():
                    infos[key if group == "info" else f"policy/{key}"] = array[order]
        metadata = {
            "tianshou/maxsize": maxsize,
            "tianshou/layout": layout,
            "tianshou/stack_num": int(handle.attrs.get("stack_num", 1)),
        }

    timeouts = truncated & ~terminated  # both set: the episode reached a terminal state
    if "next_observations" in columns and not (terminated[-1] or timeouts[-1]):
        timeouts[-1] = True  # the newest episode is cut off by the end of the data
    columns.update(terminals=terminated, timeouts=timeouts)
    return dataset_from_columns(path, columns, infos=infos, metadata=metadata)


def _int_attr(handle: h5py.File, key: str, path: Path) -> int:
    if key not in handle.attrs:
        found = ", ".join(sorted(handle.attrs)) or "nothing"
        raise DatasetError(path, f"missing buffer attribute (attributes: {found})", key=key)
    value = np.asarray(handle.attrs[key])
    if value.shape != () or value.dtype.kind not in "iu":
        raise DatasetError(path, f"expected an integer attribute, found {value!r}", key=key)
    return int(value)


def _read_tree(group: h5py.Group, key: str, path: Path, rows: int) -> np.ndarray | dict[str, Any]:
    """An array of ``rows`` rows, or a group of them as a dict (dict observations)."""
    name = f"{group.name.strip('/')}/{key}"
    if key not in group:
        found = ", ".join(sorted(group)) or "nothing"
        raise DatasetError(path, f"missing (the buffer holds: {found})", key=name)
    node = group[key]
    if isinstance(node, h5py.Group):
        if len(node) == 0:
            raise DatasetError(path, "is an empty group: nothing was stored", key=name)
        return {sub: _read_tree(node, sub, path, rows) for sub in node}
    kind = node.attrs.get("__data_type__", "ndarray")
    if kind not in ARRAY_TYPES:
        raise DatasetError(path, f"is stored pickled ({kind}), which offrl never loads", key=name)
    try:
        array = node[()]
    except (OSError, RuntimeError, ValueError, TypeError) as error:
        raise DatasetError(path, f"cannot be read (truncated or corrupt file?): {error}", key=name) from None
    if array.ndim == 0 or len(array) != rows:
        found = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
        raise DatasetError(path, f"has {found}, the buffer has {rows} (maxsize)", key=name)
    return array


def _per_row_arrays(group: h5py.Group, rows: int) -> dict[str, np.ndarray]:
    """Numeric arrays of ``rows`` rows under ``group``, keyed by their path inside it; others are skipped."""
    out: dict[str, np.ndarray] = {}

    def visit(name: str, node: Any) -> None:
        if not isinstance(node, h5py.Dataset) or node.attrs.get("__data_type__", "ndarray") not in ARRAY_TYPES:
            return
        if node.shape[:1] == (rows,) and node.dtype.kind in "biuf":
            out[name] = node[()]

    group.visititems(visit)
    return out


def _time_limit_flags(meta: h5py.Group, path: Path, rows: int) -> np.ndarray | None:
    info = meta.get("info")
    if not isinstance(info, h5py.Group) or "TimeLimit.truncated" not in info:
        return None
    return np.asarray(_read_tree(info, "TimeLimit.truncated", path, rows)).astype(bool)
