"""The RL Unplugged Atari dataset (Gulcehre et al. 2020) converted, streaming, to an offrl-memmap directory.

``gs://rl_unplugged/atari/{Game}/run_{N}-{shard:05d}-of-{total:05d}`` (100 shards per run) are
GZIP-compressed TFRecord files (``offrl.data.formats.tfrecord``). Each record is a serialized
``tf.train.Example``, one SARSA transition (deepmind-research ``rl_unplugged/atari.py``,
``_tf_example_to_reverb_sample``):

    o_t, o_tp1       bytes_list of 4 PNG-encoded 84x84 grayscale frames, oldest first
    a_t, a_tp1       int64 list of 1
    r_t, d_t         float list of 1; d_t is the discount, 0 at a terminal
    episode_id       int64 list of 1 (read as uint64 by the reference loader)
    episode_return   float list of 1 (the episode's [-1, 1]-clipped return)

TensorFlow is not needed: the records and the protobuf wire format are decoded by ``tfrecord``,
the PNGs by Pillow.

Two ways to store the observations:

- ``stack=False`` (default): single frames ``[84, 84]``, the last frame of ``o_t``; frame stacking
  happens at sampling time (``offrl.data.frames``), as for DQN-Replay. That needs the records of an
  episode consecutive and in order: within an episode, record ``i + 1``'s ``o_t`` must be record
  ``i``'s ``o_tp1`` (and ``o_tp1`` must be ``o_t`` moved on by one frame), else the conversion stops
  with an error naming the record. The released shards are not stored in episode order (the
  reference loader shuffles anyway), so this mode is for data written in order.
- ``stack=True``: each row keeps its 4-frame stacks ``[4, 84, 84]`` (``o_t`` and ``o_tp1``), four
  times the disk, any record order.

An episode ends at ``d_t == 0`` (a terminal) or, cut off (a timeout), where the next record does not
continue it: another ``episode_id``, frames that do not follow on, or the end of the data. A file's
last record and the next file's first join up when they continue one episode.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

from offrl.data.formats import tfrecord
from offrl.data.formats.offrl_memmap import MemmapWriter
from offrl.errors import DatasetError

STACK = 4  # frames per o_t / o_tp1
CHUNK_ROWS = 2048  # rows written at a time: 28 MiB of single frames, 115 MiB of stacks
INITIAL_ROWS = 2**16  # the writer preallocates this many rows (sparse) and doubles when full
SHARD = re.compile(r"^run_(\d+)-(\d+)-of-(\d+)$")
# feature name -> (kind, number of values)
FEATURES = {
    "o_t": ("bytes_list", STACK),
    "o_tp1": ("bytes_list", STACK),
    "a_t": ("int64_list", 1),
    "a_tp1": ("int64_list", 1),
    "r_t": ("float_list", 1),
    "d_t": ("float_list", 1),
    "episode_id": ("int64_list", 1),
    "episode_return": ("float_list", 1),
}


# ------------------------------------------------------------------------------------------ reading


def shard_files(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The files to convert: a directory's shards (``run_N-XXXXX-of-YYYYY``, by run and shard), files
    as given, and glob patterns' matches (by run and shard); each file once."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted((p for p in path.iterdir() if SHARD.match(p.name) and p.is_file()), key=_shard_order)
            if not found:
                raise DatasetError(path, "holds no RL Unplugged shard (files named run_N-XXXXX-of-YYYYY)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif any(char in str(source) for char in "*?["):
            matches = sorted((Path(m) for m in glob.glob(str(source)) if Path(m).is_file()), key=_shard_order)
            if not matches:
                raise DatasetError(path, "matches no file")
            files.extend(matches)
        else:
            raise DatasetError(path, "no such file or directory (expected RL Unplugged shards or their directory)")
    if not files:
        raise DatasetError("<no input>", "no RL Unplugged shard given")
    return list(dict.fromkeys(files))


def _shard_order(path: Path) -> tuple:
    match = SHARD.match(path.name)
    numbers = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
    return (str(path.parent), *numbers, path.name)


@dataclasses.dataclass
class Transition:
    """One record's features."""

    o_t: list[bytes]
    o_tp1: list[bytes]
    a_t: int
    a_tp1: int
    r_t: float
    d_t: float
    episode_id: int  # as uint64
    episode_return: float


def parse_transition(data: bytes, file: Path, index: int) -> Transition:
    """A record's Example, checked to hold every feature of the Atari layout with its kind and size."""
    try:
        features = tfrecord.parse_example(data)
    except tfrecord.MalformedExample as error:
        raise DatasetError(file, f"record {index}: not a tf.train.Example: {error}") from None
    values = {}
    for name, (kind, count) in FEATURES.items():
        if name not in features:
            found = ", ".join(sorted(features)) or "none"
            raise DatasetError(
                file, f"record {index}: has no feature {name!r} (found: {found}): not an RL Unplugged Atari record"
            )
        found_kind, found_values = features[name]
        if found_kind != kind or len(found_values) != count:
            raise DatasetError(
                file,
                f"record {index}: feature {name!r} holds {len(found_values)} values of {found_kind}, "
                f"expected {count} of {kind}",
            )
        values[name] = found_values if count > 1 else found_values[0]
    values["episode_id"] %= 1 << 64
    return Transition(**values)


# ------------------------------------------------------------------------------------------ writing


def convert(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    stack: bool = False,
    num_actions: int | None = None,
    max_transitions: int | None = None,
    clip_rewards: bool = False,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the transitions of ``sources`` (a directory of shards, shard files, glob patterns) as one
    offrl-memmap dataset at ``out``, one file after another.

    ``stack`` stores each row's 4-frame stacks instead of single frames (needed for shuffled records).
    ``num_actions`` sizes the Discrete action space (default: the largest action + 1).
    ``max_transitions`` stops after that many rows; ``clip_rewards`` clips rewards to [-1, 1].
    """
    files = shard_files(sources)
    if max_transitions is not None and max_transitions < 1:
        raise ValueError(f"max_transitions must be positive, got {max_transitions}")
    if num_actions is not None and num_actions < 1:
        raise ValueError(f"num_actions must be positive, got {num_actions}")
    if progress is not None and tfrecord.crc32c is tfrecord.python_crc32c:
        progress("google-crc32c is not installed: checking the CRCs in pure Python is slow (pip install google-crc32c)")
    capacity = min(INITIAL_ROWS, max_transitions or INITIAL_ROWS)
    with MemmapWriter(out, capacity=capacity, overwrite=overwrite) as writer:
        state = _Converter(writer, stack=stack, num_actions=num_actions, clip_rewards=clip_rewards)
        for file in files:
            state.start_file(file)
            for index, data in enumerate(tfrecord.read_records(file)):
                state.add(parse_transition(data, file, index), index)
                if max_transitions is not None and state.rows >= max_transitions:
                    break
            if progress is not None:
                progress(f"{file.name}: {state.file_rows:,} transitions")
            if max_transitions is not None and state.rows >= max_transitions:
                break
        state.finish()
        if state.rows == 0:
            others = f"and the {len(files) - 1} other files hold" if len(files) > 1 else "holds"
            raise DatasetError(files[0], f"{others} no record")
        observation_shape = (STACK, *state.frame_shape) if stack else state.frame_shape
        observation_space = gym.spaces.Box(0, 255, observation_shape, np.uint8)
        names = [SHARD.match(file.name) for file in files]
        games = sorted({file.parent.name for file, name in zip(files, names) if name})
        metadata = {
            "source_format": "rl-unplugged-atari",
            "rl_unplugged/files": [file.name for file in files[: state.files_read]],
            "rl_unplugged/runs": sorted({int(name.group(1)) for name in names if name}),
            "rl_unplugged/observations": "stacks" if stack else "frames",
            "rl_unplugged/frame_stack": STACK,
            "rewards_clipped": clip_rewards,
            **({"rl_unplugged/game": games[0]} if len(games) == 1 else {}),
        }
        action_space = gym.spaces.Discrete(num_actions or state.max_action + 1)
        return writer.close(observation_space=observation_space, action_space=action_space, metadata=metadata)


class _Converter:
    """Turns transitions into rows one at a time; a row's flags are final once the next transition is
    seen (does it continue the episode?), so the newest row is held back when a chunk is written."""

    def __init__(self, writer: MemmapWriter, *, stack: bool, num_actions: int | None, clip_rewards: bool) -> None:
        self.writer = writer
        self.stack = stack
        self.num_actions = num_actions
        self.clip_rewards = clip_rewards
        self.columns: dict[str, list] = {name: [] for name in _ROW_COLUMNS}
        self.rows = 0  # rows converted so far (written and pending)
        self.file_rows = 0
        self.files_read = 0
        self.max_action = 0
        self.frame_shape: tuple[int, ...] | None = None
        self.previous: Transition | None = None
        self.previous_next: np.ndarray | None = None  # the previous row's next observation
        self.file = Path()
        self.seen: set[int] = set()  # episode ids of this run's files (single frames: an id never comes back)
        self.run: str | None = None  # the run the shards belong to (``run_N``): episode ids restart in another run

    def start_file(self, file: Path) -> None:
        shard = SHARD.match(file.name)
        run = shard.group(1) if shard else str(file)
        if run != self.run:
            self.seen, self.run = set(), run
        self.file, self.file_rows = file, 0
        self.files_read += 1
        if self.previous is not None and not self._ended():
            self.seen.add(self.previous.episode_id)  # the next file may continue it

    def add(self, record: Transition, index: int) -> None:
        if record.a_t < 0:
            raise DatasetError(self.file, f"record {index}: action {record.a_t} is negative")
        if self.num_actions is not None and record.a_t >= self.num_actions:
            problem = f"action {record.a_t} is outside Discrete({self.num_actions})"
            raise DatasetError(self.file, f"record {index}: {problem}")
        continues = self._continues(record, index)
        if not continues and self.previous is not None and not self._ended():
            self.columns["timeouts"][-1] = True
        if self.stack:
            observation = self._decode_all(record.o_t, index, "o_t")
            next_observation = self._decode_all(record.o_tp1, index, "o_tp1")
            if continues and not np.array_equal(observation, self.previous_next):
                continues = False
                self.columns["timeouts"][-1] = True  # the same episode id, but its frames do not follow on
        else:
            if not self._same_frames(record.o_tp1[: STACK - 1], "o_tp1", record.o_t[1:], "o_t", index):
                raise DatasetError(
                    self.file,
                    f"record {index}: o_tp1 is not o_t moved on by one frame (o_tp1[:3] != o_t[1:]), so frames "
                    "cannot be stacked at sampling time; convert with --stack to keep each row's stacks",
                )
            observation = self.previous_next if continues else self._decode(record.o_t[-1], index, "o_t")
            next_observation = self._decode(record.o_tp1[-1], index, "o_tp1")
        self.seen.add(record.episode_id)
        reward = np.clip(record.r_t, -1.0, 1.0) if self.clip_rewards else record.r_t
        for name, value in (
            ("observations", observation),
            ("next_observations", next_observation),
            ("actions", record.a_t),
            ("rewards", reward),
            ("terminals", record.d_t == 0),
            ("timeouts", False),
            ("infos/episode_id", record.episode_id),
            ("infos/episode_return", record.episode_return),
            ("infos/next_actions", record.a_tp1),
        ):
            self.columns[name].append(value)
        self.max_action = max(self.max_action, record.a_t)
        self.previous, self.previous_next = record, next_observation
        self.rows += 1
        self.file_rows += 1
        if len(self.columns["actions"]) > CHUNK_ROWS:
            self._write(keep=1)

    def finish(self) -> None:
        if self.previous is not None and not self._ended():
            self.columns["timeouts"][-1] = True  # cut off by the end of the data
        self._write(keep=0)

    def _ended(self) -> bool:
        return self.previous.d_t == 0

    def _continues(self, record: Transition, index: int) -> bool:
        """Whether ``record`` is the step after the previous row; with single frames, records out of
        episode order are an error."""
        previous = self.previous
        if previous is None:
            return False
        if previous.episode_id == record.episode_id and not self._ended():
            if self.stack or self._same_frames(record.o_t, "o_t", previous.o_tp1, "o_tp1 of the record before", index):
                return True  # stacks: the decoded frames are compared once decoded
            problem = f"its o_t frames are not the o_tp1 frames of the record before (episode {record.episode_id})"
        elif record.episode_id in self.seen and not self.stack:
            problem = f"episode {record.episode_id} comes back after other records or after its terminal"
        else:
            return False
        raise DatasetError(
            self.file,
            f"record {index}: {problem}: the records are not in episode order (RL Unplugged's released Atari "
            "shards are shuffled), so frames cannot be stacked at sampling time; convert with --stack "
            "to keep each row's 4-frame stacks",
        )

    def _same_frames(
        self, first: list[bytes], first_name: str, second: list[bytes], second_name: str, index: int
    ) -> bool:
        """Equal PNGs, or PNGs that decode to equal frames (an encoder may compress one frame two ways)."""
        return all(
            a == b or np.array_equal(self._decode(a, index, first_name), self._decode(b, index, second_name))
            for a, b in zip(first, second)
        )

    def _decode_all(self, pngs: list[bytes], index: int, feature: str) -> np.ndarray:
        return np.stack([self._decode(png, index, feature) for png in pngs])

    def _decode(self, png: bytes, index: int, feature: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(png), formats=("PNG",)) as image:
                mode = image.mode
                frame = np.asarray(image) if mode == "L" else None
        except UnidentifiedImageError:
            raise DatasetError(self.file, f"record {index}: a frame of {feature!r} is not a PNG image") from None
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetError(self.file, f"record {index}: a frame of {feature!r} is a damaged PNG: {error}") from None
        if frame is None:
            problem = f"a frame of {feature!r} is a {mode} PNG, expected grayscale (L)"
            raise DatasetError(self.file, f"record {index}: {problem}")
        if self.frame_shape is None:
            self.frame_shape = frame.shape
        elif frame.shape != self.frame_shape:
            raise DatasetError(
                self.file,
                f"record {index}: a frame of {feature!r} is {frame.shape}, the frames before are {self.frame_shape}",
            )
        return frame

    def _write(self, *, keep: int) -> None:
        count = len(self.columns["actions"]) - keep
        if count <= 0:
            return
        start = self.writer.length
        rows = slice(start, start + count)
        for name, values in self.columns.items():
            self.writer.put(name, rows, np.asarray(values[:count], dtype=_ROW_COLUMNS[name]))
            del values[:count]


_ROW_COLUMNS = {
    "observations": np.uint8,
    "next_observations": np.uint8,
    "actions": np.int64,
    "rewards": np.float32,
    "terminals": bool,
    "timeouts": bool,
    "infos/episode_id": np.uint64,
    "infos/episode_return": np.float32,
    "infos/next_actions": np.int64,
}
