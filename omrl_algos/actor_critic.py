"""The soft actor-critic core shared by the context-based methods (R2PGO here; FOCAL, CORRO, CSRO,
BOReL and offline PEARL train the same kind of task-conditioned actor and critic).

Everything is conditioned on a task latent ``z``:

- :class:`ConditionalMLP` ``f(x, z)``: shared lower layers on ``x`` and, with ``conditioning``
  ``"hyper"``, the last layer's weight and bias generated from ``z`` by a hypernetwork
  (R2PGO's adaptive policy generation, paper 004 section 4.2); ``"concat"``: ``[x, z]`` into a
  plain MLP (the usual context-conditioned policy, R2PGO's "no APG" ablation); ``"none"``: z is
  ignored (a multi-task policy with no task input).
- :class:`SoftActorCritic`: a tanh-Gaussian actor, twin critics with Polyak target copies and a
  learned entropy temperature (Haarnoja et al. 2018), each ``f(., z)``.
- Pure losses (:func:`critic_loss`, :func:`actor_loss`, :func:`temperature_loss`), named terms
  under ``"loss"`` as in :mod:`omrl_algos.losses`.

``SoftActorCritic.update`` does one SAC step on flat rows ``[N, ...]`` with their latents and
returns per-group gradients, so an algorithm can keep one optimizer with parameter groups (the
training loop checkpoints ``algo.optimizer``).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONDITIONINGS = ("hyper", "concat", "none")
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # the usual SAC bounds on the actor's log std


class HyperLinear(nn.Module):
    """A linear layer ``y = W(z) x + b(z)`` whose parameters a hypernetwork generates from ``z``.

    The hypernetwork is ``Linear(latent, hidden) -> ReLU -> Linear(hidden, out * in + out)``. Its
    output layer is initialised so that at init the generated layer is a plain ``nn.Linear``'s
    init (bias of the output layer ~ U(+-1/sqrt(in))) plus a z-dependent part of the same size
    (weights ~ N(0, 1 / (in * hidden))), so the generated layer neither starts at zero nor at a
    scale that saturates what follows.
    """

    def __init__(self, in_features: int, out_features: int, latent_dim: int, hidden: int = 64):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.body = nn.Linear(latent_dim, hidden)
        self.head = nn.Linear(hidden, out_features * in_features + out_features)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 1.0 / math.sqrt(in_features * hidden))
            bound = 1.0 / math.sqrt(in_features)
            self.head.bias.uniform_(-bound, bound)

    def params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``W [..., out, in]`` and ``b [..., out]`` for latents ``z [..., latent]``."""
        flat = self.head(F.relu(self.body(z)))
        n_w = self.out_features * self.in_features
        return flat[..., :n_w].unflatten(-1, (self.out_features, self.in_features)), flat[..., n_w:]

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``x [..., in]``, ``z [..., latent]`` (same leading dims) -> ``[..., out]``."""
        w, b = self.params(z)
        return torch.einsum("...oi,...i->...o", w, x) + b


class ConditionalMLP(nn.Module):
    """``f(x, z)``: ``depth`` hidden ReLU layers of ``width``, then the output layer.

    conditioning: ``"hyper"`` (lower layers on ``x``, the output layer from a hypernetwork of
    ``z``), ``"concat"`` (``[x, z]`` into a plain MLP) or ``"none"`` (``z`` ignored).
    """

    def __init__(self, in_dim: int, out_dim: int, latent_dim: int, width: int = 256, depth: int = 2, conditioning: str = "hyper", hyper_hidden: int = 64):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning {conditioning!r} is not one of {CONDITIONINGS}")
        self.conditioning = conditioning
        first = in_dim + (latent_dim if conditioning == "concat" else 0)
        dims = [first] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        if conditioning == "hyper":
            self.out: nn.Module = HyperLinear(dims[-1], out_dim, latent_dim, hyper_hidden)
        else:
            self.out = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.conditioning == "concat":
            x = torch.cat([x, z], dim=-1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x, z) if self.conditioning == "hyper" else self.out(x)


# ---------------------------------------------------------------------------------- pure pieces
def tanh_gaussian(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Action ``tanh(mean + std * noise)`` in [-1, 1] and its log-density ``[...]`` (the
    change of variables of the tanh included). ``noise`` None: the deterministic action, log-prob
    of the mode."""
    std = log_std.exp()
    u = mean if noise is None else mean + std * noise
    eps = torch.zeros_like(u) if noise is None else noise
    log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), log_prob


def tanh_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``log pi(a)`` of given actions in [-1, 1] under the tanh-Gaussian (for a BC term)."""
    a = actions.clamp(-1 + eps, 1 - eps)
    u = torch.atanh(a)
    z = (u - mean) / log_std.exp()
    log_prob = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    return log_prob - torch.log1p(-a.pow(2) + eps).sum(-1)


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Twin-critic TD regression: ``mean (Q1 - y)^2 + mean (Q2 - y)^2``; all ``[N]``, y constant."""
    l1, l2 = (q1 - target).pow(2).mean(), (q2 - target).pow(2).mean()
    return {"loss": l1 + l2, "q1_mse": l1.detach(), "q_mean": q1.detach().mean()}


def actor_loss(log_prob: torch.Tensor, q: torch.Tensor, temperature: torch.Tensor, bc_log_prob: torch.Tensor | None = None, bc_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """SAC's ``mean (alpha log pi(a|s) - Q(s, a))``, ``a ~ pi``; plus ``-bc_weight * mean log pi(a_data|s)``
    when a behaviour-cloning term is given (an offline regulariser, off unless asked)."""
    loss = (temperature.detach() * log_prob - q).mean()
    out = {"entropy": -log_prob.detach().mean()}
    if bc_log_prob is not None and bc_weight > 0:
        bc = -bc_log_prob.mean()
        loss = loss + bc_weight * bc
        out["bc_nll"] = bc.detach()
    return {"loss": loss, **out}


def temperature_loss(log_temperature: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> dict[str, torch.Tensor]:
    """``-log alpha * mean (log pi + target entropy)`` (automatic entropy tuning)."""
    return {"loss": -(log_temperature * (log_prob.detach() + target_entropy)).mean()}


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q: torch.Tensor, next_log_prob: torch.Tensor, temperature: torch.Tensor, discount: float) -> torch.Tensor:
    """``r + gamma (1 - terminated) (min Q'(s', a') - alpha log pi(a'|s'))``; truncated rows are
    bootstrapped (a time limit is not a terminal state). ``[N]``, detached."""
    soft = next_q - temperature * next_log_prob
    return (rewards + discount * (~terminated).to(rewards.dtype) * soft).detach()


# ------------------------------------------------------------------------------------- the core
class SoftActorCritic(nn.Module):
    """Task-conditioned SAC: actor ``pi(a | s, z)``, critics ``Q_1,2(s, a, z)``, target critics.

    obs_dim, act_dim, latent_dim: sizes; actions live in [-1, 1].
    width, depth: the hidden layers of actor and critics; conditioning: see :class:`ConditionalMLP`.
    """

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, width: int = 256, depth: int = 2, conditioning: str = "hyper", hyper_hidden: int = 64, init_temperature: float = 0.1):
        super().__init__()
        self.act_dim = act_dim
        net = dict(latent_dim=latent_dim, width=width, depth=depth, conditioning=conditioning, hyper_hidden=hyper_hidden)
        self.actor = ConditionalMLP(obs_dim, 2 * act_dim, **net)
        self.critic1 = ConditionalMLP(obs_dim + act_dim, 1, **net)
        self.critic2 = ConditionalMLP(obs_dim + act_dim, 1, **net)
        self.target1 = copy.deepcopy(self.critic1).requires_grad_(False)
        self.target2 = copy.deepcopy(self.critic2).requires_grad_(False)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(init_temperature)))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The trainable parameters by what trains them: actor, critic, temperature."""
        return {
            "actor": list(self.actor.parameters()),
            "critic": list(self.critic1.parameters()) + list(self.critic2.parameters()),
            "temperature": [self.log_temperature],
        }

    def distribution(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's pre-tanh mean and log std ``[..., act_dim]``."""
        mean, log_std = self.actor(obs, z).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def action(self, obs: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """An action in [-1, 1] and its log-prob; noise from ``generator`` (or the global RNG
        during training, which the loop seeds and checkpoints)."""
        mean, log_std = self.distribution(obs, z)
        if deterministic:
            return tanh_gaussian(mean, log_std, None)
        noise = torch.randn(mean.shape, generator=generator, device=generator.device if generator is not None else mean.device).to(mean.device)
        return tanh_gaussian(mean, log_std, noise)

    def q(self, obs: torch.Tensor, actions: torch.Tensor, z: torch.Tensor, target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, actions], dim=-1)
        c1, c2 = (self.target1, self.target2) if target else (self.critic1, self.critic2)
        return c1(x, z).squeeze(-1), c2(x, z).squeeze(-1)

    def losses(self, rows: dict[str, torch.Tensor], z: torch.Tensor, z_next: torch.Tensor, discount: float, target_entropy: float, bc_weight: float = 0.0) -> dict[str, dict[str, torch.Tensor]]:
        """SAC's three losses on flat rows ``{observations [N, obs], actions [N, act], rewards [N],
        next_observations, terminated [N]}`` with latents ``z``, ``z_next [N, latent]``."""
        temperature = self.log_temperature.exp()
        with torch.no_grad():
            next_a, next_logp = self.action(rows["next_observations"], z_next)
            t1, t2 = self.q(rows["next_observations"], next_a, z_next, target=True)
            y = td_target(rows["rewards"], rows["terminated"], torch.min(t1, t2), next_logp, temperature, discount)
        q1, q2 = self.q(rows["observations"], rows["actions"], z)
        critic = critic_loss(q1, q2, y)
        a, logp = self.action(rows["observations"], z)
        # the actor's gradient reaches the critics too; update() keeps only the actor's part
        pq1, pq2 = self.q(rows["observations"], a, z)
        bc_logp = None
        if bc_weight > 0:
            mean, log_std = self.distribution(rows["observations"], z)
            bc_logp = tanh_gaussian_log_prob(mean, log_std, rows["actions"])
        actor = actor_loss(logp, torch.min(pq1, pq2), temperature, bc_logp, bc_weight)
        temp = temperature_loss(self.log_temperature, logp, target_entropy)
        return {"critic": critic, "actor": actor, "temperature": temp}

    def gradients(self, terms: dict[str, dict[str, torch.Tensor]]) -> dict[nn.Parameter, torch.Tensor]:
        """Each loss differentiated w.r.t. its own parameter group only."""
        return group_gradients(terms, self.parameter_groups())

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Polyak averaging of the target critics: ``target <- (1 - tau) target + tau critic``."""
        for target, critic in ((self.target1, self.critic1), (self.target2, self.critic2)):
            for pt, p in zip(target.parameters(), critic.parameters()):
                pt.lerp_(p, tau)


def metrics_of(terms: dict[str, dict[str, torch.Tensor]], prefix: str = "train/") -> dict[str, float]:
    """``train/<group>_<name>`` floats of SAC's loss terms."""
    out: dict[str, Any] = {}
    for group, named in terms.items():
        for k, v in named.items():
            out[f"{prefix}{group}_{k}"] = float(v.detach())
    return out


def group_gradients(terms: dict[str, dict[str, torch.Tensor]], groups: dict[str, list[nn.Parameter]]) -> dict[nn.Parameter, torch.Tensor]:
    """``terms[group]["loss"]`` differentiated w.r.t. that group's parameters only (zeros where a
    parameter does not reach the loss)."""
    out: dict[nn.Parameter, torch.Tensor] = {}
    for group, params in groups.items():
        grads = torch.autograd.grad(terms[group]["loss"], params, retain_graph=True, allow_unused=True)
        for p, g in zip(params, grads):
            out[p] = torch.zeros_like(p) if g is None else g
    return out
