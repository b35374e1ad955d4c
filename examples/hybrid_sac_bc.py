"""A custom hybrid algorithm: SAC whose offline updates add a behaviour-cloning term.

In hybrid training (ALF's schedule), offline-only updates go through
``update_offline`` and RL updates through ``update``. Defining
``update_offline`` is all a hybrid algorithm needs (ALF's
``train_step_offline`` / ``calc_loss_offline``). Here the offline batches
train SAC as usual plus ``bc_weight * -log pi(a_data | s)`` on the actor;
online RL updates are plain SAC.

    offrl train --import examples/hybrid_sac_bc.py --algo sac_bc --env Pendulum-v1 \\
        --dataset pend.hdf5 --rl-train-after-update-steps 5000 --rl-train-every-update-steps 2 \\
        --steps 20000 --run-dir runs/sac-bc
"""

from __future__ import annotations

import dataclasses

import torch

from offrl.algos.registry import register
from offrl.algos.sac import SAC, SACConfig
from offrl.data.batch import Batch


@dataclasses.dataclass
class SACBCConfig(SACConfig):
    bc_weight: float = 1.0  # weight of the behaviour-cloning negative log-likelihood on offline batches
    normalize_observations: bool = True  # standardize states with the dataset's statistics


@register("sac_bc", paper="SAC with behaviour cloning on offline batches (offrl example)", online=True)
class SACBC(SAC):
    Config = SACBCConfig

    def update_offline(self, batch: Batch) -> dict[str, torch.Tensor]:
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        metrics = self.critic_step(features, actions, batch)

        def behaviour_cloning() -> tuple[torch.Tensor, dict]:
            nll = -self.actor.log_prob(features, actions).mean()
            return self.config.bc_weight * nll, {"bc_nll": nll.detach()}

        metrics.update(self.actor_step(features, extra_loss=behaviour_cloning))
        self.num_updates += 1
        return metrics
