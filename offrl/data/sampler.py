"""Uniform sampling of transitions already on the training device.

One ``torch.randint`` and one ``index_select`` per batch: no per-sample
Python. When every column is a float tensor the columns are packed side by
side into one ``[N, D]`` tensor at construction, so a batch is a single
gather and the fields are column views of it. Columns that share a
memory-mapped file (``Dataset.to("cpu")`` of an offrl-memmap dataset) are
never packed: packing would read the whole file into memory.
"""

from __future__ import annotations

import dataclasses

import torch

from offrl.data.batch import Batch
from offrl.data.memmap import is_file_backed
from offrl.data.tree import tree_map2


class UniformSampler:
    def __init__(self, data: Batch, batch_size: int, *, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.size = len(data)
        self.batch_size = batch_size
        self.device = data.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._layout: list[tuple[str, int, tuple[int, ...]]] = []
        columns = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
        columns = {name: value for name, value in columns.items() if value is not None}
        packable = all(
            isinstance(v, torch.Tensor) and v.dtype == torch.float32 and not is_file_backed(v) for v in columns.values()
        )
        if packable:
            flat = []
            for name, value in columns.items():
                width = value[0].numel()
                self._layout.append((name, width, tuple(value.shape[1:])))
                flat.append(value.reshape(self.size, width))
            self._packed = torch.cat(flat, dim=1)
            self._data = None
        else:
            self._packed = None
            self._data = data

    def sample(self, batch_size: int | None = None) -> Batch:
        batch_size = batch_size or self.batch_size
        indices = torch.randint(self.size, (batch_size,), device=self.device, generator=self.generator)
        if self._data is not None:
            return self._data.index(indices)
        rows = self._packed.index_select(0, indices)
        fields, offset = {}, 0
        for name, width, shape in self._layout:
            fields[name] = rows[:, offset : offset + width].reshape(batch_size, *shape)
            offset += width
        return Batch(**fields)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class MixedSampler:
    """Batches drawn partly from a dataset and partly from an online replay buffer.

    ``offline_ratio`` is the fraction of each batch taken from the dataset
    (RLPD: 0.5); ``None`` samples uniformly from the union of both, i.e. in
    proportion to their sizes (offline-to-online fine-tuning as in IQL/CORL).
    Online rewards are multiplied by ``online_reward_scale`` so both halves
    share the scale the algorithm trains with.
    """

    def __init__(
        self,
        offline: UniformSampler | None,
        online,
        batch_size: int,
        *,
        offline_ratio: float | None,
        online_reward_scale: float = 1.0,
    ) -> None:
        if offline is None and online is None:
            raise ValueError("a mixed sampler needs a dataset or a replay buffer")
        if offline_ratio is not None and not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
        self.offline, self.online = offline, online
        self.batch_size = batch_size
        self.offline_ratio = offline_ratio
        self.online_reward_scale = online_reward_scale

    def offline_rows(self) -> int:
        if self.offline is None:
            return 0
        if self.online is None or len(self.online) == 0:
            return self.batch_size
        ratio = self.offline_ratio
        if ratio is None:
            ratio = self.offline.size / (self.offline.size + len(self.online))
        return int(round(ratio * self.batch_size))

    def sample(self) -> Batch:
        offline_rows = self.offline_rows()
        parts = []
        if offline_rows > 0:
            parts.append(self.offline.sample(offline_rows))
        if offline_rows < self.batch_size:
            online = self.online.sample(self.batch_size - offline_rows)
            if self.online_reward_scale != 1.0:
                online.rewards = online.rewards * self.online_reward_scale
            parts.append(online)
        return parts[0] if len(parts) == 1 else concat_batches(parts[0], parts[1])


def concat_batches(first: Batch, second: Batch) -> Batch:
    """Rows of both; an optional column only one side has is NaN (unknown) on the other side's rows."""
    values = {}
    for field in dataclasses.fields(first):
        a, b = getattr(first, field.name), getattr(second, field.name)
        if a is None and b is None:
            values[field.name] = None
            continue
        if a is None:
            a = torch.full((len(first), *b.shape[1:]), float("nan"), dtype=b.dtype, device=b.device)
        if b is None:
            b = torch.full((len(second), *a.shape[1:]), float("nan"), dtype=a.dtype, device=a.device)
        values[field.name] = tree_map2(lambda x, y: torch.cat([x, y.to(x.dtype)]), a, b)
    return Batch(**values)
