"""Replay buffers of discrete-action libraries: Tianshou's save_hdf5 and the DQN-Replay Atari checkpoints.

Both are written here in their real on-disk layout (neither Tianshou nor dopamine is installed):
Tianshou's ``to_hdf5`` of a ``ReplayBuffer.__dict__``, and dopamine's ``OutOfGraphReplayBuffer``
add/save logic, so the conversion is checked against the transitions that went in.
"""

from __future__ import annotations

import gzip
import io

import gymnasium as gym
import h5py
import numpy as np
import pytest

from offrl import cli
from offrl.data import detect_format, load_dataset
from offrl.data.formats import dqn_replay
from offrl.errors import DatasetError

# ------------------------------------------------------------------------------------------ Tianshou


class Batch(dict):
    """Stands for tianshou.data.Batch: written as a group tagged __data_type__="Batch"."""


class Pickled:
    """An object Tianshou pickles into a byte dataset tagged ``data_type``."""

    def __init__(self, data_type: str) -> None:
        self.data_type = data_type


def to_hdf5(state: dict, group: h5py.Group) -> None:
    """tianshou.data.utils.converter.to_hdf5: groups for Batches and dicts, datasets for arrays,
    attributes for numbers, a pickled byte dataset for anything else."""
    for key, value in state.items():
        if isinstance(value, dict):
            sub = group.create_group(key)
            if isinstance(value, Batch):
                sub.attrs["__data_type__"] = "Batch"
            to_hdf5(value, sub)
        elif isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
            group[key].attrs["__data_type__"] = "ndarray"
        elif isinstance(value, (int, float)):
            group.attrs[key] = value
        else:
            group.create_dataset(key, data=np.frombuffer(b"\x80\x04pickled", dtype=np.byte))
            group[key].attrs["__data_type__"] = getattr(value, "data_type", type(value).__name__)


def episodes_log(count: int, *, dict_obs: bool = False, seed: int = 0) -> list[dict]:
    """Transitions of episodes of 3 to 6 steps; odd episodes end terminated, even ones truncated."""
    rng = np.random.default_rng(seed)
    log, step_id = [], 0
    for episode in range(count):
        length = int(rng.integers(3, 7))
        for step in range(length):
            last = step == length - 1
            obs = np.array([step_id, episode, step], np.float64)
            obs_next = np.array([step_id + 1, episode, step + 1], np.float64)
            if dict_obs:
                obs = {"pos": obs, "img": np.full((2, 2), step_id % 256, np.uint8)}
                obs_next = {"pos": obs_next, "img": np.full((2, 2), (step_id + 1) % 256, np.uint8)}
            log.append(
                {
                    "obs": obs,
                    "act": int(rng.integers(0, 4)),
                    "rew": float(step_id) / 10,
                    "terminated": last and episode % 2 == 1,
                    "truncated": last and episode % 2 == 0,
                    "obs_next": obs_next,
                    "info": {"env_id": 0, "score": float(step_id)},
                }
            )
            step_id += 1
    return log


def buffer_state(log: list[dict], maxsize: int, *, version: str = "1.0", obs_next: bool = True) -> dict:
    """``ReplayBuffer.__dict__`` after adding ``log``: a ring of ``maxsize`` rows."""

    def column(get):
        first = get(log[0])
        if isinstance(first, dict):
            return Batch({key: column(lambda t, key=key: get(t)[key]) for key in first})
        out = np.zeros((maxsize, *np.shape(first)), dtype=np.asarray(first).dtype)
        for t, transition in enumerate(log):
            out[t % maxsize] = get(transition)
        return out

    meta = Batch(obs=column(lambda t: t["obs"]), act=column(lambda t: t["act"]), rew=column(lambda t: t["rew"]))
    done = column(lambda t: t["terminated"] or t["truncated"])
    if version == "0.4":  # done only; gym's TimeLimit wrapper flags its cut-offs in info
        meta["done"] = done
        info = {"env_id": column(lambda t: t["info"]["env_id"]), "TimeLimit.truncated": column(lambda t: t["truncated"])}
    else:
        meta.update(terminated=column(lambda t: t["terminated"]), truncated=column(lambda t: t["truncated"]), done=done)
        info = {"env_id": column(lambda t: t["info"]["env_id"]), "score": column(lambda t: t["info"]["score"])}
    if obs_next:
        meta["obs_next"] = column(lambda t: t["obs_next"])
    meta["info"] = Batch(info)
    meta["policy"] = Batch()
    index_name = "_insertion_idx" if version == "1.0" else "_index"
    return {
        "options": {"stack_num": 1, "ignore_obs_next": not obs_next, "save_only_last_obs": False, "sample_avail": False},
        "maxsize": maxsize,
        "stack_num": 1,
        "_indices": np.arange(maxsize),
        "_save_obs_next": obs_next,
        "_save_only_last_obs": False,
        "_sample_avail": False,
        "_meta": meta,
        "last_index": np.array([(len(log) - 1) % maxsize]),
        index_name: len(log) % maxsize,
        "_size": min(len(log), maxsize),
        "_ep_return": 0.0,
        "_ep_len": 0,
        "_ep_start_idx": 0,
    }


def save_hdf5(path, state: dict) -> None:
    with h5py.File(path, "w") as handle:
        to_hdf5(state, handle)


def test_tianshou_wrapped_ring_is_read_oldest_first(tmp_path):
    log = episodes_log(12)
    assert len(log) > 25
    path = tmp_path / "buffer.hdf5"
    save_hdf5(path, buffer_state(log, maxsize=25))
    assert detect_format(path) == "tianshou"
    ds = load_dataset(path)
    kept = log[-25:]  # the ring's 25 newest, oldest first
    assert len(ds) == 25
    np.testing.assert_array_equal(ds.observations, np.array([t["obs"] for t in kept], np.float32))
    np.testing.assert_array_equal(ds.next_observations, np.array([t["obs_next"] for t in kept], np.float32))
    np.testing.assert_array_equal(ds.actions, [t["act"] for t in kept])
    np.testing.assert_allclose(ds.rewards, [t["rew"] for t in kept], rtol=1e-6)
    np.testing.assert_array_equal(ds.terminals, [t["terminated"] for t in kept])
    np.testing.assert_array_equal(ds.timeouts, [t["truncated"] for t in kept])
    np.testing.assert_array_equal(ds.infos["score"], [t["info"]["score"] for t in kept])
    assert ds.action_space == gym.spaces.Discrete(max(t["act"] for t in kept) + 1)
    assert ds.metadata["tianshou/layout"] == "terminated/truncated" and ds.metadata["format"] == "tianshou"
    assert ds.metadata["tianshou/maxsize"] == 25


def test_tianshou_unfinished_newest_episode_is_cut_off(tmp_path):
    log = episodes_log(4)[:-2]  # the last episode is still running
    save_hdf5(tmp_path / "b.hdf5", buffer_state(log, maxsize=100))
    ds = load_dataset(tmp_path / "b.hdf5")
    assert len(ds) == len(log)  # a buffer that never filled: rows 0.._size-1
    assert ds.timeouts[-1] and not ds.terminals[-1]
    np.testing.assert_array_equal(ds.observations[:, 0], np.arange(len(log)))


def test_tianshou_old_done_layout_with_dict_observations(tmp_path):
    log = episodes_log(5, dict_obs=True)
    save_hdf5(tmp_path / "old.h5", buffer_state(log, maxsize=12, version="0.4"))
    ds = load_dataset(tmp_path / "old.h5")
    kept = log[-12:]
    assert set(ds.observations) == {"pos", "img"}
    assert ds.observations["img"].dtype == np.uint8 and ds.observations["img"].shape == (12, 2, 2)
    np.testing.assert_array_equal(ds.observations["pos"], np.array([t["obs"]["pos"] for t in kept], np.float32))
    np.testing.assert_array_equal(ds.next_observations["img"], np.array([t["obs_next"]["img"] for t in kept]))
    # done was split by info/TimeLimit.truncated into terminals and timeouts
    np.testing.assert_array_equal(ds.terminals, [t["terminated"] for t in kept])
    np.testing.assert_array_equal(ds.timeouts, [t["truncated"] for t in kept])
    assert ds.metadata["tianshou/layout"] == "done"
    assert isinstance(ds.observation_space, gym.spaces.Dict)


def test_tianshou_without_obs_next_derives_next_observations(tmp_path):
    log = episodes_log(6)
    save_hdf5(tmp_path / "noobsnext.hdf5", buffer_state(log, maxsize=len(log) + 5, obs_next=False))
    ds = load_dataset(tmp_path / "noobsnext.hdf5")
    # every kept next observation is the true one; steps at a truncation have none and are dropped
    truncated = sum(t["truncated"] for t in log) + (not log[-1]["terminated"] and not log[-1]["truncated"])
    assert len(ds) == len(log) - truncated
    ids = ds.observations[:, 0].astype(int)
    inside = ~ds.terminals
    np.testing.assert_array_equal(ds.next_observations[inside, 0], ids[inside] + 1)


def test_tianshou_malformed_files_name_the_key(tmp_path):
    log = episodes_log(3)
    state = buffer_state(log, maxsize=20)
    del state["_meta"]["act"]
    save_hdf5(tmp_path / "noact.hdf5", state)
    with pytest.raises(DatasetError, match="missing") as error:
        load_dataset(tmp_path / "noact.hdf5")
    assert error.value.key == "_meta/act"

    state = buffer_state(log, maxsize=20)
    state["_meta"]["rew"] = state["_meta"]["rew"][:7]
    save_hdf5(tmp_path / "short.hdf5", state)
    with pytest.raises(DatasetError, match="has 7 rows, the buffer has 20") as error:
        load_dataset(tmp_path / "short.hdf5")
    assert error.value.key == "_meta/rew"

    state = buffer_state(log, maxsize=20)
    state["_meta"]["obs"] = object()  # e.g. an object array Tianshou had to pickle
    save_hdf5(tmp_path / "pickled.hdf5", state)
    with pytest.raises(DatasetError, match="pickled .* never loads") as error:
        load_dataset(tmp_path / "pickled.hdf5")
    assert error.value.key == "_meta/obs"

    state = buffer_state(log, maxsize=20)
    del state["_size"]
    save_hdf5(tmp_path / "nosize.hdf5", state)
    with pytest.raises(DatasetError, match="missing buffer attribute") as error:
        load_dataset(tmp_path / "nosize.hdf5")
    assert error.value.key == "_size" and error.value.source == str(tmp_path / "nosize.hdf5")

    state = buffer_state(log, maxsize=20)
    state.update(buffer_num=2, buffers=Pickled("pickled_ndarray"))  # no arrays placing the sub-buffers
    save_hdf5(tmp_path / "vector.hdf5", state)
    with pytest.raises(DatasetError, match="VectorReplayBuffer") as error:
        load_dataset(tmp_path / "vector.hdf5")
    assert error.value.key == "_offset"


def vector_buffer_state(logs: list[list[dict]], capacity: int, *, obs_next: bool = True) -> dict:
    """``VectorReplayBuffer(capacity * len(logs), len(logs)).__dict__`` after environment ``i`` added
    ``logs[i]``, as Tianshou 2.0.1 saves it: the rings side by side in ``_meta``, placed by the plain
    arrays ``_offset``, ``_extend_offset``, ``_lengths`` and ``last_index``; the manager's own ``_size``
    and insertion index 0; the sub-buffers (``buffers``) and the RNG pickled."""
    template = next(log for log in logs if log)
    rings = [buffer_state(log or template, capacity, obs_next=obs_next)["_meta"] for log in logs]

    def join(parts: list, empty: list[bool]):
        if isinstance(parts[0], dict):
            return Batch({key: join([part[key] for part in parts], empty) for key in parts[0]})
        return np.concatenate([np.zeros_like(part) if blank else part for part, blank in zip(parts, empty)])

    count = len(logs)
    offsets = np.arange(count) * capacity
    state = buffer_state(template, capacity * count, obs_next=obs_next)
    state.update(
        _meta=join(rings, [not log for log in logs]),
        buffer_num=count,
        buffers=Pickled("pickled_ndarray"),
        _random_state=Pickled("RandomState"),
        _offset=offsets,
        _extend_offset=np.arange(count + 1) * capacity,
        _lengths=np.array([min(len(log), capacity) for log in logs]),
        last_index=np.array([offset + ((len(log) or 1) - 1) % capacity for offset, log in zip(offsets, logs)]),
        _insertion_idx=0,
        _size=0,
    )
    return state


def test_tianshou_vector_buffer_rings_are_read_one_after_another(tmp_path):
    logs = [episodes_log(4, seed=1)[:-1], episodes_log(1, seed=2)[:2], [], episodes_log(2, seed=3)[:8]]
    assert len(logs[0]) > 10 and len(logs[3]) == 8
    save_hdf5(tmp_path / "vector.hdf5", vector_buffer_state(logs, capacity=8))
    assert detect_format(tmp_path / "vector.hdf5") == "tianshou"
    ds = load_dataset(tmp_path / "vector.hdf5")
    # ring 0 wrapped (its 8 newest), ring 1 never filled, ring 2 is empty, ring 3 just filled
    kept = [logs[0][-8:], logs[1], logs[3]]
    rows = [t for ring in kept for t in ring]
    assert len(ds) == 18 and ds.metadata["tianshou/buffer_num"] == 4 and ds.metadata["tianshou/maxsize"] == 32
    np.testing.assert_array_equal(ds.observations, np.array([t["obs"] for t in rows], np.float32))
    np.testing.assert_array_equal(ds.next_observations, np.array([t["obs_next"] for t in rows], np.float32))
    np.testing.assert_array_equal(ds.actions, [t["act"] for t in rows])
    np.testing.assert_allclose(ds.rewards, [t["rew"] for t in rows], rtol=1e-6)
    np.testing.assert_array_equal(ds.terminals, [t["terminated"] for t in rows])
    # each ring's newest step ends its episode: cut off by the end of the data unless it ended
    ring_ends = np.cumsum([len(ring) for ring in kept]) - 1
    expected = np.array([t["truncated"] for t in rows])
    expected[ring_ends] |= ~ds.terminals[ring_ends]
    np.testing.assert_array_equal(ds.timeouts, expected)
    assert ds.timeouts[7] and ds.timeouts[9]  # ring 0's and ring 1's unfinished episodes
    np.testing.assert_array_equal(ds.infos["score"], [t["info"]["score"] for t in rows])

    # without obs_next, each ring's unfinished newest step has no known next observation: dropped
    save_hdf5(tmp_path / "noobsnext.hdf5", vector_buffer_state(logs, capacity=8, obs_next=False))
    derived = load_dataset(tmp_path / "noobsnext.hdf5")
    inside = ~derived.terminals
    ids = derived.observations[:, 0].astype(int)
    np.testing.assert_array_equal(derived.next_observations[inside, 0], ids[inside] + 1)  # never another ring's row
    assert derived.metadata["dropped_transitions"] > 0 and len(derived) < len(ds)


def test_tianshou_vector_buffer_inconsistent_placement_names_the_key(tmp_path):
    logs = [episodes_log(1, seed=1)[:3], episodes_log(1, seed=2)[:2]]
    state = vector_buffer_state(logs, capacity=8)
    state["last_index"] = np.array([5, 9])  # ring 0 holds 3 transitions: its newest is row 2
    save_hdf5(tmp_path / "last.hdf5", state)
    with pytest.raises(DatasetError, match="sub-buffer 0 .* newest at row 5") as error:
        load_dataset(tmp_path / "last.hdf5")
    assert error.value.key == "last_index"

    state = vector_buffer_state(logs, capacity=8)
    state["_extend_offset"] = np.array([0, 8, 20])
    save_hdf5(tmp_path / "edges.hdf5", state)
    with pytest.raises(DatasetError, match="do not split the buffer of 16 rows") as error:
        load_dataset(tmp_path / "edges.hdf5")
    assert error.value.key == "_extend_offset"

    state = vector_buffer_state(logs, capacity=8)
    state["_lengths"] = np.array([0, 0])
    save_hdf5(tmp_path / "empty.hdf5", state)
    with pytest.raises(DatasetError, match="every sub-buffer is empty"):
        load_dataset(tmp_path / "empty.hdf5")


# --------------------------------------------------------------------------------------- DQN-Replay

STACK = 4  # dopamine's Atari frame stack: 3 all-zero padding rows before every episode


def frame(transition_id: int) -> np.ndarray:
    """An 84x84 frame that says which transition it belongs to (never all zero, unlike padding)."""
    out = np.full((84, 84), 7, np.uint8)
    out[0, 0], out[0, 1] = transition_id % 256, transition_id // 256
    return out


def frame_id(frames: np.ndarray) -> np.ndarray:
    return frames[:, 0, 0].astype(int) + 256 * frames[:, 0, 1].astype(int)


class DopamineBuffer:
    """dopamine's OutOfGraphReplayBuffer add() and save(): a ring with zero padding at episode starts."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.store = {
            "observation": np.empty((capacity, 84, 84), np.uint8),
            "action": np.empty(capacity, np.int32),
            "reward": np.empty(capacity, np.float32),
            "terminal": np.empty(capacity, np.uint8),
        }
        self.add_count = np.array(0)
        self.invalid_range = np.zeros(STACK)
        self.ids = np.zeros(capacity, int)  # which transition each slot holds (0: padding), for the checks

    def cursor(self) -> int:
        return int(self.add_count) % self.capacity

    def add(self, transition_id, observation, action, reward, terminal) -> None:
        if self.add_count == 0 or self.store["terminal"][self.cursor() - 1] == 1:
            for _ in range(STACK - 1):
                self._add(0, np.zeros((84, 84), np.uint8), 0, 0.0, 0)
        self._add(transition_id, observation, action, reward, terminal)

    def oldest_first(self) -> np.ndarray:
        """The slots' transition ids from the oldest slot to the newest (0: padding)."""
        count = int(self.add_count)
        if count < self.capacity:
            return self.ids[:count].copy()
        return np.roll(self.ids, -self.cursor())

    def _add(self, transition_id, observation, action, reward, terminal) -> None:
        cursor = self.cursor()
        self.ids[cursor] = transition_id
        for name, value in zip(("observation", "action", "reward", "terminal"), (observation, action, reward, terminal)):
            self.store[name][cursor] = value
        self.add_count += 1
        self.invalid_range = np.array([(self.cursor() - 1 + i) % self.capacity for i in range(STACK + 1)])

    def save(self, directory, iteration: int) -> None:
        elements = {f"$store${'_'}{name}": array for name, array in self.store.items()}
        elements.update(add_count=self.add_count, invalid_range=self.invalid_range)
        for name, array in elements.items():
            with gzip.open(directory / f"{name}_ckpt.{iteration}.gz", "wb") as handle:
                np.save(handle, array, allow_pickle=False)


def replay_logs(tmp_path, capacity: int = 60):
    """Checkpoint 0 before the ring fills, checkpoint 1 after it wrapped, mid-episode.

    Returns the directory, every transition added by id, and each checkpoint's ring content."""
    directory = tmp_path / "Pong" / "1" / "replay_logs"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    truth, rings, buffer, next_id = {}, {}, DopamineBuffer(capacity), 1
    lengths = [5, 9, 4, 11, 6, 8, 7, 10, 6]
    for episode, length in enumerate(lengths):
        if episode == 3:
            buffer.save(directory, 0)
            rings[0] = buffer.oldest_first()
            assert int(buffer.add_count) < capacity
        steps = length if episode < len(lengths) - 1 else length - 3  # the last episode is unfinished
        for step in range(steps):
            terminal = int(step == length - 1)
            truth[next_id] = {"action": int(rng.integers(0, 6)), "reward": float(rng.uniform(-3, 3)), "terminal": terminal}
            buffer.add(next_id, frame(next_id), truth[next_id]["action"], truth[next_id]["reward"], terminal)
            next_id += 1
    buffer.save(directory, 1)
    rings[1] = buffer.oldest_first()
    assert int(buffer.add_count) > capacity
    return directory, truth, rings


def check_rows(ds, truth) -> np.ndarray:
    """Every row against the transition that went in; returns the rows' transition ids."""
    ids = frame_id(ds.observations)
    assert (ds.observations.reshape(len(ds), -1).any(axis=1)).all()  # no padding frame survived
    np.testing.assert_array_equal(ds.actions, [truth[i]["action"] for i in ids])
    np.testing.assert_array_equal(ds.terminals, [bool(truth[i]["terminal"]) for i in ids])
    np.testing.assert_allclose(ds.rewards, [truth[i]["reward"] for i in ids], rtol=1e-6)
    inside = ~ds.terminals
    np.testing.assert_array_equal(frame_id(ds.next_observations)[inside], ids[inside] + 1)  # the true next frame
    np.testing.assert_array_equal(frame_id(ds.next_observations)[~inside], ids[~inside])
    return ids


def test_dqn_replay_conversion_of_a_wrapped_ring(tmp_path):
    directory, truth, rings = replay_logs(tmp_path)
    assert dqn_replay.checkpoints(directory) == [0, 1]
    out = dqn_replay.convert(directory, tmp_path / "pong.offrl", checkpoint_numbers=[1])
    ds = load_dataset(out)
    assert ds.metadata["format"] == "offrl-memmap" and ds.metadata["dqn_replay/game"] == "Pong"
    assert ds.observations.shape[1:] == (84, 84) and ds.observations.dtype == np.uint8
    assert ds.action_space == gym.spaces.Discrete(int(max(t["action"] for t in truth.values())) + 1)
    ids = check_rows(ds, truth)
    # the ring oldest first, less the padding, the 3 oldest slots (they could be the tail of an
    # overwritten episode's padding) and the newest step (unfinished: no next frame was written)
    ring = rings[1]
    assert ring[0] != 0 and not truth[ring[-1]]["terminal"]
    expected = [i for i in ring[STACK - 1 : -1] if i != 0]
    np.testing.assert_array_equal(ids, expected)
    assert ids[-1] == max(truth) - 1 and ds.timeouts[-1] and ds.timeouts.sum() == 1  # cut off by the data's end
    assert (np.diff(ids) == 1).all() and ds.terminals.sum() >= 3


def test_dqn_replay_several_checkpoints_limit_and_clipping(tmp_path):
    directory, truth, rings = replay_logs(tmp_path)
    both = load_dataset(dqn_replay.convert(directory, tmp_path / "both.offrl"))
    first = load_dataset(dqn_replay.convert(directory, tmp_path / "first.offrl", checkpoint_numbers=[0]))
    ids = check_rows(first, truth)
    np.testing.assert_array_equal(ids, [i for i in rings[0] if i != 0])  # an unwrapped ring: every step
    np.testing.assert_array_equal(ids, np.arange(1, len(first) + 1))
    assert first.terminals[-1]  # checkpoint 0 was saved right after an episode ended
    check_rows(both, truth)
    np.testing.assert_array_equal(frame_id(both.observations[: len(first)]), ids)  # checkpoint 0, then 1
    assert both.metadata["dqn_replay/checkpoints"] == [0, 1]

    limited = load_dataset(
        dqn_replay.convert(directory, tmp_path / "limited.offrl", max_transitions=len(first) + 5, clip_rewards=True)
    )
    assert len(limited) == len(first) + 5 and limited.timeouts[-1]
    assert limited.rewards.max() <= 1.0 and limited.rewards.min() >= -1.0
    raw = np.array([truth[i]["reward"] for i in frame_id(limited.observations)], np.float32)
    np.testing.assert_array_equal(limited.rewards, np.clip(raw, -1, 1))


def test_dqn_replay_cli(tmp_path, capsys):
    directory, _, _ = replay_logs(tmp_path)
    out = tmp_path / "cli.offrl"
    argv = ["datasets", "convert-dqn-replay", str(directory), str(out), "--checkpoints", "0-1", "--max-transitions", "30"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "checkpoint 0:" in printed and "wrote" in printed and "30 transitions" in printed
    assert len(load_dataset(out)) == 30
    assert cli.main(argv) == 2  # exists: refused
    assert "already exists" in capsys.readouterr().err
    assert cli.main([*argv, "--force", "--checkpoints", "7"]) == 2
    assert "has no checkpoint [7]" in capsys.readouterr().err
    assert cli.main([*argv, "--force", "--checkpoints", "1-0"]) == 2
    assert "the range '1-0' runs backwards" in capsys.readouterr().err
    assert cli.main([*argv[:3], str(tmp_path / "twice.offrl"), "--checkpoints", "0,0"]) == 0
    once = tmp_path / "once.offrl"
    assert cli.main([*argv[:3], str(once), "--checkpoints", "0"]) == 0
    assert len(load_dataset(tmp_path / "twice.offrl")) == len(load_dataset(once))  # a checkpoint named twice is read once
    assert cli.main([*argv[:3], str(tmp_path / "s2.offrl"), "--stack-size", "2"]) == 2
    assert "holds a frame stack of 4, not the --stack-size 2" in capsys.readouterr().err


def test_dqn_replay_damaged_files_are_named(tmp_path):
    directory, _, _ = replay_logs(tmp_path)
    (directory / "$store$_reward_ckpt.1.gz").unlink()
    with pytest.raises(DatasetError, match="missing") as error:
        dqn_replay.convert(directory, tmp_path / "x.offrl", checkpoint_numbers=[1])
    assert error.value.source == str(directory / "$store$_reward_ckpt.1.gz")

    observations = directory / "$store$_observation_ckpt.0.gz"
    data = observations.read_bytes()
    observations.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match="truncated") as error:
        dqn_replay.convert(directory, tmp_path / "y.offrl", checkpoint_numbers=[0])
    assert error.value.source == str(observations)
    assert not (tmp_path / "y.offrl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".y.offrl")]  # no temporary left

    with gzip.open(directory / "add_count_ckpt.0.gz", "wb") as handle:
        buffer = io.BytesIO()
        np.save(buffer, np.array([1.5]))
        handle.write(buffer.getvalue())
    with pytest.raises(DatasetError, match="expected a count"):
        dqn_replay.convert(directory, tmp_path / "z.offrl", checkpoint_numbers=[0])
    with pytest.raises(DatasetError, match="no .*observation_ckpt"):
        dqn_replay.checkpoints(tmp_path)
