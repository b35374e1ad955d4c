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

A ``VectorReplayBuffer`` (``ReplayBufferManager``, attribute ``buffer_num``) keeps one ring per
environment side by side in ``_meta``: ring ``i`` owns rows ``_offset[i] .. _extend_offset[i + 1] - 1``,
holds ``_lengths[i]`` transitions and wrote its newest at row ``last_index[i]`` (all plain integer
arrays). Its own ``_size`` and ``_insertion_idx`` stay 0, and the sub-buffers (``buffers``) are
pickled, so each ring's order is recovered from those arrays: a ring that never filled holds its
first ``_lengths[i]`` rows, a full one starts after its newest row. The rings follow one another,
each oldest first, each ending its last episode.
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
        maxsize = _int_attr(handle, "maxsize", path)
        metadata: dict[str, Any] = {"tianshou/maxsize": maxsize}
        if "buffer_num" in handle.attrs or "buffers" in handle:
            order, ends, metadata["tianshou/buffer_num"] = _vector_order(handle, path, maxsize)
        else:
            order, ends = _ring_order(handle, path, maxsize), [-1]

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
        metadata.update({"tianshou/layout": layout, "tianshou/stack_num": int(handle.attrs.get("stack_num", 1))})

    timeouts = truncated & ~terminated  # both set: the episode reached a terminal state
    for end in ends:  # each ring's newest episode is cut off by the end of the data
        timeouts[end] |= not terminated[end]  # without obs_next, that step is then dropped (no next observation)
    columns.update(terminals=terminated, timeouts=timeouts)
    return dataset_from_columns(path, columns, infos=infos, metadata=metadata)


def _ring_order(handle: h5py.File, path: Path, maxsize: int) -> slice | np.ndarray:
    """Rows of a ReplayBuffer oldest first: a full ring starts at the insertion index."""
    size = _int_attr(handle, "_size", path)
    index_key = next((key for key in INDEX_ATTRS if key in handle.attrs), INDEX_ATTRS[-1])
    index = _int_attr(handle, index_key, path)
    if not 0 < size <= maxsize:
        raise DatasetError(path, f"holds {size} transitions of a buffer of {maxsize}", key="_size")
    if not 0 <= index < maxsize:
        raise DatasetError(path, f"is {index}, outside the buffer of {maxsize} rows", key=index_key)
    return slice(0, size) if size < maxsize or index == 0 else np.roll(np.arange(maxsize), -index)


def _vector_order(handle: h5py.File, path: Path, maxsize: int) -> tuple[np.ndarray, list[int], int]:
    """Rows of a VectorReplayBuffer: each sub-buffer's ring oldest first, one after another; the
    position of each ring's newest row in that order; the number of sub-buffers."""
    offsets = _int_array(handle, "_offset", path)
    count = len(offsets)
    edges = _int_array(handle, "_extend_offset", path) if "_extend_offset" in handle else np.append(offsets, maxsize)
    lengths = _int_array(handle, "_lengths", path)
    newest = _int_array(handle, "last_index", path)
    if len(edges) != count + 1 or (edges[:-1] != offsets).any() or edges[-1] != maxsize or (np.diff(edges) < 1).any():
        raise DatasetError(
            path, f"sub-buffer bounds {edges.tolist()} do not split the buffer of {maxsize} rows", key="_extend_offset"
        )
    for key, array in (("_lengths", lengths), ("last_index", newest)):
        if len(array) != count:
            raise DatasetError(path, f"has {len(array)} entries for {count} sub-buffers", key=key)
    parts: list[np.ndarray] = []
    ends: list[int] = []
    for ring, (start, stop, size, last) in enumerate(zip(edges[:-1], edges[1:], lengths, newest)):
        capacity = int(stop - start)
        if size == 0:
            continue
        if not 0 < size <= capacity:
            raise DatasetError(path, f"sub-buffer {ring} holds {size} transitions of {capacity}", key="_lengths")
        last = int(last - start)
        if not 0 <= last < capacity or (size < capacity and last != size - 1):
            raise DatasetError(
                path,
                f"sub-buffer {ring} (rows {start} .. {stop - 1}, {size} transitions) cannot have written "
                f"its newest at row {last + start}",
                key="last_index",
            )
        local = np.arange(size) if size < capacity else (last + 1 + np.arange(capacity)) % capacity
        parts.append(start + local)
        ends.append(sum(len(part) for part in parts) - 1)
    if not parts:
        raise DatasetError(path, "holds no transition: every sub-buffer is empty", key="_lengths")
    return np.concatenate(parts), ends, count


def _int_attr(handle: h5py.File, key: str, path: Path) -> int:
    if key not in handle.attrs:
        found = ", ".join(sorted(handle.attrs)) or "nothing"
        raise DatasetError(path, f"missing buffer attribute (attributes: {found})", key=key)
    value = np.asarray(handle.attrs[key])
    if value.shape != () or value.dtype.kind not in "iu":
        raise DatasetError(path, f"expected an integer attribute, found {value!r}", key=key)
    return int(value)


def _int_array(handle: h5py.File, key: str, path: Path) -> np.ndarray:
    """A 1-D integer array the buffer stored as a plain dataset."""
    node = handle.get(key)
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(
            path, "missing: a VectorReplayBuffer file needs _offset, _lengths and last_index to place its sub-buffers",
            key=key,
        )
    kind = node.attrs.get("__data_type__", "ndarray")
    if kind not in ARRAY_TYPES or node.ndim != 1 or node.dtype.kind not in "iu":
        raise DatasetError(path, f"expected a 1-D integer array, found {kind} {node.dtype} {node.shape}", key=key)
    return node[()].astype(np.int64)


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
