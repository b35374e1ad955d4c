"""offrl: train control policies from logged data.

    import offrl
    dataset = offrl.load_dataset("hopper.hdf5")
    algo = offrl.make_algo("iql", dataset.observation_space, dataset.action_space, expectile=0.7)
    offrl.train_offline(algo, dataset, env="Hopper-v5", steps=100_000, run_dir="runs/iql")
    policy = offrl.load_policy("runs/iql")

    offrl.write_template("iql", "iql.json")             # every hyperparameter, its default and a comment
    algo_name, overrides, _ = offrl.read_config("iql.json")   # after editing it
    algo = offrl.make_algo(algo_name, dataset.observation_space, dataset.action_space, config=overrides)
"""

__version__ = "0.1.0"

from offrl.algos import Algorithm, list_algos, make_algo, register  # noqa: E402
from offrl.config import config_template, read_config, write_template  # noqa: E402
from offrl.data import Batch, Dataset, ReplayBuffer, load_dataset, save_dataset  # noqa: E402
from offrl.errors import CheckpointError, ConfigError, DatasetError, OffrlError  # noqa: E402
from offrl.policy import Policy, load_policy  # noqa: E402
from offrl.train.checkpoint import load_algo  # noqa: E402
from offrl.train.trainer import TrainResult, train_offline, train_online  # noqa: E402

__all__ = [
    "Algorithm",
    "Batch",
    "CheckpointError",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "OffrlError",
    "Policy",
    "ReplayBuffer",
    "TrainResult",
    "__version__",
    "config_template",
    "list_algos",
    "load_algo",
    "load_dataset",
    "load_policy",
    "make_algo",
    "read_config",
    "register",
    "save_dataset",
    "train_offline",
    "train_online",
    "write_template",
]
