"""The fidelity protocol's recipes: what is collected and how each algorithm is trained, per budget.

Everything a budget decides sits in the three tables of :data:`BUDGETS` below, one line per
setting with a comment. Edit the numbers there; nothing else in the package holds a budget.

- ``collect[family]``: the fields of :class:`omrl_data.collection.CollectConfig` (execution fields
  such as ``workers`` and ``device`` come from the command line; see :func:`collect_config`).
  ``shards`` (shared mode only) fixes the number of SAC learners, so the data do not depend on how
  many workers the machine has.
- ``train[family]``: ``--set`` settings every algorithm gets on that family (meta-steps,
  evaluation).
- ``algo[algorithm]``: ``--set`` settings of one algorithm on every family (network width, latent
  size, batch sizes, outer learning rates). Only these four kinds of setting may differ from
  ``omrl-train <algo>``'s own defaults in the small budget (issue 14, item 8).
- ``algo_family[(family, algorithm)]``: rare exceptions to the two tables above (one of them,
  R2PGO/BOReL's ``encoder_steps`` on point_robot_sparse, is not one of those four kinds: said
  where it is set).

:data:`ALGORITHMS` is the protocol's default list; :data:`CONTEXT_ALGORITHMS` have recipes in
every budget and run when ``--algorithms`` names them.

Budgets:

- ``small``: cheetah_dir, cheetah_vel, point_robot_sparse, bandit on a 2-core CPU in under an
  hour, collection included (the wall-time plan is written next to each family).
- ``full``: the papers' recipe sizes (reference.md sections 2-3), for a GPU machine
  (``--device cuda``); days of compute.
- ``tiny``: random-action data of a few hundred steps and a few meta-steps, for the tests.

Every run also gets ``train.threads=1`` and ``train.checkpoint_every=0`` (:data:`ALWAYS`):
the runs go in parallel, one per core.
"""
from __future__ import annotations

from typing import Any

from omrl_data.errors import BadInput

FAMILIES = ("cheetah_dir", "cheetah_vel", "point_robot_sparse", "bandit")
ALGORITHMS = ("macaw", "macega", "mtft", "metabc")  # the protocol's default list (make fidelity)
# The context methods (issue 13): accepted by --algorithms, not run by default (their comparison
# with MACAW is docs/context-results.md).
CONTEXT_ALGORITHMS = ("r2pgo", "focal", "corro", "csro", "borel", "pearl")

# Settings of every run of the protocol, whatever the budget.
ALWAYS: dict[str, Any] = {
    "train.threads": 1,  # runs go in parallel, one per core; torch's own threads would fight them
    "train.checkpoint_every": 0,  # keep only checkpoints/latest.pt (written at every evaluation)
}

# Settings of the small budget shared by the meta-learners (MACAW, MACEGA): a smaller network and
# batch than the paper, outer lrs sized for a few thousand meta-steps (the paper's 1e-5 / 1e-4
# are for ~1e5). Everything else is omrl-train's default.
_SMALL_META = {
    "algo.width": 64,  # paper: 100
    "algo.latent_dim": 16,  # weight-transform latent size; paper: 100
    "algo.support_size": 128,  # inner-loop rows per task; paper: 256
    "algo.query_size": 128,  # outer-loop rows per task; paper: 256
    "algo.value_lr": 1e-3,  # outer Adam lr of the value; paper: 1e-5
    "algo.policy_lr": 1e-3,  # outer Adam lr of the policy; paper: 1e-4
}

# Settings of the small budget shared by the per-transition context methods (FOCAL, CORRO, CSRO,
# offline PEARL).
_SMALL_CONTEXT = {
    "algo.width": 64,  # actor, critics, behaviour policy; default 256
    "algo.encoder_width": 64,  # per-transition context encoder; default 128
    "algo.batch_size": 128,  # actor-critic rows per task and meta-step; default 256
}
# ... and by the recurrent-VAE methods (R2PGO, BOReL); their encoder sizes (GRU 64) are already small.
_SMALL_CONTEXT_SEQ = {
    "algo.width": 64,  # actor and critics; default 256
    "algo.batch_size": 128,  # SAC rows per task and meta-step; default 256
}

# The tiny budget's context methods: small everything, and R2PGO/BOReL's policy phase starts at
# meta-step 10 of 20 (its default, 1000, would leave the tests' policy untrained).
_TINY_CONTEXT = {"algo.width": 16, "algo.encoder_width": 16, "algo.latent_dim": 4, "algo.batch_size": 32,
                 "algo.context_size": 16, "algo.max_context": 32}
_TINY_CONTEXT_SEQ = {"algo.width": 16, "algo.latent_dim": 4, "algo.batch_size": 32, "algo.encoder_hidden": 16,
                     "algo.encoder_embed": 8, "algo.decoder_width": 16, "algo.hyper_hidden": 8,
                     "algo.context_length": 8, "algo.n_negatives": 4, "algo.encoder_steps": 10}

BUDGETS: dict[str, dict[str, Any]] = {
    # ============================================================================ small (2-core CPU)
    # Wall-time plan on the idle 2-core machine, 2 workers: collection ~12 min (cheetah_dir ~5.5,
    # cheetah_vel ~6, point robot ~0.5, bandit < 0.2); training 48 runs ~23 min. Per meta-step at
    # these sizes (meta-batch 5, measured at load 5.5 and scaled by ~2.5 for an idle machine):
    # MACAW ~0.045 s, MACEGA ~0.08 s, meta-BC ~0.023 s, MT+FT ~0.006 s; cheetah_dir (2 tasks) ~0.6x
    # that; ~10 s per run for start-up and evaluations. Headroom: ~25 min.
    "small": {
        "collect": {
            "cheetah_dir": dict(
                tasks=2,  # d = +1 and -1, evaluated with train = test as in MACAW/MACEGA
                split="random",  # cheetah_dir's random split is train = test
                mode="per-task",  # one SAC per direction, its whole replay stream (MACAW's recipe)
                steps_per_task=30_000,  # ~5.5 min on 2 workers; behaviour 218 fwd / 718 bwd in the last 10% (issue 14)
            ),
            "cheetah_vel": dict(
                tasks=10,  # MACAW grid linspace(0.075, 3.0, 10)
                grid=True,
                split="interpolation",  # held-out tasks lie inside the training range
                split_args={"every": 4},  # test = grid positions 2, 6 (v* 0.725, 2.025); 8 train
                mode="shared",  # one task-conditioned SAC per shard over a vector of its task envs
                shards=2,  # two learners of 5 tasks each (= 2 workers)
                steps_per_task=20_000,  # 20k vector steps per shard
                sac={"updates_per_step": 2.0},  # 40k SAC updates per shard; 27 min at load ~6 (the main job embeds a 10k-row-per-task slice of it)
            ),
            "point_robot_sparse": dict(
                tasks=10,  # goals at angles linspace(0, pi, 10) (PEARL/FOCAL grid)
                grid=True,
                split="interpolation",
                split_args={"every": 3},  # test = positions 1, 4, 7
                mode="shared",
                shards=2,
                steps_per_task=12_000,  # 600 episodes of 20 steps per task; at 4,000 the learners were still improving (expert tier 1.9-3.7, MACAW / MACEGA / meta-BC at stand-still)
                sac={"net_arch": [128, 128], "learning_starts": 500},  # a 2-D task needs no 256x256 SAC
            ),
            # Not in the protocol's default families: the dynamics-changing families' small recipes
            # (dataset cards; the context methods' comparison of issue 13). Shared SAC as cheetah_vel.
            "hopper_params": dict(
                tasks=8,
                split="random",
                split_args={"test_fraction": 0.25},  # 2 held-out dynamics
                mode="shared",
                shards=2,  # two learners of 4 tasks each (= 2 workers)
                steps_per_task=15_000,
                sac={"updates_per_step": 2.0},
            ),
            "walker_params": dict(
                tasks=8,
                split="random",
                split_args={"test_fraction": 0.25},
                mode="shared",
                shards=2,  # two learners of 4 tasks each (= 2 workers)
                steps_per_task=15_000,
                sac={"updates_per_step": 2.0},
            ),
            "bandit": dict(
                tasks=16,  # paper 003: 12 training tasks (+ 4 held out here)
                split="random",
                split_args={"test_fraction": 0.25},  # 4 test tasks
                mode="random",  # uniform random pulls, as paper 003's buffer
                steps_per_task=2_000,  # 200 episodes of 10 pulls; 32k transitions in all
                gamma=0.01,  # the bandit has no state to carry value (issue 14: at 0.99 MC returns rank arms wrongly)
            ),
        },
        "train": {
            "cheetah_dir": {
                "train.steps": 2_000,  # meta-steps; MACAW (weight transforms) passed 1.0 normalised by 1,000-1,500 here
                "train.eval_every": 500,  # also the resume granularity (latest.pt)
                "eval.episodes": 3,  # deterministic rollouts per test task and policy
                "eval.adapt_draws": 10,  # adaptation batches per task ("after" = their mean): with one, the same trained MACAW (seed 2) scored forward 0.20, with three 0.74 (session 7); three still let MACEGA runs that adapt forward from only some batches score like MACAW (forward 0.72 with 3, 0.31 with 10 over 6 seeds; MACAW 0.72 / 0.75; session 8, docs/algorithms.md "cheetah_dir's forward task"). ~11 s per evaluation
            },
            "cheetah_vel": {
                "train.steps": 4_000,  # MACAW: 0.32 normalised at 2,000 meta-steps, 0.72 at 4,000 (3 seeds each; README)
                "train.eval_every": 500,
                "eval.episodes": 3,
            },
            "point_robot_sparse": {
                "train.steps": 1_000,
                "train.eval_every": 250,
                "eval.episodes": 3,
            },
            "hopper_params": {"train.steps": 4_000, "train.eval_every": 500, "eval.episodes": 3},  # as cheetah_vel; not yet run
            "walker_params": {"train.steps": 4_000, "train.eval_every": 500, "eval.episodes": 3},
            "bandit": {
                "train.steps": 500,  # paper 003: near-optimal after ~250 iterations
                "train.eval_every": 250,
                "eval.episodes": 20,  # 10 Bernoulli pulls per episode: with 3 episodes one task's normalised score moved by +-0.4 between evaluations of the same policy
            },
        },
        "algo": {
            "macaw": dict(_SMALL_META),
            "macega": dict(_SMALL_META),
            "mtft": {
                "algo.width": 64,
                "algo.latent_dim": 16,
                "algo.batch_size": 128,  # rows per drawn task and step
                "algo.value_lr": 1e-3,  # default 1e-4
                "algo.policy_lr": 1e-3,  # default 1e-4
            },
            "metabc": {
                "algo.width": 64,
                "algo.latent_dim": 16,
                "algo.support_size": 128,
                "algo.query_size": 128,
                "algo.policy_lr": 1e-3,  # default 1e-4
            },
            # The context methods: MACAW's small width and half the actor-critic rows; latent
            # sizes and the lrs (3e-4, SAC's) are omrl-train's defaults. Seconds per meta-step at
            # these sizes, one thread, load 2-2.7 (point robot / cheetah_vel / hopper): FOCAL 0.012 /
            # 0.014 / 0.013, CORRO 0.014 / 0.018 / 0.014, CSRO 0.049 / 0.052 / 0.038, PEARL 0.010 /
            # 0.012 / 0.010, R2PGO 0.018 / 0.024 / 0.020 (encoder phase 0.06), BOReL 0.011 / 0.011 /
            # 0.016 (encoder phase 0.03); MACAW 0.043 / 0.049 / 0.056. Not in the default list: the
            # seven on the three families with 3 seeds take ~2 h on one core at load 2-5 (docs/context-results.md).
            "r2pgo": dict(_SMALL_CONTEXT_SEQ),
            "borel": dict(_SMALL_CONTEXT_SEQ),
            "focal": dict(_SMALL_CONTEXT),
            "corro": dict(_SMALL_CONTEXT),
            "csro": dict(_SMALL_CONTEXT),
            "pearl": dict(_SMALL_CONTEXT),
        },
        "algo_family": {
            # The bandit's 12 training tasks: at outer lr 1e-3 MACAW passed 1.0 normalised at 250
            # meta-steps and fell back by 500 (seeds 0.79 / -0.47 / 0.57); at 3e-4: 0.94 / 0.83 /
            # 0.78 at 500 (docs/algorithms.md, "The bandit's outer lrs").
            ("bandit", "macaw"): {"algo.value_lr": 3e-4, "algo.policy_lr": 3e-4},
            ("bandit", "macega"): {"algo.value_lr": 3e-4, "algo.policy_lr": 3e-4},
            # point_robot_sparse on the 12k-step data (expert tier 10-12): at outer lrs 1e-3 the
            # values diverged (MACAW 3 of 3 seeds, MACEGA 1 of 3, MT+FT 2 of 3 stopped by the NaN
            # check); MACAW seed 0 at value 1e-4 / policy 3e-4: 0.55 / 0.86 / 0.48 / 0.44
            # normalised after 250 / 500 / 750 / 1,000 meta-steps (value 1e-4 / policy 1e-3: 0.81
            # / 0.24 / 0.32 / 0.07). Chosen on that one seed; the protocol's table has all three.
            ("point_robot_sparse", "macaw"): {"algo.value_lr": 1e-4, "algo.policy_lr": 3e-4},
            ("point_robot_sparse", "macega"): {"algo.value_lr": 1e-4, "algo.policy_lr": 3e-4},
            ("point_robot_sparse", "mtft"): {"algo.value_lr": 1e-4, "algo.policy_lr": 3e-4},
            # R2PGO/BOReL train the task encoder alone for the first encoder_steps meta-steps (default
            # 1,000), then the policy: with point_robot_sparse's 1,000 meta-steps the policy would never
            # train. 250 keeps the other families' split (a quarter of the run). Not one of the four
            # kinds of small-budget setting: the one exception, said in docs/context-results.md.
            ("point_robot_sparse", "r2pgo"): {"algo.encoder_steps": 250},
            ("point_robot_sparse", "borel"): {"algo.encoder_steps": 250},
        },
    },
    # ================================================================== full (papers' sizes, GPU)
    "full": {
        "collect": {
            "cheetah_dir": dict(
                tasks=2,
                split="random",  # train = test
                mode="per-task",
                steps_per_task=1_000_000,  # MACAW workshop appendix: 1M transitions per task
            ),
            "cheetah_vel": dict(
                tasks=40,  # MACAW: v* = linspace(0.075, 3.0, 40)
                grid=True,
                split="explicit",
                split_args={"test_tasks": [2, 7, 15, 23, 26]},  # MACAW's test tasks, all inside the range
                mode="per-task",
                steps_per_task=1_000_000,  # MACAW: 1M per task (CORRO: 210k)
            ),
            "point_robot_sparse": dict(
                tasks=40,  # PEARL/FOCAL grid of goal angles
                grid=True,
                split="interpolation",
                split_args={"every": 10},  # 4 test tasks inside the range
                mode="per-task",
                steps_per_task=50_000,  # 2,500 episodes of 20 steps per task (FOCAL/CSRO: SAC per task)
            ),
            "bandit": dict(
                tasks=16,
                split="explicit",
                split_args={"test_tasks": [12, 13, 14, 15]},  # paper 003: 12 training tasks
                mode="random",
                steps_per_task=5_000,  # paper 003: a 60k-transition buffer over 12 tasks
                gamma=0.01,
            ),
        },
        "train": {
            family: {
                "train.steps": 50_000,  # the reference trains ~1e5 meta-steps at its outer lrs
                "train.eval_every": 1_000,  # reference: every 250
                "eval.episodes": 3,
            }
            for family in FAMILIES
        },
        "algo": {algo: {} for algo in ALGORITHMS + CONTEXT_ALGORITHMS},  # the paper defaults of omrl-train
        "algo_family": {},
    },
    # ========================================================================= tiny (tests only)
    "tiny": {
        "collect": {
            "bandit": dict(tasks=6, split="explicit", split_args={"test_tasks": [4, 5]}, mode="random",
                           steps_per_task=300, gamma=0.01),
            "point_robot_sparse": dict(tasks=6, grid=True, split="interpolation", split_args={"every": 3},
                                       mode="random", steps_per_task=300),
            "cheetah_dir": dict(tasks=2, split="random", mode="random", steps_per_task=400),
            "cheetah_vel": dict(tasks=5, grid=True, split="interpolation", split_args={"every": 3},
                                mode="random", steps_per_task=400),
        },
        "train": {
            family: {"train.steps": 20, "train.eval_every": 10, "eval.episodes": 1, "eval.adapt_batch": 32}
            for family in FAMILIES
        },
        "algo": {
            "macaw": {"algo.width": 16, "algo.latent_dim": 4, "algo.support_size": 32, "algo.query_size": 32},
            "macega": {"algo.width": 16, "algo.latent_dim": 4, "algo.support_size": 32, "algo.query_size": 32},
            "mtft": {"algo.width": 16, "algo.latent_dim": 4, "algo.batch_size": 32, "algo.adapt_steps": 2},
            "metabc": {"algo.width": 16, "algo.latent_dim": 4, "algo.support_size": 32, "algo.query_size": 32},
            **{algo: dict(_TINY_CONTEXT_SEQ) for algo in ("r2pgo", "borel")},
            **{algo: dict(_TINY_CONTEXT) for algo in ("focal", "csro", "pearl")},
            "corro": {**_TINY_CONTEXT, "algo.anchors": 8, "algo.n_negatives": 4},
        },
        "algo_family": {},
    },
}

DEFAULT_BUDGET = "small"


# ------------------------------------------------------------------------------------- lookups
def check_budget(budget: str) -> dict[str, Any]:
    if budget not in BUDGETS:
        raise BadInput(f"unknown budget {budget!r}; accepted: {', '.join(BUDGETS)}")
    return BUDGETS[budget]


def dataset_name(budget: str) -> str:
    """The catalog name of a budget's datasets: ``omrl/<family>/fidelity-<budget>-vN``."""
    return f"fidelity-{budget}"


def families_of(budget: str) -> tuple[str, ...]:
    """The families a budget has recipes for, in the protocol's order."""
    table = check_budget(budget)["collect"]
    return tuple(f for f in FAMILIES if f in table) + tuple(f for f in table if f not in FAMILIES)


def collect_config(budget: str, family: str, workers: int, device: str = "cpu") -> Any:
    """The :class:`CollectConfig` of ``family`` in ``budget`` (workers/device: execution only).

    In shared mode the recipe's ``shards`` fixes the workers (the shard layout is part of what is
    collected); elsewhere ``workers`` only sets the parallelism.
    """
    from omrl_data.collection import CollectConfig, SacConfig

    table = check_budget(budget)["collect"]
    if family not in table:
        raise BadInput(f"budget {budget!r} has no recipe for family {family!r}; it has {', '.join(families_of(budget))}")
    recipe = dict(table[family])
    sac = dict(recipe.pop("sac", {}))
    if "net_arch" in sac:
        sac["net_arch"] = tuple(sac["net_arch"])
    shards = recipe.pop("shards", None)
    if recipe.get("mode", "shared") == "shared":
        workers = int(shards or workers)
    return CollectConfig(family=family, name=dataset_name(budget), workers=int(workers), device=device,
                         sac=SacConfig(**sac), **recipe)


def training_settings(budget: str, family: str, algorithm: str) -> dict[str, Any]:
    """The ``--set`` settings of one (family, algorithm) run of ``budget``, in a stable order."""
    b = check_budget(budget)
    if algorithm not in b["algo"]:
        raise BadInput(f"budget {budget!r} has no settings for algorithm {algorithm!r}; it has {', '.join(b['algo'])}")
    out: dict[str, Any] = dict(ALWAYS)
    out.update(b["train"].get(family, {}))
    out.update(b["algo"][algorithm])
    out.update(b["algo_family"].get((family, algorithm), {}))
    return out


def as_overrides(settings: dict[str, Any]) -> list[str]:
    """``{"algo.width": 64}`` -> ``["algo.width=64"]`` (values as omrl-train's --set reads them)."""
    return [f"{k}={_format(v)}" for k, v in settings.items()]


def _format(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_format(x) for x in v) + "]"
    return str(v)


def describe(budget: str) -> dict[str, Any]:
    """The budget as plain data: per family the collection command and recipe, per (family,
    algorithm) the training settings. (``omrl-study recipes`` prints it.)"""
    from omrl_data.collection.plan import make_plan, resume_command

    b = check_budget(budget)
    out: dict[str, Any] = {"budget": budget, "families": {}}
    for family in families_of(budget):
        cfg = collect_config(budget, family, workers=2)
        plan = make_plan(cfg)
        out["families"][family] = {
            "collect": resume_command(plan.config, None).removesuffix(" --resume"),
            "tasks": plan.n_tasks,
            "train_tasks": len(plan.tasks.indices("train")),
            "test_tasks": [int(i) for i in plan.tasks.indices("test")],
            "transitions": plan.transitions,
            "training": {algo: as_overrides(training_settings(budget, family, algo)) for algo in b["algo"]},
        }
    return out
