"""Freed memory kept in the process for the next gradient step (glibc's allocator, tuned once).

Every gradient step allocates and frees the same activation tensors. With glibc's defaults a block
above its mmap threshold (adjusted as the program runs, at most 32 MB) is mapped fresh from the
kernel and unmapped when freed, and free memory at the top of the heap is handed back: the next
step faults every page of it in again. CQL at the paper's settings faults about 6,800 pages a step;
five batched CQL seeds stack activations of 157 MB, 38,000 pages each, mapped anew every time.
``keep_freed_memory`` raises both thresholds, so freed blocks stay in the heap and are reused:
measured on a 2-core CPU (docs/performance.md), CQL 94 -> 84 ms a step, five batched CQL seeds
641 -> 478 ms, with the resident peak of that run 837 -> 1,340 MB: memory once used is kept for
reuse, as PyTorch's CUDA allocator keeps it on a GPU.

The trainer calls it once per process. It does nothing off Linux/glibc, when the user has tuned the
allocator (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``, an allocator in ``LD_PRELOAD``), or with
``OFFRL_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

OPT_OUT = "OFFRL_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES")
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's allocator to keep freed memory (once per process); True where it is in effect."""
    global _applied
    if _applied is None:
        _applied = _tune()
    return _applied


def _tune() -> bool:
    if os.environ.get(OPT_OUT, "1") == "0" or not _is_glibc():
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False  # the user's allocator settings stand
    try:
        libc = ctypes.CDLL("libc.so.6")
        # blocks up to 1 GiB come from the heap; up to 2 GiB of free heap top is kept, not trimmed
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def _is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
