"""One validation pass over a dataset's columns, run once at load.

Every failure is a DatasetError naming the file and the key, so a user sees
what is wrong with their data instead of a shape error from deep inside a
training step, or worse, a policy silently trained on garbage.

Checks that read values go through the columns in row chunks, so a
memory-mapped column larger than memory is checked without being loaded.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from offrl.data.memmap import row_chunks
from offrl.data.tree import tree_items
from offrl.errors import DatasetError

# Tolerance for actions at the bounds: float32 round-off on data written as
# float64, e.g. 1.0000001 for an action space of [-1, 1].
ACTION_BOUND_TOLERANCE = 1e-5


def check_lengths(source: str, columns: dict[str, Any]) -> int:
    """All leaves share their first dimension; returns it. Raises on an empty dataset."""
    reference_key, reference_length = None, None
    for name, column in columns.items():
        for key, array in tree_items(column, name):
            if not isinstance(array, np.ndarray):
                raise DatasetError(source, f"expected an array, found {type(array).__name__}", key=key)
            if array.ndim == 0:
                raise DatasetError(source, "expected one row per transition, found a scalar", key=key)
            if reference_length is None:
                reference_key, reference_length = key, len(array)
            elif len(array) != reference_length:
                raise DatasetError(
                    source,
                    f"has {len(array)} rows but '{reference_key}' has {reference_length}: "
                    "every column needs one row per transition",
                    key=key,
                )
    if not reference_length:
        raise DatasetError(source, "the dataset is empty (0 transitions)")
    return reference_length


def check_numeric(source: str, key: str, array: np.ndarray, *, allow_integer: bool = True) -> None:
    kind = array.dtype.kind
    allowed = "fiub" if allow_integer else "f"
    if kind not in allowed:
        wanted = "a numeric dtype" if allow_integer else "a floating-point dtype"
        raise DatasetError(source, f"has dtype {array.dtype}, expected {wanted}", key=key)


def check_finite(source: str, key: str, array: np.ndarray) -> None:
    """No NaN or Inf; and a wider float (float64) fits in float32, which offrl trains in (a larger value would
    become Inf in the cast)."""
    if array.dtype.kind != "f":
        return
    chunks = row_chunks(array)
    limit = float(np.finfo(np.float32).max)
    for start, part in chunks:
        if not np.isfinite(part).all():
            break
        if array.dtype.itemsize > 4 and part.size and np.abs(part).max() > limit:
            rows = np.flatnonzero((np.abs(part.reshape(len(part), -1)) > limit).any(axis=1))
            raise DatasetError(source, f"holds values beyond the float32 range (+-{limit:.3g}) offrl trains in "
                               f"(first at row {start + int(rows[0])})", key=key)
    else:
        return
    bad_rows, first, has_nan = 0, None, False
    for offset, part in [(start, part), *chunks]:
        bad = np.flatnonzero(~np.isfinite(part.reshape(len(part), -1)).all(axis=1))
        if len(bad):
            bad_rows += len(bad)
            first = offset + int(bad[0]) if first is None else first
            has_nan = has_nan or bool(np.isnan(part).any())
    kind = "NaN" if has_nan else "Inf"
    raise DatasetError(source, f"contains {kind} values in {bad_rows} rows (first at row {first})", key=key)


def as_flags(source: str, key: str, array: np.ndarray) -> np.ndarray:
    """0/1 flags stored as bool, int or float, returned as bool; anything else is an error."""
    check_numeric(source, key, array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DatasetError(source, f"expected shape (N,), found {array.shape}", key=key)
    if array.dtype != np.bool_:
        values = np.unique(np.concatenate([np.unique(part) for _, part in row_chunks(array)]))
        if not np.isin(values, (0, 1)).all():
            odd = [v for v in values.tolist() if v not in (0, 1)][:3]
            raise DatasetError(source, f"flags must be 0 or 1, found {odd}", key=key)
        array = array.astype(bool)
    return array


def check_flags_exclusive(source: str, terminals: np.ndarray, timeouts: np.ndarray) -> None:
    both = terminals & timeouts
    if both.any():
        rows = np.flatnonzero(both)
        raise DatasetError(
            source,
            f"terminal and timeout are both set on {len(rows)} steps (first at row {int(rows[0])}): "
            "a step either ends the episode in a terminal state or is cut off by a time limit",
            key="terminals/timeouts",
        )


def check_actions(source: str, actions: np.ndarray, space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Discrete):
        if actions.dtype.kind not in "iu":
            raise DatasetError(source, f"discrete actions need an integer dtype, found {actions.dtype}", key="actions")
        if actions.ndim > 2 or (actions.ndim == 2 and actions.shape[1] != 1):
            raise DatasetError(
                source, f"discrete actions are one integer per row ([N] or [N, 1]), found {actions.shape[1:]} per row "
                "(offrl has no multi-discrete actions)", key="actions",
            )
        low, high = space.start, space.start + space.n - 1
        count, row = _rows_outside(actions, low, high)
        if count:
            raise DatasetError(
                source, f"{count} actions are outside {{{low}..{high}}} (first at row {row})", key="actions"
            )
        return
    if not isinstance(space, gym.spaces.Box):
        raise DatasetError(source, f"unsupported action space {space}", key="actions")
    if actions.shape[1:] != space.shape:
        raise DatasetError(
            source, f"actions have shape {actions.shape[1:]} per row, the action space has {space.shape}", key="actions"
        )
    low = np.broadcast_to(space.low, space.shape) - ACTION_BOUND_TOLERANCE
    high = np.broadcast_to(space.high, space.shape) + ACTION_BOUND_TOLERANCE
    count, row = _rows_outside(actions, low, high)
    if count:
        raise DatasetError(
            source,
            f"{count} actions are outside the action bounds [{space.low.min()}, {space.high.max()}] "
            f"(first at row {row}: {actions[row].tolist()})",
            key="actions",
        )


def _rows_outside(values: np.ndarray, low: Any, high: Any) -> tuple[int, int | None]:
    """How many rows have a value outside [low, high], and the first of them."""
    count, first = 0, None
    for start, part in row_chunks(values):
        outside = ((part < low) | (part > high)).reshape(len(part), -1).any(axis=1)
        if outside.any():
            count += int(outside.sum())
            first = start + int(np.argmax(outside)) if first is None else first
    return count, first


def check_observations(source: str, name: str, observations: Any, space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(observations, dict):
            raise DatasetError(source, "the observation space is a dict but the observations are one array", key=name)
        missing = set(space.spaces) - set(observations)
        if missing:
            raise DatasetError(source, f"missing observation keys {sorted(missing)}", key=name)
        for key, sub in space.spaces.items():
            check_observations(source, f"{name}/{key}", observations[key], sub)
        return
    if isinstance(observations, dict):
        raise DatasetError(source, "observations are a dict but the observation space is not", key=name)
    if observations.shape[1:] != space.shape:
        raise DatasetError(
            source, f"rows have shape {observations.shape[1:]}, the observation space has {space.shape}", key=name
        )
