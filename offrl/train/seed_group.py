"""Several seeds of one configuration trained as one batched model.

Each seed is an ordinary algorithm trained by an ordinary ``train()`` call, in its
own thread, with its own run directory, sampler, metrics, evaluations and
checkpoints. Their gradient steps meet here: when every seed of the group has
handed in its batch, one thread runs all of them as a single update of a
stacked model (every parameter, buffer and optimizer state with a leading seed
axis) under ``torch.func.vmap``, and each seed gets its own metrics back.

- Inside the vmapped update, ``common.step`` reads the per-seed losses as one
  ``[S]`` tensor, back-propagates their sum once (each seed's slice gets its own
  gradient) and takes one fused optimizer step for all seeds; ``soft_update``
  lerps the stacked target weights. Algorithms need nothing special.
- The seeds' own parameters and optimizer states are views into the stacked
  tensors, so their evaluations and checkpoints see the current weights
  without a copy, and a checkpoint of a batched seed is an ordinary one.
- Seeds update together only while their update counters agree (a resumed
  group whose seeds stopped at different steps runs as several cohorts); a
  seed that finishes or fails leaves the group and the others go on.

Not batchable: updates that call ``torch.autograd`` themselves (EDAC's
gradient penalty); ``blocker()`` names them and such groups train one seed
after another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch._C import _functorch
from torch._functorch.pyfunctorch import temporarily_pop_interpreter_stack
from torch.func import functional_call, vmap

from offrl.algos import common
from offrl.algos.base import Algorithm
from offrl.nn import precision
from offrl.train import run

_member = threading.local()  # (group, index) of the seed this thread trains


def blocker(algo: Algorithm) -> str | None:
    """Why ``algo`` cannot train in a batched seed group, or None."""
    if getattr(algo.config, "eta", 0.0) > 0:
        return f"{algo.name}'s gradient-diversity penalty differentiates inside the update (torch.autograd under vmap)"
    if any(isinstance(module, torch.nn.RNNBase) for module in algo.modules()):
        return f"{algo.name}'s recurrent network has no batching rule under vmap (torch's fused LSTM/GRU kernels)"
    return None


class StackedModel:
    """The parameters, buffers and optimizers of ``algos`` stacked on a leading seed axis.

    The algorithms' own tensors become views of the stacked ones.
    """

    def __init__(self, algos: list[Algorithm], seeds: list[int] | None = None) -> None:
        self.algos = algos
        self.size = len(algos)
        # A seed group's members run in threads that each seed torch's process-wide generator (and restore it on
        # resume): the update's random draws take their own generator state, from the seeds and the step alone.
        self.seeds = seeds
        base = algos[0]
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self._by_id: dict[int, torch.Tensor] = {}  # the first seed's tensor -> its stacked tensor
        with torch.no_grad():
            for name, param in base.named_parameters():
                members = [algo.get_parameter(name) for algo in algos]
                stacked = torch.stack([m.detach() for m in members]).requires_grad_(param.requires_grad)
                for index, member in enumerate(members):
                    member.data = stacked.detach()[index]
                self.params[name] = self._by_id[id(param)] = stacked
            for name, buffer in base.named_buffers():
                members = [algo.get_buffer(name) for algo in algos]
                stacked = torch.stack(members)
                for index, algo in enumerate(algos):
                    _set_buffer(algo, name, stacked[index])
                self.buffers[name] = self._by_id[id(base.get_buffer(name))] = stacked
        self.optimizers: dict[int, tuple[torch.optim.Optimizer, torch.optim.Optimizer, str]] = {}
        # Members of an evolving population may differ in learning rate: each one's rate relative to the
        # first's (1 for the seeds of one configuration), kept through schedules that scale them alike.
        self.lr_ratios: dict[str, list[float] | None] = {}
        self._ratio_tensors: dict[str, torch.Tensor] = {}
        for key, optimizer in base.optimizers.items():
            base_lr = optimizer.param_groups[0]["lr"]
            ratios = [algo.optimizers[key].param_groups[0]["lr"] / base_lr if base_lr else 1.0 for algo in algos]
            self.lr_ratios[key] = None if all(r == 1.0 for r in ratios) else ratios
            if self.lr_ratios[key] is not None:
                self._ratio_tensors[key] = torch.tensor(ratios, device=base.device)
            if len(optimizer.param_groups) != 1:
                raise ValueError(f"{base.name}: optimizer {key!r} has several parameter groups; a seed group needs one")
            group = optimizer.param_groups[0]
            stacked_params = [self._by_id[id(p)] for p in group["params"]]
            accepted = inspect.signature(type(optimizer).__init__).parameters
            options = {k: v for k, v in group.items() if k in accepted and k != "params"}
            stacked = type(optimizer)(stacked_params, **options)
            self.optimizers[id(optimizer)] = (optimizer, stacked, key)
            self._stack_optimizer_state(key, stacked)

    def stacked(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self._by_id[id(t)] for t in tensors]

    def _stack_optimizer_state(self, key: str, stacked: torch.optim.Optimizer) -> None:
        """Stack the seeds' existing optimizer states; link states the stacked optimizer has just created."""
        members = [algo.optimizers[key].param_groups[0]["params"] for algo in self.algos]
        for position, stacked_param in enumerate(stacked.param_groups[0]["params"]):
            seed_params = [params[position] for params in members]
            seed_states = [algo.optimizers[key].state.get(p) for algo, p in zip(self.algos, seed_params)]
            if stacked_param in stacked.state:  # created by the stacked optimizer: hand views to the seeds
                state = stacked.state[stacked_param]
            elif all(seed_states):
                state = {}
                for name, value in seed_states[0].items():
                    if name != "step" and torch.is_tensor(value) and value.shape == seed_params[0].shape:
                        state[name] = torch.stack([s[name] for s in seed_states])  # moments, also of 0-dim parameters
                    else:  # the step count: equal across seeds updated together
                        state[name] = value.clone() if torch.is_tensor(value) else value
                stacked.state[stacked_param] = state
            else:
                continue
            for index, (algo, param) in enumerate(zip(self.algos, seed_params)):
                algo.optimizers[key].state[param] = {
                    name: value[index] if name != "step" and torch.is_tensor(value) and value.dim() > 0
                    and value.shape[0] == self.size and value.shape[1:] == param.shape else value
                    for name, value in state.items()
                }

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None) -> None:
        """``common.step`` inside the vmapped update: one backward of all seeds' losses, one optimizer step."""
        seed_optimizer, stacked, key = self.optimizers[id(optimizer)]
        losses = _functorch._remove_batch_dim(loss, _functorch.current_level(), self.size, 0)
        with temporarily_pop_interpreter_stack():
            for mine, theirs in zip(stacked.param_groups, seed_optimizer.param_groups):
                mine["lr"] = theirs["lr"]
            fresh = len(stacked.state) < len(stacked.param_groups[0]["params"])
            if self.lr_ratios[key] is None:
                common.apply_gradients(stacked, losses.sum(), max_grad_norm, seed_axis=True)
            else:  # Adam's (and SGD's) step is linear in the learning rate: scale each member's step
                ratios = self._ratio_tensors[key]
                params = stacked.param_groups[0]["params"]
                before = [p.detach().clone() for p in params]
                common.apply_gradients(stacked, losses.sum(), max_grad_norm, seed_axis=True)
                with torch.no_grad():
                    for param, start in zip(params, before):
                        param.copy_(start.lerp_(param, ratios.view(-1, *([1] * (param.dim() - 1)))))
            if fresh:
                self._stack_optimizer_state(key, stacked)

    @contextlib.contextmanager
    def _draws(self, base: Algorithm) -> Iterator[None]:
        """The update's random draws: from a generator state set from the seeds and the step (a seed group), or
        from torch's generator as it is (a population, whose members step in this one thread)."""
        if self.seeds is None:
            yield
            return
        with torch.random.fork_rng(devices=[base.device] if base.device.type == "cuda" else []):
            torch.manual_seed(int(np.random.SeedSequence([*self.seeds, base.num_updates]).generate_state(1)[0]))
            yield

    def update(self, method: str, batches: list[Any]) -> list[dict[str, torch.Tensor]]:
        """Every seed's ``method`` (``update`` or ``update_offline``) on its batch, as one vmapped update."""
        base = self.algos[0]
        kind = type(batches[0])
        columns = {}
        for field in dataclasses.fields(kind):
            values = [getattr(b, field.name) for b in batches]
            if values[0] is not None:
                columns[field.name] = _stack_trees(values)
        bound = getattr(type(base), method).__get__(base)

        def one_seed(params, buffers, data):
            return functional_call(base, (params, buffers), (kind(**data),))

        base.forward = bound
        common.stacked_update.model = self
        try:
            with self._draws(base):
                metrics = vmap(one_seed, randomness="different")(self.params, self.buffers, columns)
        finally:
            common.stacked_update.model = None
            del base.forward
        for index, algo in enumerate(self.algos[1:], start=1):  # what the update changed outside tensors
            algo.num_updates = base.num_updates
            for key, optimizer in algo.optimizers.items():
                ratio = 1.0 if self.lr_ratios[key] is None else self.lr_ratios[key][index]
                for mine, theirs in zip(optimizer.param_groups, base.optimizers[key].param_groups):
                    mine["lr"] = theirs["lr"] * ratio
        return [{key: value[index] for key, value in metrics.items()} for index in range(self.size)]


def _set_buffer(module: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    (module.get_submodule(owner) if owner else module)._buffers[leaf] = value


def _stack_trees(values: list[Any]) -> Any:
    if isinstance(values[0], dict):
        return {key: _stack_trees([v[key] for v in values]) for key in values[0]}
    return torch.stack(values)


class SeedGroup:
    """Where the seeds' gradient steps meet; see the module docstring."""

    def __init__(self, size: int) -> None:
        self.size = size
        # one lock; the server waits on ``_wake`` until every member's batch is in, each seed on its own
        # ``_turn`` until its result is: each hand-over wakes the one thread it concerns, not all of them
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._turn = [threading.Condition(self._lock) for _ in range(size)]
        self._members: dict[int, Algorithm] = {}
        self._seeds: dict[int, int] = {}
        self._unjoined = set(range(size))
        self._pending: dict[int, tuple[str, torch.dtype | None, Any]] = {}  # method, autocast dtype (None: off), batch
        self._results: dict[int, Any] = {}
        self._models: dict[tuple[int, ...], StackedModel] = {}
        self._solo: set[int] = set()  # seeds that cannot be batched, trained one at a time
        self._solo_turn = threading.Lock()
        self._announced = False

    def join(self, index: int, algo: Algorithm, seed: int = 0) -> None:
        reason = blocker(algo)
        if reason:  # this seed trains unbatched, and alone: the others of its kind wait for it
            with self._lock:
                self._unjoined.discard(index)
                self._wake.notify()
                if not self._announced:
                    self._announced = True
                    print(f"seeds not batched: {reason}; they train one after another")
            self._solo_turn.acquire()
            self._solo.add(index)
            return
        for method in ("update", "update_offline"):
            setattr(algo, method, self._proxy(index, algo, method))
        with self._lock:
            self._members[index] = algo
            self._seeds[index] = seed
            self._unjoined.discard(index)
            self._wake.notify()

    def leave(self, index: int) -> None:
        with self._lock:
            algo = self._members.pop(index, None)
            if algo is not None:
                for method in ("update", "update_offline"):
                    algo.__dict__.pop(method, None)
            self._unjoined.discard(index)
            if index in self._solo:
                self._solo.discard(index)
                self._solo_turn.release()
            self._models = {key: model for key, model in self._models.items() if index not in key}
            self._wake.notify()

    def _proxy(self, index: int, algo: Algorithm, method: str) -> Callable[[Any], dict[str, torch.Tensor]]:
        real = getattr(type(algo), method).__get__(algo)
        device_type = algo.device.type

        def submit(batch: Any) -> dict[str, torch.Tensor]:
            if getattr(common.stacked_update, "model", None) is not None:  # update_offline -> update, inside vmap
                return real(batch)
            # the trainer's mixed precision (autocast) is this thread's: the stacked update runs under the same
            autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
            return self._submit(index, method, autocast, batch)

        return submit

    def _submit(self, index: int, method: str, autocast: torch.dtype | None, batch: Any) -> dict[str, torch.Tensor]:
        with self._lock:
            self._pending[index] = (method, autocast, batch)
            if self._all_in():
                self._wake.notify()
            while index not in self._results:
                self._turn[index].wait()
            result = self._results.pop(index)
        if isinstance(result, BaseException):
            raise result
        return result

    def serve(self) -> None:
        """Run the stacked updates, in the calling thread, until every seed has left.

        One thread does all the compute: torch's OpenMP pool belongs to the thread that calls it,
        and pools of several threads spinning on two cores would fight for them.
        """
        with self._lock:
            while self._unjoined or self._members:
                if self._all_in():
                    self._run_pending()
                else:
                    self._wake.wait(0.5)  # a timeout keeps Ctrl-C deliverable to this (main) thread

    def _all_in(self) -> bool:
        """Every seed that trains batched has handed in its batch (called with the lock held)."""
        return bool(self._pending) and not self._unjoined and self._pending.keys() == self._members.keys()

    def _run_pending(self) -> None:
        cohorts: dict[tuple, list[int]] = {}
        for index in sorted(self._pending):
            algo = self._members[index]
            method, autocast, _ = self._pending[index]
            cohorts.setdefault((method, autocast, algo.num_updates, algo.total_updates), []).append(index)
        try:
            for (method, autocast, *_), indices in cohorts.items():
                key = tuple(indices)
                model = self._models.get(key)
                if model is None:
                    self._models = {k: m for k, m in self._models.items() if not set(k) & set(key)}
                    model = self._models[key] = StackedModel([self._members[i] for i in indices], [self._seeds[i] for i in indices])
                batches = [self._pending[i][2] for i in indices]
                with precision.autocast(model.algos[0].device.type, autocast):
                    outputs = model.update(method, batches)
                self._results.update(zip(indices, outputs))
        except Exception as error:  # every waiting seed raises it
            for index in self._pending:
                self._results.setdefault(index, error)
        for index in self._pending:
            self._turn[index].notify()
        self._pending.clear()


@contextlib.contextmanager
def member(group: SeedGroup, index: int) -> Iterator[None]:
    """Mark this thread as training seed ``index`` of ``group`` (``enlist`` joins it); it leaves at the end."""
    _member.slot = (group, index)
    try:
        yield
    finally:
        _member.slot = None
        group.leave(index)


def enlist(algo: Algorithm, seed: int = 0) -> None:
    """Called by the trainer before its first step: join this thread's seed group, if it trains one."""
    slot = getattr(_member, "slot", None)
    if slot is not None:
        slot[0].join(slot[1], algo, seed)


def run_seed_group(jobs: list[Callable[[], Any]], *, batched: bool = True) -> list[Any]:
    """Run each job (a function that calls ``train``) in its own thread, their updates batched.

    Returns the jobs' results in order; the first error is raised after every job has ended.
    With ``batched=False`` the jobs run one after another in this thread.
    """
    if not batched:
        return [job() for job in jobs]
    group = SeedGroup(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    stack = contextlib.ExitStack()
    run.group_stop = stack.enter_context(run.stop_on_interrupt())  # Ctrl-C here stops every seed's loop

    def work(index: int, job: Callable[[], Any]) -> None:
        with member(group, index):
            try:
                results[index] = job()
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(error)

    threads = [threading.Thread(target=work, args=(i, job), daemon=True, name=f"seed-{i}") for i, job in enumerate(jobs)]
    with stack:
        try:
            for thread in threads:
                thread.start()
            group.serve()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # short joins keep Ctrl-C deliverable to this thread
        finally:
            run.group_stop = None
    if errors:
        raise errors[0]
    return results
