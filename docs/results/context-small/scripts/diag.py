"""Training diagnostics of the study's runs at the first and last logged step (metrics.csv)."""
import csv, sys
from pathlib import Path
import numpy as np
OUT = Path(sys.argv[1]); fams = sys.argv[2].split(","); algos = sys.argv[3].split(",")
KEYS = ["train/critic_loss", "train/critic_q_mean", "train/actor_entropy", "train/temperature", "train/encoder_loss",
        "train/encoder_same_distance", "train/encoder_other_distance", "train/encoder_accuracy", "train/encoder_contra_loss",
        "train/contra_accuracy", "train/encoder_kl", "train/kl", "train/recon", "train/reward_mse", "train/encoder_mi_upper_bound",
        "train/behaviour_loss", "train/divergence", "train/value_loss", "train/policy_loss"]
for fam in fams:
    for algo in algos:
        acc = {}
        for run in sorted((OUT / "runs" / fam / algo).glob("s*")):
            if not (run / "metrics.csv").is_file():
                continue
            rows = list(csv.DictReader(open(run / "metrics.csv")))
            for k in KEYS:
                v = [(int(r["step"]), float(r["value"])) for r in rows if r["key"] == k]
                if v:
                    acc.setdefault(k, []).append((v[0][1], v[len(v) // 2][1], v[-1][1]))
        if acc:
            print(f"{fam}/{algo} ({len(next(iter(acc.values())))} seeds): first / middle / last, mean over seeds")
            for k, vals in acc.items():
                a = np.mean(vals, axis=0)
                print(f"   {k:36s} {a[0]:10.3f} {a[1]:10.3f} {a[2]:10.3f}")
