"""Seeds trained as one batched model: the same algorithm as separate runs, every registered algorithm."""

from __future__ import annotations

import contextlib
import copy
import threading

import pytest
import torch

from offrl.algos import get_algo_class, list_algos
from offrl.train.seed_group import SeedGroup, StackedModel, blocker, run_seed_group
from tests.algos.test_smoke import build, dataset_for

ALGOS = [cls.name for cls in list_algos()]
DETERMINISTIC = {"bc": {}, "iql": {}, "td3_bc": {"policy_noise": 0.0}, "dt": {"dropout": 0.0}, "discrete_bcq": {}, "discrete_cql": {}}


def seeds_of(name: str, count: int, dict_observations: bool = False, **overrides):
    ds = dataset_for(name, dict_observations=dict_observations)
    built = [build(name, ds, seed=seed, **overrides) for seed in range(count)]
    return [b[0] for b in built], [b[1] for b in built]


def max_difference(left: torch.nn.Module, right: torch.nn.Module) -> float:
    theirs = dict(right.state_dict())
    return max(float((value - theirs[key]).abs().max()) for key, value in left.state_dict().items() if value.is_floating_point())


def train_stacked_and_separately(algos, samplers, *, steps: int, stackings: int = 1) -> list:
    """``algos`` trained ``steps`` updates per stacking in a StackedModel built ``stackings`` times; returns
    copies of them trained on the same batches one by one."""
    separate = [copy.deepcopy(algo) for algo in algos]
    for _ in range(stackings):
        model = StackedModel(algos)
        for _ in range(steps):
            batches = [sampler.sample() for sampler in samplers]
            model.update("update", batches)
            for algo, batch in zip(separate, batches):
                algo.update(batch)
    return separate


def train_in_threads(algos, batches, context=contextlib.nullcontext) -> list[BaseException]:
    """Each algorithm updated on its own batches in its own thread, as seeds of one ``SeedGroup``, each
    update inside ``context()`` (the trainer's mixed precision); returns the threads' errors."""
    group = SeedGroup(len(algos))
    errors = []

    def seed(index):
        try:
            group.join(index, algos[index])
            for batch in batches[index]:
                with context():
                    algos[index].update(batch)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            group.leave(index)

    threads = [threading.Thread(target=seed, args=(i,)) for i in range(len(algos))]
    for thread in threads:
        thread.start()
    group.serve()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_stacked_update_is_the_separate_updates(name):
    algos, samplers = seeds_of(name, 3, **DETERMINISTIC[name])
    separate = [copy.deepcopy(algo) for algo in algos]
    model = StackedModel(algos)
    for _ in range(5):
        batches = [sampler.sample() for sampler in samplers]
        together = model.update("update", batches)
        alone = [algo.update(batch) for algo, batch in zip(separate, batches)]
        for mine, theirs in zip(together, alone):
            assert mine.keys() == theirs.keys()
            for key in mine:
                torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-5)
    for algo, reference in zip(algos, separate):
        assert max_difference(algo, reference) < 1e-4
        assert algo.num_updates == reference.num_updates == 5
        for key, optimizer in algo.optimizers.items():  # the seeds' optimizer states are the stacked ones, sliced
            mine, theirs = optimizer.state_dict(), reference.optimizers[key].state_dict()
            assert mine["state"].keys() == theirs["state"].keys()
            for index, state in theirs["state"].items():
                torch.testing.assert_close(mine["state"][index]["exp_avg"], state["exp_avg"], rtol=1e-3, atol=1e-6)
                assert float(mine["state"][index]["step"]) == float(state["step"])
            assert mine["param_groups"][0]["lr"] == theirs["param_groups"][0]["lr"]


@pytest.mark.parametrize("name", ["td3_bc", "iql"])
def test_a_model_stacked_again_over_trained_seeds_goes_on_as_the_separate_updates(name):
    """An evolving population stacks its members anew each generation, over the optimizer states they have."""
    algos, samplers = seeds_of(name, 2, **DETERMINISTIC[name])
    separate = train_stacked_and_separately(algos, samplers, steps=3, stackings=2)
    for algo, reference in zip(algos, separate):
        assert max_difference(algo, reference) < 1e-4


def test_scalar_parameters_keep_their_own_adam_moments_when_stacked_again():
    """SAC's temperature is a 0-dim parameter: restacked, its moments must stay one per seed (they were once
    mistaken for Adam's shared step count, and every seed's temperature collapsed)."""
    algos, samplers = seeds_of("sac", 2)
    for _ in range(2):
        model = StackedModel(algos)
        for _ in range(3):
            model.update("update", [sampler.sample() for sampler in samplers])
    stacked = next(s for o, s, key in model.optimizers.values() if key == "alpha")
    state = stacked.state[stacked.param_groups[0]["params"][0]]
    assert state["exp_avg"].shape == (2,) and state["exp_avg_sq"].shape == (2,) and float(state["step"]) == 6
    moments = [float(algo.optimizers["alpha"].state[algo.log_alpha]["exp_avg"]) for algo in algos]
    assert moments == [float(v) for v in state["exp_avg"]] and moments[0] != moments[1]


@pytest.mark.parametrize("name", ALGOS)
@pytest.mark.filterwarnings("error:There is a performance drop")  # no op of an update falls back to a per-seed loop
def test_every_algorithm_trains_stacked_or_says_why_not(name):
    algos, samplers = seeds_of(name, 2)
    reason = blocker(algos[0])
    if reason:
        expected = {"edac": "torch.autograd", **{name: "recurrent" for name in ("bc_rnn", "bc_rnn_gmm", "hbc", "iris")}}
        assert name in expected and expected[name] in reason, (name, reason)
        return
    before = [copy.deepcopy(algo.state_dict()) for algo in algos]
    model = StackedModel(algos)
    for _ in range(4):
        outputs = model.update("update", [sampler.sample() for sampler in samplers])
    for metrics in outputs:
        assert metrics and all(value.dim() == 0 and torch.isfinite(value) for value in metrics.values())
    for algo, old in zip(algos, before):
        assert algo.num_updates == 4
        assert any(not torch.equal(value, old[key]) for key, value in algo.state_dict().items())
    assert max_difference(algos[0], algos[1]) > 0  # two seeds, two different models


def test_dict_observations_stack():
    algos, samplers = seeds_of("iql", 2, dict_observations=True)
    separate = [copy.deepcopy(algo) for algo in algos]
    model = StackedModel(algos)
    batches = [sampler.sample() for sampler in samplers]
    model.update("update", batches)
    for algo, reference, batch in zip(algos, separate, batches):
        reference.update(batch)
        assert max_difference(algo, reference) < 1e-4


def test_group_batches_threads_and_splits_seeds_at_different_steps():
    """Three threads step their own algorithm; the one a step behind updates in its own cohort
    (TD3's delayed actor update depends on the step count), and every seed matches a separate run."""
    algos, samplers = seeds_of("td3_bc", 3, policy_noise=0.0)
    lagging = 2
    algos[lagging].update(samplers[lagging].sample())  # one step ahead of the others
    separate = [copy.deepcopy(algo) for algo in algos]
    batches = [[sampler.sample() for _ in range(4)] for sampler in samplers]
    assert not train_in_threads(algos, batches)
    for algo, reference, own in zip(algos, separate, batches):
        for batch in own:
            reference.update(batch)
        assert algo.num_updates == reference.num_updates
        assert max_difference(algo, reference) < 1e-4
    assert "update" not in algos[0].__dict__  # the group's hooks are gone after leaving


def test_a_failing_seed_leaves_and_the_others_finish():
    algos, samplers = seeds_of("bc", 3)
    finished = []

    def job(index):
        def run():
            from offrl.train.seed_group import enlist

            enlist(algos[index])
            for step in range(6):
                if index == 1 and step == 3:
                    raise RuntimeError("seed 1 broke")
                algos[index].update(samplers[index].sample())
            finished.append(index)
        return run

    with pytest.raises(RuntimeError, match="seed 1 broke"):
        run_seed_group([job(i) for i in range(3)])
    assert sorted(finished) == [0, 2]
    assert [algo.num_updates for algo in algos] == [6, 3, 6]


def test_unbatchable_seeds_train_one_after_another(capsys):
    algos, samplers = seeds_of("edac", 2)
    running, overlap = [], []

    def job(index):
        def run():
            from offrl.train.seed_group import enlist

            enlist(algos[index])
            running.append(index)
            overlap.append(len(running))
            for _ in range(2):
                algos[index].update(samplers[index].sample())
            running.remove(index)
        return run

    run_seed_group([job(i) for i in range(2)])
    assert overlap == [1, 1] and [algo.num_updates for algo in algos] == [2, 2]
    assert "seeds not batched: edac's gradient-diversity penalty" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["bc", "td3_bc"])  # td3_bc draws target noise: the group's draws must not race
def test_ctrl_c_stops_every_seed_and_the_group_resumes_to_the_same_models(name, pendulum_dataset, tmp_path, monkeypatch):
    import os
    import signal

    import offrl
    from offrl.train import seed_group

    ds = pendulum_dataset

    def group(run_dir, resume=False):
        def job(seed):
            def run():
                algo = offrl.make_algo(name, ds.observation_space, ds.action_space, seed=seed, hidden_dims=(32, 32))
                result = offrl.train_offline(algo, ds, steps=60, run_dir=run_dir / f"seed-{seed}", seed=seed, resume=resume,
                                             eval_every=0, log_every=10, progress=False, tensorboard=False)
                return result, algo
            return run
        return run_seed_group([job(0), job(1)])

    whole = group(tmp_path / "whole")
    calls = {"n": 0}
    original = seed_group.StackedModel.update

    def update(self, method, batches):
        calls["n"] += 1
        if calls["n"] == 25:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the main thread's handler asks every seed to stop
        return original(self, method, batches)

    monkeypatch.setattr(seed_group.StackedModel, "update", update)
    cut = group(tmp_path / "cut")
    assert [result.interrupted for result, _ in cut] == [True, True]
    assert [result.step for result, _ in cut] == [25, 25]
    monkeypatch.setattr(seed_group.StackedModel, "update", original)
    resumed = group(tmp_path / "cut", resume=True)
    for (done, algo), (_, reference) in zip(resumed, whole):
        assert not done.interrupted and done.step == 60
        assert max_difference(algo, reference) < 1e-5


@pytest.mark.parametrize("name", ["discrete_cql", "discrete_iql", "td3_bc", "iql", "bc"])
def test_image_seeds_with_frame_stacks_stack_to_the_separate_updates(name):
    from tests.algos.test_images import IMAGE_SMALL, image_dataset

    ds = image_dataset(shape=(12, 12, 2), continuous=get_algo_class(name).action_type == "continuous")
    options = {**IMAGE_SMALL, **DETERMINISTIC.get(name, {}), "frame_stack": 2, "target_update_interval": 2}
    built = [build(name, ds, seed=seed, **options) for seed in range(2)]
    algos, samplers = [b[0] for b in built], [b[1] for b in built]
    separate = train_stacked_and_separately(algos, samplers, steps=3)
    for algo, reference in zip(algos, separate):
        # Adam's step is about lr * sign(g) where |g| is at rounding level (features a ReLU left at ~0): such weights
        # may differ by up to one learning rate; every other weight agrees to rounding
        theirs = reference.state_dict()
        differences = torch.cat([(v - theirs[k]).abs().flatten() for k, v in algo.state_dict().items() if v.is_floating_point()])
        assert float(differences.max()) < 3e-4 and float((differences > 1e-4).float().mean()) < 1e-3


def test_seeds_in_bf16_update_stacked_in_bf16():
    """The trainer's mixed precision is the seed thread's autocast; the stacked update, run in the group's
    thread, runs under the same one (else the group would silently train in float32)."""
    from offrl.nn.precision import update_context

    algos, samplers = seeds_of("td3_bc", 2, policy_noise=0.0)
    separate = [copy.deepcopy(algo) for algo in algos]
    batches = [[sampler.sample() for _ in range(3)] for sampler in samplers]
    hidden = []  # the dtype of a hidden layer's output, wherever the critic ran
    algos[0].critic.net.layers[0].register_forward_hook(lambda module, args, out: hidden.append(out.dtype))
    mixed = update_context("bf16", "cpu")
    assert not train_in_threads(algos, batches, mixed)
    assert hidden and set(hidden) == {torch.bfloat16}
    for algo, reference, own in zip(algos, separate, batches):
        for batch in own:
            with mixed():
                reference.update(batch)
        assert algo.num_updates == reference.num_updates == 3
        assert max_difference(algo, reference) < 1e-4


def test_a_run_seeding_torch_does_not_disturb_another_seeds_build():
    """A seed group's threads build their algorithms while other seeds' runs seed torch's global generator:
    a build from ``seed=1`` gives the same weights however the two interleave."""
    import threading

    import gymnasium as gym
    import numpy as np

    from offrl.algos.registry import make_algo
    from offrl.train.trainer import _seed_everything

    obs, act = gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-1, 1, (2,), np.float32)

    def weights():
        return torch.cat([p.detach().flatten() for p in make_algo("td3_bc", obs, act, seed=1).parameters()])

    expected, stop = weights(), threading.Event()

    def reseed():
        while not stop.is_set():
            _seed_everything(0)

    thread = threading.Thread(target=reseed, daemon=True)
    thread.start()
    try:
        assert all(torch.equal(weights(), expected) for _ in range(30))
    finally:
        stop.set()
        thread.join()
