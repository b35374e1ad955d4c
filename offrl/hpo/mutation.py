"""Mutations of a population member, as AgileRL's ``Mutations``, that keep what the member has learned.

Each member (the elite excepted) gets one mutation, drawn with the given
probabilities (normalized to sum 1):

- ``none``: unchanged;
- ``rl_hp``: one hyperparameter of the search space moved (grow or shrink factor, another choice);
- ``parameters``: Gaussian noise on the actor's weights, relative to each weight
  (``w + N(0, 1) * mutation_sd * |w|``, AgileRL's default noise; its rarer
  super-mutations and resets are left out);
- ``activation``: the hidden-layer ``activation`` replaced by another of ``activation_choices``;
- ``architecture``: ``hidden_dims`` grows or shrinks, with probability
  ``new_layer_prob`` by a layer (added or removed at the end) else by 16, 32
  or 64 nodes of one hidden layer, within ``min_layers..max_layers`` and
  ``min_nodes..max_nodes``.

A mutation is a plan (:class:`Mutation`: the new config and a seed) drawn on
the search's side and applied where the member lives, so the in-process and
Ray backends apply the same mutations. Applying a plan that changes the
config builds the algorithm anew and carries over weights, target networks,
normalization and optimizer state (:func:`transfer_state`). Growing is
function-preserving (Net2Net): new units start with zero outgoing weights, so
outputs are unchanged right after widening; a new layer starts as the
identity, which is exact after ReLU (the default activation) and
approximate after other activations or LayerNorm. Removing nodes or layers
keeps the remaining weights and is not function-preserving.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch
from torch import nn

from offrl.algos.base import Algorithm
from offrl.algos.registry import make_algo
from offrl.config import config_to_dict, make_config
from offrl.errors import ConfigError
from offrl.hpo.space import HyperparameterSpace
from offrl.nn.layers import MLP, EnsembleLinear, EnsembleMLP

KINDS = ("none", "architecture", "parameters", "activation", "rl_hp")
NODE_STEPS = (16, 32, 64)


@dataclasses.dataclass
class Mutation:
    """What happens to one member: ``kind``, a readable ``detail``, the config afterwards, and the seed of its noise."""

    kind: str
    detail: str
    config: dict[str, Any]
    seed: int
    noise_sd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Mutations:
    """Mutation probabilities and ranges (AgileRL's names and defaults of its offline examples)."""

    no_mutation: float = 0.4
    architecture: float = 0.2
    new_layer_prob: float = 0.2  # of an architecture mutation: change the number of layers (else of nodes)
    parameters: float = 0.2
    activation: float = 0.0  # AgileRL's offline examples leave activations alone
    rl_hp: float = 0.2
    mutation_sd: float = 0.1  # relative std of parameter noise
    activation_choices: tuple[str, ...] = ("relu", "elu", "gelu")
    min_layers: int = 1
    max_layers: int = 4
    min_nodes: int = 16
    max_nodes: int = 1024

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError("mutation probabilities must be >= 0 and not all 0")
        if not 0 <= self.new_layer_prob <= 1:
            raise ConfigError(f"new_layer_prob must be in [0, 1], not {self.new_layer_prob}")
        if self.mutation_sd < 0:
            raise ConfigError(f"mutation_sd must be >= 0, not {self.mutation_sd}")
        if not 1 <= self.min_layers <= self.max_layers or not 1 <= self.min_nodes <= self.max_nodes:
            raise ConfigError("mutation bounds need 1 <= min_layers <= max_layers and 1 <= min_nodes <= max_nodes")

    def weights(self) -> list[float]:
        return [self.no_mutation, self.architecture, self.parameters, self.activation, self.rl_hp]

    def draw(self, algo_name: str, config: Any, space: HyperparameterSpace, rng: random.Random) -> Mutation:
        """One member's mutation; a kind that does not apply to this config (no space, no ``hidden_dims``,
        no ``activation``) becomes ``none`` with the reason in its detail."""
        kind = rng.choices(KINDS, weights=self.weights())[0]
        seed = rng.randrange(2**31)
        values = config_to_dict(config)
        if kind == "none":
            return Mutation("none", "", values, seed)
        if kind == "parameters":
            return Mutation("parameters", f"noise sd {self.mutation_sd:g} x |w|", values, seed, self.mutation_sd)
        if kind == "rl_hp":
            if not len(space):
                return Mutation("none", "rl_hp: empty search space", values, seed)
            hyper = rng.choice(list(space))
            old = space.values(config)[hyper.name]
            new = hyper.mutate(old, rng)
            changed = space.apply(config, {hyper.name: new})
            return Mutation("rl_hp", f"{hyper.name} {_text(old)} -> {_text(new)}", config_to_dict(changed), seed)
        if kind == "activation":
            current = values.get("activation")
            others = [a for a in self.activation_choices if a != current]
            if current is None or not others:
                return Mutation("none", f"activation: {algo_name} has no activation to change", values, seed)
            new = rng.choice(others)
            return Mutation("activation", f"activation {current} -> {new}", {**values, "activation": new}, seed)
        hidden = values.get("hidden_dims")
        if not hidden:
            return Mutation("none", f"architecture: {algo_name} has no hidden_dims to change", values, seed)
        hidden = list(hidden)
        if rng.random() < self.new_layer_prob:
            add = rng.random() < 0.5
            if add and len(hidden) >= self.max_layers or not add and len(hidden) <= self.min_layers:
                add = not add
            if add and len(hidden) < self.max_layers:
                hidden.append(hidden[-1])
                detail = "add layer"
            elif not add and len(hidden) > self.min_layers:
                hidden.pop()
                detail = "remove layer"
            else:
                return Mutation("none", "architecture: layer bounds reached", values, seed)
        else:
            layer = rng.randrange(len(hidden))
            nodes = rng.choice(NODE_STEPS)
            add = rng.random() < 0.5
            grown, shrunk = min(hidden[layer] + nodes, self.max_nodes), max(hidden[layer] - nodes, self.min_nodes)
            if (add and grown == hidden[layer]) or (not add and shrunk == hidden[layer]):
                add = not add
            new = grown if add else shrunk
            if new == hidden[layer]:
                return Mutation("none", "architecture: node bounds reached", values, seed)
            detail = f"{'add' if add else 'remove'} {abs(new - hidden[layer])} nodes in layer {layer}"
            hidden[layer] = new
        detail += f" -> hidden_dims {tuple(hidden)}"
        return Mutation("architecture", detail, {**values, "hidden_dims": hidden}, seed)


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def apply_mutation(algo: Algorithm, mutation: Mutation) -> Algorithm:
    """The member after ``mutation``: the same object for ``none``/``parameters``, a rebuilt one otherwise."""
    if mutation.kind == "parameters":
        add_parameter_noise(algo, sd=mutation.noise_sd, seed=mutation.seed)
        return algo
    config = make_config(type(algo.config), mutation.config, source=f"{mutation.kind} mutation")
    if config == algo.config:
        return algo
    return rebuild(algo, config, seed=mutation.seed)


@torch.no_grad()
def add_parameter_noise(algo: Algorithm, *, sd: float, seed: int) -> None:
    """``w += N(0, 1) * sd * |w|`` on every weight and bias of the actor (every trainable parameter without one)."""
    module = getattr(algo, "actor", None)
    params = list(module.parameters()) if isinstance(module, nn.Module) else [
        p for name, p in algo.named_parameters() if p.requires_grad and "target" not in name
    ]
    generator = torch.Generator(device=params[0].device).manual_seed(seed)
    for param in params:
        noise = torch.randn(param.shape, generator=generator, device=param.device, dtype=param.dtype)
        param.add_(noise * sd * param.abs())


def rebuild(algo: Algorithm, config: Any, *, seed: int) -> Algorithm:
    """A new ``algo.name`` with ``config``, carrying over ``algo``'s state (see :func:`transfer_state`)."""
    new = make_algo(algo.name, algo.observation_space, algo.action_space, config=config, device=algo.device, seed=seed)
    transfer_state(algo, new)
    new.train(algo.training)
    return new


# -- carrying weights and optimizer state into a changed architecture -------------------------------------


@dataclasses.dataclass(frozen=True)
class _Placement:
    source: str | None  # the old tensor's name; None: the new tensor is built (identity)
    mode: str  # "copy": the overlapping block; "linear": also zero weights from new inputs; "identity"; "zero"; "keep"
    input_dim: int = 1  # a linear weight's input axis: 1 for nn.Linear [out, in] and EnsembleLinear [E, in, out]


def transfer_state(old: Algorithm, new: Algorithm) -> None:
    """Copy ``old``'s weights, buffers and Adam moments into ``new`` (same algorithm, possibly other widths,
    depth or activation), function-preserving where the module docstring says."""
    placements = _placements(old, new)
    old_state = old.state_dict()
    with torch.no_grad():
        for name, tensor in new.state_dict().items():
            placement = placements.get(name, _Placement(name, "copy"))
            if placement.mode == "keep" or (placement.source is not None and placement.source not in old_state):
                continue  # a tensor the old member did not have keeps its fresh initialization
            _place(tensor, None if placement.source is None else old_state[placement.source], placement, fresh=True)
    new.num_updates, new.total_updates = old.num_updates, old.total_updates
    _transfer_optimizers(old, new, placements)


def _place(target: torch.Tensor, source: torch.Tensor | None, placement: _Placement, *, fresh: bool) -> None:
    """Write ``source`` into ``target`` in place. ``fresh``: ``target`` is a newly initialized weight
    (else an optimizer moment, zero where there is no source)."""
    if placement.mode in ("identity", "zero"):
        target.zero_()
        if placement.mode == "identity" and fresh:
            eye = torch.eye(target.shape[-1], dtype=target.dtype, device=target.device)
            target.copy_(eye.expand_as(target))
        return
    if placement.mode == "linear" and fresh and target.dim() >= 2:
        axis = placement.input_dim
        if target.shape[axis] > source.shape[axis]:  # new inputs: zero weights, so old units see no change
            target.narrow(axis, source.shape[axis], target.shape[axis] - source.shape[axis]).zero_()
    if not fresh and target.shape != source.shape:
        target.zero_()
    if target.dim() != source.dim():
        return
    block = tuple(slice(0, min(a, b)) for a, b in zip(target.shape, source.shape))
    target[block] = source[block].to(target.dtype)


def _placements(old: Algorithm, new: Algorithm) -> dict[str, _Placement]:
    """Where each of ``new``'s linear and LayerNorm tensors comes from. MLPs are aligned layer by layer: a
    layer added at the end of the hidden stack is the identity; a removed one is dropped. Other linear
    layers (heads reading an MLP's features) keep their old block with zero weights from new inputs."""
    placements: dict[str, _Placement] = {}
    old_modules = dict(old.named_modules())
    for prefix, module in new.named_modules():
        previous = old_modules.get(prefix)
        if not isinstance(module, MLP | EnsembleMLP) or type(previous) is not type(module):
            continue
        new_layers, old_layers = _linear_names(module, prefix), _linear_names(previous, prefix)
        if len(new_layers) == len(old_layers) + 1:  # deepened: the identity before the output layer
            sources: list[str | None] = [*old_layers[:-1], None, old_layers[-1]]
        elif len(new_layers) == len(old_layers) - 1:  # a hidden layer removed at the end
            sources = [*old_layers[: len(new_layers) - 1], old_layers[-1]]
        else:
            sources = [*old_layers[: len(new_layers)], *[None] * (len(new_layers) - len(old_layers))]
        for target, source in zip(new_layers, sources):
            for leaf in ("weight", "bias"):
                if source is not None:
                    placements[f"{target}.{leaf}"] = _Placement(f"{source}.{leaf}", "linear")
                else:  # the new layer: identity weight, zero bias
                    placements[f"{target}.{leaf}"] = _Placement(None, "identity" if leaf == "weight" else "zero")
        old_norms = dict(zip(old_layers, _norm_names(previous, prefix)))  # the norm after each hidden layer
        for target, source in zip(_norm_names(module, prefix), sources):
            origin = old_norms.get(source)
            for leaf in ("weight", "bias"):
                placements[f"{target}.{leaf}"] = _Placement(None, "keep") if origin is None else _Placement(f"{origin}.{leaf}", "copy")
    for prefix, module in new.named_modules():
        if isinstance(module, nn.Linear | EnsembleLinear):
            for leaf in ("weight", "bias"):
                placements.setdefault(f"{prefix}.{leaf}", _Placement(f"{prefix}.{leaf}", "linear"))
    return placements


def _linear_names(mlp: nn.Module, prefix: str) -> list[str]:
    if isinstance(mlp, EnsembleMLP):
        return [f"{prefix}.layers.{i}" for i in range(len(mlp.layers))]
    return [f"{prefix}.{i}" for i, m in enumerate(mlp) if isinstance(m, nn.Linear)]


def _norm_names(mlp: nn.Module, prefix: str) -> list[str]:
    if isinstance(mlp, EnsembleMLP):
        return [] if mlp.norms is None else [f"{prefix}.norms.{i}" for i in range(len(mlp.norms))]
    return [f"{prefix}.{i}" for i, m in enumerate(mlp) if isinstance(m, nn.LayerNorm)]


def _transfer_optimizers(old: Algorithm, new: Algorithm, placements: dict[str, _Placement]) -> None:
    """Adam's moments follow their parameters (zero for new entries); the step count carries over."""
    old_names = {id(p): name for name, p in old.named_parameters()}
    new_params = dict(new.named_parameters())
    old_params = dict(old.named_parameters())
    for key, optimizer in new.optimizers.items():
        previous = old.optimizers.get(key)
        if previous is None:
            continue
        old_state = {old_names[id(p)]: previous.state[p] for p in previous.param_groups[0]["params"] if p in previous.state}
        for param in optimizer.param_groups[0]["params"]:
            name = next(n for n, p in new_params.items() if p is param)
            placement = placements.get(name, _Placement(name, "copy"))
            if placement.source is None or placement.source not in old_state:
                continue
            source_state = old_state[placement.source]
            state: dict[str, Any] = {}
            for field, value in source_state.items():
                if torch.is_tensor(value) and value.shape == old_params[placement.source].shape and value.dim() > 0:
                    moment = torch.zeros_like(param)
                    _place(moment, value, placement, fresh=False)
                    state[field] = moment
                else:
                    state[field] = value.clone() if torch.is_tensor(value) else value
            optimizer.state[param] = state
