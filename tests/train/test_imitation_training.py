"""Trainer options for imitation: validation on held-out demonstrations, best checkpoints, learning-rate schedules."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import offrl
from offrl.errors import OffrlError
from offrl.train.checkpoint import load_algo
from offrl.train.run import learning_rate_factor
from tests.conftest import random_dataset


def test_learning_rate_factors():
    assert learning_rate_factor("constant", 50, 100, 0.1) == 1.0
    assert learning_rate_factor("linear", 0, 100, 0.1) == 1.0
    assert learning_rate_factor("linear", 50, 100, 0.1) == pytest.approx(0.55)
    assert learning_rate_factor("linear", 100, 100, 0.1) == pytest.approx(0.1)
    assert learning_rate_factor("cosine", 50, 100, 0.0) == pytest.approx(0.5)
    assert learning_rate_factor("cosine", 100, 100, 0.2) == pytest.approx(0.2)


def test_schedule_reaches_every_optimizer_and_the_checkpoint(tmp_path):
    ds = random_dataset(n=200)
    algo = offrl.make_algo("td3_bc", ds.observation_space, ds.action_space, hidden_dims=(16, 16), batch_size=16)
    offrl.train_offline(algo, ds, steps=40, eval_every=0, run_dir=tmp_path, progress=False, tensorboard=False,
                        lr_schedule="linear", lr_end_factor=0.1)
    factor = learning_rate_factor("linear", 39, 40, 0.1)  # set before the last update
    for name, optimizer in algo.optimizers.items():
        group = optimizer.param_groups[0]
        assert group["lr"] == pytest.approx(group["initial_lr"] * factor), name
    loaded = load_algo(tmp_path)
    assert loaded.optimizers["actor"].param_groups[0]["lr"] == pytest.approx(algo.optimizers["actor"].param_groups[0]["lr"])


def test_validation_is_held_out_and_does_not_set_normalization(tmp_path):
    ds = random_dataset(n=300)
    train, held_out = ds.split(0.8, seed=0)
    held_out.observations = held_out.observations + 100.0  # statistics the encoder must not take
    held_out.next_observations = held_out.next_observations + 100.0
    algo = offrl.make_algo("bc", ds.observation_space, ds.action_space, hidden_dims=(16, 16), batch_size=16)
    offrl.train_offline(algo, train, steps=30, eval_every=10, run_dir=tmp_path, progress=False, tensorboard=False,
                        validation=held_out, validation_batches=3, save_best="validation")
    mean, _ = train.observation_stats(eps=1e-3)
    assert np.allclose(algo.encoder.mean.numpy(), mean, atol=1e-5)
    with open(tmp_path / "evaluations.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    losses = [float(r["valid_bc_loss"]) for r in rows]
    with torch.no_grad():
        training_loss = float(algo.loss(train.to("cpu").index(torch.arange(64)))[0])
    assert min(losses) > 1.5 * training_loss  # the shifted held-out data is far off the policy's data
    best = load_algo(tmp_path / "best")
    assert best.num_updates == 10 * (1 + int(np.argmin(losses)))


def test_validation_and_best_need_what_they_judge_by(tmp_path):
    ds = random_dataset(n=100)
    td3 = offrl.make_algo("td3_bc", ds.observation_space, ds.action_space)
    with pytest.raises(OffrlError, match="td3_bc has no imitation loss"):
        offrl.train_offline(td3, ds, steps=2, run_dir=tmp_path / "a", progress=False, validation=ds)
    bc = offrl.make_algo("bc", ds.observation_space, ds.action_space)
    with pytest.raises(OffrlError, match="needs validation data"):
        offrl.train_offline(bc, ds, steps=2, run_dir=tmp_path / "b", progress=False, save_best="validation")
    with pytest.raises(OffrlError, match="lr_schedule must be one of"):
        offrl.train_offline(bc, ds, steps=2, run_dir=tmp_path / "c", progress=False, lr_schedule="exponential")


def test_validating_on_held_out_data_does_not_change_training(tmp_path):
    """A sampling loss (the VAE's latents) draws from torch's generator; validation must leave it where it was."""
    ds = random_dataset(n=300)
    train, held_out = ds.split(0.8, seed=0)
    runs = {}
    for name, validation in (("without", None), ("with", held_out)):
        algo = offrl.make_algo("bc_vae", ds.observation_space, ds.action_space, seed=0, batch_size=16)
        offrl.train_offline(algo, train, steps=40, eval_every=10, log_every=10, seed=0, run_dir=tmp_path / name,
                            progress=False, tensorboard=False, validation=validation, validation_batches=3)
        with open(tmp_path / name / "metrics.csv") as handle:
            runs[name] = [{k: v for k, v in row.items() if k != "steps_per_sec"} for row in csv.DictReader(handle)]
    assert runs["with"] == runs["without"]
