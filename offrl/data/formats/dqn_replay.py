"""The DQN-Replay Atari dataset (Agarwal et al. 2020) converted, streaming, to an offrl-memmap directory.

Each checkpoint ``N`` of ``gs://atari-replay-datasets/dqn/{Game}/{run}/replay_logs/`` is dopamine's
``OutOfGraphReplayBuffer.save``: one gzip-compressed ``np.save`` file per stored element,

    $store$_observation_ckpt.N.gz   uint8 [capacity, 84, 84]   one frame per row
    $store$_action_ckpt.N.gz        int32 [capacity]
    $store$_reward_ckpt.N.gz        float32 [capacity]
    $store$_terminal_ckpt.N.gz      uint8 [capacity]
    add_count_ckpt.N.gz             int64 scalar: rows ever added
    invalid_range_ckpt.N.gz         the rows around the cursor dopamine never samples

Row ``i`` holds observation ``o_t``, action ``a_t``, reward ``r_t`` and whether the episode ended
after that step; the next observation is the next row's frame. The buffer is a ring: row
``add_count % capacity`` is the oldest once it is full. At each episode's start dopamine writes
``stack_size - 1`` all-zero padding rows, so frame stacks never reach into the previous episode.

The conversion reorders the ring oldest first and drops the padding rows, the oldest
``stack_size - 1`` rows of a wrapped ring (they may be the tail of a padding run whose episode
was overwritten) and the newest row unless terminal (its next frame was never written). A
terminal row's next observation is its own frame (never bootstrapped from). Each checkpoint's
last row ends its episode, as a timeout unless terminal. Observations are single frames:
frame stacking happens at sampling time (``offrl.data.frames``).

Frames are decompressed one chunk at a time and written where they belong in the output
(``MemmapWriter.put``), so a checkpoint of 7 GB of frames needs a few MB of memory.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from numpy.lib import format as npy

from offrl.data.formats.offrl_memmap import MemmapWriter, read_npy_header
from offrl.errors import DatasetError

STORE_PREFIX = "$store$_"
ELEMENTS = ("observation", "action", "reward", "terminal")
CHUNK_ROWS = 4096  # frames decompressed at a time: 28 MiB of 84x84 frames
_CHECKPOINT = re.compile(r"^\$store\$_observation_ckpt\.(\d+)\.gz$")


def checkpoints(replay_dir: str | os.PathLike) -> list[int]:
    """The checkpoint numbers in ``replay_dir`` (those with an observation file), ascending."""
    replay_dir = Path(replay_dir)
    if not replay_dir.is_dir():
        raise DatasetError(replay_dir, "no such directory (expected a DQN-Replay replay_logs directory)")
    found = sorted(int(m.group(1)) for m in map(_CHECKPOINT.match, os.listdir(replay_dir)) if m)
    if not found:
        raise DatasetError(
            replay_dir, "holds no $store$_observation_ckpt.N.gz file: not a DQN-Replay replay_logs directory"
        )
    return found


def element_file(replay_dir: Path, name: str, checkpoint: int) -> Path:
    """dopamine's ``_generate_filename``: ``{name}_ckpt.{N}.gz``, stored elements prefixed ``$store$_``."""
    prefix = STORE_PREFIX if name in ELEMENTS else ""
    return replay_dir / f"{prefix}{name}_ckpt.{checkpoint}.gz"


@dataclasses.dataclass
class _Part:
    """One checkpoint's rows as they go into the output, planned from its small arrays."""

    checkpoint: int
    frames: Path
    observation_rows: np.ndarray  # source row of each output row's observation
    next_rows: np.ndarray  # source row of each output row's next observation
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    dropped: int


def convert(
    replay_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    checkpoint_numbers: Sequence[int] | None = None,
    max_transitions: int | None = None,
    clip_rewards: bool = False,
    stack_size: int | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the checkpoints (default: all) of ``replay_dir`` as one offrl-memmap dataset at ``out``.

    ``max_transitions`` stops after that many rows; ``clip_rewards`` clips rewards to [-1, 1]
    (DQN's training rewards; raw rewards are kept by default). ``stack_size`` is dopamine's
    frame stack (the number of padding rows is ``stack_size - 1``); by default it is read off
    the saved ``invalid_range``.
    """
    replay_dir = Path(replay_dir)
    available = checkpoints(replay_dir)
    numbers = list(available if checkpoint_numbers is None else checkpoint_numbers)
    missing = sorted(set(numbers) - set(available))
    if missing:
        raise DatasetError(replay_dir, f"has no checkpoint {missing} (available: {available})")
    if max_transitions is not None and max_transitions < 1:
        raise ValueError(f"max_transitions must be positive, got {max_transitions}")

    parts, total = [], 0
    for number in numbers:
        limit = None if max_transitions is None else max_transitions - total
        part = _plan(replay_dir, number, stack_size=stack_size, limit=limit)
        if len(part.actions):
            parts.append(part)
            total += len(part.actions)
        if max_transitions is not None and total >= max_transitions:
            break
    if total == 0:
        raise DatasetError(replay_dir, f"checkpoints {numbers} hold no complete transition")

    with MemmapWriter(out, capacity=total, overwrite=overwrite) as writer:
        offset = 0
        for part in parts:
            rows = slice(offset, offset + len(part.actions))
            rewards = np.clip(part.rewards, -1.0, 1.0) if clip_rewards else part.rewards
            for name, values in (
                ("actions", part.actions),
                ("rewards", rewards),
                ("terminals", part.terminals),
                ("timeouts", part.timeouts),
            ):
                writer.put(name, rows, values)
            _copy_frames(writer, part, offset)
            offset += len(part.actions)
            if progress is not None:
                rows_text = f"{len(part.actions):,} transitions ({part.dropped:,} rows dropped)"
                progress(f"checkpoint {part.checkpoint}: {rows_text}")
        game = replay_dir.parent.parent.name if replay_dir.name == "replay_logs" else None
        metadata = {
            "source_format": "dqn-replay",
            "dqn_replay/checkpoints": [part.checkpoint for part in parts],
            "dqn_replay/dropped_rows": sum(part.dropped for part in parts),
            "rewards_clipped": clip_rewards,
            **({"dqn_replay/game": game} if game else {}),
        }
        num_actions = int(max(part.actions.max() for part in parts)) + 1
        return writer.close(action_space=gym.spaces.Discrete(num_actions), metadata=metadata)


def _plan(replay_dir: Path, number: int, *, stack_size: int | None, limit: int | None) -> _Part:
    frames = element_file(replay_dir, "observation", number)
    with _open_gzip(frames) as handle:
        capacity = _read_header(handle, frames)[0][0]
    actions = _load_small(replay_dir, "action", number, capacity)
    rewards = _load_small(replay_dir, "reward", number, capacity)
    terminal = _load_small(replay_dir, "terminal", number, capacity)
    add_count = _load_small(replay_dir, "add_count", number, None)
    if add_count.ndim != 0 or add_count.dtype.kind not in "iu" or add_count < 0:
        raise DatasetError(element_file(replay_dir, "add_count", number), f"expected a count, found {add_count!r}")
    add_count = int(add_count)
    cursor = add_count % capacity
    stored = _stack_size(replay_dir, number, cursor, capacity, given=stack_size)
    if stack_size is None:
        stack_size = stored
    elif stored is not None and stored != stack_size:
        raise DatasetError(element_file(replay_dir, "invalid_range", number),
                           f"holds a frame stack of {stored}, not the --stack-size {stack_size} given: padding rows would become transitions")

    # ring positions, oldest first
    wrapped = add_count >= capacity
    order = (cursor + np.arange(capacity)) % capacity if wrapped else np.arange(add_count)
    ends = terminal[order].astype(bool)
    n = len(order)
    padding = np.zeros(n, dtype=bool)
    padding[: stack_size - 1] = True  # the first episode's padding, or the tail of an overwritten one
    terminal_rows = np.flatnonzero(ends)
    for step in range(1, stack_size):
        after = terminal_rows + step
        padding[after[after < n]] = True
    keep = ~padding
    if n:
        keep[-1] &= ends[-1]  # the newest row's next frame was never written
    positions = np.flatnonzero(keep)
    if limit is not None:
        positions = positions[:limit]
    following = positions + (~ends[positions]).astype(np.int64)  # a terminal's own frame stands in
    part_ends = ends[positions]
    timeouts = np.zeros(len(positions), dtype=bool)
    if len(positions) and not part_ends[-1]:
        timeouts[-1] = True
    return _Part(
        checkpoint=number,
        frames=frames,
        observation_rows=order[positions],
        next_rows=order[following],
        actions=actions[order[positions]].astype(np.int64),
        rewards=rewards[order[positions]].astype(np.float32),
        terminals=part_ends,
        timeouts=timeouts,
        dropped=n - int(keep.sum()),
    )


def _stack_size(replay_dir: Path, number: int, cursor: int, capacity: int, *, given: int | None = None) -> int | None:
    """dopamine's invalid_range is ``cursor - update_horizon .. cursor + stack_size - 1`` (mod capacity).
    With a ``given`` stack size, a missing or unreadable invalid_range is None (nothing to check it against)."""
    file = element_file(replay_dir, "invalid_range", number)
    if given is not None and not file.is_file():
        return None
    invalid = _load_small(replay_dir, "invalid_range", number, None)
    if invalid.ndim != 1 or len(invalid) < 2:
        raise DatasetError(file, f"expected the indices around the cursor, found shape {invalid.shape}")
    horizon = (cursor - int(invalid[0])) % capacity
    size = len(invalid) - horizon
    if not 1 <= size <= len(invalid):
        if given is not None:
            return None
        raise DatasetError(file, f"does not match the cursor {cursor}: pass the frame stack size (--stack-size)")
    return size


def _copy_frames(writer: MemmapWriter, part: _Part, offset: int) -> None:
    """Stream the frames once, writing each where it is an observation or a next observation."""
    with _open_gzip(part.frames) as handle:
        (capacity, *frame_shape), dtype = _read_header(handle, part.frames)
        frame_bytes = dtype.itemsize * int(np.prod(frame_shape, dtype=np.int64))
        output_rows = offset + np.arange(len(part.observation_rows))
        by_source = {}
        for name, sources in (("observations", part.observation_rows), ("next_observations", part.next_rows)):
            sort = np.argsort(sources, kind="stable")
            by_source[name] = (sources[sort], output_rows[sort])
        last = int(max(part.observation_rows.max(), part.next_rows.max()))
        for start in range(0, last + 1, CHUNK_ROWS):
            count = min(CHUNK_ROWS, capacity - start)
            data = _read_exactly(handle, count * frame_bytes, part.frames)
            chunk = np.frombuffer(data, dtype=dtype).reshape(count, *frame_shape)
            for name, (sources, rows) in by_source.items():
                lo, hi = np.searchsorted(sources, [start, start + count])
                if hi > lo:
                    writer.put(name, rows[lo:hi], chunk[sources[lo:hi] - start])


def _open_gzip(file: Path) -> gzip.GzipFile:
    if not file.is_file():
        raise DatasetError(file, "missing: each DQN-Replay checkpoint needs its observation, action, reward, "
                           "terminal and add_count files, and invalid_range unless --stack-size is given")
    return gzip.open(file, "rb")


def _read_header(handle: gzip.GzipFile, file: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        _, shape, fortran_order, dtype = read_npy_header(handle)
    except (ValueError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(file, f"is not a gzip-compressed .npy file (truncated or corrupt?): {error}") from None
    if fortran_order or dtype.hasobject or len(shape) < 2 or shape[0] < 1:
        raise DatasetError(file, f"expected C-order frames [capacity, H, W], found {dtype} {shape}")
    return shape, dtype


def _load_small(replay_dir: Path, name: str, number: int, rows: int | None) -> np.ndarray:
    file = element_file(replay_dir, name, number)
    with _open_gzip(file) as handle:
        try:
            array = npy.read_array(handle, allow_pickle=False)
        except (ValueError, OSError, EOFError, zlib.error) as error:
            raise DatasetError(file, f"cannot be read as a gzip-compressed .npy file: {error}") from None
    if rows is not None and (array.ndim != 1 or len(array) != rows):
        raise DatasetError(file, f"expected {rows} rows (the observations' capacity), found shape {array.shape}")
    return array


def _read_exactly(handle: gzip.GzipFile, size: int, file: Path) -> bytes:
    try:
        data = handle.read(size)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(file, f"cannot be decompressed (truncated or corrupt?): {error}") from None
    if len(data) != size:
        raise DatasetError(file, "ends early: the file is truncated")
    return data
