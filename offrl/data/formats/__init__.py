"""Format detection and the one entry point, ``load_dataset(path)``."""

from __future__ import annotations

import os
from pathlib import Path

from offrl.data.dataset import Dataset
from offrl.data.formats import d4rl, minari, npz, offrl_hdf5, offrl_memmap, rl_unplugged, robomimic, tianshou
from offrl.data.formats.hdf5util import has_hdf5_signature, is_hdf5, open_hdf5
from offrl.errors import DatasetError

READ_FORMATS = ("offrl-hdf5", "offrl-memmap", "d4rl", "minari", "npz", "robomimic", "tianshou")
RL_UNPLUGGED_HINT = "convert to an offrl-memmap dataset first, with `offrl datasets convert-rl-unplugged`"
WRITE_FORMATS = {".hdf5": "offrl-hdf5", ".h5": "offrl-hdf5", ".npz": "npz", offrl_memmap.SUFFIX: "offrl-memmap"}


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path``, from its layout (not only its name)."""
    path = Path(path)
    if not path.exists():
        if minari.local_dataset_directory(str(path)) is not None:
            return "minari"
        from offrl.zoo.datasets import parse_name

        if parse_name(str(path)) is not None:
            return "zoo"
        raise DatasetError(path, "no such file or directory")
    if path.is_dir():
        if offrl_memmap.looks_like(path):
            return "offrl-memmap"
        if minari.data_directory(path) is not None:
            return "minari"
        if any(rl_unplugged.SHARD.match(child.name) for child in path.iterdir()):
            raise DatasetError(path, f"holds RL Unplugged Atari shards: {RL_UNPLUGGED_HINT}")
        raise DatasetError(
            path, "is a directory but neither an offrl-memmap dataset (meta.json) nor a Minari dataset (data/metadata.json)"
        )
    # by content first: an offrl HDF5 file written under an .npz name (``--format d4rl``) is HDF5
    if not has_hdf5_signature(path) and (npz.is_zip(path) or path.suffix.lower() == ".npz"):
        return "npz"
    if is_hdf5(path):
        with open_hdf5(path) as handle:
            if offrl_hdf5.looks_like(handle):  # an explicit tag: checked first
                return "offrl-hdf5"
            if robomimic.looks_like(handle):  # before the layouts told apart by top-level names
                return "robomimic"
            if d4rl.looks_like(handle):
                return "d4rl"
            if tianshou.looks_like(handle):
                return "tianshou"
            if any(key.startswith("episode_") for key in handle) and minari.data_directory(path) is not None:
                return "minari"
            keys = ", ".join(sorted(handle)[:10]) or "nothing"
        raise DatasetError(path, f"HDF5 file in no layout offrl reads (top-level keys: {keys})")
    if rl_unplugged.SHARD.match(path.name):
        raise DatasetError(path, f"is an RL Unplugged Atari shard: {RL_UNPLUGGED_HINT}")
    raise DatasetError(path, f"unknown dataset format: expected one of {', '.join(READ_FORMATS)}")


def load_dataset(path: str | os.PathLike, *, format: str | None = None, mmap: bool = True) -> Dataset:
    """Load and validate a dataset; the format is detected from the file unless given.

    A zoo name (``hopper-medium``, see ``offrl datasets list``) is built on first use.
    An offrl-memmap directory is memory-mapped (nothing is read until sampled) unless ``mmap=False``.
    """
    fmt = format or detect_format(path)
    if fmt == "zoo":
        from offrl.zoo.datasets import build

        return load_dataset(build(str(path)))
    path = Path(path)
    if fmt == "offrl-hdf5":
        dataset = offrl_hdf5.read(path)
    elif fmt == "offrl-memmap":
        dataset = offrl_memmap.read(path, mmap=mmap)
    elif fmt == "tianshou":
        dataset = tianshou.read(path)
    elif fmt == "d4rl":
        dataset = d4rl.read(path)
    elif fmt == "robomimic":
        dataset = robomimic.read(path)
    elif fmt == "npz":
        dataset = npz.read(path)
    elif fmt == "minari":
        data_dir = None if path.exists() else minari.local_dataset_directory(str(path))
        dataset = minari.read(path, data_dir=data_dir)
    else:
        raise DatasetError(path, f"unknown format {fmt!r}: expected one of {', '.join(READ_FORMATS)}")
    dataset.metadata["format"] = fmt
    return dataset


def save_dataset(
    dataset: Dataset, path: str | os.PathLike, *, format: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``dataset`` atomically as offrl HDF5 (``.hdf5``/``.h5``), npz (``.npz``) or an
    offrl-memmap directory (``.offrl``); ``format="d4rl"`` or ``format="robomimic"`` writes that
    layout instead."""
    path = Path(path)
    fmt = format or WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(path, f"cannot tell the output format from the suffix: use one of {', '.join(WRITE_FORMATS)}")
    if path.exists() and not overwrite:
        raise DatasetError(path, "already exists: refusing to overwrite it")
    if fmt == "offrl-hdf5":
        offrl_hdf5.write(dataset, path)
    elif fmt == "npz":
        npz.write(dataset, path)
    elif fmt == "offrl-memmap":
        offrl_memmap.write(dataset, path, overwrite=overwrite)
    elif fmt == "d4rl":
        d4rl.write(dataset, path)
    elif fmt == "robomimic":
        robomimic.write(dataset, path)
    else:
        raise DatasetError(path, f"offrl writes offrl-hdf5, offrl-memmap, d4rl, robomimic and npz, not {fmt!r}")
    return path
