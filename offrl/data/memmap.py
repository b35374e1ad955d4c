"""Columns larger than memory: passes over them in row chunks, and tensors that share their pages.

A column loaded with ``np.load(..., mmap_mode="r")`` lives in the page cache,
not in the process's own memory; reading a few rows touches only those pages.
Anything that makes a whole-column temporary (``np.isfinite(column)``, a
float64 ``column.std()``, ``torch.cat``) would read it all into RAM instead,
so validation and statistics go through ``row_chunks``, and the sampler never
packs a file-backed tensor.
"""

from __future__ import annotations

import mmap
import warnings
import weakref
from collections.abc import Iterator

import numpy as np
import torch

# Elements per chunk: 4 Mi elements is 32 MiB as float64, the widest temporary a check makes.
CHUNK_ELEMENTS = 2**22

# Storages of CPU tensors that share a memory-mapped file's pages (see ``as_tensor``).
_FILE_BACKED: weakref.WeakSet = weakref.WeakSet()


def row_chunks(array: np.ndarray, elements: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) pieces of about ``elements`` (default ``CHUNK_ELEMENTS``) elements each;
    one piece for a small array."""
    row = max(1, int(np.prod(array.shape[1:], dtype=np.int64)))
    step = max(1, (elements or CHUNK_ELEMENTS) // row)
    for start in range(0, len(array), step):
        yield start, array[start : start + step]


def mean_std(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (population) standard deviation over rows, float64, one chunk at a time.

    Chunks are merged with Chan et al.'s pairwise update; an array of one chunk gets exactly
    ``array.mean(0)`` and ``array.std(0)``.
    """
    count, mean, var = 0, None, None
    for _, part in row_chunks(array):
        n = len(part)
        part_mean = part.mean(axis=0, dtype=np.float64)
        part_var = part.var(axis=0, dtype=np.float64)
        if mean is None:
            count, mean, var = n, part_mean, part_var
            continue
        total = count + n
        delta = part_mean - mean
        mean = mean + delta * (n / total)
        var = (count * var + n * part_var) / total + delta**2 * (count * n / total**2)
        count = total
    return mean, np.sqrt(var)


def is_memory_mapped(array: np.ndarray) -> bool:
    """True when ``array`` (or what it is a view of) reads from a memory-mapped file."""
    node = array
    while node is not None:
        if isinstance(node, (np.memmap, mmap.mmap)):
            return True
        node = getattr(node, "base", None)
    return False


def as_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``. On the CPU a memory-mapped array is shared, not copied:
    the tensor reads the file's pages, and the sampler knows not to pack it (``is_file_backed``)."""
    array = np.ascontiguousarray(array)
    with warnings.catch_warnings():
        # torch warns that it cannot mark a tensor read-only; nothing in offrl writes to dataset tensors
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(array)
    if device.type != "cpu":
        return tensor.to(device)
    if is_memory_mapped(array):
        _FILE_BACKED.add(tensor.untyped_storage())
    return tensor


def is_file_backed(tensor: torch.Tensor) -> bool:
    """True for a tensor made by ``as_tensor`` from a memory-mapped array (or a view of one)."""
    return tensor.untyped_storage() in _FILE_BACKED
