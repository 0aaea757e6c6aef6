"""Evaluation on held-out tasks, shared by every algorithm.

Offline adaptation (paper 001, Alg. 2): for each test task, the adaptation batch (a fixed set of
``adapt_batch`` rows of that task's offline data, from ``TaskBatchSampler.adaptation_batch``, of
the same kind as the algorithm's training support set: ``algo.adaptation_kind()``), the
algorithm's own ``adapt``, then deterministic rollouts (the policy mean, mapped to the env's
action box) in the real task env. Each task reports the return before adaptation
(meta-parameters), after adaptation, and of a uniform random policy, averaged over ``episodes``
episodes with fixed env seeds, raw and as a normalised score
``(R - R_stand_still) / (R_expert - R_stand_still)`` against the dataset's references
(``omrl_data.references``: the zero-action return and the expert tier's mean return).

Three protocols (``eval.mode``; ``auto`` = the algorithm's ``default_eval_mode``), recorded in
eval.json as ``mode``:

1. ``offline`` (offline context): the above. A context method's ``adapt`` turns the batch into
   the agent's context.
2. ``online_context`` (CSRO / FOCAL / CORRO online test): from ``algo.initial_agent()`` (empty
   context), ``eval.explore_episodes`` exploration episodes in the test task (stochastic actions,
   every transition ``observe``d), then the deterministic evaluation episodes with the collected
   context (no further ``observe``). "before" is the same agent with no context.
3. ``zero_shot`` (paper 004 Table 1): ``eval.episodes`` trials of ``eval.trial_episodes``
   deterministic episodes each; the agent is ``reset`` at the start of a trial and ``observe`` s
   every transition from the first step, across the episodes of the trial. Each task row has
   ``episodes`` (the mean return of episode 1, 2, ... over the trials) and ``normalised_episodes``;
   "after" is episode 1 (zero-shot), "before" the agent that never observes.

Parameter-adapting agents ignore ``observe``, so in modes 2 and 3 they act as their meta-policy.

Online fine-tuning (paper 001 Table 1, paper 000 Table III) is the algorithm's hook
``algo.finetune_online`` (``base.MetaAlgorithm``: the MACAW reference procedure by default),
called after offline adaptation for each mark of ``eval.online_steps``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from omrl_algos.base import Agent
from omrl_algos.config import EvalConfig
from omrl_data.errors import BadInput


EVAL_MODES = ("auto", "offline", "online_context", "zero_shot")


def episode_seed(seed: int, task: int, episode: int, stream: int) -> int:
    """The env seed of one evaluation episode: a pure function of (seed, task, episode, stream)."""
    return int(np.random.SeedSequence([seed, task, episode, stream]).generate_state(1)[0])


_episode_seed = episode_seed  # the old private name


def rollout(
    env: Any,
    act: Callable[[np.ndarray], np.ndarray],
    seed: int,
    observe: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, np.ndarray]:
    """One episode from ``env.reset(seed=seed)`` until terminated or truncated.

    ``observe``, if given, receives every transition as it happens (numpy float32 fields
    ``observations``, ``actions`` (env box), ``next_observations``; floats ``rewards``; bools
    ``terminated``, ``truncated``). Returns arrays ``observations [L, obs]``, ``actions [L, act]``,
    ``rewards [L]``, ``terminated [L]``.
    """
    obs, _ = env.reset(seed=seed)
    out: dict[str, list] = {"observations": [], "actions": [], "rewards": [], "terminated": []}
    while True:
        action = np.asarray(act(obs), dtype=np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        out["observations"].append(np.asarray(obs, dtype=np.float32))
        out["actions"].append(action)
        out["rewards"].append(float(reward))
        out["terminated"].append(bool(terminated))
        if observe is not None:
            observe({
                "observations": out["observations"][-1], "actions": action, "rewards": float(reward),
                "next_observations": np.asarray(next_obs, dtype=np.float32), "terminated": bool(terminated), "truncated": bool(truncated),
            })
        obs = next_obs
        if terminated or truncated:
            break
    arrays = {k: np.asarray(v, dtype=np.float32 if k != "terminated" else bool) for k, v in out.items()}
    arrays["final_observation"] = np.asarray(obs, dtype=np.float32)
    return arrays


def normalised(ret: float, stand_still: float | None, expert: float | None) -> float | None:
    """``omrl_data.references.normalised_score``, with None (JSON null) where it is undefined."""
    from omrl_data.references import normalised_score

    score = normalised_score(ret, stand_still, expert)
    return None if np.isnan(score) else float(score)


def agent_actor(agent: Agent, device: torch.device, explore: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Action function ``obs [obs_dim] -> action [act_dim]`` of an agent (deterministic unless
    ``explore``)."""

    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)[None]
        return agent.act(x, explore=explore)[0].cpu().numpy()

    return act


def agent_observer(agent: Agent, device: torch.device) -> Callable[[dict[str, Any]], None]:
    """``rollout``'s ``observe`` callback feeding ``agent.observe`` with tensors on ``device``."""

    def observe(transition: dict[str, Any]) -> None:
        agent.observe({k: torch.as_tensor(v, device=device) for k, v in transition.items()})

    return observe


class Evaluator:
    """Evaluates algorithms on the test tasks of a dataset.

    dataset: the ``MultiTaskDataset`` (its test split are the held-out tasks).
    config: :class:`EvalConfig`. seed: fixes adaptation batches and env seeds.
    make_env: ``params -> gym.Env``; default: the dataset family's ``make_env``.
    Random-policy returns are computed once per task and reused.
    """

    def __init__(self, dataset: Any, config: EvalConfig, seed: int = 0, device: str | torch.device = "cpu", make_env: Callable[[dict], Any] | None = None):
        from omrl_data.sampler import TaskBatchSampler

        self.dataset, self.config, self.seed = dataset, config, int(seed)
        self.device = torch.device(device)
        tasks = [int(i) for i in dataset.tasks.indices("test")]
        if not tasks:
            raise BadInput(f"dataset {dataset.id or ''} has no test tasks to evaluate on; use a dataset with a train/test split")
        if config.max_tasks > 0:
            tasks = tasks[: config.max_tasks]
        self.tasks = tasks
        if config.episodes < 1:
            raise BadInput(f"eval episodes={config.episodes} must be at least 1")
        if config.mode not in EVAL_MODES:
            raise BadInput(f"eval.mode={config.mode!r} is not one of {', '.join(EVAL_MODES)}")
        if config.adapt_draws < 1:
            raise BadInput(f"eval.adapt_draws={config.adapt_draws} must be at least 1")
        if config.trial_episodes < 1:
            raise BadInput(f"eval.trial_episodes={config.trial_episodes} must be at least 1")
        # packed=False: on the CPU the evaluation sampler shares the dataset's arrays (no second copy).
        self.sampler = TaskBatchSampler(
            dataset, tasks=tasks, batch_size=config.adapt_batch, seed=self.seed, device=self.device, packed=False, bootstrap=True, normalise_actions=True
        )
        small = [t for t in tasks if int(dataset.task_sizes[t]) < config.adapt_batch]
        if small:
            raise BadInput(f"test task {small[0]} holds {int(dataset.task_sizes[small[0]])} transitions, fewer than the adaptation batch of {config.adapt_batch}; lower eval.adapt_batch")
        if make_env is None:
            from omrl_data.tasks import get_family

            family = get_family(dataset.metadata.get("family", dataset.tasks.family))
            make_env = family.make_env
        self._make_env = make_env
        self._envs: dict[int, Any] = {}
        self._random: dict[int, float] = {}
        self.gamma = float(dataset.metadata.get("gamma", 0.99))
        self.env(self.tasks[0])  # a dataset/env mismatch fails here, before any training
        self._references: dict[str, Any] | None = None

    def env(self, task: int) -> Any:
        if task not in self._envs:
            env = self._make_env(self.dataset.tasks.params[task])
            obs_dim = int(np.prod(env.observation_space.shape))
            act_dim = int(np.prod(env.action_space.shape))
            if (obs_dim, act_dim) != (self.dataset.obs_dim, self.dataset.act_dim):
                raise BadInput(
                    f"the task env has obs/act dims {obs_dim}/{act_dim} but the dataset has {self.dataset.obs_dim}/{self.dataset.act_dim}; "
                    "the dataset was made with another env version"
                )
            self._envs[task] = env
        return self._envs[task]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    # -------------------------------------------------------------------------------- returns
    def mean_return(self, task: int, act: Callable[[np.ndarray], np.ndarray], stream: int = 0) -> float:
        """Mean undiscounted return of ``act`` over ``episodes`` fixed-seed episodes."""
        env = self.env(task)
        returns = [rollout(env, act, episode_seed(self.seed, task, e, stream))["rewards"].sum() for e in range(self.config.episodes)]
        return float(np.mean(returns))

    def random_return(self, task: int) -> float:
        if task not in self._random:
            env = self.env(task)
            rng = np.random.default_rng([self.seed, task, 0x5A])
            low, high = env.action_space.low, env.action_space.high
            self._random[task] = self.mean_return(task, lambda obs: rng.uniform(low, high).astype(np.float32), stream=1)
        return self._random[task]

    def adaptation_batch(self, task: int, kind: dict[str, Any] | None = None, draw: int = 0) -> Any:
        """The fixed adaptation batch number ``draw`` of ``task`` (actions in [-1, 1]); ``kind``:
        the algorithm's ``adaptation_kind()`` (i.i.d. rows when None)."""
        return self.sampler.adaptation_batch(task, self.config.adapt_batch, draw=draw, **(kind or {}))

    def references(self) -> dict[str, Any]:
        """The dataset's normalised-score references (stand_still, expert, random per task)."""
        if self._references is None:
            from omrl_data.references import references_of

            self._references = references_of(self.dataset)
        return self._references

    def reference(self, name: str, task: int) -> float | None:
        values = self.references().get(name)
        if values is None or values[task] is None:
            return None
        return float(values[task])

    def mode_of(self, algo: Any) -> str:
        """The protocol used for ``algo``: ``eval.mode``, or the algorithm's default for ``auto``."""
        mode = self.config.mode
        return getattr(algo, "default_eval_mode", "offline") if mode == "auto" else mode

    def agent_return(self, task: int, agent: Agent, stream: int = 0, first_episode: int = 0) -> float:
        """Mean deterministic return of ``agent`` over ``episodes`` fixed-seed episodes (numbers
        ``first_episode`` on), reset before each and observing nothing (its context stays what it
        was given)."""
        env = self.env(task)
        actor = agent_actor(agent, self.device)
        returns = []
        for e in range(first_episode, first_episode + self.config.episodes):
            agent.reset()
            returns.append(rollout(env, actor, episode_seed(self.seed, task, e, stream))["rewards"].sum())
        return float(np.mean(returns))

    def adapted_agents(self, algo: Any, task: int, kind: dict[str, Any] | None) -> list[Agent]:
        """Mode 1: the agents adapted on the task's ``adapt_draws`` adaptation batches."""
        return [algo.adapt(self.adaptation_batch(task, kind, draw=d)) for d in range(self.config.adapt_draws)]

    def adapted_return(self, task: int, agents: list[Agent]) -> float:
        """Mean return of the adapted agents, agent ``d`` on its own ``episodes`` episodes."""
        n = self.config.episodes
        return float(np.mean([self.agent_return(task, a, first_episode=d * n) for d, a in enumerate(agents)]))

    def online_context_return(self, algo: Any, task: int) -> float:
        """Mode 2: ``explore_episodes`` stochastic episodes observed by the agent, then the
        deterministic evaluation episodes with the collected context."""
        env = self.env(task)
        agent = algo.initial_agent()
        agent.reset()
        agent.generator = torch.Generator().manual_seed(episode_seed(self.seed, task, 0, 4))
        explore, observe = agent_actor(agent, self.device, explore=True), agent_observer(agent, self.device)
        for k in range(self.config.explore_episodes):
            rollout(env, explore, episode_seed(self.seed, task, k, 4), observe)
        return self.mean_return(task, agent_actor(agent, self.device))

    def zero_shot_returns(self, algo: Any, task: int) -> list[float]:
        """Mode 3: mean return of episode 1..K of a trial (K = ``trial_episodes``) over
        ``episodes`` trials; the agent is reset at each trial's start and observes every step."""
        env = self.env(task)
        agent = algo.initial_agent()
        actor, observe = agent_actor(agent, self.device), agent_observer(agent, self.device)
        k_eps = self.config.trial_episodes
        returns = np.zeros((self.config.episodes, k_eps))
        for trial in range(self.config.episodes):
            agent.reset()
            for k in range(k_eps):
                returns[trial, k] = rollout(env, actor, episode_seed(self.seed, task, trial * k_eps + k, 5), observe)["rewards"].sum()
        return [float(v) for v in returns.mean(0)]

    def evaluate(self, algo: Any, online_steps: Sequence[int] | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Per-task returns before/after adaptation (and random, and online fine-tuning), in the
        protocol of :meth:`mode_of` (module docstring).

        Returns ``{"mode", "tasks": [{"task", "params", "before", "after", "random"?, "online"?,
        "episodes"? (zero-shot)}], "mean": {"before", "after", "random"?, "online"?, "episodes"?}}``.
        """
        online = sorted({int(s) for s in (self.config.online_steps if online_steps is None else online_steps)})
        if any(s < 0 for s in online):
            raise BadInput(f"online steps {online} must be >= 0")
        mode = self.mode_of(algo)
        if mode not in EVAL_MODES[1:]:
            raise BadInput(f"eval.mode={mode!r} is not one of {', '.join(EVAL_MODES)}")
        if online and mode != "offline":
            raise BadInput(f"online fine-tuning runs after offline adaptation; use eval.mode=offline (not {mode}) with online steps")
        was_training = algo.training
        algo.eval()
        rows = []
        before_actor = agent_actor(algo.meta_agent(), self.device) if mode == "offline" else None
        kind = algo.adaptation_kind()
        for i, task in enumerate(self.tasks):
            row: dict[str, Any] = {"task": task, "params": self.dataset.tasks.params[task]}
            if mode == "offline":
                agents = self.adapted_agents(algo, task, kind)
                agent = agents[0]  # online fine-tuning continues the agent of batch 0
                row["before"] = self.mean_return(task, before_actor)
                row["after"] = self.adapted_return(task, agents)
            elif mode == "online_context":
                row["before"] = self.agent_return(task, algo.initial_agent())
                row["after"] = self.online_context_return(algo, task)
            else:
                row["before"] = self.agent_return(task, algo.initial_agent())
                row["episodes"] = self.zero_shot_returns(algo, task)
                row["after"] = row["episodes"][0]
            if self.config.random_policy:
                row["random"] = self.random_return(task)
            row["stand_still"] = self.reference("stand_still", task)
            row["expert"] = self.reference("expert", task)
            row["normalised"] = {k: normalised(row[k], row["stand_still"], row["expert"]) for k in ("before", "after", "random") if k in row}
            if "episodes" in row:
                row["normalised_episodes"] = [normalised(r, row["stand_still"], row["expert"]) for r in row["episodes"]]
            if online:
                row["online"] = {str(k): v for k, v in self.finetune_online(algo, agent, task, online, row["after"]).items()}
            rows.append(row)
            if progress is not None:
                progress(i + 1, len(self.tasks))
        algo.train(was_training)
        mean: dict[str, Any] = {k: float(np.mean([r[k] for r in rows])) for k in ("before", "after", "random") if k in rows[0]}
        for k in ("stand_still", "expert"):
            values = [r[k] for r in rows]
            mean[k] = None if any(v is None for v in values) else float(np.mean(values))
        mean["normalised"] = {}
        for k in rows[0]["normalised"]:
            values = [r["normalised"][k] for r in rows]
            mean["normalised"][k] = None if any(v is None for v in values) else float(np.mean(values))
        if mode == "zero_shot":
            mean["episodes"] = [float(v) for v in np.mean([r["episodes"] for r in rows], axis=0)]
            per = list(zip(*[r["normalised_episodes"] for r in rows]))
            mean["normalised_episodes"] = [None if any(v is None for v in vs) else float(np.mean(vs)) for vs in per]
        if online:
            mean["online"] = {str(s): float(np.mean([r["online"][str(s)] for r in rows])) for s in online}
        return {"mode": mode, "tasks": rows, "mean": mean}

    # --------------------------------------------------------------------- online fine-tuning
    def finetune_online(self, algo: Any, agent: Agent, task: int, marks: Sequence[int], after_return: float) -> dict[int, float]:
        """Deterministic returns after ``marks`` online env steps of fine-tuning ``agent``: the
        algorithm's hook ``algo.finetune_online`` (default: the MACAW reference procedure)."""
        return algo.finetune_online(self, agent, task, marks, after_return)
