"""The ``offrl`` command: train, eval, datasets, algos, demo.

Every subcommand's options are a dataclass read by tyro. Errors a user can
fix (``OffrlError``) are printed as one line, never as a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import tyro

from offrl.errors import OffrlError, SpaceError

Positional = tyro.conf.Positional


@dataclasses.dataclass
class TrainArgs:
    """Train: offline on a dataset, online in an environment, or both (hybrid, offline-to-online); --resume continues a run."""

    algo: str | None = None
    """Registered algorithm (see `offrl algos`)."""
    dataset: str | None = None
    """Dataset: D4RL or offrl HDF5, npz, or a Minari dataset (directory or local id); the format is detected."""
    env: str | None = None
    """Gymnasium environment id: the policy is evaluated in it, and online, hybrid and offline-to-online runs
    also collect their data in it; without it (offline) there is no evaluation."""
    steps: int = 1_000_000
    """Gradient steps (with --online-steps, the offline ones: the run takes steps + online-steps; with --resume:
    the new total)."""
    eval_every: int = 10_000
    """Evaluate every this many steps (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    eval_envs: int = 10
    """Environments stepped together during evaluation."""
    seed: int = 0
    """Seed of the networks, the sampler and the evaluation episodes."""
    run_dir: str | None = None
    """Run directory (default: runs/<algo>-<dataset>-<time>)."""
    resume: str | None = None
    """A run directory to continue from its last checkpoint."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Gradient steps in float32, or with their matrix products in bfloat16 (mixed precision: parameters, optimizer
    states and output layers stay float32); bf16 is faster on CPUs with AVX512-BF16 or AMX and on recent GPUs
    (docs/performance.md). With --resume: the run's own unless given."""
    config: str | None = None
    """JSON or YAML config file: 'algo', 'algo_config' (hyperparameters) and 'train' (these options; a flag written
    here overrides the file); `offrl config template ALGO` writes one. A flat mapping of hyperparameters is read too."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Algorithm hyperparameter override key=value; repeat the flag for several."""
    log_every: int = 1_000
    """Write training metrics every this many steps."""
    checkpoint_every: int | None = None
    """Checkpoint every this many steps (default: --eval-every)."""
    keep_checkpoints: int = 3
    """How many periodic checkpoints to keep."""
    progress: bool = True
    """Show a progress bar."""
    online_steps: int = 0
    """After --steps offline updates, continue this many updates online (offline-to-online)."""
    offline_ratio: str | None = None
    """Fraction of each RL batch drawn from the dataset (default 0.5, RLPD); 'proportional' samples the union
    of dataset and online buffer uniformly (the default with --online-steps)."""
    utd_ratio: float = 1.0
    """RL updates per online environment transition."""
    rl_train_after_update_steps: int | None = None
    """ALF: offline-only updates before online RL starts (larger than --steps: pure offline training)."""
    rl_train_every_update_steps: int = 1
    """ALF: after that, every this many updates is an online RL update; the others stay offline updates."""
    warmup_steps: int | None = None
    """Random-action transitions before the first RL update (default 5000 when RL starts at step 0)."""
    num_envs: int = 1
    """Training environments stepped together."""
    buffer_size: int = 1_000_000
    """Online replay buffer capacity."""
    save_buffer: str | None = None
    """Write the online replay buffer to this file as a dataset when training completes."""
    init_from: str | None = None
    """Start from the weights of a finished run (or a checkpoint)."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import"), tyro.conf.UseAppendAction] = ()
    """Python module or file to import first (registers custom algorithms); repeatable."""
    seeds: int = 1
    """Independent seeds (--seed, --seed + 1, ...), each a complete run in RUN_DIR/seed-N;
    RUN_DIR/seeds.json summarizes their final evaluations (mean and std over seeds)."""
    epochs: int | None = None
    """robomimic-style epochs: train --epochs x --steps-per-epoch gradient steps (instead of --steps), evaluating
    (validation loss, rollouts) after every epoch unless --eval-every says otherwise."""
    steps_per_epoch: int = 100
    """Gradient steps per epoch (robomimic's epoch_every_n_steps)."""
    filter_key: str | None = None
    """Train only on the demonstrations of this filter key (robomimic's mask/<key>, e.g. train)."""
    validation_key: str | None = None
    """Held-out demonstrations (a filter key, e.g. valid): their imitation loss is logged at every evaluation."""
    validation_batches: int = 10
    """Batches of the held-out demonstrations per validation."""
    save_best: Literal["validation", "success", "return"] | None = None
    """Keep the checkpoint of the best evaluation in RUN_DIR/best: lowest validation loss, highest rollout
    success rate or return."""
    goal_keys: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Goal-conditioned policy: each step also sees these observation keys at the end of its demonstration
    (goal_<key>, robomimic's goal_mode=last); evaluation environments supply the task's goal. Repeatable."""
    video_episodes: int = 0
    """At every evaluation, save this many rollout episodes as a video in RUN_DIR/videos (needs offrl[video])."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule of every optimizer over the run."""
    lr_end_factor: float = 0.0
    """With a decaying --lr-schedule: the final learning rate as a fraction of the initial one (robomimic: 0.1)."""
    batch_seeds: bool = True
    """Train the seeds as one batched model (every network with a leading seed axis, one optimizer step
    for all); --no-batch-seeds trains them one after another."""


@dataclasses.dataclass
class SearchArgs:
    """Evolutionary search: a population of agents trained, judged, selected and mutated (AgileRL's HPO)."""

    algo: str | None = None
    """Registered algorithm every member runs."""
    dataset: str | None = None
    """Dataset the members train on (any format `offrl train` reads, or a zoo name); none with --online: an online search."""
    env: str | None = None
    """Environment judging the members by mean return. Without it, imitation algorithms are judged by minus their
    loss on held-out episodes (--validation-key, else --validation-fraction of the episodes), the others by fitted
    Q evaluation of their greedy policy on the dataset (--fqe-steps)."""
    online: bool = False
    """Members also step --env into one shared replay buffer and train with the RL update: online, or hybrid with --dataset."""
    offline_ratio: str | None = None
    """Hybrid: fraction of each batch from the dataset (default 0.5, RLPD; with --online-after 'proportional': the union uniformly)."""
    online_after: int = 0
    """Offline-to-online: gradient steps of each lineage on the dataset alone before the members interact (needs --online)."""
    utd_ratio: float = 1.0
    """Online and hybrid: gradient steps per environment transition."""
    warmup_steps: int | None = None
    """Online and hybrid: random-action transitions (all members together) before the first RL update (default 5000; 0 with --online-after)."""
    num_envs: int = 1
    """Online and hybrid: environments each member steps."""
    buffer_size: int = 1_000_000
    """Online and hybrid: capacity of the shared replay buffer."""
    collect_every: int = 250
    """Online and hybrid: gradient steps between the members' collections."""
    population: int = 8
    """Members."""
    evo_steps: int = 10_000
    """Gradient steps of every member between two selections."""
    max_steps: int = 300_000
    """Gradient steps of each member's lineage when the search ends (with --resume: the new limit)."""
    target: float | None = None
    """Stop once the best fitness reaches this."""
    space: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Search space entry NAME=LOW:HIGH[:log|:int] or NAME=A,B,C over a config field (lr: every learning rate);
    repeatable. Default: each learning rate 10x either way (log), batch size /4..x4, and the paper's knobs."""
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """Base hyperparameter key=value every member starts from; repeatable."""
    initial: Literal["default", "sample"] = "default"
    """Initial members: all with the base hyperparameters (AgileRL), or drawn from the space (member 0 keeps the base)."""
    run_dir: str = "runs/search"
    """Where the lineage, plot, generation checkpoints and the elite's run directory (RUN_DIR/elite) go."""
    resume: str | None = None
    """A search directory to continue from its last generation checkpoint."""
    backend: Literal["local", "ray"] = "local"
    """Train members in this process (matching members batched) or as Ray actors (needs offrl[ray])."""
    address: str | None = None
    """Ray cluster address (auto: a running cluster); default: a local Ray instance."""
    cpus_per_member: float | None = None
    """Ray CPUs of each member's actor (default: the cluster's CPUs shared by the members, at most 1)."""
    batch_members: bool = True
    """In process, train members that match up to learning rates as one batched model."""
    tournament_size: int = 2
    """Members drawn for each tournament."""
    elitism: bool = True
    """Keep the best member unchanged in the next generation."""
    eval_loop: int = 1
    """Fitness is the mean of the lineage's last this many judgements."""
    eval_episodes: int = 10
    """Episodes per judgement with --env."""
    eval_envs: int = 10
    """Environments stepped together while judging."""
    validation_key: str | None = None
    """Held-out demonstrations for a data-only fitness (a robomimic filter key)."""
    filter_key: str | None = None
    """Train only on the demonstrations of this filter key."""
    validation_fraction: float = 0.1
    """Without --env or --validation-key: this fraction of the episodes is held out to judge on."""
    validation_batches: int = 10
    """Batches of held-out data per judgement."""
    fqe_steps: int = 5000
    """Without --env, for algorithms without an imitation loss: regression steps of fitted Q evaluation per judgement."""
    no_mutation: float = 0.4
    """Probability of no mutation."""
    arch_mutation: float = 0.2
    """Probability of an architecture mutation (hidden_dims: a layer or nodes added or removed)."""
    new_layer_prob: float = 0.2
    """Of an architecture mutation: probability it changes layers rather than nodes."""
    param_mutation: float = 0.2
    """Probability of parameter noise on the actor."""
    act_mutation: float = 0.0
    """Probability of an activation change."""
    rl_hp_mutation: float = 0.2
    """Probability of a hyperparameter mutation within the space."""
    mutation_sd: float = 0.1
    """Relative standard deviation of parameter noise."""
    seed: int = 0
    """Seed of initial weights, selection, mutations and judging episodes."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """The members' gradient steps in float32, or with their matrix products in bfloat16 (as offrl train --precision)."""
    progress: bool = True
    """Print a line per generation."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import"), tyro.conf.UseAppendAction] = ()
    """Python module or file to import first (registers custom algorithms); repeatable."""


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a run's policy in an environment, or estimate its return from a dataset (--dataset: no simulator)."""

    run_dir: Positional[str]
    """Run directory (its latest checkpoint) or a checkpoint file."""
    env: str | None = None
    """Gymnasium environment id (default: the one the run evaluated on)."""
    dataset: str | None = None
    """Instead of rolling out: estimate the policy's discounted return from this dataset by fitted Q evaluation."""
    fqe_steps: int = 5000
    """With --dataset: regression steps of fitted Q evaluation."""
    gamma: float = 0.99
    """With --dataset: the discount of the estimated return."""
    episodes: int = 10
    """Number of episodes."""
    envs: int = 10
    """Environments stepped together."""
    seed: int = 0
    """Seed of the evaluation episodes."""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """Device to run the policy on."""
    json: bool = False
    """Print one JSON object instead of text."""
    video: str | None = None
    """Also save the first --video-episodes episodes as a video here (.mp4 needs imageio-ffmpeg, .gif Pillow)."""
    video_episodes: int = 1
    """Episodes in the video."""
    force: bool = False
    """Replace an existing --video file."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import"), tyro.conf.UseAppendAction] = ()
    """Python module or file to import first (registers custom algorithms); repeatable."""


@dataclasses.dataclass
class DatasetsInfoArgs:
    """Describe a dataset: size, spaces, episodes and returns."""

    path: Positional[str]
    """Dataset file or directory."""
    json: bool = False
    """Print one JSON object instead of text."""


@dataclasses.dataclass
class DatasetsConvertArgs:
    """Convert a dataset from any readable format to offrl HDF5 (.hdf5/.h5), npz (.npz), offrl-memmap (.offrl), D4RL or robomimic."""

    source: Positional[str]
    """Input dataset."""
    destination: Positional[str]
    """Output file (or .offrl directory: memory-mapped, for data larger than memory); its suffix picks the format."""
    format: str | None = None
    """Output format when the suffix does not tell: offrl-hdf5, npz, offrl-memmap, d4rl, robomimic."""
    force: bool = False
    """Overwrite the output file if it exists."""


@dataclasses.dataclass
class DatasetsConvertDqnReplayArgs:
    """Convert DQN-Replay Atari checkpoints (a replay_logs directory) to an offrl-memmap dataset, streaming."""

    replay_logs: Positional[str]
    """The replay_logs directory of one game and run, holding $store$_observation_ckpt.N.gz ..."""
    destination: Positional[str]
    """Output directory (.offrl)."""
    checkpoints: str | None = None
    """Checkpoints to convert, e.g. 0,1 or 0-9 (default: all)."""
    max_transitions: int | None = None
    """Stop after this many transitions."""
    clip_rewards: bool = False
    """Clip rewards to [-1, 1] (DQN's training rewards); by default they are kept raw."""
    stack_size: int | None = None
    """dopamine's frame stack (its padding rows per episode + 1); read from invalid_range by default."""
    force: bool = False
    """Overwrite the output if it exists."""


@dataclasses.dataclass
class DatasetsConvertRlUnpluggedArgs:
    """Convert RL Unplugged Atari shards (GZIP TFRecord files) to an offrl-memmap dataset, streaming."""

    sources: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="SOURCE... OUT")]
    """Shard files (run_N-XXXXX-of-YYYYY), glob patterns or a game's directory, then the output directory (.offrl)."""
    stack: bool = False
    """Store each row's 4-frame stacks [4, 84, 84] (any record order) instead of single frames [84, 84]
    stacked at sampling time (which needs the records of an episode consecutive and in order)."""
    num_actions: int | None = None
    """Size of the Discrete action space (default: the largest action in the data + 1)."""
    max_transitions: int | None = None
    """Stop after this many transitions."""
    clip_rewards: bool = False
    """Clip rewards to [-1, 1]; by default they are kept as stored."""
    force: bool = False
    """Overwrite the output if it exists."""


@dataclasses.dataclass
class DatasetsCollectArgs:
    """Roll out a policy in an environment and write the data (D4RL-layout HDF5, or .npz)."""

    env: str
    """Gymnasium environment id."""
    policy: str
    """A run directory or checkpoint, 'random', 'scripted' (the demonstrator of an offrl/ task), or
    module:function (called with a batch of observations)."""
    out: str
    """Output file (.hdf5: D4RL layout unless --format says otherwise; .npz)."""
    format: Literal["d4rl", "robomimic", "offrl-hdf5", "npz"] | None = None
    """Output layout (default: d4rl for .hdf5, npz for .npz); robomimic writes one demo per episode."""
    valid_fraction: float = 0.0
    """Hold out this fraction of the episodes under the filter key 'valid' (the others under 'train'), as
    robomimic's split script does; the robomimic and offrl-hdf5 layouts keep filter keys."""
    episodes: int | None = None
    """Record this many complete episodes."""
    steps: int | None = None
    """Record exactly this many transitions (the last episode is cut off as a timeout)."""
    noise: float = 0.0
    """Gaussian action noise, as a fraction of each action's half-range."""
    epsilon: float = 0.0
    """Probability of replacing an action by a uniformly random one."""
    stochastic: bool = False
    """Sample from a run's stochastic policy instead of taking its deterministic action."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import"), tyro.conf.UseAppendAction] = ()
    """Module or .py file defining the run's algorithm (default: the --import the run recorded)."""
    num_envs: int = 1
    """Environments stepped together."""
    seed: int = 0
    """Seed of the environments and the noise."""
    force: bool = False
    """Overwrite the output file if it exists."""


@dataclasses.dataclass
class DatasetsBuildArgs:
    """Build a zoo dataset (a roll-out of shipped behaviour policies) into the cache."""

    name: Positional[str]
    """Zoo name, e.g. hopper-medium-replay (see offrl datasets list)."""
    size: int | None = None
    """Transitions per part (default 1,000,000; medium-replay: the recorded replay size)."""
    seed: int = 0
    """Seed of the roll-out."""
    force: bool = False
    """Rebuild even if it is cached."""


@dataclasses.dataclass
class DatasetsListArgs:
    """List the zoo datasets, and which are built."""

    json: bool = False
    """Print JSON instead of a table."""


@dataclasses.dataclass
class ConfigTemplateArgs:
    """Print a JSON config file for an algorithm: every option, its default and a comment (for train --config)."""

    algo: Positional[str]
    """Registered algorithm (see `offrl algos`)."""
    out: str | None = None
    """Write the template to this file instead of printing it."""
    force: bool = False
    """Overwrite --out if it exists."""
    imports: Annotated[tuple[str, ...], tyro.conf.arg(name="import"), tyro.conf.UseAppendAction] = ()
    """Python module or file to import first (registers custom algorithms); repeatable."""


@dataclasses.dataclass
class AlgosArgs:
    """List the registered algorithms."""

    json: bool = False
    """Print JSON instead of a table."""


@dataclasses.dataclass
class DemoArgs:
    """Build a Pendulum dataset from a noisy scripted controller, train TD3+BC on it, evaluate."""

    out: str = "demo-output"
    """Directory for the dataset and the run."""
    steps: int = 20_000
    """Gradient steps."""
    episodes: int = 100
    """Episodes in the dataset."""
    seed: int = 0
    """Seed."""


def cmd_train(args: TrainArgs, argv: Sequence[str]) -> int:
    from offrl.train.run import SEEDS_FILE

    if args.config and not args.resume:
        args = _with_config_file(args, argv)
    if args.seeds != 1 or (args.resume and (Path(args.resume) / SEEDS_FILE).exists()):
        return _train_seeds(args, argv)
    return 130 if _train_run(args, argv).interrupted else 0


def _train_seeds(args: TrainArgs, argv: Sequence[str]) -> int:
    """Several seeds of one configuration, one run directory each, and their summary."""
    import numpy as np

    from offrl.io import write_json
    from offrl.train.run import FINAL_EVAL, SEEDS_FILE

    if args.resume:
        group = Path(args.resume)
        if "seeds" in _given_flags(argv):
            raise OffrlError(f"--resume continues {group} with the seeds it was started with: drop --seeds")
        try:
            record = json.loads((group / SEEDS_FILE).read_text())
            seeds, started_with = [int(s) for s in record["seeds"]], list(record["argv"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OffrlError(f"{group / SEEDS_FILE}: not a readable seed-group record ({error})") from None
        started = tyro.cli(TrainArgs, args=started_with)
        started = _with_config_file(started, started_with) if started.config else started
        if "batch_seeds" not in _given_flags(argv):  # batched or one after another, as the group started
            args = dataclasses.replace(args, batch_seeds=started.batch_seeds)
        # what the resume line changes for every seed that starts now (a new --steps total, --precision)
        changed = {name: getattr(args, name) for name in ("steps", "precision") if name in _given_flags(argv)}
        runs = []
        for seed in seeds:
            run_dir = group / f"seed-{seed}"
            if run_dir.exists():
                runs.append((seed, dataclasses.replace(args, resume=str(run_dir), seeds=1), argv))
            else:  # never started (the group was interrupted before it): start it as the group was configured
                runs.append((seed, dataclasses.replace(started, seed=seed, run_dir=str(run_dir), seeds=1, **changed), started_with))
    else:
        if args.seeds < 1:
            raise OffrlError(f"--seeds must be at least 1, got {args.seeds}")
        if not args.algo and not args.config:
            raise OffrlError("offrl train needs --algo and --dataset and/or --env (or --resume RUN_DIR); see offrl train --help")
        group = Path(args.run_dir) if args.run_dir else Path("runs") / f"{args.algo or 'run'}-seeds-{time.strftime('%Y%m%d-%H%M%S')}"
        if (group / SEEDS_FILE).exists() or (group.exists() and any(group.iterdir())):
            raise OffrlError(f"{group} is not empty: resume it (offrl train --resume {group}) or choose another --run-dir")
        seeds = [args.seed + k for k in range(args.seeds)]
        started_with = list(argv)
        write_json(group / SEEDS_FILE, {"seeds": seeds, "argv": started_with, "final": None})
        runs = [(seed, dataclasses.replace(args, seed=seed, run_dir=str(group / f"seed-{seed}"), seeds=1), argv) for seed in seeds]

    from offrl.data.formats import load_dataset
    from offrl.train.run import resolve_device
    from offrl.train.seed_group import run_seed_group

    loaded: dict[str, object] = {}
    loading = threading.Lock()

    def load_once(ref: str):  # the seeds share one copy of the dataset
        with loading:
            if ref not in loaded:
                loaded[ref] = load_dataset(ref)
            return loaded[ref]

    def job(index: int, seed: int, run_args: TrainArgs, run_argv: Sequence[str]):
        def train_seed():
            if not args.batch_seeds:
                print(f"seed {seed} ({index + 1} of {len(runs)}): {run_args.run_dir or run_args.resume}")
            return _train_run(run_args, run_argv, load=load_once)

        return train_seed

    if args.batch_seeds:
        on_cpu = resolve_device(args.device).type == "cpu"
        hint = "; on a CPU, --no-batch-seeds is usually faster (docs/performance.md)" if on_cpu else ""
        print(f"{len(runs)} seeds trained as one batched model{hint}")
        for index, (seed, run_args, _) in enumerate(runs):
            print(f"seed {seed} ({index + 1} of {len(runs)}): {run_args.run_dir or run_args.resume}")
        runs = [(seed, dataclasses.replace(a, progress=a.progress and i == 0), v) for i, (seed, a, v) in enumerate(runs)]
    jobs = [job(i, *run) for i, run in enumerate(runs)]
    if args.batch_seeds:
        results = run_seed_group(jobs)
    else:
        results = []
        for train_seed in jobs:  # Ctrl-C ends the group with the seed it interrupted
            results.append(train_seed())
            if results[-1].interrupted:
                break
    if any(result.interrupted for result in results):
        print(f"interrupted: continue all seeds with: offrl train --resume {group}")
        return 130
    finals: dict[str, dict] = {}
    for (seed, _, _), result in zip(runs, results):
        final_file = Path(result.run_dir) / FINAL_EVAL  # also there for a seed that had finished before a resume
        if final_file.exists():
            final = json.loads(final_file.read_text())
            finals[str(seed)] = {key: final.get(key) for key in ("mean_return", "normalized_score", "step")}
    summary: dict = {"seeds": seeds, "argv": started_with, "final": None}
    if finals:
        returns = np.array([f["mean_return"] for f in finals.values()])
        summary["final"] = {"per_seed": finals, "mean_return": float(returns.mean()), "std_return": float(returns.std())}
        scores = [f["normalized_score"] for f in finals.values() if f["normalized_score"] is not None]
        text = f"{returns.mean():.1f} ± {returns.std():.1f} over {len(returns)} seeds"
        if len(scores) == len(finals):
            summary["final"].update(normalized_mean=float(np.mean(scores)), normalized_std=float(np.std(scores)))
            text += f" ({np.mean(scores):.1f} ± {np.std(scores):.1f} normalized)"
        print(f"policy return: {text}")
    write_json(group / SEEDS_FILE, summary)
    print(f"seed runs: {group} (summary in {group / SEEDS_FILE})")
    return 0


def _given_flags(argv: Sequence[str]) -> set[str]:
    """The options written on the command line, as field names (``--eval-every=5`` -> ``eval_every``;
    ``--no-progress`` -> ``progress`` and ``no_progress``)."""
    names = {a.split("=", 1)[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
    return names | {name.removeprefix("no_") for name in names}


# TrainArgs fields a config file's train section may not set, and where they are set instead
_NOT_IN_TRAIN_SECTION = {
    "algo": "the file's top-level 'algo'",
    "config": "--config",
    "set": "the file's algo_config section",
    "resume": "--resume",
    "imports": "--import",
}


def train_section_template() -> dict:
    """A config file's ``train`` section: the options of ``offrl train`` a file may set, defaults and comments."""
    from offrl.config import section_template

    return section_template(TrainArgs, exclude=_NOT_IN_TRAIN_SECTION)


def _with_config_file(args: TrainArgs, argv: Sequence[str]) -> TrainArgs:
    """``args`` with the --config file's train section applied to the options not written on the command line."""
    from offrl.config import make_config, read_config, unknown_key_error

    _, _, train_section = read_config(args.config)
    where = f"{args.config}: train"
    allowed = [f.name for f in dataclasses.fields(TrainArgs) if f.name not in _NOT_IN_TRAIN_SECTION]
    for key in train_section:
        if key in _NOT_IN_TRAIN_SECTION:
            raise OffrlError(f"{where}: {key!r} does not belong in the train section; use {_NOT_IN_TRAIN_SECTION[key]}")
        if key not in allowed:
            raise unknown_key_error(str(key), allowed, where=where)
    hints = typing.get_type_hints(TrainArgs)
    given = _given_flags(argv)
    overrides = {key: _as_flag_text(value, hints[key]) for key, value in train_section.items() if key not in given}
    return make_config(TrainArgs, overrides, base=args, source=where)


def _as_flag_text(value: object, annotation: object) -> object:
    """A number for an option that takes text (``"offline_ratio": 0.5``) as the text written after its flag."""
    takes_text = annotation is str or str in typing.get_args(annotation)
    return str(value) if takes_text and isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _algo_config(args: TrainArgs) -> tuple[str | None, object]:
    """The algorithm named by --algo or the --config file, and its config: the defaults, then the file's
    algo_config, then --set. ``(None, None)`` when no algorithm is named."""
    from offrl.algos.registry import get_algo_class
    from offrl.config import make_config, parse_assignments, read_config
    from offrl.errors import ConfigError

    algo_name, from_file = args.algo, {}
    if args.config:
        named, from_file, _ = read_config(args.config)
        if algo_name and named and named != algo_name:
            raise OffrlError(f"{args.config} is a config for {named!r}, but --algo is {algo_name!r}")
        algo_name = algo_name or named
    if not algo_name:
        return None, None
    try:
        config_class = get_algo_class(algo_name).Config
    except ConfigError as error:  # an unknown algorithm: name the file when it was the file's
        raise ConfigError(f"{args.config}: {error}" if algo_name != args.algo else str(error)) from None
    config = make_config(config_class, from_file, source=f"{args.config}: algo_config")
    return algo_name, make_config(config_class, parse_assignments(args.set), base=config, source="--set")


def _train_run(args: TrainArgs, argv: Sequence[str], load=None):
    """One run; ``load`` reads the dataset (default ``load_dataset``)."""
    from offrl.algos.registry import make_algo
    from offrl.data.formats import load_dataset
    from offrl.plugins import import_plugin, recorded_import
    from offrl.spaces import as_float32, space_from_json
    from offrl.train.evaluate import make_env
    from offrl.errors import CheckpointError
    from offrl.train.run import CONFIG, read_run_config, resolve_device
    from offrl.train.trainer import train

    given = _given_flags(argv)
    settings = {
        name: getattr(args, name)
        for name in ("eval_every", "eval_episodes", "eval_envs", "log_every", "checkpoint_every", "keep_checkpoints")
    }
    if args.resume:
        fixed = {"algo", "config", "set", "seed", "run_dir", "online_steps", "offline_ratio", "utd_ratio", "import",
                 "rl_train_after_update_steps", "rl_train_every_update_steps", "warmup_steps", "num_envs", "buffer_size", "init_from",
                 "filter_key", "validation_key", "validation_batches", "save_best", "lr_schedule", "lr_end_factor", "goal_keys"}
        conflicting = given & fixed
        if conflicting:
            flags = ", ".join("--" + c.replace("_", "-") for c in sorted(conflicting))
            raise OffrlError(f"--resume continues a run as it was configured: drop {flags}")
        saved = read_run_config(args.resume)
        missing = [key for key in ("algo", "algo_config", "observation_space", "action_space", "schedule", "train") if key not in saved]
        if missing:
            raise CheckpointError(f"{Path(args.resume) / CONFIG}: no {', '.join(missing)} entry (not written by offrl train, or edited)")
        for module in saved.get("cli", {}).get("imports", []):
            import_plugin(module)
        schedule, train_saved = saved["schedule"], saved["train"]
        for name in settings:
            if name not in given and name in train_saved:
                settings[name] = train_saved[name]
        total = args.steps if "steps" in given else schedule["total_steps"]
        after = total if schedule["mode"] == "offline" else min(schedule["rl_train_after_update_steps"], total)
        dataset_ref = args.dataset or saved.get("cli", {}).get("dataset")
        dataset = (load or load_dataset)(dataset_ref) if dataset_ref else None
        keys = {name: saved.get("cli", {}).get(name) for name in ("filter_key", "validation_key")}
        dataset, validation = _split_by_filter_keys(dataset, **keys)
        dataset, validation = _with_goals(dataset, validation, train_saved.get("goal_keys", ()))
        env = args.env if "env" in given else saved.get("env")
        device = resolve_device(args.device if "device" in given else "auto")
        algo = make_algo(
            saved["algo"],
            space_from_json(saved["observation_space"]),
            space_from_json(saved["action_space"]),
            config=saved["algo_config"],
            device=device,
        )
        options = {
            "steps": total,
            "rl_train_after_update_steps": after,
            "rl_train_every_update_steps": schedule["rl_train_every_update_steps"],
            "offline_ratio": schedule["offline_ratio"],
            "utd_ratio": schedule["utd_ratio"],
            "warmup_steps": schedule["warmup_steps"],
            "num_envs": schedule["num_envs"],
            # the size asked for (the schedule's is capped by what the run's steps collect: a longer run needs more)
            "buffer_size": train_saved.get("buffer_size") or schedule["buffer_size"] or 1,
            "save_buffer": args.save_buffer or train_saved.get("save_buffer"),
            "validation": validation,
            **{name: train_saved[name] for name in ("validation_batches", "save_best", "lr_schedule", "lr_end_factor", "goal_keys",
                                                      "video_episodes", "precision")
               if name in train_saved},
        }
        if "precision" in given:  # arithmetic, not configuration: a resumed run may change it
            options["precision"] = args.precision
        run_dir, seed, resume, imports = Path(args.resume), int(train_saved["seed"]), True, saved.get("cli", {}).get("imports", [])
    else:
        imports = list(args.imports)
        for module in imports:
            import_plugin(module)
        algo_name, algo_config = _algo_config(args)
        if not algo_name or not (args.dataset or args.env):
            raise OffrlError("offrl train needs --algo and --dataset and/or --env (or --resume RUN_DIR); see offrl train --help")
        if args.offline_ratio is not None and not args.dataset:
            raise OffrlError("--offline-ratio is the share of dataset rows in each RL batch: it needs --dataset")
        dataset = (load or load_dataset)(args.dataset) if args.dataset else None
        keys = {"filter_key": args.filter_key, "validation_key": args.validation_key}
        dataset, validation = _split_by_filter_keys(dataset, **keys)
        dataset, validation = _with_goals(dataset, validation, args.goal_keys)
        if dataset is not None:
            observation_space, action_space = dataset.observation_space, dataset.action_space
        else:
            probe = make_env(args.env)
            observation_space, action_space = as_float32(probe.observation_space), probe.action_space
            probe.close()
        device = resolve_device(args.device)
        try:
            algo = make_algo(algo_name, observation_space, action_space, config=algo_config, device=device, seed=args.seed)
        except SpaceError as error:
            source = f"the dataset {args.dataset}" if dataset is not None else f"the environment {args.env}"
            raise SpaceError(f"{error} (the spaces of {source})") from None
        env, seed, resume = args.env, args.seed, False
        run_dir = Path(args.run_dir) if args.run_dir else None
        dataset_ref = None
        if args.dataset:
            dataset_ref = str(Path(args.dataset).resolve()) if Path(args.dataset).exists() else args.dataset
        steps = args.steps
        if args.epochs is not None:
            _require_positive({"--epochs": args.epochs, "--steps-per-epoch": args.steps_per_epoch})
            if "steps" in given:
                raise OffrlError("give --steps or --epochs (with --steps-per-epoch), not both")
            steps = args.epochs * args.steps_per_epoch
            # evaluate every epoch unless --eval-every, or a config file's eval_every other than the default
            # (the template writes the default), says otherwise
            default_every = next(f.default for f in dataclasses.fields(TrainArgs) if f.name == "eval_every")
            if "eval_every" not in given and args.eval_every == default_every:
                settings["eval_every"] = args.steps_per_epoch
        options = {
            "steps": steps,
            "validation": validation,
            "validation_batches": args.validation_batches,
            "save_best": args.save_best,
            "lr_schedule": args.lr_schedule,
            "lr_end_factor": args.lr_end_factor,
            "goal_keys": args.goal_keys,
            "video_episodes": args.video_episodes,
            "online_steps": args.online_steps,
            "rl_train_after_update_steps": args.rl_train_after_update_steps,
            "rl_train_every_update_steps": args.rl_train_every_update_steps,
            "offline_ratio": _offline_ratio(args.offline_ratio),
            "utd_ratio": args.utd_ratio,
            "warmup_steps": args.warmup_steps,
            "num_envs": args.num_envs,
            "buffer_size": args.buffer_size,
            "save_buffer": args.save_buffer,
            "init_from": args.init_from,
            "precision": args.precision,
        }

    result = train(
        algo,
        dataset,
        env=env,
        run_dir=run_dir,
        seed=seed,
        resume=resume,
        progress=args.progress,
        run_info={"cli": {"dataset": dataset_ref, "imports": [recorded_import(m) for m in imports], **keys}},
        **settings,
        **options,
    )
    print(f"run directory: {result.run_dir}")
    print(f"steps: {result.step}")
    if result.env_steps:
        print(f"environment steps: {result.env_steps}")
    if result.behaviour_return is not None:
        print(f"dataset behaviour return: {result.behaviour_return:.2f}")
    if result.final_eval is not None:
        print(f"policy return: {_result_text(result.final_eval)}")
    if result.learning_curve is not None:
        print(f"learning curve: {result.learning_curve}")
    return result


def _split_by_filter_keys(dataset, *, filter_key: str | None, validation_key: str | None):
    """The training demonstrations (those of ``filter_key``, or all) and the held-out ones (``validation_key``)."""
    if dataset is None:
        if filter_key or validation_key:
            raise OffrlError("--filter-key and --validation-key select demonstrations of a --dataset")
        return None, None
    validation = dataset.filter_key(validation_key) if validation_key else None
    return (dataset.filter_key(filter_key) if filter_key else dataset), validation


def _with_goals(dataset, validation, goal_keys: Sequence[str]):
    """Both datasets conditioned on the ends of their demonstrations (``goal_<key>`` observations)."""
    if not goal_keys:
        return dataset, validation
    if dataset is None:
        raise OffrlError("--goal-keys conditions on the demonstrations of a --dataset")
    from offrl.data.goals import with_goals

    return with_goals(dataset, goal_keys), None if validation is None else with_goals(validation, goal_keys)


def _offline_ratio(text: str | None) -> float | None | str:
    if text is None:
        return "default"
    if text.lower() in ("proportional", "union"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise OffrlError(f"--offline-ratio expects a number in [0, 1] or 'proportional', got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise OffrlError(f"--offline-ratio must be in [0, 1], got {value}")
    return value


def cmd_search(args: SearchArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import load_dataset
    from offrl.hpo import HyperparameterSpace, Mutations, Population, TournamentSelection, train_population
    from offrl.hpo.search import read_search
    from offrl.plugins import import_plugin, recorded_import
    from offrl.train.run import resolve_device

    given = _given_flags(argv) & {field.name for field in dataclasses.fields(SearchArgs)}
    if args.resume:
        changeable = {"resume", "max_steps", "target", "backend", "address", "cpus_per_member", "device", "precision", "progress",
                      "batch_members"}
        fixed = given - changeable
        if fixed:
            flags = ", ".join("--" + c.replace("_", "-") for c in sorted(fixed))
            raise OffrlError(f"--resume continues a search as it was configured: drop {flags}")
        saved = read_search(args.resume)
        cli = saved.get("cli", {})
        values = {**cli, **{name: getattr(args, name) for name in given if name != "resume"}}
        values["run_dir"] = args.resume
        if "max_steps" not in given:
            values["max_steps"] = saved["max_steps"]
        if "target" not in given:
            values["target"] = saved["target"]
        if "backend" not in given:
            values["backend"] = saved["backend"]
        args = dataclasses.replace(args, **{k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(SearchArgs)}})
        args.space, args.set, args.imports = tuple(args.space), tuple(args.set), tuple(args.imports)
    for module in args.imports:
        import_plugin(module)
    if not args.algo or not (args.dataset or args.online):
        raise OffrlError("offrl search needs --algo and --dataset, or --algo --env --online (or --resume RUN_DIR); see offrl search --help")
    from offrl.algos.registry import get_algo_class
    from offrl.config import make_config, parse_assignments

    config = make_config(get_algo_class(args.algo).Config, parse_assignments(args.set), source="--set")
    dataset = load_dataset(args.dataset) if args.dataset else None
    dataset, validation = _split_by_filter_keys(dataset, filter_key=args.filter_key, validation_key=args.validation_key)
    space = HyperparameterSpace.parse(args.space) if args.space else None
    population = Population(
        args.algo, dataset, size=args.population, env=args.env, online=args.online, offline_ratio=_offline_ratio(args.offline_ratio),
        utd_ratio=args.utd_ratio, warmup_steps=args.warmup_steps, num_envs=args.num_envs, buffer_size=args.buffer_size,
        collect_every=args.collect_every, online_after=args.online_after,
        config=config, space=space, validation=validation,
        validation_fraction=args.validation_fraction, initial=args.initial, eval_episodes=args.eval_episodes,
        eval_envs=args.eval_envs, validation_batches=args.validation_batches, fqe_steps=args.fqe_steps, seed=args.seed,
        device=str(resolve_device(args.device)), precision=args.precision,
    )
    mutations = Mutations(
        no_mutation=args.no_mutation, architecture=args.arch_mutation, new_layer_prob=args.new_layer_prob,
        parameters=args.param_mutation, activation=args.act_mutation, rl_hp=args.rl_hp_mutation, mutation_sd=args.mutation_sd,
    )
    record = {name: getattr(args, name) for name in (
        "algo", "dataset", "env", "online", "offline_ratio", "online_after", "utd_ratio", "warmup_steps", "num_envs", "buffer_size",
        "collect_every",
        "population", "evo_steps", "space", "set", "initial", "tournament_size", "elitism", "eval_loop",
        "eval_episodes", "eval_envs", "validation_key", "filter_key", "validation_fraction", "validation_batches", "fqe_steps", "no_mutation",
        "arch_mutation", "new_layer_prob", "param_mutation", "act_mutation", "rl_hp_mutation", "mutation_sd", "seed", "imports", "precision",
    )}
    # a resume may run from another directory: files by their absolute paths (a zoo name or Minari id stays a name)
    if args.dataset and Path(args.dataset).exists():
        record["dataset"] = str(Path(args.dataset).resolve())
    record["imports"] = [recorded_import(m) for m in args.imports]
    try:
        result = train_population(
            population, evo_steps=args.evo_steps, max_steps=args.max_steps, target=args.target, eval_loop=args.eval_loop,
            tournament=TournamentSelection(args.tournament_size, args.elitism), mutations=mutations, run_dir=args.run_dir,
            resume=bool(args.resume), backend=args.backend, address=args.address, cpus_per_member=args.cpus_per_member,
            batched=args.batch_members, progress=args.progress,
            run_info={"cli": {k: list(v) if isinstance(v, tuple) else v for k, v in record.items()}},
        )
    except KeyboardInterrupt:
        print(f"interrupted: the last complete generation is kept; continue with: offrl search --resume {args.run_dir}")
        return 130
    state = "reached the target" if result.reached_target else f"reached {result.elite.steps} steps per member"
    print(
        f"search {state} after {result.generations} generation(s): best fitness {result.best_fitness:.4g} "
        f"(member {result.elite.id}); elite run: {result.elite_dir} (offrl eval {result.elite_dir}); lineage: {result.lineage}"
    )
    return 0


def cmd_eval(args: EvalArgs, argv: Sequence[str]) -> int:
    from offrl.train.checkpoint import load_algo, read_checkpoint
    from offrl.train.evaluate import check_env_compatible, check_video, evaluate, evaluation_slots, make_vector_env
    from offrl.train.run import SEEDS_FILE, resolve_device, run_settings

    from offrl.plugins import import_plugin

    run_path = Path(args.run_dir)
    if (run_path / SEEDS_FILE).is_file():
        seeds = sorted(p.name for p in run_path.glob("seed-*"))
        raise OffrlError(f"{run_path} is a seed group: evaluate one of its runs ({', '.join(seeds) or 'seed-N'}), e.g. offrl eval {run_path}/{seeds[0] if seeds else 'seed-N'}")
    saved = run_settings(run_path)  # a run directory, or a directory inside one (RUN/best) or a checkpoint file there
    for module in args.imports or saved.get("cli", {}).get("imports", []):  # --import replaces what the run recorded
        import_plugin(module)
    if args.dataset:
        return _estimate_from_data(args, run_path)
    env_id = args.env or saved.get("env")
    if not env_id:
        raise OffrlError(f"{args.run_dir}: the run has no evaluation environment recorded; pass --env (or --dataset to estimate from data)")
    _require_positive({"--episodes": args.episodes, "--envs": args.envs})
    video = Path(args.video) if args.video else None
    if video is not None:
        if video.suffix not in (".mp4", ".gif"):
            raise OffrlError(f"--video {args.video}: the file must end in .mp4 or .gif")
        if video.exists() and not args.force:
            raise OffrlError(f"{video} already exists: refusing to overwrite it (use --force)")
        check_video(env_id, video)
    meta, _ = read_checkpoint(run_path)
    algo = load_algo(run_path, device=resolve_device(args.device), optimizers=False).train(False)
    envs = make_vector_env(
        env_id, evaluation_slots(args.envs, args.episodes), goal_keys=saved.get("train", {}).get("goal_keys", ()), render_first=bool(args.video)
    )
    check_env_compatible(envs, algo.observation_space, algo.action_space, env_id, f"the policy in {args.run_dir}")
    # the per-environment rollout policy: recurrent and context policies keep state per slot
    result = evaluate(
        algo.rollout_policy(envs.num_envs, deterministic=True), envs, env_id=env_id, episodes=args.episodes, seed=args.seed,
        video=video, video_episodes=args.video_episodes,
    )
    envs.close()
    if args.json:
        print(json.dumps({**result.to_json(), "algo": meta["algo"], "step": meta["step"], "run": str(run_path)}))
    else:
        print(f"{meta['algo']} at step {meta['step']} on {env_id}: {_result_text(result)}")
    return 0


def _estimate_from_data(args: EvalArgs, run_path: Path) -> int:
    """``offrl eval RUN --dataset DATA``: fitted Q evaluation of the run's greedy policy on DATA."""
    from offrl.data.formats import load_dataset
    from offrl.ope import algo_policy, fitted_q_evaluation
    from offrl.train.checkpoint import load_algo, read_checkpoint
    from offrl.train.run import resolve_device
    from offrl.train.trainer import check_spaces

    meta, _ = read_checkpoint(run_path)
    device = resolve_device(args.device)
    algo = load_algo(run_path, device=device, optimizers=False)
    dataset = load_dataset(args.dataset)
    check_spaces(algo, dataset)
    result = fitted_q_evaluation(algo_policy(algo), dataset, steps=args.fqe_steps, gamma=args.gamma, seed=args.seed, device=device)
    if args.json:
        print(json.dumps({
            "algo": meta["algo"], "step": meta["step"], "run": str(run_path), "dataset": args.dataset, "method": "fitted_q_evaluation",
            "estimated_return": result.value, "gamma": args.gamma, "initial_states": result.initial_states, "fqe_steps": args.fqe_steps,
        }))
    else:
        print(
            f"{meta['algo']} at step {meta['step']}, estimated from {args.dataset} by fitted Q evaluation: discounted return "
            f"{result.value:.2f} (gamma {args.gamma:g}, from {result.initial_states} episode starts)"
        )
    return 0


def cmd_datasets_info(args: DatasetsInfoArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import load_dataset, robomimic

    dataset = load_dataset(args.path)
    summary = dataset.summary()
    if summary["metadata"].get("format") == "robomimic":
        summary["robomimic"] = robomimic.describe(dataset)
    if args.json:
        print(json.dumps(summary))
        return 0
    r, length = summary["return"], summary["length"]
    where = "on disk, memory-mapped" if summary["metadata"].get("format") == "offrl-memmap" else "in memory"
    lines = [
        f"dataset      {summary['source']}",
        f"format       {summary['metadata'].get('format')}",
        f"transitions  {summary['transitions']:,}  ({summary['memory_mb']} MB {where})",
        f"episodes     {summary['episodes']:,}  (terminals {summary['terminals']:,}, timeouts {summary['timeouts']:,})",
        f"observations {_space_text(summary['observation_space'])}",
        f"actions      {_space_text(summary['action_space'])}",
        f"return       mean {r['mean']:.2f}  std {r['std']:.2f}  min {r['min']:.2f}  max {r['max']:.2f}",
        f"length       mean {length['mean']:.1f}  min {length['min']:.0f}  max {length['max']:.0f}",
    ]
    if "robomimic" in summary:
        lines += robomimic.describe_lines(summary["robomimic"])
    if summary["infos"]:
        lines.append(f"infos        {', '.join(summary['infos'])}")
    shown = {"format", "env_name"} if "robomimic" in summary else {"format"}
    extra = {k: v for k, v in summary["metadata"].items() if k not in shown}
    if extra:
        lines.append("metadata     " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    print("\n".join(lines))
    return 0


def cmd_datasets_convert(args: DatasetsConvertArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import load_dataset, save_dataset

    dataset = load_dataset(args.source)
    path = save_dataset(dataset, args.destination, format=args.format, overwrite=args.force)
    print(f"wrote {path}: {len(dataset):,} transitions, {dataset.num_episodes:,} episodes")
    return 0


def cmd_datasets_convert_dqn_replay(args: DatasetsConvertDqnReplayArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import dqn_replay

    numbers = None if args.checkpoints is None else _parse_numbers(args.checkpoints, "--checkpoints")
    _require_positive({"--max-transitions": args.max_transitions})
    path = dqn_replay.convert(
        args.replay_logs,
        args.destination,
        checkpoint_numbers=numbers,
        max_transitions=args.max_transitions,
        clip_rewards=args.clip_rewards,
        stack_size=args.stack_size,
        overwrite=args.force,
        progress=print,
    )
    return _report_written(path)


def _require_positive(flags: dict[str, int | None]) -> None:
    for flag, value in flags.items():
        if value is not None and value < 1:
            raise OffrlError(f"{flag} must be positive, got {value}")


def _report_written(path: Path) -> int:
    from offrl.data.formats import load_dataset

    dataset = load_dataset(path)
    print(f"wrote {path}: {len(dataset):,} transitions, {dataset.num_episodes:,} episodes")
    return 0


def cmd_datasets_convert_rl_unplugged(args: DatasetsConvertRlUnpluggedArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import rl_unplugged

    if len(args.sources) < 2:
        raise OffrlError("give the shards (or their directory) and then the output directory")
    _require_positive({"--max-transitions": args.max_transitions, "--num-actions": args.num_actions})
    *sources, destination = args.sources
    path = rl_unplugged.convert(
        sources,
        destination,
        stack=args.stack,
        num_actions=args.num_actions,
        max_transitions=args.max_transitions,
        clip_rewards=args.clip_rewards,
        overwrite=args.force,
        progress=print,
    )
    return _report_written(path)


def _parse_numbers(text: str, flag: str) -> list[int]:
    """``0,1,5-7`` as [0, 1, 5, 6, 7]."""
    numbers: list[int] = []
    try:
        for item in text.split(","):
            first, _, last = item.strip().partition("-")
            low, high = int(first), int(last or first)
            if high < low:
                raise OffrlError(f"{flag}: the range {item.strip()!r} runs backwards")
            numbers.extend(n for n in range(low, high + 1) if n not in numbers)  # each once, in the order given
    except ValueError:
        raise OffrlError(f"{flag}: expected numbers and ranges such as 0,1,5-7, got {text!r}") from None
    return numbers


def cmd_datasets_collect(args: DatasetsCollectArgs, argv: Sequence[str]) -> int:
    from offrl.data.collect import collect, controller_policy
    from offrl.data.formats import save_dataset
    from offrl.plugins import import_plugin, run_imports

    if (args.episodes is None) == (args.steps is None):
        raise OffrlError("give exactly one of --episodes or --steps")
    _require_positive({"--episodes": args.episodes, "--steps": args.steps, "--num-envs": args.num_envs})
    out = Path(args.out)
    if args.format is None and out.suffix.lower() not in (".hdf5", ".h5", ".npz"):
        raise OffrlError(f"{out}: cannot tell the output format from the suffix: use .hdf5 or .npz, or --format")
    if out.exists() and not args.force:
        raise OffrlError(f"{out} already exists: refusing to overwrite it (use --force)")
    fmt = args.format or ("npz" if out.suffix.lower() == ".npz" else "d4rl")
    if args.valid_fraction and fmt not in ("robomimic", "offrl-hdf5"):
        raise OffrlError(f"--valid-fraction writes filter keys, which the {fmt} layout does not keep: add --format robomimic (or offrl-hdf5)")
    if Path(args.policy).exists():  # a run's policy: its algorithm may come from the run's --import
        for module in args.imports or run_imports(args.policy):
            import_plugin(module)
    policy = controller_policy(args.policy, args.env, stochastic=args.stochastic, seed=args.seed, num_envs=args.num_envs)
    dataset = collect(
        args.env,
        policy,
        episodes=args.episodes,
        steps=args.steps,
        num_envs=args.num_envs,
        seed=args.seed,
        noise=args.noise,
        epsilon=args.epsilon,
        metadata={"policy": args.policy},
    )
    if args.valid_fraction:
        try:
            valid, train = dataset.split_episodes(args.valid_fraction, seed=args.seed)  # as Dataset.split holds out
        except ValueError as error:
            raise OffrlError(f"--valid-fraction {args.valid_fraction}: {error}") from None
        dataset.metadata["filter_keys"] = {"train": train.tolist(), "valid": valid.tolist()}
    save_dataset(dataset, out, format=fmt, overwrite=args.force)
    returns = dataset.episode_returns()
    print(f"wrote {out}: {len(dataset):,} transitions, {dataset.num_episodes:,} episodes, mean return {returns.mean():.2f}")
    return 0


def cmd_datasets_build(args: DatasetsBuildArgs, argv: Sequence[str]) -> int:
    from offrl.zoo.datasets import build

    path = build(args.name, size=args.size, seed=args.seed, force=args.force)
    print(path)
    return 0


def cmd_datasets_list(args: DatasetsListArgs, argv: Sequence[str]) -> int:
    from offrl.zoo.datasets import available, cache_dir

    rows = available()
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'name':<26} {'environment':<15} {'transitions':>11}  built (sizes in {cache_dir() / 'datasets'})")
    for row in rows:
        built = ", ".join(row["built"]) if row["built"] else ("-" if row["policies"] else "policies not shipped")
        print(f"{row['name']:<26} {row['env']:<15} {row['transitions']:>11,}  {built}")
    return 0


def cmd_algos(args: AlgosArgs, argv: Sequence[str]) -> int:
    from offrl.algos.registry import list_algos

    rows = [
        {"name": cls.name, "actions": cls.action_type, "learns": "online" if cls.online else "offline", "paper": cls.paper}
        for cls in list_algos()
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['actions']:<10}  {row['learns']:<7}  {row['paper']}")
    return 0


def cmd_config_template(args: ConfigTemplateArgs, argv: Sequence[str]) -> int:
    from offrl.config import config_template, template_text, write_template
    from offrl.plugins import import_plugin

    for module in args.imports:
        import_plugin(module)
    if args.out is None:
        print(template_text(config_template(args.algo, train=train_section_template())), end="")
        return 0
    if Path(args.out).exists() and not args.force:
        raise OffrlError(f"{args.out} already exists: refusing to overwrite it (use --force)")
    print(f"wrote {write_template(args.algo, args.out, train=train_section_template(), overwrite=True)}")
    return 0


def cmd_demo(args: DemoArgs, argv: Sequence[str]) -> int:
    from offrl.demo import run_demo

    _require_positive({"--steps": args.steps, "--episodes": args.episodes})
    return run_demo(out=Path(args.out), steps=args.steps, episodes=args.episodes, seed=args.seed)


COMMANDS: dict[str, tuple[type, Callable[..., int]]] = {
    "train": (TrainArgs, cmd_train),
    "eval": (EvalArgs, cmd_eval),
    "search": (SearchArgs, cmd_search),
    "datasets info": (DatasetsInfoArgs, cmd_datasets_info),
    "datasets convert": (DatasetsConvertArgs, cmd_datasets_convert),
    "datasets convert-dqn-replay": (DatasetsConvertDqnReplayArgs, cmd_datasets_convert_dqn_replay),
    "datasets convert-rl-unplugged": (DatasetsConvertRlUnpluggedArgs, cmd_datasets_convert_rl_unplugged),
    "datasets collect": (DatasetsCollectArgs, cmd_datasets_collect),
    "datasets build": (DatasetsBuildArgs, cmd_datasets_build),
    "datasets list": (DatasetsListArgs, cmd_datasets_list),
    "algos": (AlgosArgs, cmd_algos),
    "config template": (ConfigTemplateArgs, cmd_config_template),
    "demo": (DemoArgs, cmd_demo),
}


def usage() -> str:
    lines = ["usage: offrl COMMAND [options]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    for name, (args_class, _) in COMMANDS.items():
        lines.append(f"  {name:<{width}} {args_class.__doc__.strip().splitlines()[0]}")
    lines.append("\nRun `offrl COMMAND --help` for a command's options.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        import offrl

        print(f"offrl {offrl.__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name in {command.split()[0] for command in COMMANDS if " " in command}:  # datasets, config
        subcommands = [c.split()[1] for c in COMMANDS if c.startswith(f"{name} ")]
        if not rest or rest[0] not in subcommands:
            print(f"usage: offrl {name} {{{','.join(subcommands)}}} ...", file=sys.stderr)
            return 2
        name, rest = f"{name} {rest[0]}", rest[1:]
    if name not in COMMANDS:
        print(f"offrl: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    args_class, handler = COMMANDS[name]
    args = tyro.cli(args_class, args=rest, prog=f"offrl {name}", description=args_class.__doc__)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` / `timeout` stop like Ctrl-C: partial outputs removed
    try:
        return handler(args, rest)
    except OffrlError as error:
        print(f"offrl {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"offrl {name}: stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`offrl datasets list | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def _result_text(result) -> str:
    text = f"{result.mean_return:.2f} ± {result.std_return:.2f} over {result.episodes} episodes"
    if result.normalized_score is not None:
        text += f" (normalized score {result.normalized_score:.1f} ± {result.normalized_std:.1f}, {result.reference})"
    if result.success_rate is not None:
        text += f", success rate {100 * result.success_rate:.0f}%"
    return text


def _space_text(space: dict) -> str:
    if space["type"] == "Box":
        return f"Box{tuple(space['shape'])} {space['dtype']} [{space['low']}, {space['high']}]"
    if space["type"] == "Discrete":
        return f"Discrete({space['n']})"
    return "Dict(" + ", ".join(f"{k}: {_space_text(v)}" for k, v in space["spaces"].items()) + ")"


if __name__ == "__main__":
    sys.exit(main())
