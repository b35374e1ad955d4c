"""The dataset zoo: D4RL's recipes, rebuilt here from behaviour policies that ship with offrl.

Names are ``<env>-<variant>``: env one of pendulum, hopper, halfcheetah,
walker2d; variant one of

- ``random``: the randomly initialized SAC policy (D4RL's random);
- ``medium``: the SAC policy early-stopped at about a third of the expert's return;
- ``expert``: the fully trained SAC policy;
- ``medium-replay``: what filled SAC's replay buffer until it reached the medium
  policy: uniformly random warm-up actions, then each training snapshot up to
  the medium one for the stretch of training it covered;
- ``medium-expert``: ``medium`` followed by ``expert`` (twice the size, as D4RL).

Actions are sampled from the stochastic policies, as D4RL's were. A build is a
roll-out, deterministic given the seed, cached under the user cache
directory (``$OFFRL_CACHE_DIR``, else ``$XDG_CACHE_HOME/offrl``, else
``~/.cache/offrl``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from offrl.data.collect import collect
from offrl.data.dataset import Dataset, concatenate
from offrl.data.formats import load_dataset, save_dataset
from offrl.errors import DatasetError
from offrl.nn.encoders import FlatEncoder
from offrl.nn.heads import ActionScaler, TanhGaussianPolicy
from offrl.spaces import space_from_json
from offrl.zoo.scores import POLICY_DIR
from offrl.zoo.scores import zoo_manifest as manifest

ENVS = {"pendulum": "Pendulum-v1", "hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
VARIANTS = ("random", "medium", "medium-replay", "expert", "medium-expert")
DEFAULT_SIZE = 1_000_000
ROLLOUT_ENVS = 10


@dataclass(frozen=True)
class ZooName:
    family: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.family}-{self.variant}"

    @property
    def env_id(self) -> str:
        return ENVS[self.family]


def parse_name(name: str) -> ZooName | None:
    family, _, variant = str(name).partition("-")
    if family in ENVS and variant in VARIANTS:
        return ZooName(family, variant)
    return None


def cache_dir() -> Path:
    if os.environ.get("OFFRL_CACHE_DIR"):
        return Path(os.environ["OFFRL_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "offrl"


def dataset_path(name: str, *, size: int | None = None, seed: int = 0) -> Path:
    zoo = _require(name)
    return cache_dir() / "datasets" / f"{zoo.name}-{default_size(zoo) if size is None else size}-seed{seed}.hdf5"


def default_size(zoo: ZooName) -> int:
    if zoo.variant == "medium-replay":
        info = manifest(zoo.family)
        return int(info["medium_env_steps"]) if info else DEFAULT_SIZE
    return DEFAULT_SIZE


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def available() -> list[dict[str, Any]]:
    """Every zoo name, whether its behaviour policies ship, and which sizes are built in the cache."""
    rows = []
    built = list((cache_dir() / "datasets").glob("*.hdf5")) if (cache_dir() / "datasets").is_dir() else []
    for family, env_id in ENVS.items():
        for variant in VARIANTS:
            zoo = ZooName(family, variant)
            prefix = f"{zoo.name}-"
            sizes = []
            for path in built:
                rest = path.stem[len(prefix) :] if path.name.startswith(prefix) else ""
                size_text, _, seed_text = rest.partition("-seed")
                if size_text.isdigit() and seed_text.isdigit():
                    sizes.append((int(size_text), int(seed_text)))
            sizes = [f"{size}" if seed == 0 else f"{size} (seed {seed})" for size, seed in sorted(sizes)]
            size = default_size(zoo) * (2 if variant == "medium-expert" else 1)
            rows.append(
                {"name": zoo.name, "env": env_id, "policies": manifest(family) is not None, "transitions": size, "built": sizes}
            )
    return rows


def _intact(path: Path) -> bool:
    """Whether a cached file still opens as the offrl HDF5 file ``build`` wrote (its writes are atomic, so a
    damaged one was changed afterwards: truncated, or overwritten by hand)."""
    import h5py

    from offrl.data.formats import offrl_hdf5

    try:
        with h5py.File(path, "r") as handle:
            return offrl_hdf5.looks_like(handle)
    except OSError:
        return False


def build(name: str, *, size: int | None = None, seed: int = 0, force: bool = False, log=_stderr) -> Path:
    """Roll out the recipe of ``name`` (``size`` transitions per part) and cache it; returns the file."""
    zoo = _require(name)
    info = manifest(zoo.family)
    if info is None:
        raise DatasetError(name, f"the behaviour policies for {zoo.family} are not in this offrl installation ({POLICY_DIR / zoo.family})")
    path = dataset_path(name, size=size, seed=seed)
    if path.exists() and not force:
        if _intact(path):
            return path
        log(f"the cached {path} is damaged (not an offrl HDF5 file): building it again")
    size = default_size(zoo) if size is None else size
    if size < 1:
        raise DatasetError(name, f"size must be positive, got {size}")
    start = time.perf_counter()
    if zoo.variant == "medium-replay":
        parts = [_replay_rollout(zoo, _recipe(zoo, info, size), seed=seed)]
    else:
        parts = [_rollout(zoo, label, steps, seed=seed + index) for index, (label, steps) in enumerate(_recipe(zoo, info, size))]
    metadata = {
        "env_id": zoo.env_id,
        "zoo_name": zoo.name,
        "zoo_seed": seed,
        "zoo_size": size,
        "ref_min_score": info["reference"]["random"],
        "ref_max_score": info["reference"]["expert"],
        "ref_source": f"offrl zoo {zoo.family}",
    }
    dataset = concatenate(parts, source=str(path), metadata=metadata)
    save_dataset(dataset, path, overwrite=True)
    log(f"built {zoo.name}: {len(dataset):,} transitions, {dataset.num_episodes:,} episodes in {time.perf_counter() - start:.0f} s -> {path}")
    return path


def load(name: str, *, size: int | None = None, seed: int = 0) -> Dataset:
    """A zoo dataset, built on first use."""
    return load_dataset(build(name, size=size, seed=seed))


def _recipe(zoo: ZooName, info: dict[str, Any], size: int) -> list[tuple[str, int]]:
    """(policy label, transitions) for each part; ``uniform`` is uniformly random actions."""
    if zoo.variant == "random":
        return [("replay_00", size)]
    if zoo.variant in ("medium", "expert"):
        return [(zoo.variant, size)]
    if zoo.variant == "medium-expert":
        return [("medium", size), ("expert", size)]
    # medium-replay: the warm-up, then snapshot k for the training steps until snapshot k + 1
    snapshots = sorted(
        ((label, entry["update_step"]) for label, entry in info["policies"].items() if label.startswith("replay_")),
        key=lambda item: item[1],
    )
    medium_step = info["policies"]["medium"]["update_step"]
    spans = [("uniform", info["warmup_env_steps"])]
    for (label, step), (_, next_step) in zip(snapshots, snapshots[1:] + [("medium", medium_step)]):
        if next_step > step:
            spans.append((label, next_step - step))
    total = sum(n for _, n in spans)
    counts = np.floor(np.cumsum([n for _, n in spans]) * size / total).astype(int)
    sizes = np.diff(np.concatenate([[0], counts]))
    return [(label, int(n)) for (label, _), n in zip(spans, sizes) if n > 0]


def _policy(zoo: ZooName, label: str, *, seed: int):
    if label != "uniform":
        return ShippedPolicy(zoo.family, label, seed=seed)
    rng = np.random.default_rng(seed)
    space = space_from_json(manifest(zoo.family)["action_space"])
    return lambda observations: rng.uniform(space.low, space.high, size=(len(observations), *space.shape)).astype(np.float32)


def _rollout(zoo: ZooName, label: str, steps: int, *, seed: int) -> Dataset:
    policy = _policy(zoo, label, seed=seed)
    return collect(zoo.env_id, policy, steps=steps, num_envs=ROLLOUT_ENVS, seed=seed, metadata={"policy": label})


def _replay_rollout(zoo: ZooName, spans: list[tuple[str, int]], *, seed: int) -> Dataset:
    """One environment stream whose acting policy changes at the snapshot boundaries, as during training."""
    policies = [_policy(zoo, label, seed=seed + index) for index, (label, _) in enumerate(spans)]
    ends = np.cumsum([count for _, count in spans])
    taken = 0

    def scheduled(observations: np.ndarray) -> np.ndarray:
        nonlocal taken
        index = min(int(np.searchsorted(ends, taken, side="right")), len(policies) - 1)
        taken += len(observations)
        return policies[index](observations)

    return collect(zoo.env_id, scheduled, steps=int(ends[-1]), num_envs=1, seed=seed, metadata={"policy": "training snapshots"})


class ShippedPolicy:
    """A zoo behaviour policy (a SAC actor stored in float16): samples actions, seeded."""

    def __init__(self, family: str, label: str, *, seed: int = 0) -> None:
        info = manifest(family)
        config = info["sac_config"]
        observation_space = space_from_json(info["observation_space"])
        action_space = space_from_json(info["action_space"])
        tensors = safetensors.torch.load_file(str(POLICY_DIR / family / f"{label}.safetensors"))
        self.encoder = FlatEncoder(observation_space)
        self.encoder.load_state_dict({k[len("encoder/") :]: v for k, v in tensors.items() if k.startswith("encoder/")})
        self.actor = TanhGaussianPolicy(
            self.encoder.out_dim, int(np.prod(action_space.shape)), config["hidden_dims"], activation_name=config["activation"]
        )
        self.actor.load_state_dict({k[len("actor/") :]: v.float() for k, v in tensors.items() if k.startswith("actor/")})
        self.scaler = ActionScaler(action_space)
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, observations: np.ndarray) -> np.ndarray:
        features = self.encoder(torch.as_tensor(np.asarray(observations), dtype=torch.float32))
        actions, _ = self.actor.sample(features, generator=self.generator)
        return self.scaler.denormalize(actions).numpy()


def _require(name: str) -> ZooName:
    zoo = parse_name(name)
    if zoo is None:
        known = ", ".join(ENVS)
        raise DatasetError(name, f"not a zoo dataset name: expected <env>-<variant> with env in {known} and variant in {', '.join(VARIANTS)}")
    return zoo
