"""Errors a user can act on. The CLI prints their message alone, never a traceback."""

from __future__ import annotations

import os


class OffrlError(Exception):
    """Base class: something about the user's input, files or request is wrong."""


class DatasetError(OffrlError):
    """A dataset file is missing, malformed or holds values offrl cannot train on."""

    def __init__(self, source: str | os.PathLike, problem: str, *, key: str | None = None):
        self.source = str(source)
        self.key = key
        self.problem = problem
        where = f"{self.source}" + (f" [{key}]" if key else "")
        super().__init__(f"{where}: {problem}")


class CheckpointError(OffrlError):
    """A checkpoint or run directory cannot be loaded as asked."""


class ConfigError(OffrlError):
    """A configuration key or value is unknown or of the wrong type."""


class TrainingDiverged(OffrlError):
    """A loss or another logged metric became NaN or infinite: training stops rather than save such weights."""


class AlgorithmError(ConfigError, ValueError):
    """An algorithm cannot be built with these settings (raised by ``make_algo``; also a ``ValueError``)."""


class SpaceError(AlgorithmError):
    """An algorithm cannot take these observation or action spaces (discrete actions for a continuous
    algorithm, an unbounded action space, a space offrl's networks do not read)."""
