"""Supplementary tables of docs/context-results.md, read from the run folders of the study:
zero-shot episodes 1..5 (paper 004 Table 1) and the training time of each run."""
import csv, json, re, sys
from pathlib import Path
import numpy as np

OUT = Path(sys.argv[1])
FAMS = ("point_robot_sparse", "cheetah_vel", "hopper_params")
ALGOS = ("macaw", "r2pgo", "borel", "focal", "corro", "csro", "pearl")


def finished(run):
    """A run whose eval.json is at its final meta-step."""
    try:
        steps = json.loads((run / "config.json").read_text())["train"]["steps"]
        return json.loads((run / "eval.json").read_text())["step"] == steps
    except (OSError, ValueError, KeyError):
        return False


def pm(vals, d=2):
    vals = [v for v in vals if v is not None]
    if not vals:
        return ""
    return f"{np.mean(vals):.{d}f} ± {np.std(vals):.{d}f}"


# wall seconds per run as the study printed them ("trained fam/algo/sN: ... in 46 s")
walls = {}
for line in (OUT.parent / "run_all.log").read_text().splitlines():
    m = re.match(r"(trained|resumed) (\S+): .* in ([0-9.]+) s", line)
    if m:
        walls[m.group(2)] = float(m.group(3))

print("## Zero-shot trials: episodes 1..5, normalised (raw), mean ± std over seeds\n")
print("| family | algorithm | seeds | " + " | ".join(f"episode {k}" for k in range(1, 6)) + " |")
print("| --- | --- | --- |" + " --- |" * 5)
for fam in FAMS:
    for algo in ALGOS[1:]:
        evs = []
        for run in sorted((OUT / "runs" / fam / algo).glob("s*")):
            f = run / ("eval.json" if algo in ("r2pgo", "borel") else "eval_zero_shot.json")
            if f.is_file() and finished(run):
                ev = json.loads(f.read_text())
                if ev.get("mode") == "zero_shot":
                    evs.append(ev["mean"])
        if not evs:
            continue
        cells = []
        for k in range(5):
            n = [e["normalised_episodes"][k] for e in evs]
            r = [e["episodes"][k] for e in evs]
            cells.append(f"{pm(n)} ({pm(r, 1)})")
        print(f"| {fam} | {algo} | {len(evs)} | " + " | ".join(cells) + " |")

print("\n## Training time per run: wall seconds (the study's, start-up and evaluations included) and the training loop's meta-steps per second (metrics.csv)\n")
print("| family | algorithm | meta-steps | wall s per run (seeds) | loop meta-steps/s | s per meta-step (loop, evaluations included) |")
print("| --- | --- | --- | --- | --- | --- |")
for fam in FAMS:
    for algo in ALGOS:
        w, rates, steps = [], [], None
        for run in sorted((OUT / "runs" / fam / algo).glob("s*")):
            if not finished(run):
                continue
            label = f"{fam}/{algo}/{run.name}"
            if label in walls:
                w.append(walls[label])
            sp = [(int(r["step"]), float(r["value"])) for r in csv.DictReader(open(run / "metrics.csv")) if r["key"] == "train/steps_per_s"]
            steps = sp[-1][0]
            # the cumulative rate since the last (re)start (MACAW's earlier runs: the second 2,000 of 4,000)
            rates.append(sp[-1][1])
        if not rates:
            continue
        print(f"| {fam} | {algo} | {steps} | {pm(w, 0) if w else 'earlier study'} ({len(w) or len(rates)}) | {np.mean(rates):.1f} | {1/np.mean(rates):.4f} |")
