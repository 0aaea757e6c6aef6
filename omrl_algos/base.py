"""What every algorithm provides to the shared training loop and evaluation.

An algorithm is a small subclass of :class:`MetaAlgorithm` (one file, e.g. ``macaw.py``): its
networks and learned scalars are submodules/parameters (so ``state_dict`` is the whole model),
``optimizer`` is its one outer optimizer, ``train_step`` does one outer update from the sampler,
and ``adapt`` turns an adaptation batch into an :class:`Agent`. The loop, checkpoints, logging
and evaluation (``train.py``, ``evaluation.py``) are the same for all algorithms.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from omrl_algos import losses
from omrl_algos.meta import Params, call, detached, params_of
from omrl_algos.networks import GaussianPolicy, ValueNetwork
from omrl_data.batch import TaskBatch


class Agent:
    """A policy with concrete parameters (meta-learned or adapted), and its value function.

    policy: the policy module (its own parameters are ignored; ``policy_params`` are used).
    value: the value module or None (algorithms without a critic).
    """

    def __init__(self, policy: GaussianPolicy, policy_params: Params, value: ValueNetwork | None = None, value_params: Params | None = None):
        self.policy, self.value = policy, value
        self.policy_params = detached(policy_params)
        self.value_params = detached(value_params) if value_params is not None else None

    @property
    def device(self) -> torch.device:
        return next(iter(self.policy_params.values())).device

    @torch.no_grad()
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (the tanh mean): ``[N, obs_dim] -> [N, act_dim]``."""
        return call(self.policy, self.policy_params, observations)

    @torch.no_grad()
    def sample(self, observations: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Stochastic actions ``mean + sigma * eps`` clipped to [-1, 1]; noise from ``generator``."""
        mean = self.act(observations)
        eps = torch.randn(mean.shape, generator=generator, device=generator.device).to(mean.device)
        return (mean + self.policy.sigma * eps).clamp(-1.0, 1.0)


class MetaAlgorithm(nn.Module):
    """Base class of offline meta-RL algorithms.

    Subclasses set ``name`` and ``Config`` (a dataclass with a comment per field), build their
    modules in ``__init__`` on ``device``, create ``self.optimizer`` and implement
    :meth:`train_step` and :meth:`adapt`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object

    def __init__(self, config: Any, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        super().__init__()
        self.config = config
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.device = torch.device(device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.policy: GaussianPolicy
        self.value: ValueNetwork | None = None

    # ------------------------------------------------------------------------------ training
    def make_sampler(self, dataset: Any, seed: int, device: str | torch.device) -> Any:
        """The training sampler over the dataset's train tasks."""
        from omrl_data.sampler import TaskBatchSampler

        meta_batch = min(int(getattr(self.config, "meta_batch", 5)), len(dataset.tasks.indices("train")))
        return TaskBatchSampler(dataset, tasks="train", meta_batch=meta_batch, batch_size=int(getattr(self.config, "batch_size", 256)), seed=seed, device=device)

    def train_step(self, sampler: Any) -> dict[str, float]:
        """One outer update from batches of ``sampler``; returns metrics named ``train/...``."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------- evaluation
    def meta_agent(self) -> Agent:
        """The agent before adaptation (meta-parameters)."""
        return Agent(self.policy, params_of(self.policy), self.value, params_of(self.value) if self.value is not None else None)

    def adapt(self, batch: TaskBatch) -> Agent:
        """The agent adapted on one task's batch ``[1, B, ...]`` (paper 001, Alg. 2)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ online fine-tuning losses
    def online_value_loss(self, agent: Agent, value_params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Value loss of online fine-tuning on flat rows ``{field: [N, ...]}`` (MC regression)."""
        scale = getattr(self.config, "reward_scale", 1.0)
        return losses.value_loss(call(agent.value, value_params, batch["observations"]), batch["mc_returns"] * scale)["loss"]

    def online_policy_loss(self, agent: Agent, policy_params: Params, value_params: Params | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Policy loss of online fine-tuning: AWR with the current value (reference procedure)."""
        mean = call(agent.policy, policy_params, batch["observations"])
        with torch.no_grad():
            adv = batch["mc_returns"] * getattr(self.config, "reward_scale", 1.0) - call(agent.value, value_params, batch["observations"])
        t = getattr(self.config, "temperature", 1.0)
        m = getattr(self.config, "max_weight", 20.0)
        return losses.awr_loss(mean, agent.policy.sigma, batch["actions"], adv, t, m)["loss"]
