"""RL Unplugged Atari shards written here in their real layout (GZIP TFRecord files of serialized
tf.train.Example, frames as PNG), by this file's own protobuf and TFRecord writer and crc32c, then
converted and checked against the transitions that went in. TensorFlow is not needed.

The episodes are logged as dopamine's replay hands them out: ``o_t`` is the stack of the last 4
frames, all-zero frames standing in before an episode's first frame; ``o_tp1`` is the stack one step
later; ``d_t`` is 0 at a terminal.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import struct

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

from offrl import cli
from offrl.data import load_dataset
from offrl.data.formats import rl_unplugged, tfrecord
from offrl.data.frames import FrameStackSampler, episode_row_starts
from offrl.errors import DatasetError

STACK = 4

# ----------------------------------------------------------------------------- the writer's side


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    value %= 1 << 64  # int64 as protobuf writes it: two's complement, 10 bytes when negative
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def feature(kind: str, values: list, *, packed: bool = True) -> bytes:
    """tf.train.Feature: oneof bytes_list = 1, float_list = 2, int64_list = 3, each {repeated value = 1}."""
    if kind == "bytes":
        return field(1, b"".join(field(1, value) for value in values))
    if kind == "float":
        body = (
            field(1, struct.pack(f"<{len(values)}f", *values))
            if packed
            else b"".join(varint(1 << 3 | 5) + struct.pack("<f", value) for value in values)
        )
        return field(2, body)
    body = (
        field(1, b"".join(varint(value) for value in values))
        if packed
        else b"".join(varint(1 << 3 | 0) + varint(value) for value in values)
    )
    return field(3, body)


def example(features: dict[str, tuple[str, list]], *, packed: bool = True) -> bytes:
    """tf.train.Example{features = 1: Features{map<string, Feature> feature = 1}}."""
    entries = b"".join(
        field(1, field(1, name.encode()) + field(2, feature(kind, values, packed=packed)))
        for name, (kind, values) in features.items()
    )
    return field(1, entries)


def framed(data: bytes) -> bytes:
    """One TFRecord record: length, its masked crc32c, the data, its masked crc32c."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked(length)) + data + struct.pack("<I", masked(data))


def png(frame: np.ndarray, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="L").save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def frame(frame_id: int) -> np.ndarray:
    """An 84x84 frame that says which it is (never all zero, unlike dopamine's padding)."""
    out = (np.add.outer(np.arange(84), np.arange(84)) * 3 % 251 + 1).astype(np.uint8)
    out[0, 0], out[0, 1] = frame_id % 256, frame_id // 256 + 1
    return out


def frame_id(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    return frames[..., 0, 0].astype(int) + 256 * (frames[..., 0, 1].astype(int) - 1)


@dataclasses.dataclass
class Step:
    """One logged transition, as written."""

    episode: int
    step: int
    o_t: np.ndarray  # [4, 84, 84]
    o_tp1: np.ndarray
    action: int
    next_action: int
    reward: float
    terminal: bool
    episode_return: float = 0.0

    def features(self, level_tp1: int = 6) -> dict[str, tuple[str, list]]:
        return {
            "o_t": ("bytes", [png(f) for f in self.o_t]),
            "o_tp1": ("bytes", [png(f, level_tp1) for f in self.o_tp1]),
            "a_t": ("int64", [self.action]),
            "a_tp1": ("int64", [self.next_action]),
            "r_t": ("float", [self.reward]),
            "d_t": ("float", [0.0 if self.terminal else 1.0]),
            "episode_id": ("int64", [self.episode]),
            "episode_return": ("float", [self.episode_return]),
        }


def episode(episode_id: int, length: int, *, terminal: bool, rng: np.random.Generator) -> list[Step]:
    """``length`` steps over frames ``1000 * episode_id + 0 .. length`` (the last is the final next frame)."""
    frames = [frame(1000 * (episode_id % 50) + k) for k in range(length + 1)]
    zero = np.zeros((84, 84), np.uint8)

    def stack(t: int) -> np.ndarray:
        return np.stack([frames[k] if k >= 0 else zero for k in range(t - STACK + 1, t + 1)])

    actions = rng.integers(0, 6, size=length + 1)
    rewards = rng.integers(-8, 9, size=length) / 4  # exact in float32
    steps = [
        Step(episode_id, t, stack(t), stack(t + 1), int(actions[t]), int(actions[t + 1]), float(rewards[t]),
             terminal and t == length - 1)
        for t in range(length)
    ]
    for step in steps:
        step.episode_return = float(np.clip(rewards, -1, 1).sum())
    return steps


def write_shard(path, steps: list[Step], *, packed: bool = True, level_tp1: int = 6, compress: bool = True) -> None:
    data = b"".join(framed(example(step.features(level_tp1), packed=packed)) for step in steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)


def game_directory(tmp_path):
    """Two shards of run 1: episode 11 runs across them; 12 is cut off by its time limit (the next
    record is another episode), 13 by the end of the data. Shard 1 writes its numbers unpacked and
    its o_tp1 frames at another PNG compression level (same frames, other bytes)."""
    rng = np.random.default_rng(0)
    e10 = episode(10, 6, terminal=True, rng=rng)
    e11 = episode(11, 10, terminal=True, rng=rng)
    e12 = episode(12, 4, terminal=False, rng=rng)
    e13 = episode(13, 7, terminal=False, rng=rng)[:3]
    directory = tmp_path / "Pong"
    write_shard(directory / "run_1-00000-of-00002", e10 + e11[:5])
    write_shard(directory / "run_1-00001-of-00002", e11[5:] + e12 + e13, packed=False, level_tp1=1)
    (directory / "README").write_text("not a shard")
    return directory, {"shard0": e10 + e11[:5], "shard1": e11[5:] + e12 + e13}


def expected_bounds(steps: list[Step]) -> tuple[list[int], list[int]]:
    starts = [i for i, s in enumerate(steps) if i == 0 or steps[i - 1].episode != s.episode or steps[i - 1].terminal]
    return starts, starts[1:] + [len(steps)]


def check_columns(ds, steps: list[Step]) -> None:
    """Every column of a single-frame conversion against the steps that went in."""
    assert len(ds) == len(steps)
    np.testing.assert_array_equal(ds.observations, np.array([s.o_t[-1] for s in steps]))
    np.testing.assert_array_equal(ds.next_observations, np.array([s.o_tp1[-1] for s in steps]))
    np.testing.assert_array_equal(ds.actions, [s.action for s in steps])
    np.testing.assert_array_equal(ds.rewards, np.array([s.reward for s in steps], np.float32))
    np.testing.assert_array_equal(ds.infos["next_actions"], [s.next_action for s in steps])
    np.testing.assert_array_equal(ds.infos["episode_id"], [s.episode for s in steps])
    np.testing.assert_array_equal(ds.infos["episode_return"], np.array([s.episode_return for s in steps], np.float32))
    starts, stops = expected_bounds(steps)
    np.testing.assert_array_equal(ds.episode_bounds[0], starts)
    np.testing.assert_array_equal(ds.episode_bounds[1], stops)
    last = np.array(stops) - 1
    np.testing.assert_array_equal(ds.terminals, [s.terminal for s in steps])
    timeouts = np.zeros(len(steps), bool)
    timeouts[last] = [not steps[i].terminal for i in last]
    np.testing.assert_array_equal(ds.timeouts, timeouts)


def check_frame_stacks(ds, steps: list[Step]) -> None:
    """A frame-stacked sample gives back each row's o_t and o_tp1 stacks, except that before a row's
    episode start the sampler repeats the episode's first frame where the source had zero frames (or,
    for an episode that began in a file not converted, its earlier frames)."""
    sampler = FrameStackSampler(ds.to("cpu"), episode_row_starts(*ds.episode_bounds), STACK, 1024, seed=0)
    batch = sampler.sample()
    row_of = {int(i): row for row, i in enumerate(frame_id(ds.observations))}
    row_start = episode_row_starts(*ds.episode_bounds)
    drawn = set()
    for stack, following in zip(batch.observations.numpy(), batch.next_observations.numpy()):
        row = row_of[int(frame_id(stack[-1]))]
        drawn.add(row)
        position = row - row_start[row]
        first = steps[row_start[row]].o_t[-1]
        expected, expected_next = steps[row].o_t.copy(), steps[row].o_tp1.copy()
        expected[: max(0, STACK - 1 - position)] = first
        expected_next[: max(0, STACK - 2 - position)] = first
        np.testing.assert_array_equal(stack, expected)
        np.testing.assert_array_equal(following, expected_next)
        if position >= STACK - 1:
            np.testing.assert_array_equal(stack, steps[row].o_t)  # exactly the stack that was logged
    assert drawn == set(range(len(ds)))


# ------------------------------------------------------------------------------------------ tests


def test_rl_unplugged_reference_crc_and_protobuf():
    assert crc32c(b"123456789") == 0xE3069283 == tfrecord.python_crc32c(b"123456789")
    data = np.random.default_rng(0).bytes(5000)
    assert tfrecord.crc32c(data) == tfrecord.python_crc32c(data) == crc32c(data)
    assert tfrecord.masked_crc32c(data) == masked(data)
    record = example(
        {"a": ("int64", [-5, 3, 1 << 40]), "b": ("float", [0.5, -2.25]), "c": ("bytes", [b"x", b""])}, packed=False
    )
    extra = varint(7 << 3 | 0) + varint(99)  # an unknown field is skipped
    parsed = tfrecord.parse_example(extra + record)
    assert parsed == {
        "a": ("int64_list", [-5, 3, 1 << 40]),
        "b": ("float_list", [0.5, -2.25]),
        "c": ("bytes_list", [b"x", b""]),
    }
    assert tfrecord.parse_example(example({"a": ("int64", [-5, 3])})) == {"a": ("int64_list", [-5, 3])}


def test_rl_unplugged_in_order_conversion_round_trips(tmp_path):
    directory, shards = game_directory(tmp_path)
    steps = shards["shard0"] + shards["shard1"]
    assert png(frame(5), 1) != png(frame(5))  # shard 1's frames are compared decoded
    shards_found = rl_unplugged.shard_files(directory)
    assert shards_found == [directory / "run_1-00000-of-00002", directory / "run_1-00001-of-00002"]
    for path in (directory, directory / "run_1-00000-of-00002"):
        with pytest.raises(DatasetError, match="RL Unplugged Atari shard.*convert-rl-unplugged"):
            load_dataset(path)  # not read in place
    messages = []
    out = rl_unplugged.convert(directory, tmp_path / "pong.offrl", progress=messages.append)
    assert [m for m in messages if m.startswith("run_")] == [
        "run_1-00000-of-00002: 11 transitions",
        "run_1-00001-of-00002: 12 transitions",
    ]
    ds = load_dataset(out, mmap=True)
    assert isinstance(ds.observations, np.memmap)
    assert ds.metadata["format"] == "offrl-memmap" and ds.metadata["source_format"] == "rl-unplugged-atari"
    assert ds.metadata["rl_unplugged/game"] == "Pong" and ds.metadata["rl_unplugged/runs"] == [1]
    assert ds.metadata["rl_unplugged/observations"] == "frames"
    assert ds.observation_space == gym.spaces.Box(0, 255, (84, 84), np.uint8)
    assert ds.action_space == gym.spaces.Discrete(max(s.action for s in steps) + 1)
    check_columns(ds, steps)
    # episode 11 runs across the two shards as one episode; 12 ends at its time limit, 13 at the data's end
    assert [int(i) for i in ds.infos["episode_id"][ds.episode_bounds[0]]] == [10, 11, 12, 13]
    assert ds.terminals.sum() == 2 and ds.timeouts.sum() == 2
    check_frame_stacks(ds, steps)


def test_rl_unplugged_one_shard_from_mid_episode_limits_and_clipping(tmp_path):
    directory, shards = game_directory(tmp_path)
    steps = shards["shard1"]
    ds = load_dataset(rl_unplugged.convert(directory / "run_1-00001-of-00002", tmp_path / "one.offrl"))
    check_columns(ds, steps)  # episode 11 starts at its step 5: its earlier frames are not in the data
    assert steps[0].o_t[0].any()
    check_frame_stacks(ds, steps)

    pattern = str(directory / "run_1-*-of-00002")
    limited = load_dataset(
        rl_unplugged.convert(pattern, tmp_path / "limited.offrl", max_transitions=13, clip_rewards=True, num_actions=18)
    )
    everything = shards["shard0"] + shards["shard1"]
    assert len(limited) == 13 and limited.timeouts[-1] and not limited.terminals[-1]  # cut mid-episode 11
    np.testing.assert_array_equal(limited.rewards, np.clip([s.reward for s in everything[:13]], -1, 1))
    assert limited.action_space == gym.spaces.Discrete(18) and limited.metadata["rewards_clipped"]


def test_rl_unplugged_shuffled_records_need_stacks(tmp_path):
    rng = np.random.default_rng(1)
    steps = episode(3, 6, terminal=True, rng=rng) + episode(4, 8, terminal=False, rng=rng)
    shuffled = [steps[i] for i in rng.permutation(len(steps))]
    shard = tmp_path / "Breakout" / "run_2-00000-of-00001"
    write_shard(shard, shuffled)
    with pytest.raises(DatasetError, match=r"record \d+: .*not in episode order.*--stack") as error:
        rl_unplugged.convert(shard, tmp_path / "frames.offrl")
    assert error.value.source == str(shard)
    assert not (tmp_path / "frames.offrl").exists()

    ds = load_dataset(rl_unplugged.convert(shard, tmp_path / "stacks.offrl", stack=True))
    assert ds.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert ds.metadata["rl_unplugged/observations"] == "stacks"
    np.testing.assert_array_equal(ds.observations, np.array([s.o_t for s in shuffled]))
    np.testing.assert_array_equal(ds.next_observations, np.array([s.o_tp1 for s in shuffled]))
    np.testing.assert_array_equal(ds.actions, [s.action for s in shuffled])
    np.testing.assert_array_equal(ds.rewards, np.array([s.reward for s in shuffled], np.float32))
    np.testing.assert_array_equal(ds.terminals, [s.terminal for s in shuffled])
    # a row continues into the next only where the next record is the next step of its episode
    follows = [a.episode == b.episode and a.step + 1 == b.step for a, b in zip(shuffled, shuffled[1:])] + [False]
    np.testing.assert_array_equal(ds.timeouts, [not s.terminal and not f for s, f in zip(shuffled, follows)])

    # in order, stacks end in the single frames and the episodes are the same
    directory, shards = game_directory(tmp_path)
    frames = load_dataset(rl_unplugged.convert(directory, tmp_path / "f.offrl"))
    stacks = load_dataset(rl_unplugged.convert(directory, tmp_path / "s.offrl", stack=True))
    np.testing.assert_array_equal(stacks.observations, np.array([s.o_t for s in shards["shard0"] + shards["shard1"]]))
    np.testing.assert_array_equal(stacks.observations[:, -1], frames.observations)
    np.testing.assert_array_equal(stacks.timeouts, frames.timeouts)
    np.testing.assert_array_equal(stacks.terminals, frames.terminals)


def test_rl_unplugged_an_episode_coming_back_in_a_later_shard_of_its_run(tmp_path):
    rng = np.random.default_rng(2)
    first, second = episode(1, 6, terminal=True, rng=rng), episode(2, 3, terminal=True, rng=rng)
    write_shard(tmp_path / "Pong" / "run_1-00000-of-00002", first[:3])
    write_shard(tmp_path / "Pong" / "run_1-00001-of-00002", second + first[3:])
    with pytest.raises(DatasetError, match="episode 1 comes back after other records"):
        rl_unplugged.convert(tmp_path / "Pong", tmp_path / "out.offrl")
    # another run's shard starts its episode ids again: the same id there is another episode
    write_shard(tmp_path / "Runs" / "run_1-00000-of-00001", first)
    write_shard(tmp_path / "Runs" / "run_2-00000-of-00001", second + episode(1, 4, terminal=True, rng=rng))
    assert len(load_dataset(rl_unplugged.convert(tmp_path / "Runs", tmp_path / "runs.offrl"))) == 6 + 3 + 4


def test_rl_unplugged_cli(tmp_path, capsys):
    directory, _ = game_directory(tmp_path)
    out = tmp_path / "cli.offrl"
    argv = ["datasets", "convert-rl-unplugged", str(directory), str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "run_1-00000-of-00002: 11 transitions" in printed and f"wrote {out}: 23 transitions, 4 episodes" in printed
    assert cli.main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    files = [str(directory / "run_1-00000-of-00002"), str(directory / "run_1-00001-of-00002")]
    argv = ["datasets", "convert-rl-unplugged", *files, str(out), "--stack", "--force", "--num-actions", "18"]
    assert cli.main(argv) == 0
    ds = load_dataset(out)
    assert ds.observations.shape == (23, 4, 84, 84) and ds.action_space == gym.spaces.Discrete(18)
    assert cli.main([*argv[:-2], "--num-actions", "2"]) == 2
    assert "is outside Discrete(2)" in capsys.readouterr().err


def test_rl_unplugged_damaged_files_are_named(tmp_path):
    rng = np.random.default_rng(2)
    steps = episode(1, 5, terminal=True, rng=rng)
    records = [framed(example(step.features())) for step in steps]
    shard = tmp_path / "Pong" / "run_1-00000-of-00001"

    def check(data: bytes, match: str, *, compress: bool = True) -> None:
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.write_bytes(gzip.compress(data) if compress else data)
        with pytest.raises(DatasetError, match=match) as error:
            rl_unplugged.convert(shard.parent, tmp_path / "x.offrl")
        assert error.value.source == str(shard)
        assert not (tmp_path / "x.offrl").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.offrl")]  # no temporary left

    damaged = bytearray(records[2])
    damaged[40] ^= 0xFF  # a byte inside the data
    check(b"".join(records[:2]) + bytes(damaged) + b"".join(records[3:]), r"record 2: CRC mismatch on the record data")
    damaged = bytearray(records[1])
    damaged[3] ^= 0x01  # the length
    check(b"".join(records[:1]) + bytes(damaged), r"record 1: CRC mismatch on the record length")
    whole = gzip.compress(b"".join(records))
    shard.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match=r"record \d+: .*truncated") as error:
        rl_unplugged.convert(shard, tmp_path / "x.offrl")
    assert error.value.source == str(shard)
    check(b"".join(records)[:-100], r"record 4: the file ends inside the record \(truncated\)", compress=False)

    features = steps[0].features()
    del features["o_t"]
    check(framed(example(features)), r"record 0: has no feature 'o_t' \(found: a_t, a_tp1, .*\): not an RL Unplugged")
    features = steps[0].features()
    features["a_t"] = ("float", [1.0])
    check(b"".join(records[:3]) + framed(example(features)), r"record 3: feature 'a_t' holds 1 values of float_list")
    features = steps[0].features()
    features["o_tp1"] = ("bytes", [b"GIF89a"] * 4)
    check(framed(example(features)), r"record 0: a frame of 'o_tp1' is not a PNG image")
    check(framed(b"\x0a\xff"), r"record 0: not a tf.train.Example")

    check(b"", r"holds no record")
    with pytest.raises(DatasetError, match="no such file or directory") as error:
        rl_unplugged.convert(tmp_path / "Missing", tmp_path / "x.offrl")
    assert error.value.source == str(tmp_path / "Missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no RL Unplugged shard"):
        rl_unplugged.convert(tmp_path / "empty", tmp_path / "x.offrl")
    with pytest.raises(DatasetError, match="matches no file"):
        rl_unplugged.convert(str(tmp_path / "empty" / "run_*"), tmp_path / "x.offrl")
