"""offrl's memory-mapped layout, for datasets larger than memory: a directory of ``.npy`` files.

    data.offrl/
      meta.json                 {"offrl_format": "memmap", "format_version", "length",
                                 "observation_space", "action_space", "metadata", "infos"}
      observations.npy          or observations/<key>.npy for dict spaces
      next_observations.npy     or next_observations/<key>.npy
      actions.npy  rewards.npy  terminals.npy  timeouts.npy
      infos/<key>.npy

Reading opens every column with ``np.load(..., mmap_mode="r")``: nothing is
read until rows are sampled, and the pages read live in the page cache, not
in the process's memory. ``MemmapWriter`` writes one chunk of rows at a time
into a temporary directory beside the target and renames it into place when
done, so a converter never holds the dataset and a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import gymnasium as gym
import numpy as np
from numpy.lib import format as npy

from offrl.data import validation
from offrl.data.dataset import Dataset, infer_action_space, infer_observation_space
from offrl.data.tree import tree_items, tree_map
from offrl.errors import DatasetError
from offrl.io import to_jsonable
from offrl.spaces import space_from_json, space_to_json

FORMAT_VERSION = 1
MARKER = "memmap"
META = "meta.json"
SUFFIX = ".offrl"
FLAT_COLUMNS = ("actions", "rewards", "terminals", "timeouts")
# Rows per chunk when copying a dataset into the layout: about this many bytes of all columns together.
COPY_CHUNK_BYTES = 64 * 2**20


def looks_like(path: Path) -> bool:
    """A directory whose meta.json carries the memmap marker (of any version: ``read`` checks it), or
    whose meta.json is damaged in a ``.offrl`` directory or beside the marker (``read`` names the damage)."""
    meta = path / META
    if not (path.is_dir() and meta.is_file()):
        return False
    try:
        text = meta.read_text()
    except (OSError, ValueError):
        return path.suffix == SUFFIX
    try:
        header = json.loads(text)
    except ValueError:
        return path.suffix == SUFFIX or '"offrl_format"' in text
    return isinstance(header, dict) and header.get("offrl_format") == MARKER


def read(path: Path, *, mmap: bool = True) -> Dataset:
    """The dataset in ``path``, memory-mapped (``mmap=False`` reads every column into memory)."""
    path = Path(path)
    meta = _read_meta(path)
    length = meta["length"]
    try:
        observation_space = space_from_json(meta["observation_space"])
        action_space = space_from_json(meta["action_space"])
    except (KeyError, ValueError, TypeError) as error:
        raise DatasetError(path / META, f"malformed space description: {error}") from None

    def column(name: str) -> np.ndarray:
        return _load_column(path, name, length, mmap=mmap)

    def observations(name: str, space: gym.Space) -> Any:
        if isinstance(space, gym.spaces.Dict):
            return {key: observations(f"{name}/{key}", sub) for key, sub in space.spaces.items()}
        return column(name)

    return Dataset(
        observations=observations("observations", observation_space),
        actions=column("actions"),
        rewards=column("rewards"),
        next_observations=observations("next_observations", observation_space),
        terminals=column("terminals"),
        timeouts=column("timeouts"),
        observation_space=observation_space,
        action_space=action_space,
        infos={key: column(f"infos/{key}") for key in meta.get("infos", [])},
        metadata=dict(meta.get("metadata", {})),
        source=str(path),
    )


def write(dataset: Dataset, path: Path, *, overwrite: bool = False) -> None:
    """Copy ``dataset`` into the layout a chunk of rows at a time (a memory-mapped source stays on disk)."""
    columns = {
        "observations": dataset.observations,
        "actions": dataset.actions,
        "rewards": dataset.rewards,
        "next_observations": dataset.next_observations,
        "terminals": dataset.terminals,
        "timeouts": dataset.timeouts,
        "infos": dataset.infos,
    }
    row_bytes = sum(array[:1].nbytes for _, array in tree_items(columns, ""))
    step = max(1, COPY_CHUNK_BYTES // max(1, row_bytes))
    with MemmapWriter(path, capacity=len(dataset), overwrite=overwrite) as writer:
        for start in range(0, len(dataset), step):
            writer.append(**tree_map(lambda array: array[start : start + step], columns))
        writer.close(
            observation_space=dataset.observation_space, action_space=dataset.action_space, metadata=dataset.metadata
        )


class MemmapWriter:
    """Build an offrl-memmap directory a chunk of rows at a time, without holding it in memory.

    ``append`` adds rows at the end; ``put`` writes one column at given rows (a converter that
    reorders a ring buffer writes where each row belongs). Column files are created on first write
    with that chunk's dtype and row shape, preallocated to ``capacity`` rows and doubled when full.
    ``close`` trims them to the rows written, writes meta.json and renames the directory into
    place; leaving a ``with`` block on an error (or ``abort``) removes everything written.

        with MemmapWriter("atari.offrl", capacity=n) as writer:
            for chunk in chunks:
                writer.append(observations=..., actions=..., rewards=..., next_observations=...,
                              terminals=..., timeouts=...)
            writer.close(action_space=gym.spaces.Discrete(18), metadata={"env_id": ...})
    """

    def __init__(self, path: str | os.PathLike, *, capacity: int = 2**16, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DatasetError(self.path, "already exists: refusing to overwrite it")
        if self.path.exists() and not looks_like(self.path):  # overwrite replaces a dataset offrl wrote, nothing else
            raise DatasetError(self.path, "exists and is not an offrl-memmap dataset: offrl replaces only its own (remove it yourself)")
        self.overwrite = overwrite
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent))
        self.capacity = max(1, int(capacity))
        self.length = 0  # rows written so far: one past the highest row any column was written at
        self.columns: dict[str, np.memmap] = {}
        self.closed = False

    def __enter__(self) -> MemmapWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self.closed:
            self.abort()

    def append(
        self,
        *,
        observations: Any,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_observations: Any,
        terminals: np.ndarray,
        timeouts: np.ndarray,
        infos: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Add rows after the last row written; every column gets the same number of rows."""
        columns = {
            **dict(tree_items(observations, "observations")),
            **dict(tree_items(next_observations, "next_observations")),
            "actions": actions,
            "rewards": rewards,
            "terminals": terminals,
            "timeouts": timeouts,
            **{f"infos/{key}": value for key, value in (infos or {}).items()},
        }
        counts = {len(np.asarray(value)) for value in columns.values()}
        if len(counts) != 1:
            raise ValueError(f"append needs the same number of rows in every column, got {sorted(counts)}")
        rows = slice(self.length, self.length + counts.pop())
        for name, value in columns.items():
            self.put(name, rows, value)

    def put(self, name: str, rows: slice | np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` into column ``name`` (``observations/<key>``, ``infos/<key>`` ...) at ``rows``."""
        if self.closed:
            raise ValueError("the writer is closed")
        values = _stored_dtype(name, np.asarray(values))
        if isinstance(rows, slice):
            stop = rows.stop
        else:
            rows = np.asarray(rows, dtype=np.int64)
            stop = int(rows.max()) + 1 if len(rows) else 0
        if stop > self.capacity:
            self._grow(max(stop, 2 * self.capacity))
        column = self.columns.get(name)
        if column is None:
            column = self.columns[name] = self._create(name, values.dtype, values.shape[1:])
        elif column.dtype != values.dtype or column.shape[1:] != values.shape[1:]:
            raise ValueError(
                f"column {name} holds {column.dtype} rows of shape {column.shape[1:]}, "
                f"got {values.dtype} rows of shape {values.shape[1:]}"
            )
        column[rows] = values
        self.length = max(self.length, stop)

    def close(
        self,
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Path:
        """Trim the columns to the rows written, write meta.json and move the directory into place.

        Spaces not given are inferred as ``Dataset`` does (reading the actions once for a
        discrete action space's size)."""
        if self.closed:
            raise ValueError("the writer is closed")
        try:
            missing = [name for name in ("observations", "next_observations", *FLAT_COLUMNS) if not self._has(name)]
            if missing:
                raise ValueError(f"nothing was written to {', '.join(missing)}")
            if self.length == 0:
                raise ValueError("no rows were written")
            for name in list(self.columns):
                self._reopen(name, self.length, mode=None)
            observations = self._tree("observations")
            observation_space = observation_space or infer_observation_space(observations)
            for name in ("observations", "next_observations"):
                validation.check_observations(str(self.path), name, self._tree(name), observation_space)
            action_space = action_space or infer_action_space(np.load(self._file("actions"), mmap_mode="r"))
            meta = {
                "offrl_format": MARKER,
                "format_version": FORMAT_VERSION,
                "length": self.length,
                "observation_space": space_to_json(observation_space),
                "action_space": space_to_json(action_space),
                "metadata": to_jsonable({k: v for k, v in (metadata or {}).items() if k != "format"}),
                "infos": sorted(name[len("infos/") :] for name in self.columns if name.startswith("infos/")),
            }
            (self.tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
            _fsync_tree(self.tmp)
            self.columns.clear()
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Remove everything written; the target path is left as it was."""
        self.columns.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.closed = True

    # ---------------------------------------------------------------- files

    def _file(self, name: str) -> Path:
        return self.tmp / f"{name}.npy"

    def _has(self, name: str) -> bool:
        return name in self.columns or any(key.startswith(f"{name}/") for key in self.columns)

    def _tree(self, name: str) -> Any:
        """Column ``name``, or the dict (nested like the keys' slashes) of the columns under it."""
        if name in self.columns:
            return self.columns[name]
        prefix = f"{name}/"
        keys = {key[len(prefix) :].split("/", 1)[0] for key in self.columns if key.startswith(prefix)}
        return {key: self._tree(f"{prefix}{key}") for key in sorted(keys)}

    def _create(self, name: str, dtype: np.dtype, row_shape: tuple[int, ...]) -> np.memmap:
        file = self._file(name)
        file.parent.mkdir(parents=True, exist_ok=True)
        return npy.open_memmap(file, mode="w+", dtype=dtype, shape=(self.capacity, *row_shape))

    def _grow(self, capacity: int) -> None:
        for name in list(self.columns):
            self._reopen(name, capacity, mode="r+")
        self.capacity = capacity

    def _reopen(self, name: str, rows: int, *, mode: str | None) -> None:
        """Resize column ``name``'s file to ``rows`` rows (its header is rewritten in place) and reopen it."""
        column = self.columns.pop(name)
        column.flush()
        del column
        _resize_npy(self._file(name), rows)
        if mode is not None:
            self.columns[name] = npy.open_memmap(self._file(name), mode=mode)
        else:
            self.columns[name] = np.load(self._file(name), mmap_mode="r")

    def _move_into_place(self) -> None:
        old = None
        if self.path.exists():
            if not self.overwrite:
                raise DatasetError(self.path, "already exists: refusing to overwrite it")
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            os.replace(self.path, old / "previous")
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------ reading


def _read_meta(path: Path) -> dict[str, Any]:
    file = path / META
    try:
        meta = json.loads(file.read_text())
    except FileNotFoundError:
        raise DatasetError(file, "missing: an offrl-memmap directory needs its meta.json") from None
    except (OSError, ValueError) as error:
        raise DatasetError(file, f"cannot be parsed as JSON: {error}") from None
    if not isinstance(meta, dict) or meta.get("offrl_format") != MARKER:
        raise DatasetError(file, "is not an offrl-memmap header (no offrl_format: memmap)")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise DatasetError(file, "format_version is missing or not an integer", key="format_version")
    if version > FORMAT_VERSION:
        raise DatasetError(
            file, f"written by a newer offrl (format version {version}); this offrl reads up to {FORMAT_VERSION}"
        )
    if not isinstance(meta.get("length"), int) or meta["length"] < 1:
        raise DatasetError(file, f"length must be a positive integer, found {meta.get('length')!r}", key="length")
    return meta


def _load_column(path: Path, name: str, length: int, *, mmap: bool) -> np.ndarray:
    file = path / f"{name}.npy"
    if not file.is_file():
        raise DatasetError(file, "missing column file", key=name)
    try:
        array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DatasetError(file, f"cannot be read as .npy (truncated or corrupt file?): {error}", key=name) from None
    if array.ndim == 0 or len(array) != length:
        rows = "a scalar" if array.ndim == 0 else f"{len(array)} rows"
        raise DatasetError(file, f"has {rows}, meta.json says the dataset has {length}", key=name)
    return array


# ------------------------------------------------------------------ writing


def _stored_dtype(name: str, values: np.ndarray) -> np.ndarray:
    """The dtype ``Dataset`` would convert a column to, so loading never converts (or copies) it."""
    head = name.split("/", 1)[0]
    if head in ("observations", "next_observations"):
        if values.dtype == np.bool_:
            return values.view(np.uint8)  # 0/1 pixels, kept as images
        return values if values.dtype == np.uint8 else values.astype(np.float32, copy=False)
    if head == "actions" and values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    if head == "rewards":
        return values.astype(np.float32, copy=False)
    if head in ("terminals", "timeouts"):
        return values.astype(bool, copy=False)
    return values


def read_npy_header(handle: BinaryIO) -> tuple[tuple[int, int], tuple[int, ...], bool, np.dtype]:
    """(format version, shape, fortran order, dtype) of the .npy file ``handle`` is at the start of;
    leaves ``handle`` at the first byte of the data."""
    version = npy.read_magic(handle)
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    return (version, *read_header(handle))


def _resize_npy(file: Path, rows: int) -> None:
    """Set the first dimension of a C-order .npy file in place: rewrite its header (numpy pads it so
    the row count can grow) and cut or extend the data to match."""
    with open(file, "r+b") as handle:
        version, shape, fortran_order, dtype = read_npy_header(handle)
        offset = handle.tell()
        header = {"descr": npy.dtype_to_descr(dtype), "fortran_order": fortran_order, "shape": (rows, *shape[1:])}
        handle.seek(0)
        (npy.write_array_header_1_0 if version == (1, 0) else npy.write_array_header_2_0)(handle, header)
        if handle.tell() != offset:
            raise RuntimeError(f"{file}: the .npy header changed size when resizing it")
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        handle.truncate(offset + rows * row_bytes)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
