"""The d3rlpy side of benchmarks/quality.py, run in d3rlpy's own virtual environment (d3rlpy pins gymnasium 1.0):

    .venv-d3rlpy/bin/python benchmarks/quality_d3rlpy.py JOB.json

JOB.json, written by quality.py, holds the algorithm, its shared settings (named as offrl's
config fields), the values both libraries derive from the data (observation statistics, reward
scale, action bounds), the dataset as .npz, the gradient steps and seed, and where to save the
policy. This script translates the settings into the d3rlpy config, trains with ``fit`` (no
evaluators, no logs) and saves the greedy policy as TorchScript (``save_policy``); quality.py
evaluates it with offrl's evaluator. It imports nothing from offrl.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import d3rlpy
import numpy as np
from d3rlpy.models.encoders import VectorEncoderFactory
from d3rlpy.optimizers import AdamFactory, GPTAdamWFactory
from d3rlpy.optimizers.lr_schedulers import CosineAnnealingLRFactory, WarmupSchedulerFactory
from d3rlpy.preprocessing import MinMaxActionScaler, MultiplyRewardScaler, StandardObservationScaler

# Settings d3rlpy has no field for: the run stops unless they hold the only value d3rlpy implements.
FIXED = {
    "cql": {"temperature": 1.0, "importance_sampling": True, "bc_steps": 0, "mc_lower_bound": False},
    "cal_ql": {"temperature": 1.0, "importance_sampling": True, "bc_steps": 0, "mc_lower_bound": True},
    "iql": {"deterministic_actor": False, "actor_dropout": 0.0},
    "bcq": {"latent_dim": None},
    "plas": {"latent_dim": None, "max_latent": 2.0},
    "rebrac": {"normalize_q": True},
    "td3_bc": {"critic_layer_norm": False},
    "td3": {"critic_layer_norm": False, "alpha": 0.0},
    "sac": {"critic_layer_norm": False, "backup_entropy": True, "num_target_critics": None, "eta": 0.0},
}


def encoder(hidden_dims: list[int], layer_norm: bool = False) -> VectorEncoderFactory:
    return VectorEncoderFactory(hidden_units=list(hidden_dims), use_layer_norm=layer_norm)


def actor_critic(s: dict[str, Any]) -> dict[str, Any]:
    """Fields every d3rlpy actor-critic config shares."""
    return {
        "actor_learning_rate": s["actor_lr"],
        "critic_learning_rate": s["critic_lr"],
        "actor_encoder_factory": encoder(s["hidden_dims"]),
        "critic_encoder_factory": encoder(s["hidden_dims"]),
        "tau": s["tau"],
        "n_critics": s["num_critics"],
    }


def make_config(algo: str, s: dict[str, Any], job: dict[str, Any]):
    for key, value in FIXED.get(algo, {}).items():
        if key in s and s[key] != value:
            raise SystemExit(f"d3rlpy's {algo} cannot express {key}={s[key]!r} (it implements only {value!r})")
    common: dict[str, Any] = {
        "batch_size": s["batch_size"],
        "action_scaler": MinMaxActionScaler(minimum=np.array(job["action_low"]), maximum=np.array(job["action_high"])),
    }
    if "discount" in s:
        common["gamma"] = s["discount"]
    if s.get("normalize_observations"):
        # offrl's std already carries its +1e-3, so d3rlpy adds nothing
        common["observation_scaler"] = StandardObservationScaler(mean=np.array(job["obs_mean"]), std=np.array(job["obs_std"]), eps=0.0)
    if job["reward_scale"] != 1.0:
        common["reward_scaler"] = MultiplyRewardScaler(multiplier=job["reward_scale"])
    algos = d3rlpy.algos
    if algo == "bc":
        return algos.BCConfig(
            learning_rate=s["lr"], policy_type=s["policy"], encoder_factory=encoder(s["hidden_dims"]),
            optim_factory=AdamFactory(weight_decay=s["weight_decay"]), **common,
        )
    if algo == "td3_bc":
        return algos.TD3PlusBCConfig(
            **actor_critic(s), alpha=s["alpha"], target_smoothing_sigma=s["policy_noise"],
            target_smoothing_clip=s["noise_clip"], update_actor_interval=s["policy_freq"], **common,
        )
    if algo == "td3":
        return algos.TD3Config(
            **actor_critic(s), target_smoothing_sigma=s["policy_noise"], target_smoothing_clip=s["noise_clip"],
            update_actor_interval=s["policy_freq"], **common,
        )
    if algo == "sac":
        return algos.SACConfig(
            **actor_critic(s), temp_learning_rate=s["alpha_lr"] if s["learn_alpha"] else 0.0,
            initial_temperature=s["init_alpha"], **common,
        )
    if algo == "iql":
        if s["value_lr"] != s["critic_lr"]:
            raise SystemExit("d3rlpy's IQL trains V and Q with one optimizer: value_lr must equal critic_lr")
        schedule = CosineAnnealingLRFactory(T_max=job["steps"]) if s["actor_lr_schedule"] == "cosine" else None
        return algos.IQLConfig(
            **actor_critic(s), value_encoder_factory=encoder(s["hidden_dims"]),
            actor_optim_factory=AdamFactory(lr_scheduler_factory=schedule),
            expectile=s["expectile"], weight_temp=s["temperature"], max_weight=s["max_weight"], **common,
        )
    if algo in ("cql", "cal_ql"):
        # d3rlpy's alpha (Lagrange multiplier) times conservative_weight is offrl's alpha_prime times cql_weight;
        # without Lagrange it stays at its initial 1.0
        config = algos.CalQLConfig if algo == "cal_ql" else algos.CQLConfig
        return config(
            **actor_critic(s),
            temp_learning_rate=s["alpha_lr"] if s["learn_alpha"] else 0.0, initial_temperature=s["init_alpha"],
            alpha_learning_rate=s["alpha_prime_lr"] if s["lagrange"] else 0.0, initial_alpha=1.0,
            alpha_threshold=s["target_action_gap"] if s["lagrange"] else 0.0, conservative_weight=s["cql_weight"],
            n_action_samples=s["num_sampled_actions"], soft_q_backup=s["backup_entropy"], max_q_backup=s["max_target_backup"],
            **common,
        )
    if algo in ("bcq", "plas"):
        shared = {
            **actor_critic(s), "imitator_learning_rate": s["vae_lr"], "imitator_encoder_factory": encoder(s["vae_hidden_dims"]),
            "lam": s["lmbda"], "beta": s["kl_weight"], **common,
        }
        if algo == "plas":
            return algos.PLASConfig(**shared, warmup_steps=s["vae_pretrain_steps"])
        # d3rlpy uses one sample count for acting and for the TD target
        return algos.BCQConfig(**shared, n_action_samples=s["num_eval_actions"], action_flexibility=s["max_perturbation"])
    if algo == "awac":
        return algos.AWACConfig(**actor_critic(s), lam=s["awac_lambda"], n_action_samples=1, **common)
    if algo == "crr":
        return algos.CRRConfig(
            **actor_critic(s), beta=s["beta"], n_action_samples=s["num_sampled_actions"], advantage_type=s["advantage_type"],
            weight_type=s["weight_type"], max_weight=s["max_weight"], target_update_type=s["target_update"],
            target_update_interval=s["target_update_interval"], **common,
        )
    if algo == "rebrac":
        return algos.ReBRACConfig(
            **{**actor_critic(s), "actor_encoder_factory": encoder(s["hidden_dims"], s["actor_layer_norm"]),
               "critic_encoder_factory": encoder(s["hidden_dims"], s["critic_layer_norm"])},
            actor_beta=s["actor_bc_coef"], critic_beta=s["critic_bc_coef"], target_smoothing_sigma=s["policy_noise"],
            target_smoothing_clip=s["noise_clip"], update_actor_interval=s["policy_freq"], **common,
        )
    if algo == "dt":
        schedule = WarmupSchedulerFactory(warmup_steps=s["warmup_steps"])
        return algos.DecisionTransformerConfig(
            learning_rate=s["lr"], encoder_factory=VectorEncoderFactory(hidden_units=[s["embed_dim"]], exclude_last_activation=True),
            optim_factory=GPTAdamWFactory(weight_decay=s["weight_decay"], clip_grad_norm=s["grad_clip"], lr_scheduler_factory=schedule),
            num_heads=s["num_heads"], num_layers=s["num_layers"], attn_dropout=s["dropout"], resid_dropout=s["dropout"],
            embed_dropout=s["dropout"], activation_type="gelu", context_size=s["context_length"], max_timestep=s["max_timestep"],
            **{**common, "reward_scaler": MultiplyRewardScaler(multiplier=s["return_scale"])},
        )
    raise SystemExit(f"no d3rlpy translation for {algo!r}")


def dataset_and_algo(job: dict[str, Any]):
    """The job's npz as a d3rlpy dataset, and its algorithm created with the job's seed and device."""
    data = np.load(job["data"])
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"], actions=data["actions"], rewards=data["rewards"][:, None],
        terminals=data["terminals"], timeouts=data["timeouts"],
    )
    d3rlpy.seed(job["seed"])
    return dataset, make_config(job["algo"], job["settings"], job).create(device=job["device"])


def main() -> None:
    job = json.loads(open(sys.argv[1]).read())
    dataset, algo = dataset_and_algo(job)
    start = time.perf_counter()
    algo.fit(
        dataset, n_steps=job["steps"], n_steps_per_epoch=job["steps"], experiment_name="quality", with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False,
    )
    train_seconds = time.perf_counter() - start
    algo.save_policy(job["policy"])
    print(json.dumps({"train_seconds": train_seconds, "d3rlpy": d3rlpy.__version__}))


if __name__ == "__main__":
    main()
