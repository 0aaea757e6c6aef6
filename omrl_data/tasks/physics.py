"""Physical-parameter task families: walker_params and hopper_params (rand_param_envs).

A task multiplies every element of the model's ``body_mass``, ``body_inertia`` and
``geom_friction`` by 1.5^u and every element of ``dof_damping`` by 1.3^u, with one exponent
u ~ U(-3, 3) per element, drawn independently (rand_param_envs, used by PEARL, MACAW, MACEGA and
R2PGO). The parameters are those exponents, named ``<field>_log_scale`` and shaped like the model
array (Walker2d: 8, 8x3, 9, 8x3; Hopper: 5, 5x3, 6, 5x3). ``set_task`` always rescales from the
stored default arrays, so switching tasks never compounds and switching back restores the
defaults bit for bit.

Reward v_x + 1 - 1e-3 |a|^2 (the +1 paid on every step, as in the reference); termination:
walker when not (0.8 < height < 2.0 and |angle| < 1); hopper when not (all |s[2:]| < 100 and
height > 0.7 and |angle| < 0.2), non-finite states included. 200 steps per episode.

Features: the exponents of the elements that can change the dynamics, divided by sqrt(3) (unit
variance under the task distribution), flattened in the order mass, inertia, damping, friction.
Left out: the world body's mass and inertia and the root joints' damping, which are zero in the
model and stay zero under any multiplier. Euclidean distance between features is then distance
between log-multipliers (up to the per-field base). Parameter order for the interpolation and
extrapolation splits: the mean mass exponent over the robot's bodies; extrapolation trains on
mean < 0.5 and tests on the heavier robots.

Deviations, deliberately taken:
- Timestep: Gymnasium's models integrate at 0.002 s with frame_skip 4 (dt 0.008 s);
  rand_param_envs used 0.004 s x 4 = 0.016 s. We keep Gymnasium's finer 0.002 s integrator and
  use frame_skip 8, so the control period (0.016 s), the 200-step episode (3.2 s) and the
  velocities in the reward match the reference. Pass ``frame_skip=4`` to get Gymnasium's dt.
- Observations are Gymnasium's, which match the reference: walker 17-D, hopper 11-D
  (qpos[1:], clip(qvel, -10, 10)).
- Reset noise is Gymnasium's (U(-5e-3, 5e-3) on qpos and qvel), the same as the reference.
- Like the reference, ``set_task`` writes the four arrays and does not call ``mj_setConst``, so
  constants MuJoCo derives from masses at compile time (``body_subtreemass``, ``dof_invweight0``,
  used for constraint softness) stay those of the default model; the dynamics (mass matrix,
  bias forces, contacts with the new friction) use the new values at once.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from omrl_data.tasks.base import TaskFamily, check_array, check_keys
from omrl_data.tasks.locomotion import MUJOCO_HORIZON

LOG_SCALE_LIMIT = 3.0  # u ~ U(-3, 3) per element (rand_param_envs' log_scale_limit)
# Base of the multiplier per model field: value = default * base ** u.
BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}
FIELDS = tuple(BASES)
FRAME_SKIP = 8  # 0.002 s x 8 = 0.016 s per step, the reference's control period


class _PhysicsFamily(TaskFamily):
    """A robot whose mass, inertia, damping and friction vary per task."""

    horizon = MUJOCO_HORIZON
    default_tasks = 50
    order_name = "mean body_mass_log_scale"
    default_train_range = (-LOG_SCALE_LIMIT, 0.5)  # heavier robots (mean exponent >= 0.5) are test
    n_bodies: int  # model.nbody (world body included)
    n_dofs: int  # model.nv
    n_geoms: int  # model.ngeom (floor included)
    n_root_dofs = 3  # rootx, rootz, rooty: zero damping in the model

    @property
    def param_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(f"{f}_log_scale" for f in FIELDS)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each parameter, the shape of its model array."""
        return {
            "body_mass_log_scale": (self.n_bodies,),
            "body_inertia_log_scale": (self.n_bodies, 3),
            "dof_damping_log_scale": (self.n_dofs,),
            "geom_friction_log_scale": (self.n_geoms, 3),
        }

    def sample_params(self, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            out.append(
                {k: rng.uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, shape).tolist() for k, shape in self.shapes().items()}
            )
        return out

    def features(self, params: dict[str, Any]) -> np.ndarray:
        parts = [
            np.asarray(params["body_mass_log_scale"])[1:],  # world body: mass 0
            np.asarray(params["body_inertia_log_scale"])[1:].ravel(),  # world body: inertia 0
            np.asarray(params["dof_damping_log_scale"])[self.n_root_dofs :],  # root joints: damping 0
            np.asarray(params["geom_friction_log_scale"]).ravel(),
        ]
        return (np.concatenate(parts) / math.sqrt(3.0)).astype(np.float32)

    def order_key(self, params: dict[str, Any]) -> float:
        return float(np.mean(params["body_mass_log_scale"][1:]))

    def default_params(self) -> dict[str, Any]:
        return {k: np.zeros(shape).tolist() for k, shape in self.shapes().items()}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, self.name, self.param_names)
        return {
            k: check_array(params[k], self.name, k, shape, -LOG_SCALE_LIMIT, LOG_SCALE_LIMIT)
            for k, shape in self.shapes().items()
        }

    def summary(self) -> dict[str, Any]:
        d = super().summary()
        d["param_shapes"] = {k: list(s) for k, s in self.shapes().items()}
        return d


class WalkerParams(_PhysicsFamily):
    name = "walker_params"
    env_id = "omrl/WalkerParams-v0"
    papers = ("MACAW", "MACEGA", "R2PGO", "PEARL")
    obs_dim = 17
    act_dim = 6
    n_bodies, n_dofs, n_geoms = 8, 9, 8
    description = "walker2d with per-element mass, inertia, damping and friction multipliers"


class HopperParams(_PhysicsFamily):
    name = "hopper_params"
    env_id = "omrl/HopperParams-v0"
    papers = ("R2PGO", "PEARL", "CORRO")
    obs_dim = 11
    act_dim = 3
    n_bodies, n_dofs, n_geoms = 5, 6, 5
    description = "hopper with per-element mass, inertia, damping and friction multipliers"
