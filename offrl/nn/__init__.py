"""Network building blocks shared by every algorithm."""

from offrl.nn.critics import QEnsemble, ValueNetwork
from offrl.nn.encoders import FlatEncoder
from offrl.nn.heads import ActionScaler, DeterministicPolicy, GaussianPolicy, TanhGaussianPolicy, gaussian_log_prob
from offrl.nn.layers import ACTIVATIONS, MLP, EnsembleLinear, EnsembleMLP

__all__ = [
    "ACTIVATIONS",
    "ActionScaler",
    "DeterministicPolicy",
    "EnsembleLinear",
    "EnsembleMLP",
    "FlatEncoder",
    "GaussianPolicy",
    "MLP",
    "QEnsemble",
    "TanhGaussianPolicy",
    "ValueNetwork",
    "gaussian_log_prob",
]
