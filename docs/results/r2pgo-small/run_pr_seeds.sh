#!/bin/bash
# point_robot_sparse, seeds 1 and 2 of R2PGO and its two ablations (seed 0: pr-*-v2-s0).
export OMRL_HOME=/work/home-r2pgo PYTHONPATH=/work/wt-r2pgo
cd /work/exp-r2pgo
PR="--dataset omrl/point_robot_sparse/fidelity-small-v1 --steps 3000 --eval-every 1000 --quiet --set train.threads=1 --set algo.encoder_steps=1000 --set algo.context_length=16 --set algo.width=128 --set algo.meta_batch=7 --set algo.batch_size=128 --set eval.episodes=3 --set eval.trial_episodes=2"
for seed in 1 2; do
for v in "r2pgo:" "nortcr:--set algo.negatives=uniform" "neither:--set algo.negatives=uniform --set algo.conditioning=concat"; do
  name=${v%%:*}; extra=${v#*:}
  echo "== pr $name seed $seed $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "wall %e s cpu %U s" nice -n 10 /work/main/.venv/bin/omrl-train r2pgo $PR $extra --seed $seed --out pr-$name-v2-s$seed 2>&1 | tail -3 | head -1
done; done
echo "== done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
