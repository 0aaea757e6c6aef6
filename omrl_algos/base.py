"""What every algorithm provides to the shared training loop and evaluation.

An algorithm is a small subclass of :class:`MetaAlgorithm` (one file, e.g. ``macaw.py``): its
networks and learned scalars are submodules/parameters (so ``state_dict`` is the whole model),
``optimizer`` is its one outer optimizer, ``train_step`` does one outer update from the sampler,
and ``adapt`` turns an adaptation batch into an :class:`Agent`. The loop, checkpoints, logging
and evaluation (``train.py``, ``evaluation.py``) are the same for all algorithms.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from omrl_algos import losses
from omrl_algos.meta import Params, call, detached, params_of
from omrl_algos.networks import GaussianPolicy, ValueNetwork
from omrl_algos.targets import ValueTargets, episode_targets
from omrl_data.errors import BadInput
from omrl_data.batch import TaskBatch


class Agent:
    """The agent protocol, shared by every algorithm: what ``adapt`` (or ``initial_agent``) returns.

    - ``reset()``: the start of a trial (a context method forgets its history and latent);
    - ``act(obs, explore=False)``: env actions ``[N, act_dim]`` for observations ``[N, obs_dim]``;
      deterministic by default, sampled from the policy's own distribution with ``explore=True``
      (noise from ``self.generator``, which the caller may set; never the global RNG);
    - ``observe(transition)``: one transition of the current trial, a dict of tensors
      ``observations [obs]``, ``actions [act]`` (the env's box, as ``act`` returned them),
      ``rewards []``, ``next_observations [obs]``, ``terminated []``, ``truncated []``.

    A parameter-adapting method's agent ignores ``observe``; a context method's agent keeps its
    history (and so its task latent) until ``reset``.
    """

    generator: torch.Generator | None = None

    def reset(self) -> None:
        """Start of a trial."""

    def observe(self, transition: dict[str, Any]) -> None:
        """A transition of the current trial."""

    def act(self, observations: torch.Tensor, explore: bool = False) -> torch.Tensor:
        raise NotImplementedError


class ParameterAgent(Agent):
    """A policy with concrete parameters (meta-learned or adapted), and its value function.

    policy: the policy module (its own parameters are ignored; ``policy_params`` are used); it
    owns its action distribution (``GaussianPolicy``: tanh mean, its ``sigma``).
    value: the value module or None (algorithms without a critic).
    action_center, action_half: ``[act_dim]``; the policy works in [-1, 1] and the env's action
    is ``center + half * a`` (``MetaAlgorithm.set_action_bounds``); default: the [-1, 1] box.
    ``observe`` is ignored: the parameters are already adapted.
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

    def with_params(self, policy_params: Params, value_params: Params | None = None) -> "ParameterAgent":
        """The same agent (modules, action box, generator) with other parameters."""
        out = ParameterAgent(self.policy, policy_params, self.value, value_params, self.action_center, self.action_half)
        out.generator = self.generator
        return out

    @property
    def device(self) -> torch.device:
        return next(iter(self.policy_params.values())).device

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
    def act(self, observations: torch.Tensor, explore: bool = False) -> torch.Tensor:
        """Env actions: the mean mapped to the env's box, or with ``explore`` a sample (see
        :meth:`sample`, noise from ``self.generator``)."""
        if explore:
            if self.generator is None:
                raise ValueError("set agent.generator before acting with explore=True")
            return self.to_env(self.sample(observations, self.generator))
        return self.to_env(self.mean(observations))

    @torch.no_grad()
    def sample(self, observations: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Stochastic actions in [-1, 1] from the policy's distribution: ``mean + sigma * eps``
        clipped to the box; noise from ``generator``. Map with :meth:`to_env` before stepping an env."""
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

    def make_agent(self, policy_params: Params, value_params: Params | None = None) -> ParameterAgent:
        """An agent acting with these parameters in the env's action box."""
        return ParameterAgent(self.policy, policy_params, self.value, value_params, self.action_center, self.action_half)

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
        """The agent adapted on one task's batch ``[1, B, ...]`` (paper 001, Alg. 2; for a
        context method: the agent whose context is that batch)."""
        raise NotImplementedError

    def initial_agent(self) -> Agent:
        """The agent at the start of a test trial with no data of the task (online-context and
        zero-shot evaluation): the meta-policy for parameter-adapting methods, which ignore
        ``observe``; a context method's agent with an empty context."""
        return self.meta_agent()

    # The evaluation protocol used when eval.mode is "auto" (evaluation.EVAL_MODES).
    default_eval_mode: ClassVar[str] = "offline"

    def write_artifacts(self, run_dir: Any, dataset: Any) -> None:
        """Figures or files of the algorithm's own, written into the run folder at the end of
        training (R2PGO: the task-embedding picture). Default: nothing."""

    # ------------------------------------------------------------------------- online fine-tuning
    def finetune_online(self, evaluator: Any, agent: Agent, task: int, marks: Sequence[int], after_return: float) -> dict[int, float]:
        """Deterministic returns after ``marks`` online env steps of fine-tuning ``agent`` on ``task``.

        The default is the MACAW reference procedure (paper 001 Table 1): rounds of one
        stochastic episode each are added to a buffer that starts with the adaptation batch, and
        after ``eval.online_burn_in`` rounds every round is followed by ``online_value_updates``
        value and ``online_policy_updates`` policy Adam updates (lr ``online_lr``, batch
        ``online_batch``) on :meth:`online_value_loss` / :meth:`online_policy_loss`. A return is
        recorded at the first round boundary at or after each mark. Another algorithm overrides
        this hook with its own procedure (same signature; ``evaluator`` gives the env, the
        config, the seeds and ``mean_return``).
        """
        from omrl_algos.evaluation import agent_actor, episode_seed, rollout

        cfg = evaluator.config
        env = evaluator.env(task)
        device = evaluator.device
        if not isinstance(agent, ParameterAgent) or agent.value is None:
            raise BadInput(f"algorithm {self.name} has no value function; online fine-tuning needs one")
        policy_params = {k: v.clone().requires_grad_(True) for k, v in agent.policy_params.items()}
        value_params = {k: v.clone().requires_grad_(True) for k, v in agent.value_params.items()}
        opt_v = torch.optim.Adam(value_params.values(), lr=cfg.online_lr)
        opt_p = torch.optim.Adam(policy_params.values(), lr=cfg.online_lr)
        batch = evaluator.adaptation_batch(task, self.adaptation_kind())
        # The buffer holds actions in [-1, 1] (the policy's space) and the target fields.
        names = ("observations", "actions", "mc_returns", "mc_bootstrap_discount", "bootstrap_observations")
        buffer = {k: getattr(batch, k)[0].to(device) for k in names}
        gen = torch.Generator().manual_seed(episode_seed(evaluator.seed, task, 0, 2))
        results: dict[int, float] = {}
        steps, rounds = 0, 0
        pending = list(marks)
        while pending and pending[0] <= steps:
            results[pending.pop(0)] = after_return
        while pending:
            current = agent.with_params(policy_params, value_params)
            taken: list[np.ndarray] = []

            def explore(obs: np.ndarray) -> np.ndarray:
                a = current.sample(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)[None], gen)
                taken.append(a[0].cpu().numpy())
                return current.to_env(a)[0].cpu().numpy()

            episode = rollout(env, explore, episode_seed(evaluator.seed, task, 1000 + rounds, 3))
            fields = episode_targets(episode["rewards"], bool(episode["terminated"][-1]), episode["final_observation"], evaluator.gamma)
            new = {
                "observations": torch.as_tensor(episode["observations"], device=device),
                "actions": torch.as_tensor(np.stack(taken), device=device),
                **{k: torch.as_tensor(v, device=device) for k, v in fields.items()},
            }
            buffer = {k: torch.cat([buffer[k], new[k]]) for k in buffer}
            steps += len(episode["rewards"])
            rounds += 1
            if rounds > cfg.online_burn_in:
                n = len(buffer["observations"])
                for updates, opt, loss_fn in (
                    (cfg.online_value_updates, opt_v, lambda b: self.online_value_loss(agent, value_params, b)),
                    (cfg.online_policy_updates, opt_p, lambda b: self.online_policy_loss(agent, policy_params, value_params, b)),
                ):
                    for _ in range(updates):
                        idx = torch.randint(0, n, (min(cfg.online_batch, n),), generator=gen).to(device)
                        loss = loss_fn({k: v.index_select(0, idx) for k, v in buffer.items()})
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
            while pending and pending[0] <= steps:
                tuned = agent.with_params(policy_params, value_params)
                results[pending.pop(0)] = evaluator.mean_return(task, agent_actor(tuned, device))
        return results

    # ------------------------------------------------------------------ online fine-tuning losses
    def value_targets(self) -> ValueTargets:
        """The algorithm's value-target component (reward scale and bootstrap of its config)."""
        c = self.config
        # reward_scale 0 means "auto": the training loop resolves it from the dataset before the
        # algorithm is built; an algorithm built directly (library use, tests) falls back to 1.
        scale = float(getattr(c, "reward_scale", 1.0)) or 1.0
        return ValueTargets(scale, bool(getattr(c, "bootstrap", True)))

    def online_value_loss(self, agent: ParameterAgent, value_params: Params, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Value loss of online fine-tuning on flat rows ``{field: [N, ...]}``: regression on the
        shared targets, bootstrapped at truncations with the value being fine-tuned."""
        targets = self.value_targets()(batch, lambda obs: call(agent.value, value_params, obs))
        return losses.value_loss(call(agent.value, value_params, batch["observations"]), targets)["loss"]

    def online_policy_loss(self, agent: ParameterAgent, policy_params: Params, value_params: Params | None, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Policy loss of online fine-tuning: AWR with the current value (reference procedure)."""
        mean = call(agent.policy, policy_params, batch["observations"])
        with torch.no_grad():
            value = lambda obs: call(agent.value, value_params, obs)  # noqa: E731
            adv = self.value_targets()(batch, value) - value(batch["observations"])
        t = getattr(self.config, "temperature", 1.0)
        m = getattr(self.config, "max_weight", 20.0)
        return losses.awr_loss(mean, agent.policy.sigma, batch["actions"], adv, t, m)["loss"]


class InferenceAdaptation:
    """The meta-test side every context-based method shares (a mixin before ``MetaAlgorithm``):
    it adapts by inference, not by gradient steps. Its agent class (``agent_class``) takes
    ``(algo, base=None, listening=True)``: ``base`` the context rows it starts from, ``listening``
    whether ``observe`` grows the context. The algorithm provides ``features(batch)``."""

    agent_class: ClassVar[type]

    def initial_agent(self) -> Agent:
        """The agent of a new trial: an empty context that grows by observing (zero-shot)."""
        return self.agent_class(self)

    def meta_agent(self) -> Agent:
        """The policy on the prior (no context, never observing)."""
        return self.agent_class(self, listening=False)

    def adapt(self, batch: TaskBatch) -> Agent:
        """An agent whose context is the batch's rows ``[1, B]`` in order (offline context)."""
        batch = batch.to(self.device)
        return self.agent_class(self, base=self.features(batch)[0][batch.mask[0]], listening=False)

    def finetune_online(self, evaluator: Any, agent: Agent, task: int, marks: Sequence[int], after_return: float) -> dict[int, float]:
        raise BadInput(
            f"{self.name} adapts by inference, not by gradient steps: it has no online fine-tuning; "
            "evaluate it with eval.mode=offline, online_context or zero_shot"
        )
