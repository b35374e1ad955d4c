"""Datasets: loading, validation, device tensors, sampling, replay."""

from offrl.data.batch import Batch
from offrl.data.dataset import Dataset, Episode
from offrl.data.formats import detect_format, load_dataset, save_dataset
from offrl.data.replay import ReplayBuffer
from offrl.data.sampler import MixedSampler, UniformSampler

__all__ = [
    "Batch",
    "Dataset",
    "Episode",
    "MixedSampler",
    "ReplayBuffer",
    "UniformSampler",
    "detect_format",
    "load_dataset",
    "save_dataset",
]
