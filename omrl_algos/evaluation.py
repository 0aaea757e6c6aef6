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

Online fine-tuning (paper 001 Table 1, paper 000 Table III; reference procedure): after
adaptation, rounds of one stochastic episode each are added to a buffer that starts with the
adaptation batch, and after ``online_burn_in`` rounds every round is followed by
``online_value_updates`` value and ``online_policy_updates`` policy Adam updates (lr
``online_lr``, batch ``online_batch``) on the algorithm's online losses. The deterministic return
is recorded at each requested step count, at the first round boundary at or after it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from omrl_algos.base import Agent
from omrl_algos.config import EvalConfig
from omrl_algos.targets import episode_targets
from omrl_data.errors import BadInput


def _episode_seed(seed: int, task: int, episode: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, task, episode, stream]).generate_state(1)[0])


def rollout(env: Any, act: Callable[[np.ndarray], np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """One episode from ``env.reset(seed=seed)`` until terminated or truncated.

    Returns arrays ``observations [L, obs]``, ``actions [L, act]``, ``rewards [L]``,
    ``terminated [L]``.
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


def agent_actor(agent: Agent, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """Deterministic action function ``obs [obs_dim] -> action [act_dim]`` of an agent."""

    def act(obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)[None]
        return agent.act(x)[0].cpu().numpy()

    return act


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
        returns = [rollout(env, act, _episode_seed(self.seed, task, e, stream))["rewards"].sum() for e in range(self.config.episodes)]
        return float(np.mean(returns))

    def random_return(self, task: int) -> float:
        if task not in self._random:
            env = self.env(task)
            rng = np.random.default_rng([self.seed, task, 0x5A])
            low, high = env.action_space.low, env.action_space.high
            self._random[task] = self.mean_return(task, lambda obs: rng.uniform(low, high).astype(np.float32), stream=1)
        return self._random[task]

    def adaptation_batch(self, task: int, kind: dict[str, Any] | None = None) -> Any:
        """The fixed adaptation batch of ``task`` (actions in [-1, 1]); ``kind``: the algorithm's
        ``adaptation_kind()`` (i.i.d. rows when None)."""
        return self.sampler.adaptation_batch(task, self.config.adapt_batch, **(kind or {}))

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

    def evaluate(self, algo: Any, online_steps: Sequence[int] | None = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Per-task returns before/after adaptation (and random, and online fine-tuning).

        Returns ``{"tasks": [{"task", "params", "before", "after", "random"?, "online"?}],
        "mean": {"before", "after", "random"?, "online"?}}``.
        """
        online = sorted({int(s) for s in (self.config.online_steps if online_steps is None else online_steps)})
        if any(s < 0 for s in online):
            raise BadInput(f"online steps {online} must be >= 0")
        was_training = algo.training
        algo.eval()
        rows = []
        before_actor = agent_actor(algo.meta_agent(), self.device)
        kind = algo.adaptation_kind()
        for i, task in enumerate(self.tasks):
            agent = algo.adapt(self.adaptation_batch(task, kind))
            row: dict[str, Any] = {
                "task": task,
                "params": self.dataset.tasks.params[task],
                "before": self.mean_return(task, before_actor),
                "after": self.mean_return(task, agent_actor(agent, self.device)),
            }
            if self.config.random_policy:
                row["random"] = self.random_return(task)
            row["stand_still"] = self.reference("stand_still", task)
            row["expert"] = self.reference("expert", task)
            row["normalised"] = {k: normalised(row[k], row["stand_still"], row["expert"]) for k in ("before", "after", "random") if k in row}
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
        if online:
            mean["online"] = {str(s): float(np.mean([r["online"][str(s)] for r in rows])) for s in online}
        return {"tasks": rows, "mean": mean}

    # --------------------------------------------------------------------- online fine-tuning
    def finetune_online(self, algo: Any, agent: Agent, task: int, marks: Sequence[int], after_return: float) -> dict[int, float]:
        """Deterministic returns after ``marks`` online env steps of fine-tuning ``agent``."""
        cfg = self.config
        env = self.env(task)
        if agent.value is None:
            raise BadInput(f"algorithm {algo.name} has no value function; online fine-tuning needs one")
        policy_params = {k: v.clone().requires_grad_(True) for k, v in agent.policy_params.items()}
        value_params = {k: v.clone().requires_grad_(True) for k, v in agent.value_params.items()}
        opt_v = torch.optim.Adam(value_params.values(), lr=cfg.online_lr)
        opt_p = torch.optim.Adam(policy_params.values(), lr=cfg.online_lr)
        batch = self.adaptation_batch(task, algo.adaptation_kind())
        # The buffer holds actions in [-1, 1] (the policy's space) and the target fields.
        names = ("observations", "actions", "mc_returns", "mc_bootstrap_discount", "bootstrap_observations")
        buffer = {k: getattr(batch, k)[0].to(self.device) for k in names}
        gen = torch.Generator().manual_seed(_episode_seed(self.seed, task, 0, 2))
        results: dict[int, float] = {}
        steps, rounds = 0, 0
        pending = list(marks)
        while pending and pending[0] <= steps:
            results[pending.pop(0)] = after_return
        while pending:
            current = agent.with_params(policy_params, value_params)
            taken: list[np.ndarray] = []

            def explore(obs: np.ndarray) -> np.ndarray:
                a = current.sample(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)[None], gen)
                taken.append(a[0].cpu().numpy())
                return current.to_env(a)[0].cpu().numpy()

            episode = rollout(env, explore, _episode_seed(self.seed, task, 1000 + rounds, 3))
            fields = episode_targets(episode["rewards"], bool(episode["terminated"][-1]), episode["final_observation"], self.gamma)
            new = {
                "observations": torch.as_tensor(episode["observations"], device=self.device),
                "actions": torch.as_tensor(np.stack(taken), device=self.device),
                **{k: torch.as_tensor(v, device=self.device) for k, v in fields.items()},
            }
            buffer = {k: torch.cat([buffer[k], new[k]]) for k in buffer}
            steps += len(episode["rewards"])
            rounds += 1
            if rounds > cfg.online_burn_in:
                n = len(buffer["observations"])
                for updates, opt, loss_fn in (
                    (cfg.online_value_updates, opt_v, lambda b: algo.online_value_loss(agent, value_params, b)),
                    (cfg.online_policy_updates, opt_p, lambda b: algo.online_policy_loss(agent, policy_params, value_params, b)),
                ):
                    for _ in range(updates):
                        idx = torch.randint(0, n, (min(cfg.online_batch, n),), generator=gen).to(self.device)
                        loss = loss_fn({k: v.index_select(0, idx) for k, v in buffer.items()})
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
            while pending and pending[0] <= steps:
                tuned = agent.with_params(policy_params, value_params)
                results[pending.pop(0)] = self.mean_return(task, agent_actor(tuned, self.device))
        return results
