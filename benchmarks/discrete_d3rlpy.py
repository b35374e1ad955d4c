"""The d3rlpy side of benchmarks/discrete.py, run in d3rlpy's own virtual environment:

    .venv-d3rlpy/bin/python benchmarks/discrete_d3rlpy.py JOB.json

JOB.json holds the algorithm, its settings (named as offrl's config fields), the dataset as .npz,
the gradient steps and seed. ``mode: quality`` trains with ``fit`` and saves the greedy policy as
TorchScript; ``mode: speed`` reports the gradient steps per second of each ``interval`` after the
first. Image data is stored as single frames ``[N, 1, H, W]`` and stacked by d3rlpy's
``FrameStackTransitionPicker``, as offrl stacks at sampling time. ``layout: channels_last`` data
(MinAtar's ``[N, 10, 10, C]`` 0/1 channels) is transposed to channels first, kept unscaled and
encoded by the MinAtar paper's network (``encoder: minatar``). It imports nothing from offrl.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import d3rlpy
import numpy as np
import torch
from d3rlpy.dataset import FrameStackTransitionPicker
from d3rlpy.models.encoders import PixelEncoderFactory, VectorEncoderFactory
from d3rlpy.preprocessing import PixelObservationScaler


def make_config(algo: str, s: dict[str, Any], pixels: bool):
    if s.get("encoder") == "minatar":  # one 16-filter 3x3 convolution, as offrl's encoder=minatar; 0/1 inputs
        encoder = PixelEncoderFactory(filters=[[16, 3, 1]], feature_size=s["encoder_features"])
        common: dict[str, Any] = {}
    elif pixels:  # the Nature DQN torso with its 512-unit feature layer, as offrl's encoder=nature
        encoder = PixelEncoderFactory(feature_size=s["encoder_features"])
        common = {"observation_scaler": PixelObservationScaler()}
    else:
        encoder = VectorEncoderFactory(hidden_units=list(s["hidden_dims"]))
        common = {}
    common.update(batch_size=s["batch_size"], learning_rate=s["lr"], encoder_factory=encoder)
    algos = d3rlpy.algos
    if algo == "discrete_bc":
        return algos.DiscreteBCConfig(beta=s["logit_penalty"], **common)
    if algo == "discrete_bcq":
        return algos.DiscreteBCQConfig(
            gamma=s["discount"], action_flexibility=s["threshold"], beta=s["logit_penalty"],
            # offrl's BCQ shares a CNN trunk between its Q and imitation heads; on vectors (no trunk) its two
            # heads are separate MLPs, as in the authors' code for non-image tasks
            target_update_interval=s["target_update_interval"], share_encoder=pixels or s.get("encoder") == "minatar", **common,
        )
    if algo == "discrete_cql":
        if s["quantiles"] or not s["double_q"]:
            raise SystemExit("d3rlpy's DiscreteCQL is double DQN with an expected-value critic")
        return algos.DiscreteCQLConfig(
            gamma=s["discount"], alpha=s["cql_alpha"], target_update_interval=s["target_update_interval"], **common,
        )
    if algo in ("dqn", "double_dqn"):
        config = algos.DoubleDQNConfig if algo == "double_dqn" else algos.DQNConfig
        return config(gamma=s["discount"], target_update_interval=s["target_update_interval"], **common)
    raise SystemExit(f"no d3rlpy translation for {algo!r}")


def main() -> None:
    job = json.loads(open(sys.argv[1]).read())
    torch.set_num_threads(job["threads"])
    data = np.load(job["data"])
    observations, picker = data["observations"], None
    pixels = observations.dtype == np.uint8
    if job.get("layout") == "channels_last":
        observations = np.ascontiguousarray(observations.transpose(0, 3, 1, 2)).astype(np.float32)
    elif pixels:
        observations = observations[:, None]  # single frames [N, 1, H, W]
        picker = FrameStackTransitionPicker(n_frames=job["settings"]["frame_stack"])
    dataset = d3rlpy.dataset.MDPDataset(
        observations=observations, actions=data["actions"], rewards=data["rewards"][:, None],
        terminals=data["terminals"], timeouts=data["timeouts"], transition_picker=picker,
    )
    d3rlpy.seed(job["seed"])
    algo = make_config(job["algo"], job["settings"], pixels).create(device=job["device"])
    marks: list[float] = []
    interval = job.get("interval", 0)

    def callback(_algo, _epoch: int, total_step: int) -> None:
        if interval and total_step % interval == 0:
            marks.append(time.perf_counter())

    start = time.perf_counter()
    algo.fit(
        dataset, n_steps=job["steps"], n_steps_per_epoch=job["steps"], experiment_name="discrete", with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(), show_progress=False, callback=callback,
    )
    result: dict[str, Any] = {"train_seconds": time.perf_counter() - start, "version": d3rlpy.__version__}
    if job["mode"] == "quality":
        algo.save_policy(job["policy"])
    else:
        result["steps_per_sec"] = [interval / (b - a) for a, b in zip(marks[:-1], marks[1:])]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
