"""Uniform sampling of transitions already on the training device.

One ``torch.randint`` and one ``index_select`` per batch: no per-sample
Python. When every column is a float tensor the columns are packed side by
side into one ``[N, D]`` tensor at construction, so a batch is a single
gather and the fields are column views of it.
"""

from __future__ import annotations

import dataclasses

import torch

from offrl.data.batch import Batch


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
        packable = all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in columns.values())
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

    def sample(self) -> Batch:
        indices = torch.randint(self.size, (self.batch_size,), device=self.device, generator=self.generator)
        if self._data is not None:
            return self._data.index(indices)
        rows = self._packed.index_select(0, indices)
        fields, offset = {}, 0
        for name, width, shape in self._layout:
            fields[name] = rows[:, offset : offset + width].reshape(self.batch_size, *shape)
            offset += width
        return Batch(**fields)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
