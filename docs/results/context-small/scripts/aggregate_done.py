"""The protocol's results files over the finished runs of a plan (when the grid did not finish).

Same aggregation and writer as omrl-study fidelity (omrl_studies.results); runs not finished are
left out and their count per (family, algorithm) is the table's "seeds" column.
"""
import sys, time, os, platform
from omrl_studies.fidelity import FidelityOptions, plan_fidelity, run_specs
from omrl_studies.runs import RunOutcome
from omrl_studies.results import aggregate, write_results
from omrl_studies.datasets import find_dataset
from omrl_data.collection.plan import resume_command

out, seeds = sys.argv[1], int(sys.argv[2])
fams = tuple(sys.argv[3].split(","))
algos = tuple(sys.argv[4].split(","))
# optional "family=N,...": at most N seeds of that family (a grid cut short)
caps = dict((k, int(v)) for k, v in (x.split("=") for x in sys.argv[5].split(","))) if len(sys.argv) > 5 else {}
plan = plan_fidelity(FidelityOptions(budget="small", seeds=seeds, algorithms=algos, families=fams, workers=1, out=out, resume=True))
ids = {f: find_dataset(plan.collect[f], None) for f in fams}
specs = run_specs(plan, ids)
done = [s for s in specs if s.status() == "done" and s.seed < caps.get(s.family, seeds)]
outcomes = [RunOutcome(s, "skipped", 0.0) for s in done]
summary = aggregate(outcomes, None)
header = {
    "title": f"Fidelity protocol, budget small: context methods and MACAW ({len(done)} of {len(specs)} runs finished)",
    "budget": "small", "command": plan.command(), "resume_command": plan.command(resume=True),
    "started": "", "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    "workers": 1, "seeds": seeds, "families": list(fams), "algorithms": list(algos),
    "datasets": {f: {"dataset_id": ids[f], "action": "reused", "seconds": 0.0,
                     "command": resume_command(plan.collect[f], None).removesuffix(" --resume")} for f in fams},
    "training_settings": {f"{fam}/{algo}": s for (fam, algo), s in plan.settings.items()},
    "wall_seconds": {},  # per run: docs/context-results.md (the runs were made by several invocations)
}
print(write_results(plan.out, summary, header))
print(f"{len(done)} of {len(specs)} runs finished")
