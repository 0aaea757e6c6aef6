"""What FOCAL, CORRO, CSRO and offline PEARL share: a per-transition context encoder, a context of
transitions per task, the offline actor-critic on ``[s, z]`` and the agent that holds a context.

A method (one file each) subclasses :class:`ContextBaseline` and gives

- ``probabilistic``: the encoder outputs a Gaussian factor per transition (PEARL) instead of a
  point embedding (FOCAL, CORRO, CSRO);
- :meth:`ContextBaseline.representation_loss`: its encoder loss on a training batch;
- ``critic_trains_encoder``: whether the critic's TD loss also reaches the encoder (PEARL) or the
  representation loss alone trains it (FOCAL, CORRO, CSRO);
- its config (a dataclass extending :class:`ContextBaselineConfig`) and ``default_eval_mode``.

One meta-step: ``meta_batch`` tasks; per task a context of ``2 * context_size`` transitions
drawn i.i.d. from the task's data (as FOCAL's and PEARL's context batches), split into two sets
(two sets per task give FOCAL's same-task pairs); the representation loss; the task latent of
the first set; one actor-critic step on ``batch_size`` rows per task with that latent
(:class:`~omrl_algos.offline_ac.OfflineActorCritic`: SAC, or BRAC-regularised with ``beta > 0``).

Transitions are fed to the encoder as ``[s, a, r, s']`` (:func:`omrl_algos.context.transition_features`),
actions in [-1, 1] and rewards times ``reward_scale``, in training and in the agent alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from omrl_algos.actor_critic import metrics_of
from omrl_algos.base import Agent, InferenceAdaptation, MetaAlgorithm
from omrl_algos.context import observed_features, transition_features
from omrl_algos.context_losses import product_of_gaussians
from omrl_algos.meta import grad_norm
from omrl_algos.offline_ac import OfflineActorCritic
from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput

VAR_MIN = 1e-7  # PEARL's floor on a factor's variance


@dataclass
class ContextBaselineConfig:
    """Settings shared by the context baselines (each method's config extends this)."""

    latent_dim: int = 8  # size of the task latent z
    encoder_width: int = 128  # hidden units of the per-transition context encoder
    encoder_depth: int = 2  # hidden layers of the context encoder
    context_size: int = 64  # transitions in one context set in training (two sets per task and meta-step, i.i.d. rows of the task)
    max_context: int = 256  # the test agent's latent reads at most its last this-many transitions
    meta_batch: int = 10  # tasks per meta-step
    batch_size: int = 256  # actor-critic rows per task and meta-step
    width: int = 256  # hidden units of actor, critics and behaviour policy
    depth: int = 2  # hidden layers of actor, critics and behaviour policy
    encoder_lr: float = 3e-4  # Adam lr of the context encoder (and of a method's extra networks)
    actor_lr: float = 3e-4  # Adam lr of the actor
    critic_lr: float = 3e-4  # Adam lr of the critics
    temperature_lr: float = 3e-4  # Adam lr of the entropy temperature
    behaviour_lr: float = 3e-4  # Adam lr of the behaviour policy (beta > 0)
    init_temperature: float = 0.1  # initial SAC temperature alpha
    target_entropy: float = -1.0  # target entropy per action dimension (SAC: -1)
    beta: float = 0.0  # weight of the behaviour-regularisation divergence (BRAC); 0 = plain SAC
    value_penalty: bool = True  # with beta > 0, also penalise the divergence in the critic target (BRAC-v)
    discount: float = -1.0  # gamma; -1 = the dataset's gamma, resolved at the start of training and saved in config.yaml
    tau: float = 0.005  # Polyak rate of the target critics
    reward_scale: float = 1.0  # rewards are multiplied by this (critic targets and encoder input); 1 = raw rewards
    grad_clip: float = 0.0  # clip each group's gradient norm; 0 = off


class TransitionEncoder(nn.Module):
    """``[..., D] -> [..., out]``: a ReLU MLP on one transition."""

    def __init__(self, input_dim: int, out_dim: int, width: int = 128, depth: int = 2):
        super().__init__()
        dims = [input_dim] + [width] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ContextBaseline(InferenceAdaptation, MetaAlgorithm):
    """The shared machinery of the per-transition context methods (module docstring)."""

    Config: ClassVar[type] = ContextBaselineConfig
    probabilistic: ClassVar[bool] = False
    critic_trains_encoder: ClassVar[bool] = False
    non_prior_exploration: ClassVar[bool] = False  # CSRO: explore with uniform actions while the context is empty

    def __init__(self, config: ContextBaselineConfig, obs_dim: int, act_dim: int, device: str | torch.device = "cpu"):
        super().__init__(config, obs_dim, act_dim, device)
        c = config
        self.check_config()
        self.input_dim = 2 * obs_dim + act_dim + 1
        out = 2 * c.latent_dim if self.probabilistic else c.latent_dim
        self.encoder = TransitionEncoder(self.input_dim, out, c.encoder_width, c.encoder_depth).to(self.device)
        self.ac = OfflineActorCritic(obs_dim, act_dim, c.latent_dim, c.width, c.depth, c.init_temperature, c.beta, c.value_penalty).to(self.device)
        self.register_buffer("meta_step", torch.zeros((), dtype=torch.int64, device=self.device))
        extra = self.extra_modules()
        for name, module in extra.items():
            self.add_module(name, module.to(self.device))
        self._groups: dict[str, list[nn.Parameter]] = {"encoder": list(self.encoder.parameters())}
        self._groups.update({name: list(m.parameters()) for name, m in extra.items()})
        self._groups.update(self.ac.parameter_groups())
        lrs = {"actor": c.actor_lr, "critic": c.critic_lr, "temperature": c.temperature_lr, "behaviour": c.behaviour_lr}
        self.optimizer = torch.optim.Adam([{"params": p, "lr": lrs.get(g, c.encoder_lr)} for g, p in self._groups.items()])

    def check_config(self) -> None:
        """Settings no run can use, as one line (BadInput)."""
        c = self.config
        if not 0 < c.tau <= 1:
            raise BadInput(f"algo.tau={c.tau} must be in (0, 1]")
        if c.beta < 0:
            raise BadInput(f"algo.beta={c.beta} must be >= 0 (0 = plain SAC)")
        for key in ("latent_dim", "encoder_depth", "context_size", "max_context"):
            if getattr(c, key) < 1:
                raise BadInput(f"algo.{key}={getattr(c, key)} must be at least 1")

    def extra_modules(self) -> dict[str, nn.Module]:
        """A method's own networks besides encoder and actor-critic (each trained by its own loss
        from :meth:`representation_loss` under the same name); default none."""
        return {}

    # ------------------------------------------------------------------------------ settings
    def make_sampler(self, dataset: Any, seed: int, device: str | torch.device) -> Any:
        if self.config.discount < 0:  # resolved once, saved with the run's config
            self.config.discount = float(dataset.metadata.get("gamma", 0.99))
        return super().make_sampler(dataset, seed, device)

    def reward_scale(self) -> float:
        return float(self.config.reward_scale) or 1.0

    def discount(self) -> float:
        return self.config.discount if self.config.discount >= 0 else 0.99  # 0.99 only in library use without make_sampler

    # ------------------------------------------------------------------------- pure pieces
    def features(self, batch: TaskBatch) -> torch.Tensor:
        """Encoder inputs ``[..., D]`` of a batch's rows (rewards scaled)."""
        return transition_features(batch.observations, batch.actions, batch.rewards * self.reward_scale(), batch.next_observations)

    def factors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-transition Gaussian factors ``(mean, var) [..., latent]`` (probabilistic encoders):
        variance through a softplus, floored at VAR_MIN."""
        mean, raw = self.encoder(x).chunk(2, dim=-1)
        return mean, F.softplus(raw).clamp(min=VAR_MIN)

    def posterior(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, var) [..., latent]`` of contexts ``x [..., C, D]``: the product of the
        per-transition factors (probabilistic) or the mean embedding with variance 0."""
        if self.probabilistic:
            return product_of_gaussians(*self.factors(x), mask)
        e = self.encoder(x)
        if mask is None:
            mean = e.mean(-2)
        else:
            m = mask[..., None].to(e.dtype)
            mean = (e * m).sum(-2) / m.sum(-2).clamp(min=1.0)
        return mean, torch.zeros_like(mean)

    def task_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent the agent acts on for contexts ``x [..., C, D]``: the posterior mean."""
        return self.posterior(x)[0]

    def training_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent the actor-critic trains on: the posterior mean, or a reparameterised sample
        of the posterior for a probabilistic encoder (PEARL)."""
        mean, var = self.posterior(x)
        if not self.probabilistic:
            return mean
        return mean + var.sqrt() * torch.randn_like(mean)

    def representation_loss(self, x: torch.Tensor, context: TaskBatch) -> dict[str, dict[str, torch.Tensor]]:
        """The method's encoder loss on ``x [T, 2C, D]`` (the two context sets of each task, the
        rows of ``context``): ``{"encoder": terms, <extra module name>: terms}``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ training
    def train_step(self, sampler: Any) -> dict[str, float]:
        c = self.config
        self.meta_step += 1
        context = sampler.sample(batch_size=2 * c.context_size)  # [T, 2C]
        tasks = context.task_index.tolist()
        x = self.features(context)
        rep = self.representation_loss(x, context)
        z = self.training_latent(x[:, : c.context_size])  # [T, latent]
        batch = sampler.sample(tasks=tasks)
        t, b = batch.num_tasks, batch.batch_size
        rows = {
            "observations": batch.observations.flatten(0, 1),
            "actions": batch.actions.flatten(0, 1),
            "rewards": batch.rewards.flatten(0, 1) * self.reward_scale(),
            "next_observations": batch.next_observations.flatten(0, 1),
            "terminated": batch.terminated.flatten(0, 1),
        }
        zf = z[:, None, :].expand(t, b, -1).flatten(0, 1)
        if not self.critic_trains_encoder:
            zf = zf.detach()
        ac_terms = self.ac.losses(rows, zf, zf, self.discount(), c.target_entropy * self.act_dim)
        grads = self.ac.gradients(ac_terms)
        for group, terms in rep.items():
            loss = terms["loss"]
            if group == "encoder" and self.critic_trains_encoder:
                loss = loss + ac_terms["critic"]["loss"]
            params = self._groups[group]
            for p, g in zip(params, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)):
                grads[p] = torch.zeros_like(p) if g is None else g
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in grads.items():
            p.grad = g
        metrics = metrics_of(ac_terms)
        for group, terms in rep.items():
            metrics.update({f"train/{group}_{k}": float(v.detach()) for k, v in terms.items()})
        metrics["train/temperature"] = float(self.ac.sac.log_temperature.detach().exp())
        for group, params in self._groups.items():
            metrics[f"train/grad_norm/{group}"] = grad_norm(params)
            if c.grad_clip > 0 and group != "temperature":
                nn.utils.clip_grad_norm_(params, c.grad_clip)
        self.optimizer.step()
        self.ac.sac.update_targets(c.tau)
        return metrics


class TransitionContextAgent(Agent):
    """The context baselines' agent: a context of transitions (``base``, from offline data, then
    what it observes) and the posterior mean over the last ``max_context`` of them; with no
    context, the prior (0).

    ``listening=False``: ``observe`` is ignored (offline-context and prior-only agents).
    ``reset`` forgets the observed transitions; ``base`` stays. With ``explore=True`` it samples
    from the policy; a method with ``non_prior_exploration`` (CSRO) takes uniform random actions
    while its context is empty instead of acting on the prior.
    """

    def __init__(self, algo: ContextBaseline, base: torch.Tensor | None = None, listening: bool = True):
        self.algo = algo
        self.listening = listening
        self.base = base if base is not None else torch.zeros(0, algo.input_dim, device=algo.device)
        self.reset()

    def reset(self) -> None:
        self.history: list[torch.Tensor] = []
        self._z: torch.Tensor | None = None

    @property
    def context_size(self) -> int:
        return len(self.base) + len(self.history)

    def observe(self, transition: dict[str, Any]) -> None:
        if not self.listening:
            return
        self.history.append(observed_features(self.algo, transition))
        self._z = None

    @torch.no_grad()
    def latent(self) -> torch.Tensor:
        """``[latent]``: the posterior mean of the last ``max_context`` transitions (0 with none)."""
        if self._z is None:
            a = self.algo
            if self.context_size == 0:
                self._z = torch.zeros(a.config.latent_dim, device=a.device)
            else:
                rows = torch.cat([self.base, torch.stack(self.history)]) if self.history else self.base
                self._z = a.task_latent(rows[-a.config.max_context:])
        return self._z

    @torch.no_grad()
    def act(self, observations: torch.Tensor, explore: bool = False) -> torch.Tensor:
        a = self.algo
        obs = observations.to(a.device).float()
        if explore and self.generator is None:
            raise ValueError("set agent.generator before acting with explore=True")
        if explore and a.non_prior_exploration and self.context_size == 0:
            u = torch.rand(obs.shape[0], a.act_dim, generator=self.generator, device=self.generator.device).to(a.device)
            return a.action_center + a.action_half * (2 * u - 1)
        z = self.latent().expand(obs.shape[0], -1)
        action = a.ac.act(obs, z, generator=self.generator if explore else None, deterministic=not explore)
        return a.action_center + a.action_half * action


ContextBaseline.agent_class = TransitionContextAgent
