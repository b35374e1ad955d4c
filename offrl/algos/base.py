"""What every algorithm is: networks (an ``nn.Module``), optimizers, ``update`` and ``act``.

Subclasses inherit from ``Algorithm`` directly (one level). The trainer owns
data, environments, logging and checkpoints; an algorithm only turns a
``Batch`` into one gradient step and observations into actions.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from offrl.data.batch import Batch
from offrl.data.sequences import SequenceSpec
from offrl.errors import SpaceError
from offrl.nn.encoders import make_encoder, with_trunk
from offrl.nn.heads import ActionScaler
from offrl.rollout import FrameStackRollout, RolloutPolicy, StatelessRollout


class Algorithm(nn.Module):
    name: ClassVar[str] = ""  # set by @register
    Config: ClassVar[type] = object
    action_type: ClassVar[str] = "continuous"
    paper: ClassVar[str] = ""
    batch_kind: ClassVar[str] = "transitions"  # or "sequences": the trainer samples episode windows (``sequence_window``)
    online: ClassVar[bool] = False  # an online learner (SAC, TD3): with an env and a dataset, training is hybrid
    # Image observations: ``self.encoder`` holds one learned CNN trunk whose features every network reads
    # (``TrunkEncoder``); its parameters join the optimizer of the loss that trains them, usually the critic's.
    # Without it the algorithm builds a trunk per network itself (``make_trunk``), as the discrete ones do.
    shared_trunk: ClassVar[bool] = False

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any) -> None:
        super().__init__()
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        if self.batch_kind == "sequences" and getattr(config, "frame_stack", 1) > 1:
            raise ValueError(f"{self.name} takes one frame per step (its window of steps is the history): use frame_stack=1")
        try:
            self.encoder = make_encoder(observation_space, config)
            if self.shared_trunk:
                self.encoder = with_trunk(self.encoder, config)
        except ValueError as error:
            raise (SpaceError if isinstance(error, SpaceError) else ValueError)(f"{self.name}: {error}") from None
        if self.action_type == "continuous":
            if not isinstance(action_space, gym.spaces.Box):
                raise SpaceError(f"{self.name} needs a continuous (Box) action space, got {action_space}")
            self.action_scaler = ActionScaler(action_space)
            self.action_dim = int(action_space.shape[0]) if action_space.shape else 1
        elif not isinstance(action_space, gym.spaces.Discrete):
            raise SpaceError(f"{self.name} needs a discrete action space, got {action_space}")
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.num_updates = 0  # gradient steps taken; part of the checkpoint
        self.total_updates = 0  # steps the trainer plans, for learning-rate schedules; 0 if unknown

    @property
    def device(self) -> torch.device:
        return next(itertools.chain(self.buffers(), self.parameters())).device

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step. Returns scalar tensors (not floats: no host sync here)."""
        raise NotImplementedError

    def act(self, observations: Any, deterministic: bool = True) -> torch.Tensor:
        """Actions in the environment's action space for a batch of observations."""
        raise NotImplementedError

    def rollout_policy(self, num_envs: int, *, deterministic: bool = True) -> RolloutPolicy:
        """The policy evaluators and collectors drive, one step at a time (stateless by default;
        with ``frame_stack`` > 1 it keeps each environment's last frames)."""
        policy = StatelessRollout(self, deterministic=deterministic)
        frames, keys = self.frame_stacking()
        return FrameStackRollout(policy, frames, num_envs, keys) if frames > 1 else policy

    def frame_stacking(self) -> tuple[int, list[str] | None]:
        """Frames per observation (``frame_stack``, 1 without) and the dict keys stacked (None: the whole observation)."""
        return getattr(self.config, "frame_stack", 1), getattr(self.encoder, "stacked_keys", None)

    def sequence_window(self) -> SequenceSpec:
        """Sequence models: steps per training window, where short windows are padded ("left": the last
        step is real, a context ending now; "right": the first step is real, a recurrent network's start),
        and what else a batch holds (see ``SequenceSpec``)."""
        return SequenceSpec(self.config.context_length, "left")

    def dataset_columns(self) -> dict[str, Any]:
        """Extra batch columns the trainer must provide from the dataset, e.g.
        ``{"mc_returns": discount}`` (Cal-QL) or ``{"next_actions": True}`` (ReBRAC)."""
        return {}

    def set_dataset_info(self, info: dict[str, float]) -> None:
        """Summary statistics of the training data (returns, episode lengths), for algorithms that
        condition on them (Decision Transformer's target return). Default: unused."""

    def upgrade_checkpoint(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors (``model/...``, ``optim/...``) in this version's parameter layout, for an
        algorithm whose networks were laid out differently by an earlier offrl; may rewrite ``meta``'s
        optimizer entries to match. Default: unchanged."""
        return tensors

    def update_offline(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The gradient step on offline data in hybrid training (ALF's ``train_step_offline``).

        By default offline batches are trained exactly like online ones.
        """
        return self.update(batch)
