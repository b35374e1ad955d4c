"""Behaviour cloning: regress the dataset's actions.

Pomerleau 1991 (ALVINN). The policy is a config choice, as in robomimic's BC
(Mandlekar et al. 2021): deterministic (MSE), Gaussian (log-likelihood),
a Gaussian mixture (``bc_gmm``: keeps several modes of multi-modal
demonstrations) or a conditional VAE (``bc_vae``: actions decoded from a
latent drawn from N(0, 1)). ``bc_gmm`` and ``bc_vae`` are this algorithm
with robomimic's defaults for those policies.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F

from offrl.algos.base import Algorithm
from offrl.algos.common import adam, step
from offrl.algos.registry import register
from offrl.data.batch import Batch
from offrl.nn.encoders import EncoderConfig
from offrl.nn.heads import DeterministicPolicy, GaussianPolicy, GMMPolicy
from offrl.nn.vae import ConditionalVAE, vae_loss


@dataclasses.dataclass
class BCConfig(EncoderConfig):
    policy: Literal["deterministic", "gaussian", "gmm", "vae"] = "deterministic"  # MSE, Gaussian or GMM likelihood, VAE ELBO
    hidden_dims: tuple[int, ...] = (256, 256)  # actor MLP widths
    activation: str = "relu"  # hidden-layer activation
    lr: float = 1e-3  # Adam learning rate (d3rlpy's BC default)
    weight_decay: float = 0.0  # Adam L2 penalty
    batch_size: int = 256  # transitions per gradient step
    normalize_observations: bool = True  # standardize observations with dataset statistics
    log_std_min: float = -5.0  # Gaussian policy: lower clamp of the log standard deviation
    log_std_max: float = 2.0  # Gaussian policy: upper clamp of the log standard deviation
    num_modes: int = 5  # GMM policy: mixture components
    min_std: float = 1e-4  # GMM policy: floor added to each component's softplus standard deviation
    latent_dim: int = 14  # VAE policy: latent width (robomimic: twice the action dimension)
    kl_weight: float = 1.0  # VAE policy: beta, the KL term's weight in the ELBO
    vae_hidden_dims: tuple[int, ...] = (300, 400)  # VAE policy: encoder and decoder MLP widths


@dataclasses.dataclass
class BCGMMConfig(BCConfig):
    policy: Literal["deterministic", "gaussian", "gmm", "vae"] = "gmm"  # MSE, Gaussian or GMM likelihood, VAE ELBO
    hidden_dims: tuple[int, ...] = (1024, 1024)  # actor MLP widths (robomimic's actor_layer_dims)
    lr: float = 1e-4  # Adam learning rate (robomimic's BC default)
    batch_size: int = 100  # transitions per gradient step (robomimic's default)


@dataclasses.dataclass
class BCVAEConfig(BCConfig):
    policy: Literal["deterministic", "gaussian", "gmm", "vae"] = "vae"  # MSE, Gaussian or GMM likelihood, VAE ELBO
    lr: float = 1e-4  # Adam learning rate (robomimic's BC default)
    batch_size: int = 100  # transitions per gradient step (robomimic's default)


def mse_loss(policy: DeterministicPolicy, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict]:
    loss = F.mse_loss(policy(features), actions)
    return loss, {"bc_loss": loss.detach()}


def nll_loss(policy: GaussianPolicy | GMMPolicy, features: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, dict]:
    loss = -policy.log_prob(features, actions).mean()
    return loss, {"nll_loss": loss.detach()}


def make_policy(config: BCConfig, in_dim: int, action_dim: int) -> torch.nn.Module:
    options = {"activation_name": config.activation}
    if config.policy == "gaussian":
        return GaussianPolicy(
            in_dim, action_dim, config.hidden_dims, state_dependent_std=True, log_std_min=config.log_std_min,
            log_std_max=config.log_std_max, **options,
        )
    if config.policy == "gmm":
        return GMMPolicy(in_dim, action_dim, config.hidden_dims, num_modes=config.num_modes, min_std=config.min_std, **options)
    if config.policy == "vae":
        return ConditionalVAE(in_dim, action_dim, config.vae_hidden_dims, config.latent_dim)
    return DeterministicPolicy(in_dim, action_dim, config.hidden_dims, **options)


def policy_actions(config, policy: torch.nn.Module, features: torch.Tensor, deterministic: bool) -> torch.Tensor:
    """Normalized actions of a ``make_policy`` policy (``config.policy`` says which), also on the features of
    BC-RNN's and BC-Transformer's sequence models."""
    if config.policy == "vae":  # the prior's mean, or a draw from it
        latent = torch.zeros(features.shape[0], policy.latent_dim, device=features.device)
        return policy.decode(features, latent if deterministic else torch.randn_like(latent))
    if config.policy == "deterministic":
        return policy(features)
    return policy.deterministic(features) if deterministic else policy.sample(features)


def masked_imitation_loss(
    config, policy: torch.nn.Module, features: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, dict]:
    """The sequence models' loss: the per-step negative log-likelihood (Gaussian or GMM) or MSE of ``[B, T]``
    windows, averaged over the real (``mask``) steps."""
    if config.policy in ("gaussian", "gmm"):
        per_step, name = -policy.log_prob(features, actions), "nll_loss"
    else:
        per_step, name = (policy(features) - actions).pow(2).mean(-1), "bc_loss"
    weights = mask.float()
    loss = (per_step * weights).sum() / weights.sum()
    return loss, {name: loss.detach()}


@register("bc", paper="Pomerleau 1991, behaviour cloning")
class BC(Algorithm):
    Config = BCConfig
    shared_trunk = True

    def __init__(self, observation_space, action_space, config: BCConfig) -> None:
        super().__init__(observation_space, action_space, config)
        self.actor = make_policy(config, self.encoder.out_dim, self.action_dim)
        self.optimizers = {"actor": adam([*self.actor.parameters(), *self.encoder.parameters()], config.lr, config.weight_decay)}

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The imitation loss of ``batch`` (also the validation loss on held-out demonstrations)."""
        features = self.encoder(batch.observations)
        actions = self.action_scaler.normalize(batch.actions)
        policy = self.config.policy
        if policy == "vae":
            return vae_loss(self.actor, features, actions, self.config.kl_weight)
        return (nll_loss if policy in ("gaussian", "gmm") else mse_loss)(self.actor, features, actions)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss, metrics = self.loss(batch)
        step(self.optimizers["actor"], loss)
        self.num_updates += 1
        return metrics

    @torch.no_grad()
    def act(self, observations, deterministic: bool = True) -> torch.Tensor:
        actions = policy_actions(self.config, self.actor, self.encoder(observations), deterministic)
        return self.action_scaler.denormalize(actions)


@register("bc_gmm", paper="Mandlekar et al. 2021, What Matters in Learning from Offline Human Demonstrations (BC-GMM)")
class BCGMM(BC):
    Config = BCGMMConfig


@register("bc_vae", paper="Mandlekar et al. 2021, What Matters in Learning from Offline Human Demonstrations (BC-VAE)")
class BCVAE(BC):
    Config = BCVAEConfig
