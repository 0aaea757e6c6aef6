"""The offline actor-critic core of the context baselines: task-conditioned SAC (the shared
:class:`~omrl_algos.actor_critic.SoftActorCritic`) and its behaviour-regularised variant.

Behaviour regularisation follows BRAC (Wu et al. 2019), which FOCAL and CSRO train with: a
behaviour policy ``pi_b(a | s, z)`` is fitted to the data by maximum likelihood, and the
divergence ``D(s) = KL(pi(. | s, z) || pi_b(. | s, z))`` is estimated from the actor's own sample
``a ~ pi`` as ``log pi(a | s, z) - log pi_b(a | s, z)``. It enters

- the actor loss (policy regularisation): ``mean(alpha log pi(a) - Q(s, a) + beta D(s))``;
- with ``value_penalty``, the critic target: ``r + gamma (1 - d) (min Q'(s', a') - alpha log pi(a')
  - beta D(s'))`` (BRAC's value penalty).

``beta = 0`` is plain SAC. FOCAL's code estimates the divergence through a learned dual
discriminator; the sample estimate against a fitted ``pi_b`` is the other BRAC estimator, chosen
here because it has no extra adversarial network to tune.

Everything is conditioned on the task latent ``z`` by concatenation (``[s, z]``), as the papers'
context-conditioned policies are. Pure pieces (:func:`brac_actor_loss`, :func:`brac_td_target`,
:func:`behaviour_loss`) return named terms under ``"loss"``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from omrl_algos.actor_critic import ConditionalMLP, LOG_STD_MAX, LOG_STD_MIN, SoftActorCritic, critic_loss, group_gradients, tanh_gaussian, tanh_gaussian_log_prob, temperature_loss


# ---------------------------------------------------------------------------------- pure pieces
def brac_actor_loss(log_prob: torch.Tensor, behaviour_log_prob: torch.Tensor | None, q: torch.Tensor, temperature: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
    """``mean(alpha log pi(a|s) - Q(s, a) + beta (log pi(a|s) - log pi_b(a|s)))`` for ``a ~ pi``;
    all ``[N]``; alpha is detached. ``beta = 0`` (or no behaviour log-prob) is SAC's actor loss."""
    loss = temperature.detach() * log_prob - q
    out: dict[str, torch.Tensor] = {"entropy": -log_prob.detach().mean()}
    if behaviour_log_prob is not None and beta > 0:
        divergence = log_prob - behaviour_log_prob
        loss = loss + beta * divergence
        out["divergence"] = divergence.detach().mean()
    return {"loss": loss.mean(), **out}


def brac_td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor, next_behaviour_log_prob: torch.Tensor | None, temperature: torch.Tensor, beta: float, discount: float) -> torch.Tensor:
    """``r + gamma (1 - terminated) (min Q'(s', a') - alpha log pi(a'|s') - beta (log pi(a'|s') -
    log pi_b(a'|s')))``, ``a' ~ pi``; the penalty only with a behaviour log-prob and ``beta > 0``.
    Truncated rows are bootstrapped. ``[N]``, detached."""
    soft = next_q - temperature * next_log_prob
    if next_behaviour_log_prob is not None and beta > 0:
        soft = soft - beta * (next_log_prob - next_behaviour_log_prob)
    return (rewards + discount * (~terminated).to(rewards.dtype) * soft).detach()


def behaviour_loss(data_log_prob: torch.Tensor) -> dict[str, torch.Tensor]:
    """Maximum likelihood of the data's actions under ``pi_b``: ``-mean log pi_b(a_data | s)``."""
    nll = -data_log_prob.mean()
    return {"loss": nll, "nll": nll.detach()}


# ------------------------------------------------------------------------------------- the core
class BehaviourPolicy(nn.Module):
    """``pi_b(a | s, z)``: a tanh-Gaussian fitted to the data's actions (in [-1, 1])."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, width: int = 256, depth: int = 2):
        super().__init__()
        self.net = ConditionalMLP(obs_dim, 2 * act_dim, latent_dim, width, depth, conditioning="concat")

    def distribution(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs, z).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def log_prob(self, obs: torch.Tensor, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.distribution(obs, z)
        return tanh_gaussian_log_prob(mean, log_std, actions)


class OfflineActorCritic(nn.Module):
    """Task-conditioned SAC on ``[s, z]`` with optional behaviour regularisation (module docstring).

    obs_dim, act_dim, latent_dim: sizes; width, depth: hidden layers of every network.
    beta: weight of the divergence (0 = SAC; no behaviour policy is built). value_penalty: the
    divergence also in the critic target.
    """

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, width: int = 256, depth: int = 2, init_temperature: float = 0.1, beta: float = 0.0, value_penalty: bool = True):
        super().__init__()
        self.beta, self.value_penalty = float(beta), bool(value_penalty)
        self.sac = SoftActorCritic(obs_dim, act_dim, latent_dim, width, depth, "concat", init_temperature=init_temperature)
        self.behaviour = BehaviourPolicy(obs_dim, act_dim, latent_dim, width, depth) if self.beta > 0 else None

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """actor, critic, temperature (SAC's) and, when regularised, behaviour."""
        groups = self.sac.parameter_groups()
        if self.behaviour is not None:
            groups["behaviour"] = list(self.behaviour.parameters())
        return groups

    def sample(self, obs: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``a ~ pi(. | s, z)`` in [-1, 1] and its log-prob; noise from ``generator`` or the global RNG."""
        mean, log_std = self.sac.distribution(obs, z)
        noise = torch.randn(mean.shape, generator=generator, device=generator.device if generator is not None else mean.device).to(mean.device)
        return tanh_gaussian(mean, log_std, noise)

    def losses(self, rows: dict[str, torch.Tensor], z: torch.Tensor, z_next: torch.Tensor, discount: float, target_entropy: float, generator: torch.Generator | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """The losses of one step on flat rows ``{observations [N, obs], actions [N, act] (in
        [-1, 1]), rewards [N], next_observations, terminated [N]}`` with latents ``z``, ``z_next
        [N, latent]``. The critic sees ``z`` as given (so an encoder may learn through the critic,
        as PEARL's); the actor, temperature and behaviour losses see it detached."""
        sac = self.sac
        temperature = sac.log_temperature.exp()
        zd, znd = z.detach(), z_next.detach()
        with torch.no_grad():
            next_a, next_logp = self.sample(rows["next_observations"], znd, generator)
            t1, t2 = sac.q(rows["next_observations"], next_a, znd, target=True)
            next_blogp = None
            if self.behaviour is not None and self.value_penalty:
                next_blogp = self.behaviour.log_prob(rows["next_observations"], znd, next_a)
            y = brac_td_target(rows["rewards"], rows["terminated"], torch.min(t1, t2), next_logp, next_blogp, temperature, self.beta, discount)
        q1, q2 = sac.q(rows["observations"], rows["actions"], z)
        out: dict[str, dict[str, Any]] = {"critic": {**critic_loss(q1, q2, y), "target_mean": y.mean()}}
        a, logp = self.sample(rows["observations"], zd, generator)
        pq1, pq2 = sac.q(rows["observations"], a, zd)
        blogp = None
        if self.behaviour is not None:
            # pi_b is a fixed reference for the actor: gradients() trains it on its own loss only
            blogp = self.behaviour.log_prob(rows["observations"], zd, a)
            out["behaviour"] = behaviour_loss(self.behaviour.log_prob(rows["observations"], zd, rows["actions"]))
        out["actor"] = brac_actor_loss(logp, blogp, torch.min(pq1, pq2), temperature, self.beta)
        out["temperature"] = temperature_loss(sac.log_temperature, logp, target_entropy)
        return out

    def gradients(self, terms: dict[str, dict[str, torch.Tensor]]) -> dict[nn.Parameter, torch.Tensor]:
        """Each loss differentiated w.r.t. its own parameter group only."""
        return group_gradients(terms, self.parameter_groups())

    @torch.no_grad()
    def act(self, obs: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = True) -> torch.Tensor:
        """Actions in [-1, 1]: the tanh of the mean, or a sample with noise from ``generator``."""
        action, _ = self.sac.action(obs, z, generator=generator, deterministic=deterministic)
        return action
