"""Checkpoints as data: tensors in safetensors, everything else in JSON. Loading never unpickles.

A checkpoint is two files with one stem, ``step_000010000.safetensors`` and
``step_000010000.json``. The tensors are written first and the JSON last,
each atomically, so a checkpoint whose JSON exists is complete.
``latest.json`` in the same directory names the newest one.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

import offrl
from offrl.algos.base import Algorithm
from offrl.algos.registry import get_algo_class, make_algo
from offrl.config import config_to_dict, make_config
from offrl.errors import CheckpointError, ConfigError
from offrl.io import atomic_path, write_json
from offrl.spaces import space_from_json, space_to_json

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_STEM = re.compile(r"^step_(\d+)$")


def checkpoint_stem(directory: Path, step: int) -> Path:
    return directory / f"step_{step:09d}"


def save_checkpoint(
    directory: Path,
    algo: Algorithm,
    *,
    step: int,
    trainer_state: dict[str, Any] | None = None,
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    keep: int = 0,
) -> Path:
    """Write a checkpoint of ``algo`` (weights, optimizers, RNG) at ``step``; returns its stem."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = checkpoint_stem(directory, step)
    tensors: dict[str, torch.Tensor] = {f"model/{k}": v for k, v in algo.state_dict().items()}
    optimizers: dict[str, Any] = {}
    for name, optimizer in algo.optimizers.items():
        state = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for index, entries in state["state"].items():
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{name}/{index}/{key}"] = value
                else:
                    scalars.setdefault(str(index), {})[key] = value
        optimizers[name] = {"param_groups": state["param_groups"], "scalars": scalars}
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{index}"] = rng
    for key, value in (trainer_tensors or {}).items():
        tensors[f"trainer/{key}"] = value
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    python_state = random.getstate()
    meta = {
        "format_version": FORMAT_VERSION,
        "offrl_version": offrl.__version__,
        "algo": algo.name,
        "config": config_to_dict(algo.config),
        "observation_space": space_to_json(algo.observation_space),
        "action_space": space_to_json(algo.action_space),
        "step": step,
        "num_updates": algo.num_updates,
        "total_updates": algo.total_updates,
        "optimizers": optimizers,
        "rng": {
            "numpy": _numpy_state_to_json(np.random.get_state()),
            "python": [python_state[0], list(python_state[1]), python_state[2]],
        },
        "trainer": trainer_state or {},
    }
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        safetensors.torch.save_file(tensors, str(tmp))
    write_json(stem.with_suffix(".json"), meta)
    write_json(directory / "latest.json", {"step": step, "checkpoint": stem.name})
    if keep > 0:
        for old in list_checkpoints(directory)[:-keep]:
            old.with_suffix(".json").unlink(missing_ok=True)
            old.with_suffix(".safetensors").unlink(missing_ok=True)
    return stem


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints (JSON present) in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    stems = [p.with_suffix("") for p in directory.glob("step_*.json") if _STEM.match(p.stem)]
    return sorted(stems, key=lambda s: int(_STEM.match(s.name).group(1)))


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory, its checkpoints directory, or one checkpoint file -> a checkpoint stem."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors") and path.name != "latest.json":
        stem = path.with_suffix("")
        if not stem.with_suffix(".json").is_file():
            raise CheckpointError(f"{path}: no such checkpoint")
        return stem
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    directory = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    stems = list_checkpoints(directory)
    if not stems:
        raise CheckpointError(f"{path}: holds no checkpoint (expected {CHECKPOINT_DIR}/step_*.json)")
    return stems[-1]


def read_checkpoint(path: str | Path, *, device: torch.device | str = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    stem = resolve_checkpoint(path)
    meta_path, tensor_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{meta_path}: cannot read checkpoint metadata: {error}") from None
    if not isinstance(meta, dict) or "algo" not in meta or "format_version" not in meta:
        raise CheckpointError(f"{meta_path}: not an offrl checkpoint (no algo / format_version)")
    _check_metadata(meta, meta_path)
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: written by a newer offrl (format {meta['format_version']}; this one reads {FORMAT_VERSION})"
        )
    try:
        tensors = safetensors.torch.load_file(str(tensor_path), device=str(device))
    except (OSError, safetensors.SafetensorError) as error:
        raise CheckpointError(f"{tensor_path}: cannot read checkpoint tensors (truncated or corrupt?): {error}") from None
    return meta, tensors


# what every checkpoint's JSON holds, and of which type ("trainer" only in a trainer's checkpoints)
_METADATA = {"format_version": int, "algo": str, "config": dict, "observation_space": dict, "action_space": dict,
             "step": int, "num_updates": int, "total_updates": int, "optimizers": dict, "rng": dict}


def _check_metadata(meta: dict[str, Any], meta_path: Path) -> None:
    """A checkpoint's JSON edited by hand (or by another tool) is one error naming the key, never a KeyError."""
    for key, kind in _METADATA.items():
        if key not in meta:
            raise CheckpointError(f"{meta_path}: the checkpoint has no {key!r} entry")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise CheckpointError(f"{meta_path}: {key!r} should be {kind.__name__}, found {meta[key]!r}")
    for key in ("observation_space", "action_space"):
        try:
            space_from_json(meta[key])
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{meta_path}: {key!r} is not a space offrl wrote ({error})") from None
    if "trainer" in meta and not isinstance(meta["trainer"], dict):
        raise CheckpointError(f"{meta_path}: 'trainer' should be dict, found {meta['trainer']!r}")


def load_algo(
    path: str | Path,
    *,
    algo: str | None = None,
    device: torch.device | str = "cpu",
    optimizers: bool = True,
) -> Algorithm:
    """Rebuild an algorithm from a checkpoint through the registry. ``algo`` asserts which one it must be."""
    meta, tensors = read_checkpoint(path, device=device)
    if algo is not None and meta["algo"] != algo:
        raise CheckpointError(f"{path}: the checkpoint was written by {meta['algo']!r}, not {algo!r}")
    try:
        cls = get_algo_class(meta["algo"])
        config = make_config(cls.Config, meta["config"], source=f"{path} config")
    except ConfigError as error:
        raise CheckpointError(f"{path}: {error}") from None
    instance = make_algo(
        meta["algo"],
        space_from_json(meta["observation_space"]),
        space_from_json(meta["action_space"]),
        config=config,
        device=device,
    )
    restore_algo(instance, meta, tensors, optimizers=optimizers, source=str(path))
    return instance


def restore_algo(
    algo: Algorithm,
    meta: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    *,
    optimizers: bool = True,
    source: str = "checkpoint",
) -> None:
    """Load weights (and optimizer state) into an existing algorithm of the same kind and shape."""
    if meta["algo"] != algo.name:
        raise CheckpointError(
            f"{source}: the checkpoint was written by {meta['algo']!r} and cannot be loaded into {algo.name!r}"
        )
    tensors = algo.upgrade_checkpoint(meta, tensors)
    model = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    expected = algo.state_dict()
    missing = sorted(set(expected) - set(model))
    unexpected = sorted(set(model) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(model) if expected[k].shape != model[k].shape)
    if missing or unexpected or wrong_shape:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:5])}" + (" ..." if len(keys) > 5 else "")
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong_shape))
            if keys
        )
        raise CheckpointError(f"{source}: the checkpoint's networks do not match this {algo.name} configuration ({detail})")
    algo.load_state_dict(model)
    algo.num_updates = int(meta.get("num_updates", 0))
    algo.total_updates = int(meta.get("total_updates", 0))
    if optimizers:
        for name, optimizer in algo.optimizers.items():
            saved = meta["optimizers"].get(name)
            if saved is None:
                raise CheckpointError(f"{source}: no state for optimizer {name!r}")
            state: dict[int, dict[str, Any]] = {}
            prefix = f"optim/{name}/"
            for key, value in tensors.items():
                if key.startswith(prefix):
                    index, field = key[len(prefix) :].split("/", 1)
                    state.setdefault(int(index), {})[field] = value
            for index, scalars in saved.get("scalars", {}).items():
                state.setdefault(int(index), {}).update(scalars)
            optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def restore_rng(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng/torch"].cpu())
    cuda_states = [tensors[k].cpu() for k in sorted(tensors) if k.startswith("rng/cuda/")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    np.random.set_state(_numpy_state_from_json(meta["rng"]["numpy"]))
    version, state, gauss = meta["rng"]["python"]
    random.setstate((version, tuple(state), gauss))


def trainer_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("trainer/") :]: v for k, v in tensors.items() if k.startswith("trainer/")}


def _numpy_state_to_json(state: tuple) -> list:
    name, keys, pos, has_gauss, cached = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_state_from_json(data: list) -> tuple:
    name, keys, pos, has_gauss, cached = data
    return name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached
