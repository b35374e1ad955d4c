"""The ``offrl`` command: train, eval, datasets, algos, demo.

Every subcommand's options are a dataclass read by tyro. Errors a user can
fix (``OffrlError``) are printed as one line, never as a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import tyro

from offrl.errors import OffrlError

Positional = tyro.conf.Positional


@dataclasses.dataclass
class TrainArgs:
    """Train an algorithm offline on a dataset, or continue a run with --resume."""

    algo: str | None = None
    """Registered algorithm (see `offrl algos`)."""
    dataset: str | None = None
    """Dataset: D4RL or offrl HDF5, npz, or a Minari dataset (directory or local id); the format is detected."""
    env: str | None = None
    """Gymnasium environment id to evaluate the policy on; without it there is no evaluation."""
    steps: int = 1_000_000
    """Total gradient steps (with --resume: the new total)."""
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
    config: str | None = None
    """YAML or JSON file of algorithm hyperparameters (may name the algorithm under 'algo')."""
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


@dataclasses.dataclass
class EvalArgs:
    """Evaluate a run's policy in an environment."""

    run_dir: Positional[str]
    """Run directory (its latest checkpoint) or a checkpoint file."""
    env: str | None = None
    """Gymnasium environment id (default: the one the run evaluated on)."""
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


@dataclasses.dataclass
class DatasetsInfoArgs:
    """Describe a dataset: size, spaces, episodes and returns."""

    path: Positional[str]
    """Dataset file or directory."""
    json: bool = False
    """Print one JSON object instead of text."""


@dataclasses.dataclass
class DatasetsConvertArgs:
    """Convert a dataset from any readable format to offrl HDF5 (.hdf5/.h5) or npz (.npz)."""

    source: Positional[str]
    """Input dataset."""
    destination: Positional[str]
    """Output file; its suffix picks the format."""
    force: bool = False
    """Overwrite the output file if it exists."""


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
    from offrl.algos.registry import make_algo
    from offrl.config import parse_assignments, read_config_file
    from offrl.data.formats import load_dataset
    from offrl.train.offline import train_offline
    from offrl.train.run import read_run_config, resolve_device

    given = {a.split("=", 1)[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
    settings = {
        name: getattr(args, name)
        for name in ("steps", "eval_every", "eval_episodes", "eval_envs", "log_every", "checkpoint_every", "keep_checkpoints")
    }
    if args.resume:
        conflicting = given & {"algo", "config", "set", "seed", "run_dir"}
        if conflicting:
            raise OffrlError(f"--resume continues a run as it was configured: drop {', '.join('--' + c.replace('_', '-') for c in sorted(conflicting))}")
        saved = read_run_config(args.resume)
        if saved.get("mode") != "offline":
            raise OffrlError(f"{args.resume}: was trained in {saved.get('mode')!r} mode, which this command does not resume")
        for name in settings:
            if name not in given and name in saved["train"]:
                settings[name] = saved["train"][name]
        dataset_ref = args.dataset or saved.get("cli", {}).get("dataset") or saved["dataset"]["source"]
        env = args.env if "env" in given else saved.get("env")
        device = resolve_device(args.device if "device" in given else "auto")
        dataset = load_dataset(dataset_ref)
        algo = make_algo(saved["algo"], dataset.observation_space, dataset.action_space, config=saved["algo_config"], device=device)
        run_dir, seed, resume = Path(args.resume), int(saved["train"]["seed"]), True
    else:
        overrides: dict = {}
        algo_name = args.algo
        if args.config:
            overrides = read_config_file(args.config)
            named = overrides.pop("algo", None)
            if algo_name and named and named != algo_name:
                raise OffrlError(f"{args.config} is a config for {named!r}, but --algo is {algo_name!r}")
            algo_name = algo_name or named
        overrides.update(parse_assignments(args.set))
        if not algo_name or not args.dataset:
            raise OffrlError("offrl train needs --algo and --dataset (or --resume RUN_DIR); see offrl train --help")
        dataset = load_dataset(args.dataset)
        device = resolve_device(args.device)
        algo = make_algo(algo_name, dataset.observation_space, dataset.action_space, config=overrides, device=device, seed=args.seed)
        env, seed, resume = args.env, args.seed, False
        run_dir = Path(args.run_dir) if args.run_dir else None
        dataset_ref = str(Path(args.dataset).resolve()) if Path(args.dataset).exists() else args.dataset

    result = train_offline(
        algo,
        dataset,
        env=env,
        run_dir=run_dir,
        seed=seed,
        resume=resume,
        progress=args.progress,
        run_info={"cli": {"dataset": dataset_ref}},
        **settings,
    )
    print(f"run directory: {result.run_dir}")
    print(f"steps: {result.step}")
    print(f"dataset behaviour return: {result.behaviour_return:.2f}")
    if result.final_eval is not None:
        print(f"policy return: {_result_text(result.final_eval)}")
    if result.learning_curve is not None:
        print(f"learning curve: {result.learning_curve}")
    return 130 if result.interrupted else 0


def cmd_eval(args: EvalArgs, argv: Sequence[str]) -> int:
    from offrl.policy import Policy
    from offrl.train.checkpoint import load_algo, read_checkpoint
    from offrl.train.evaluate import check_env_compatible, evaluate, make_vector_env
    from offrl.train.run import CONFIG, read_run_config, resolve_device

    run_path = Path(args.run_dir)
    saved = read_run_config(run_path) if (run_path / CONFIG).is_file() else {}
    env_id = args.env or saved.get("env")
    if not env_id:
        raise OffrlError(f"{args.run_dir}: the run has no evaluation environment recorded; pass --env")
    meta, _ = read_checkpoint(run_path)
    policy = Policy(load_algo(run_path, device=resolve_device(args.device), optimizers=False))
    envs = make_vector_env(env_id, max(1, min(args.envs, args.episodes)))
    check_env_compatible(envs, policy.observation_space, policy.action_space, env_id, f"the policy in {args.run_dir}")
    result = evaluate(policy, envs, env_id=env_id, episodes=args.episodes, seed=args.seed)
    envs.close()
    if args.json:
        print(json.dumps({**result.to_json(), "algo": meta["algo"], "step": meta["step"], "run": str(run_path)}))
    else:
        print(f"{meta['algo']} at step {meta['step']} on {env_id}: {_result_text(result)}")
    return 0


def cmd_datasets_info(args: DatasetsInfoArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import load_dataset

    summary = load_dataset(args.path).summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    r, length = summary["return"], summary["length"]
    lines = [
        f"dataset      {summary['source']}",
        f"format       {summary['metadata'].get('format')}",
        f"transitions  {summary['transitions']:,}  ({summary['memory_mb']} MB in memory)",
        f"episodes     {summary['episodes']:,}  (terminals {summary['terminals']:,}, timeouts {summary['timeouts']:,})",
        f"observations {_space_text(summary['observation_space'])}",
        f"actions      {_space_text(summary['action_space'])}",
        f"return       mean {r['mean']:.2f}  std {r['std']:.2f}  min {r['min']:.2f}  max {r['max']:.2f}",
        f"length       mean {length['mean']:.1f}  min {length['min']:.0f}  max {length['max']:.0f}",
    ]
    if summary["infos"]:
        lines.append(f"infos        {', '.join(summary['infos'])}")
    extra = {k: v for k, v in summary["metadata"].items() if k != "format"}
    if extra:
        lines.append("metadata     " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    print("\n".join(lines))
    return 0


def cmd_datasets_convert(args: DatasetsConvertArgs, argv: Sequence[str]) -> int:
    from offrl.data.formats import load_dataset, save_dataset

    dataset = load_dataset(args.source)
    path = save_dataset(dataset, args.destination, overwrite=args.force)
    print(f"wrote {path}: {len(dataset):,} transitions, {dataset.num_episodes:,} episodes")
    return 0


def cmd_algos(args: AlgosArgs, argv: Sequence[str]) -> int:
    from offrl.algos.registry import list_algos

    rows = [{"name": cls.name, "actions": cls.action_type, "paper": cls.paper} for cls in list_algos()]
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['actions']:<10}  {row['paper']}")
    return 0


def cmd_demo(args: DemoArgs, argv: Sequence[str]) -> int:
    from offrl.demo import run_demo

    return run_demo(out=Path(args.out), steps=args.steps, episodes=args.episodes, seed=args.seed)


COMMANDS: dict[str, tuple[type, Callable[..., int]]] = {
    "train": (TrainArgs, cmd_train),
    "eval": (EvalArgs, cmd_eval),
    "datasets info": (DatasetsInfoArgs, cmd_datasets_info),
    "datasets convert": (DatasetsConvertArgs, cmd_datasets_convert),
    "algos": (AlgosArgs, cmd_algos),
    "demo": (DemoArgs, cmd_demo),
}


def usage() -> str:
    lines = ["usage: offrl COMMAND [options]", "", "commands:"]
    for name, (args_class, _) in COMMANDS.items():
        lines.append(f"  {name:<18} {args_class.__doc__.strip().splitlines()[0]}")
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
    if name == "datasets":
        if not rest or rest[0] not in ("info", "convert"):
            print("usage: offrl datasets {info,convert} ...", file=sys.stderr)
            return 2
        name, rest = f"datasets {rest[0]}", rest[1:]
    if name not in COMMANDS:
        print(f"offrl: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    args_class, handler = COMMANDS[name]
    args = tyro.cli(args_class, args=rest, prog=f"offrl {name}", description=args_class.__doc__)
    try:
        return handler(args, rest)
    except OffrlError as error:
        print(f"offrl {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"offrl {name}: stopped", file=sys.stderr)
        return 130


def _result_text(result) -> str:
    text = f"{result.mean_return:.2f} ± {result.std_return:.2f} over {result.episodes} episodes"
    if result.normalized_score is not None:
        text += f" (normalized score {result.normalized_score:.1f} ± {result.normalized_std:.1f}, {result.reference})"
    return text


def _space_text(space: dict) -> str:
    if space["type"] == "Box":
        return f"Box{tuple(space['shape'])} {space['dtype']} [{space['low']}, {space['high']}]"
    if space["type"] == "Discrete":
        return f"Discrete({space['n']})"
    return "Dict(" + ", ".join(f"{k}: {_space_text(v)}" for k, v in space["spaces"].items()) + ")"


if __name__ == "__main__":
    sys.exit(main())
