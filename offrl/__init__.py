"""offrl: train control policies from logged data.

    import offrl
    dataset = offrl.load_dataset("hopper.hdf5")
    algo = offrl.make_algo("iql", dataset.observation_space, dataset.action_space, expectile=0.7)
    offrl.train_offline(algo, dataset, env="Hopper-v5", steps=100_000, run_dir="runs/iql")
    policy = offrl.load_policy("runs/iql")
"""

__version__ = "0.1.0"

from offrl.algos import Algorithm, list_algos, make_algo, register  # noqa: E402
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
    "list_algos",
    "load_algo",
    "load_dataset",
    "load_policy",
    "make_algo",
    "register",
    "save_dataset",
    "train_offline",
    "train_online",
]
