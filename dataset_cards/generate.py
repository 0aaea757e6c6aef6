"""Regenerate ``dataset_cards/``: collect every family's standard recipe at a small stated budget
and render its card with the tool (``omrl_data.cards.write_card``).

The standard recipe of a family is its default collection (``omrl-data collect FAMILY --tasks
<family default>``: default task count, random split, one shared SAC learner). Only the env
steps per task are reduced (``BUDGET`` below) so that all seven collections together take
minutes on a 2-core CPU; each card states its budget, the recipe's default and the measured
collection time. Run with ``dataset_cards/generate.sh`` (``FAMILIES="bandit ant_dir"`` to
regenerate some only).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

# Env steps per task of each card's collection (the recipe's defaults are in
# omrl_data.collection.learners.DEFAULT_STEPS_PER_TASK).
BUDGET = {
    "point_robot_sparse": 3_000,  # None would be the recipe's full default
    "bandit": None,
    "cheetah_dir": 3_000,
    "cheetah_vel": 1_500,
    "ant_dir": 1_500,
    "walker_params": 1_500,
    "hopper_params": 1_500,
}


TIMES_FILE = "generate_times.json"  # in the collections root: measured seconds per family


def main() -> None:
    from omrl_data.cards import write_card
    from omrl_data.collection import CollectConfig, collect
    from omrl_data.collection.learners import default_steps_per_task
    from omrl_data.store import catalog
    from omrl_data.tasks import family_names, get_family

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", nargs="*", default=family_names(), help="families to regenerate (default: all)")
    ap.add_argument("--root", default=None, help="catalog root for the collections (default: a temporary folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent), help="where the cards go (one folder per family)")
    ap.add_argument("--render-only", action="store_true", help="re-render the cards of the collections already in --root")
    args = ap.parse_args()
    if args.render_only and not args.root:
        ap.error("--render-only needs --root (the folder of an earlier run)")
    root = Path(args.root or tempfile.mkdtemp(prefix="omrl-cards-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"collections under {root}")
    times_path = root / TIMES_FILE
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    for name in args.families:
        family = get_family(name)
        steps = BUDGET.get(name, 2_000)
        if args.render_only:
            dataset_id = f"omrl/{name}/replay"
            catalog.resolve(dataset_id, root)
        else:
            config = CollectConfig(family=name, tasks=family.default_tasks, steps_per_task=steps)
            t0 = time.perf_counter()
            dataset_id = collect(config, root=root, progress=True)
            times[name] = {"seconds": time.perf_counter() - t0, "cpus": os.cpu_count(), "date": _dt.date.today().isoformat(),
                           "machine": platform.processor() or platform.machine()}
            times_path.write_text(json.dumps(times, indent=1))
        t = times[name]
        collection = catalog.read_metadata(catalog.resolve(dataset_id, root))["collection"]
        steps, n_tasks = int(collection["steps_per_task"]), int(collection["tasks"])  # what the data used
        default = default_steps_per_task(name)
        note = (
            f"**Budget of this card's data:** {steps:,} env steps per task x {n_tasks} tasks "
            f"= {steps * n_tasks:,} transitions "
            + ("(the recipe's full default). " if steps >= default else f"(the recipe's default is {default:,} steps per task; this card used a reduced budget so that every family's card is regenerated in minutes). ")
            + f"Collected in {t['seconds']:.0f} s on {t['cpus']} CPU cores ({t['machine']}, shared with other jobs), "
            f"{t['date']}, by `dataset_cards/generate.sh`."
        )
        md, png = write_card(dataset_id, out=Path(args.out) / name / "README.md", root=root, note=note)
        print(f"{name}: {dataset_id} in {t['seconds']:.0f} s -> {md}")


if __name__ == "__main__":
    main()
