"""bandit: a Bernoulli k-armed bandit (k = 5), the discrete task family of Okanovic et al. (MACAW).

To serve SAC and Gaussian policies like every other family, the action is continuous:
``Box(-1, 1, (k,))``, and the pulled arm is ``argmax(action)`` (``info["arm"]``). The reward is
1 with the pulled arm's success probability, else 0, drawn from the env's seeded generator.
Observation: the constant ``[1.0]`` (float32 ``[1]``). 10 pulls per episode (truncation), no
termination.

Task parameter ``{"arm_probs": [k floats in [0, 1]]}``, drawn U(0, 1) per arm; features = the
arm probabilities. There is no paper grid.

Default gamma 0.01 (``Bandit.default_gamma``), not the 0.99 of the other families: the
observation is constant and the pulls are independent, so there is no state to carry value and
the right value of a pull is its immediate reward. With 0.99 each row's Monte Carlo return also
holds up to 9 later (behaviour) pulls, and ranking arms by mean MC return in a 256-row batch
picked the wrong arm in 2 of 4 test tasks (issue 14). 0.01 rather than 0 because ``--gamma``
must lie in (0, 1]; the later pulls then add at most 0.0101 to a return.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from omrl_data.tasks.base import TaskFamily, check_array, check_keys

N_ARMS = 5


class Bandit(TaskFamily):
    name = "bandit"
    env_id = "omrl/Bandit-v0"
    param_names = ("arm_probs",)
    horizon = 10
    papers = ("Okanovic",)
    obs_dim = 1
    act_dim = N_ARMS
    default_tasks = 12  # Okanovic et al. trained MACAW on 12 bandit tasks
    order_name = "arm_probs[0]"
    default_train_range = (0.0, 0.8)  # hold out tasks whose first arm pays off at least 80%
    description = f"Bernoulli {N_ARMS}-armed bandit; arm = argmax(action)"
    default_gamma = 0.01  # stateless pulls: the value of a pull is its reward (see the module docstring)

    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return [{"arm_probs": p.tolist()} for p in rng.uniform(0.0, 1.0, (n, N_ARMS))]

    def features(self, params: dict[str, Any]) -> np.ndarray:
        return np.asarray(params["arm_probs"], dtype=np.float32)

    def order_key(self, params: dict[str, Any]) -> float:
        return float(params["arm_probs"][0])

    def default_params(self) -> dict[str, Any]:
        return {"arm_probs": np.linspace(0.1, 0.9, N_ARMS).tolist()}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, self.name, self.param_names)
        return {"arm_probs": check_array(params["arm_probs"], self.name, "arm_probs", (N_ARMS,), 0.0, 1.0)}


class BanditEnv(gym.Env):
    """One Bernoulli bandit; ``set_task`` changes the arm probabilities."""

    metadata = {"render_modes": []}

    def __init__(self, task: dict[str, Any] | None = None):
        self.family = Bandit()
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(N_ARMS,), dtype=np.float32)
        self._obs = np.ones(1, dtype=np.float32)
        self.set_task(self.family.default_params() if task is None else task)

    def set_task(self, params: dict[str, Any]) -> None:
        self.task = self.family.validate_params(params)
        self.arm_probs = np.asarray(self.task["arm_probs"])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        return self._obs.copy(), {}

    def step(self, action):
        arm = int(np.argmax(action))
        p = float(self.arm_probs[arm])
        reward = float(self.np_random.random() < p)
        return self._obs.copy(), reward, False, False, {"arm": arm, "arm_prob": p}
