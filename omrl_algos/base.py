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
from omrl_algos.targets import ValueTargets
from omrl_data.batch import TaskBatch


class Agent:
    """A policy with concrete parameters (meta-learned or adapted), and its value function.

    policy: the policy module (its own parameters are ignored; ``policy_params`` are used).
    value: the value module or None (algorithms without a critic).
    action_center, action_half: ``[act_dim]``; the policy works in [-1, 1] and the env's action
    is ``center + half * a`` (``MetaAlgorithm.set_action_bounds``); default: the [-1, 1] box.

    The agent protocol: ``reset()`` at the start of an episode, ``act(obs)`` (deterministic) or
    ``sample(obs, generator)`` (stochastic, the policy's own distribution), and
    ``observe(transition)``; a parameter-adapting method's agent ignores ``observe``.
    """

    def __init__(
        self,
        policy: GaussianPolicy,
        policy_params: Params,
        value: ValueNetwork | None = None,
        value_params: Params | None = None,
        action_center: torch.Tensor | None = None,
        action_half: torch.Tensor | None = None,
    ):
        self.policy, self.value = policy, value
        self.policy_params = detached(policy_params)
        self.value_params = detached(value_params) if value_params is not None else None
        self.action_center = action_center
        self.action_half = action_half

    def with_params(self, policy_params: Params, value_params: Params | None = None) -> "Agent":
        """The same agent (modules, action box) with other parameters."""
        return Agent(self.policy, policy_params, self.value, value_params, self.action_center, self.action_half)

    @property
    def device(self) -> torch.device:
        return next(iter(self.policy_params.values())).device

    def reset(self) -> None:
        """Start of an episode (nothing to forget for a parameter-adapting agent)."""

    def observe(self, transition: dict[str, Any]) -> None:
        """A transition of the current episode (ignored: the parameters are already adapted)."""

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions in [-1, 1] -> the env's action box."""
        if self.action_center is None:
            return actions
        return self.action_center.to(actions.device) + self.action_half.to(actions.device) * actions

    @torch.no_grad()
    def mean(self, observations: torch.Tensor) -> torch.Tensor:
        """The policy mean in [-1, 1]: ``[N, obs_dim] -> [N, act_dim]``."""
        return call(self.policy, self.policy_params, observations)

    @torch.no_grad()
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        """Deterministic env actions (the mean, mapped to the env's box)."""
        return self.to_env(self.mean(observations))

    @torch.no_grad()
    def sample(self, observations: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Stochastic actions in [-1, 1]: ``mean + sigma * eps`` clipped to the box; noise from
        ``generator``. Map with :meth:`to_env` before stepping an env."""
        mean = self.mean(observations)
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
        # The env's action box (set_action_bounds); networks work in [-1, 1]. Saved in state_dict.
        self.register_buffer("action_center", torch.zeros(self.act_dim, device=self.device))
        self.register_buffer("action_half", torch.ones(self.act_dim, device=self.device))

    def set_action_bounds(self, low: Any, high: Any) -> None:
        """The env's action box ``[low, high]`` (``dataset.action_bounds``)."""
        low = torch.as_tensor(low, dtype=torch.float32, device=self.device).reshape(self.act_dim)
        high = torch.as_tensor(high, dtype=torch.float32, device=self.device).reshape(self.act_dim)
        self.action_center.copy_((high + low) / 2)
        self.action_half.copy_((high - low) / 2)

    def make_agent(self, policy_params: Params, value_params: Params | None = None) -> Agent:
        """An agent acting with these parameters in the env's action box."""
        return Agent(self.policy, policy_params, self.value, value_params, self.action_center, self.action_half)

    # ------------------------------------------------------------------------------ training
    def make_sampler(self, dataset: Any, seed: int, device: str | torch.device) -> Any:
        """The training sampler over the dataset's train tasks: actions in [-1, 1], bootstrap
        fields when the config's ``bootstrap`` is on, ``meta_batch`` capped at the train tasks."""
        from omrl_data.sampler import TaskBatchSampler

        c = self.config
        meta_batch = min(int(getattr(c, "meta_batch", 5)), len(dataset.tasks.indices("train")))
        batch_size = int(getattr(c, "batch_size", getattr(c, "support_size", 256)))
        return TaskBatchSampler(
            dataset, tasks="train", meta_batch=meta_batch, batch_size=batch_size, seed=seed, device=device,
            bootstrap=bool(getattr(c, "bootstrap", False)), normalise_actions=True,
        )

    def adaptation_kind(self) -> dict[str, Any]:
        """How meta-test adaptation batches are drawn (``TaskBatchSampler.adaptation_batch``
        keywords): the same kind of batch as the training support set."""
        c = self.config
        if getattr(c, "contiguous_support", False):
            return {"contiguous": True, "stride": int(getattr(c, "support_stride", 1))}
        return {"contiguous": False}

    def train_step(self, sampler: Any) -> dict[str, float]:
        """One outer update from batches of ``sampler``; returns metrics named ``train/...``."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------- evaluation
    def meta_agent(self) -> Agent:
        """The agent before adaptation (meta-parameters)."""
        return self.make_agent(params_of(self.policy), params_of(self.value) if self.value is not None else None)

    def adapt(self, batch: TaskBatch) -> Agent:
        """The agent adapted on one task's batch ``[1, B, ...]`` (paper 001, Alg. 2)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ online fine-tuning losses
    def value_targets(self) -> ValueTargets:
        """The algorithm's value-target component (reward scale and bootstrap of its config)."""
        c = self.config
        # reward_scale 0 means "auto": the training loop resolves it from the dataset before the
        # algorithm is built; an algorithm built directly (library use, tests) falls back to 1.
        scale = float(getattr(c, "reward_scale", 1.0)) or 1.0
        return ValueTargets(scale, bool(getattr(c, "bootstrap", True)))

    def online_value_loss(self, agent: Agent, value_params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Value loss of online fine-tuning on flat rows ``{field: [N, ...]}``: regression on the
        shared targets, bootstrapped at truncations with the value being fine-tuned."""
        targets = self.value_targets()(batch, lambda obs: call(agent.value, value_params, obs))
        return losses.value_loss(call(agent.value, value_params, batch["observations"]), targets)["loss"]

    def online_policy_loss(self, agent: Agent, policy_params: Params, value_params: Params | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Policy loss of online fine-tuning: AWR with the current value (reference procedure)."""
        mean = call(agent.policy, policy_params, batch["observations"])
        with torch.no_grad():
            value = lambda obs: call(agent.value, value_params, obs)  # noqa: E731
            adv = self.value_targets()(batch, value) - value(batch["observations"])
        t = getattr(self.config, "temperature", 1.0)
        m = getattr(self.config, "max_weight", 20.0)
        return losses.awr_loss(mean, agent.policy.sigma, batch["actions"], adv, t, m)["loss"]
