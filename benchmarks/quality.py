"""Learning quality: offrl and d3rlpy trained on the same zoo datasets with the same gradient steps,
batch size, network sizes and hyperparameters (the papers'), both evaluated by offrl's evaluator.

    python benchmarks/quality.py --quick                 # about 30 min on 2 CPU cores (PROTOCOLS below)
    python benchmarks/quality.py --full --device cuda    # 1M steps, 5 seeds, every algorithm, 4 datasets (a GPU)
    python benchmarks/quality.py --quick --algos iql,cql --seeds 0,1,2 --steps 20000,cql=2000 --libraries offrl

Prints a table (dataset x algorithm: normalized score mean ± std over seeds, and wall-clock
seconds, per library) and the IQM over all cells with a 95% stratified-bootstrap confidence
interval per library (rliable: `pip install -e .[bench]`), and appends it with machine, versions
and date to benchmarks/results/quality.md (--out).

Each row has one dict of shared settings (SETTINGS, named as offrl's config fields): offrl gets
it as config overrides, benchmarks/quality_d3rlpy.py translates it into the d3rlpy config and
trains there, in d3rlpy's own virtual environment (--d3rlpy-python; d3rlpy pins gymnasium 1.0):

    python3 -m venv .venv-d3rlpy && .venv-d3rlpy/bin/pip install torch==2.13.0 d3rlpy==2.8.1

The d3rlpy policy comes back as TorchScript and is evaluated here with the same episodes and
environment seeds as offrl's final evaluation. Values taken from the data (observation mean and
std, reward scale, action bounds, Decision Transformer's target return) are computed once, here,
for both. Runs shorter than the papers' schedules shorten two schedules for both libraries: PLAS
pre-trains its VAE for at most half of the steps, Decision Transformer warms up for at most a
tenth. Every finished run is appended to WORK_DIR/runs.jsonl: re-running the same command skips
it, so a killed benchmark resumes.

What d3rlpy 2.8.1 cannot express (the table compares these as they are):
- CQL / Cal-QL: its TD target takes the policy's mean next action (offrl, as the CQL code, samples
  one); its networks use PyTorch's default initialization (offrl: orthogonal critics, small output
  layers, as the reference code).
- IQL: one optimizer for Q and V (value_lr must equal critic_lr), stepped on one joint loss.
- AWAC: weights are a softmax over the batch (times its size), not exp(A / lambda) clipped at 100;
  its policy's log-std is clamped to [-6, 0] (offrl: [-20, 2]).
- BCQ: one sample count for acting and for the TD target: 100 (the paper takes 10 for the target).
- CRR: its Gaussian policy's log-std is clamped to [-20, 2] (offrl: [-5, 2]); its greedy action is
  the critic-weighted policy (4 policy samples, one drawn by softmax of Q), offrl's the policy mean.
- Every algorithm: the last transition of an episode cut by a timeout is dropped (d3rlpy stores no
  next observation for it); offrl trains on it.
- Decision Transformer: evaluated through its TorchScript export (see ContextPolicy).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, markdown_table, record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "quality_d3rlpy.py"
RESULTS = RESULTS_DIR / "quality.md"
TITLE = ("Learning-quality benchmark results\n\nRecorded by `python benchmarks/quality.py`: normalized scores (100 = the "
         "zoo's expert), mean ± std over seeds, and wall-clock seconds per library (training + evaluation, all seeds)")
LIBRARIES = ("offrl", "d3rlpy")

_DEEP = {"hidden_dims": (256, 256, 256)}
_TD3 = {"discount": 0.99, "tau": 0.005, "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2, "num_critics": 2}
_CQL = {
    **_DEEP, "batch_size": 256, "actor_lr": 3e-5, "critic_lr": 3e-4, "alpha_lr": 3e-5, "discount": 0.99, "tau": 0.005,
    "init_alpha": 1.0, "learn_alpha": True, "backup_entropy": False, "num_critics": 2, "cql_weight": 10.0,
    "num_sampled_actions": 10, "importance_sampling": True, "temperature": 1.0, "lagrange": False,
    "target_action_gap": -1.0, "alpha_prime_lr": 3e-4, "max_target_backup": False, "normalize_observations": True,
}
_LATENT = {
    "hidden_dims": (400, 300), "vae_hidden_dims": (750, 750), "batch_size": 100, "discount": 0.99, "tau": 0.005,
    "lmbda": 0.75, "kl_weight": 0.5, "num_critics": 2, "normalize_observations": False,
}
# The papers' settings (MuJoCo locomotion), one dict per row, given to both libraries.
SETTINGS: dict[str, dict[str, Any]] = {
    "bc": {"hidden_dims": (256, 256), "batch_size": 256, "lr": 1e-3, "weight_decay": 0.0, "policy": "deterministic",
           "normalize_observations": True},
    "td3_bc": {**_TD3, "hidden_dims": (256, 256), "batch_size": 256, "actor_lr": 3e-4, "critic_lr": 3e-4, "alpha": 2.5,
               "normalize_observations": True},
    "iql": {"hidden_dims": (256, 256), "batch_size": 256, "actor_lr": 3e-4, "critic_lr": 3e-4, "value_lr": 3e-4,
            "actor_lr_schedule": "cosine", "discount": 0.99, "tau": 0.005, "expectile": 0.7, "temperature": 3.0,
            "max_weight": 100.0, "num_critics": 2, "normalize_observations": True, "reward_normalization": "returns_range",
            "reward_scale": 1000.0},
    "cql": _CQL,
    "cal_ql": {**_CQL, "cql_weight": 5.0, "mc_lower_bound": True},
    "bcq": {**_LATENT, "actor_lr": 1e-3, "critic_lr": 1e-3, "vae_lr": 1e-3, "max_perturbation": 0.05,
            "num_target_actions": 10, "num_eval_actions": 100},
    "awac": {**_DEEP, "batch_size": 256, "actor_lr": 3e-4, "critic_lr": 3e-4, "discount": 0.99, "tau": 0.005,
             "awac_lambda": 1.0, "max_weight": 100.0, "num_critics": 2, "normalize_observations": True},
    "crr": {"hidden_dims": (256, 256), "batch_size": 100, "actor_lr": 3e-4, "critic_lr": 3e-4, "discount": 0.99, "beta": 1.0,
            "advantage_type": "mean", "weight_type": "exp", "max_weight": 20.0, "num_sampled_actions": 4,
            "target_update": "hard", "target_update_interval": 100, "tau": 0.005, "num_critics": 1,
            "normalize_observations": False},
    "rebrac": {**_TD3, **_DEEP, "batch_size": 1024, "actor_lr": 1e-3, "critic_lr": 1e-3, "actor_layer_norm": False,
               "critic_layer_norm": True, "normalize_q": True, "normalize_observations": False},
    "plas": {**_LATENT, "actor_lr": 1e-4, "critic_lr": 1e-3, "vae_lr": 1e-4, "vae_pretrain_steps": 500_000, "max_latent": 2.0},
    "dt": {"context_length": 20, "embed_dim": 128, "num_layers": 3, "num_heads": 1, "dropout": 0.1, "max_timestep": 1000,
           "lr": 1e-4, "weight_decay": 1e-4, "warmup_steps": 10_000, "grad_clip": 0.25, "return_scale": 0.001,
           "batch_size": 64, "normalize_observations": True},
}
# ReBRAC's per-dataset (actor_bc_coef, critic_bc_coef), Tarasov et al. 2023, table of hyperparameters;
# other datasets get hopper-medium's.
REBRAC_COEFS = {"hopper-medium": (0.01, 0.01), "halfcheetah-medium": (0.001, 0.01),
                "walker2d-medium-replay": (0.05, 0.01), "hopper-medium-expert": (0.1, 0.01)}
PROTOCOLS = {
    # quick, from per-step costs measured on one core of the 2-core CPU (ms per gradient step, offrl + d3rlpy):
    # bc 2 + 8, td3_bc 9 + 15, iql 12 + 21, and about 15 s per run for evaluation and d3rlpy's start:
    # 4 x 5,000 x 67 ms + 24 x 15 s = 28 min. CQL (270 + 250 ms a step: 30 sampled actions per state
    # through 3x256 critics) does not fit a meaningful number of steps into the hour; run it with --algos cql.
    "quick": {"algos": "bc,td3_bc,iql", "datasets": "hopper-medium,halfcheetah-medium", "steps": "5000",
              "seeds": "0,1", "eval_episodes": 10, "size": None},
    "full": {"algos": ",".join(SETTINGS), "datasets": "hopper-medium,halfcheetah-medium,walker2d-medium-replay,hopper-medium-expert",
             "steps": "1000000", "seeds": "0,1,2,3,4", "eval_episodes": 10, "size": None},
}


@dataclasses.dataclass(kw_only=True)
class Run:
    """One training run of one library: what both runners need."""

    dataset_name: str
    env_id: str
    dataset: Any  # offrl.Dataset
    algo: str
    settings: dict[str, Any]
    seed: int
    steps: int
    run_dir: Path


def settings_for(algo: str, dataset: str, steps: int) -> dict[str, Any]:
    settings = dict(SETTINGS[algo])
    if algo == "rebrac":
        settings["actor_bc_coef"], settings["critic_bc_coef"] = REBRAC_COEFS.get(dataset, REBRAC_COEFS["hopper-medium"])
    if algo == "plas":  # the VAE pre-trains for at most half of a short run, so that the policy trains at all
        settings["vae_pretrain_steps"] = min(settings["vae_pretrain_steps"], steps // 2)
    if algo == "dt":
        settings["warmup_steps"] = min(settings["warmup_steps"], steps // 10)
    return settings


def data_values(settings: dict[str, Any], dataset) -> dict[str, Any]:
    """What both libraries take from the data, computed once with offrl's functions."""
    from offrl.train.run import reward_scale

    mean, std = dataset.observation_stats(eps=1e-3)
    scale = reward_scale(dataset, settings.get("reward_normalization", "none"), float(settings.get("reward_scale", 1.0)))
    space = dataset.action_space
    return {"obs_mean": mean.tolist(), "obs_std": std.tolist(), "reward_scale": scale, "action_low": space.low.tolist(),
            "action_high": space.high.tolist(), "target_return": float(dataset.episode_returns().max())}


def export_npz(dataset, path: Path) -> Path:
    if not path.exists():
        timeouts = dataset.timeouts.copy()
        timeouts[-1] = not dataset.terminals[-1]  # d3rlpy needs every episode closed
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, observations=dataset.observations, actions=dataset.actions, rewards=dataset.rewards,
                 terminals=dataset.terminals.astype(np.float32), timeouts=timeouts.astype(np.float32))
        tmp.rename(path)
    return path


class ContextPolicy:
    """d3rlpy's StatefulTransformerWrapper, one per environment slot, over the exported Decision Transformer.

    The export takes exactly ``context`` steps, so shorter contexts (an episode's first steps) are
    left-padded with zeros, which the export does not mask (d3rlpy's own wrapper does). It does not
    apply the reward scaler to returns-to-go either: that is done here.
    """

    def __init__(self, module, num_envs: int, *, settings: dict[str, Any], target_return: float, action_dim: int, device: str) -> None:
        self.module, self.num_envs, self.target_return, self.device = module, num_envs, target_return, device
        self.context, self.scale, self.max_timestep = settings["context_length"], settings["return_scale"], settings["max_timestep"]
        self.pad_action = np.zeros(action_dim, np.float32)
        self.start_episode(None)

    def start_episode(self, indices) -> None:
        if indices is None:
            self.slots, self.last_rewards = [None] * self.num_envs, np.zeros(self.num_envs)
        for index in range(self.num_envs) if indices is None else indices:
            k = self.context
            self.slots[index] = {"obs": deque(maxlen=k), "act": deque([self.pad_action], maxlen=k), "rtg": deque(maxlen=k),
                                 "time": deque(maxlen=k), "step": 1, "rest": self.target_return}
            self.last_rewards[index] = 0.0

    def observe(self, rewards) -> None:
        self.last_rewards = np.asarray(rewards, dtype=np.float64).copy()

    def _window(self, values, dtype) -> torch.Tensor:
        array = np.asarray(values, dtype=dtype)
        pad = np.zeros((self.context - len(array), *array.shape[1:]), dtype=dtype)
        return torch.as_tensor(np.concatenate([pad, array]), device=self.device)

    @torch.no_grad()
    def __call__(self, observations: np.ndarray) -> np.ndarray:
        actions = []
        for slot, observation, reward in zip(self.slots, observations, self.last_rewards):
            slot["obs"].append(observation)
            slot["rtg"].append([(slot["rest"] - reward) * self.scale])
            slot["time"].append(slot["step"])
            action = self.module(self._window(slot["obs"], np.float32), self._window(slot["act"], np.float32),
                                 self._window(slot["rtg"], np.float32), self._window(slot["time"], np.int64))
            action = action.reshape(-1).cpu().numpy()
            slot["act"][-1] = action
            slot["act"].append(self.pad_action)
            slot["step"], slot["rest"] = min(slot["step"] + 1, self.max_timestep), slot["rest"] - reward
            actions.append(action)
        return np.stack(actions)


def run_offrl(run: Run, args):
    import offrl

    shutil.rmtree(run.run_dir, ignore_errors=True)
    spaces = (run.dataset.observation_space, run.dataset.action_space)
    agent = offrl.make_algo(run.algo, *spaces, seed=run.seed, device=args.device, **run.settings)
    result = offrl.train_offline(
        agent, run.dataset, env=run.env_id, steps=run.steps, eval_every=0, eval_episodes=args.eval_episodes, seed=run.seed,
        run_dir=run.run_dir, checkpoint_every=run.steps, progress=False, tensorboard=False, precision=args.precision,
    )
    return result.final_eval


def run_d3rlpy(run: Run, args):
    from offrl.train.evaluate import evaluate, evaluation_slots, make_vector_env, torch_policy
    from offrl.train.run import eval_seed

    run.run_dir.mkdir(parents=True, exist_ok=True)
    values = data_values(run.settings, run.dataset)
    data = export_npz(run.dataset, args.work_dir / f"{run.dataset_name}-{args.size or 'default'}.npz")
    job = {"algo": run.algo, "settings": run.settings, **values, "steps": run.steps, "seed": run.seed, "device": args.device,
           "data": str(data), "policy": str(run.run_dir / "policy.pt")}
    (run.run_dir / "job.json").write_text(json.dumps(job))
    done = subprocess.run([args.d3rlpy_python, str(WORKER), str(run.run_dir / "job.json")], capture_output=True, text=True)
    (run.run_dir / "worker.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])
    module = torch.jit.load(job["policy"], map_location=args.device).eval()
    envs = make_vector_env(run.env_id, evaluation_slots(10, args.eval_episodes))  # as offrl's trainer (eval_envs=10)
    if run.algo == "dt":
        policy = ContextPolicy(module, envs.num_envs, settings=run.settings, target_return=values["target_return"],
                               action_dim=int(np.prod(run.dataset.action_space.shape)), device=args.device)
    else:
        policy = torch_policy(module, torch.device(args.device))
    torch.manual_seed(run.seed)  # BCQ's and CRR's greedy actions sample (CRR's is the paper's critic-weighted policy)
    try:
        return evaluate(policy, envs, env_id=run.env_id, episodes=args.eval_episodes, seed=eval_seed(run.seed, run.steps),
                        metadata=run.dataset.metadata)
    finally:
        envs.close()


def iqm_with_ci(scores: dict[str, np.ndarray]) -> tuple[dict[str, tuple[float, float, float]], str]:
    """IQM over (seeds x cells) per library with a 95% stratified-bootstrap CI (seeds resampled within each cell)."""
    try:
        from rliable import library as rly
        from rliable import metrics

        with warnings.catch_warnings():  # arch's notice that RandomState is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            points, intervals = rly.get_interval_estimates(
                scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=2000, random_state=np.random.RandomState(0)
            )
        return {k: (float(points[k][0]), float(intervals[k][0, 0]), float(intervals[k][1, 0])) for k in scores}, "rliable"
    except ImportError:
        rng, out = np.random.default_rng(0), {}
        for name, matrix in scores.items():
            runs, cells = matrix.shape
            samples = [iqm(matrix[rng.integers(0, runs, (runs, cells)), np.arange(cells)]) for _ in range(2000)]
            out[name] = (iqm(matrix), *map(float, np.percentile(samples, [2.5, 97.5])))
        return out, "numpy fallback, rliable not installed: percentile stratified bootstrap, 2,000 resamples"


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half (scipy's trim_mean(x, 0.25), as rliable)."""
    values = np.sort(scores, axis=None)
    cut = int(0.25 * values.size)
    return float(values[cut : values.size - cut].mean())


def summarize(records: list[dict], args) -> str:
    records = [r for r in records if r["dataset"] in args.datasets and r["algo"] in args.algos and r["seed"] in args.seeds]
    rows, aggregate, notes = [], {}, []
    for dataset in args.datasets:
        for algo in args.algos:
            scores_text, seconds_text = [], []
            for library in LIBRARIES:
                key = (library, dataset, algo, args.steps[algo])
                runs = {r["seed"]: r for r in records if (r["library"], r["dataset"], r["algo"], r["steps"]) == key}
                failed = [r for r in runs.values() if r.get("error")]
                scores = [run["score"] for run in runs.values() if not run.get("error")]
                seconds_text.append(f"{sum(run['seconds'] for run in runs.values()):.0f}" if runs else "")
                if library not in args.libraries or library in args.skipped:
                    scores_text.append(args.skipped.get(library, "not asked"))
                elif failed:
                    notes.append(f"{library} {algo} on {dataset}: {failed[0]['error']}")
                    scores_text.append(f"failed [{len(notes)}]")
                elif scores:
                    complete = len(scores) == len(args.seeds)
                    scores_text.append(f"{np.mean(scores):.1f} ± {np.std(scores):.1f}" + ("" if complete else f" ({len(scores)} seeds)"))
                    if complete:
                        aggregate.setdefault(library, {})[(dataset, algo)] = scores
                else:
                    scores_text.append("not run")
            rows.append([dataset, algo, f"{args.steps[algo]:,}", *scores_text, *seconds_text])
    header = ["dataset", "algorithm", "steps", *(f"{lib} score" for lib in LIBRARIES), *(f"{lib} s" for lib in LIBRARIES)]
    text = markdown_table(header, rows) + "\n"
    common = set.intersection(*(set(cells) for cells in aggregate.values())) if aggregate else set()
    if common:
        order = sorted(common)
        matrices = {lib: np.array([cells[key] for key in order]).T for lib, cells in aggregate.items()}
        estimates, method = iqm_with_ci(matrices)
        text += (f"\nIQM of normalized scores over the {len(order)} cells every library completed "
                 f"({len(args.seeds)} seeds each), 95% CI ({method}):\n\n")
        text += "".join(f"- {lib}: {p:.1f} [{lo:.1f}, {hi:.1f}]\n" for lib, (p, lo, hi) in estimates.items())
    totals = {lib: sum(r["seconds"] for r in records if r["library"] == lib) for lib in LIBRARIES}
    text += (f"\nTotal wall-clock: {sum(totals.values()) / 3600:.2f} h ("
             + ", ".join(f"{lib} {seconds:.0f} s" for lib, seconds in totals.items()) + ").\n")
    text += "".join(f"\n[{i}] {note}" for i, note in enumerate(notes, 1)) + ("\n" if notes else "")
    return text


def d3rlpy_versions(args) -> str:
    if "d3rlpy" not in args.libraries or "d3rlpy" in args.skipped:
        return "d3rlpy: not run"
    probe = ("import d3rlpy, gymnasium, torch; "
             "print(f'd3rlpy {d3rlpy.__version__} (torch {torch.__version__}, gymnasium {gymnasium.__version__})')")
    return subprocess.run([args.d3rlpy_python, "-c", probe], capture_output=True, text=True).stdout.strip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="the one-hour CPU protocol (the default)")
    group.add_argument("--full", action="store_true", help="1M steps, 5 seeds, every algorithm and dataset (meant for a GPU)")
    parser.add_argument("--algos", help="comma-separated offrl names")
    parser.add_argument("--datasets", help="comma-separated zoo names (env from the name)")
    parser.add_argument("--steps", help="gradient steps per run, optionally per algorithm: 5000,cql=1000")
    parser.add_argument("--seeds", help="comma-separated seeds")
    parser.add_argument("--eval-episodes", type=int)
    parser.add_argument("--size", type=int, help="transitions per dataset part (zoo --size); default: the zoo's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="offrl's gradient steps in float32 or mixed bfloat16 (d3rlpy trains in float32)")
    parser.add_argument("--libraries", default="offrl,d3rlpy")
    parser.add_argument("--d3rlpy-python", default=str(ROOT / ".venv-d3rlpy" / "bin" / "python"))
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file the table is appended to")
    parser.add_argument("--work-dir", type=Path, help="per-run results and artifacts (default: runs/quality-<settings hash>)")
    args = parser.parse_args()
    protocol = "full" if args.full else "quick"
    for key, value in PROTOCOLS[protocol].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.protocol = protocol
    args.algos, args.datasets = args.algos.split(","), args.datasets.split(",")
    steps_text = str(args.steps)
    default, *named = steps_text.split(",")
    args.steps = {algo: int(default) for algo in args.algos} | {k: int(v) for k, v in (item.split("=") for item in named)}
    args.seeds, args.libraries = [int(s) for s in str(args.seeds).split(",")], args.libraries.split(",")
    unknown = [a for a in args.algos if a not in SETTINGS] + [lib for lib in args.libraries if lib not in LIBRARIES]
    if unknown:
        parser.error(f"unknown algorithm or library: {', '.join(unknown)}")
    args.skipped = {}
    if "d3rlpy" in args.libraries and not Path(args.d3rlpy_python).exists():
        args.skipped["d3rlpy"] = f"not run (no {args.d3rlpy_python})"
    key = json.dumps([steps_text, args.size, args.eval_episodes, args.device] + ([args.precision] if args.precision != "fp32" else []))
    args.work_dir = args.work_dir or ROOT / "runs" / f"quality-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return args


def main() -> None:
    args = parse_args()
    from offrl.zoo.datasets import load, parse_name

    args.work_dir.mkdir(parents=True, exist_ok=True)
    log = args.work_dir / "runs.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["library"], r["dataset"], r["algo"], r["steps"], r["seed"]) for r in records if not r.get("error")}
    records = [r for r in records if not r.get("error")]  # failed runs are tried again
    runners = {"offrl": run_offrl, "d3rlpy": run_d3rlpy}
    for dataset_name in args.datasets:
        dataset, env_id = load(dataset_name, size=args.size), parse_name(dataset_name).env_id
        for algo in args.algos:
            steps = args.steps[algo]
            settings = settings_for(algo, dataset_name, steps)
            for seed in args.seeds:
                for library in (lib for lib in args.libraries if lib not in args.skipped):
                    if (library, dataset_name, algo, steps, seed) in done:
                        continue
                    entry = {"library": library, "dataset": dataset_name, "algo": algo, "seed": seed, "steps": steps}
                    run = Run(dataset_name=dataset_name, env_id=env_id, dataset=dataset, algo=algo, settings=settings,
                              seed=seed, steps=steps, run_dir=args.work_dir / library / f"{dataset_name}-{algo}-{steps}-{seed}")
                    print(f"{library} {algo} on {dataset_name}, seed {seed}, {steps:,} steps ...", flush=True)
                    start = time.perf_counter()
                    try:
                        result = runners[library](run, args)
                        entry.update(score=result.normalized_score, mean_return=result.mean_return)
                    except Exception as error:  # recorded as the cell's note; the benchmark goes on
                        entry["error"] = f"{type(error).__name__}: {error}"
                    entry["seconds"] = time.perf_counter() - start
                    print(json.dumps(entry), flush=True)
                    records.append(entry)
                    with open(log, "a") as handle:
                        handle.write(json.dumps(entry) + "\n")

    command = " ".join(sys.argv[1:])
    protocol = (f"{args.protocol} protocol ({command}): seeds {','.join(map(str, args.seeds))}, "
                f"{args.eval_episodes} evaluation episodes, dataset size {args.size or 'zoo default'}, device {args.device}, "
                f"offrl precision {args.precision}")
    record(args.out, TITLE, protocol, f"{d3rlpy_versions(args)}\n\n{summarize(records, args)}")


if __name__ == "__main__":
    main()
