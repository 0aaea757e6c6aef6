#!/bin/bash
# After the cheetah run: point_robot_sparse with the new defaults, then meta-step and evaluation cost beside MACAW.
export OMRL_HOME=/work/home-r2pgo PYTHONPATH=/work/wt-r2pgo
T=/work/main/.venv/bin/omrl-train
E=/work/main/.venv/bin/omrl-eval
cd /work/exp-r2pgo
echo "== pr r2pgo v2 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "wall %e s cpu %U s" nice -n 10 $T r2pgo --dataset omrl/point_robot_sparse/fidelity-small-v1 --steps 3000 --eval-every 1000 --seed 0 --quiet --set train.threads=1 --set algo.encoder_steps=1000 --set algo.context_length=16 --set algo.width=128 --set algo.meta_batch=7 --set algo.batch_size=128 --set eval.episodes=3 --set eval.trial_episodes=2 --out pr-r2pgo-v2-s0 2>&1 | tail -3
MAC="--steps 200 --eval-every 0 --quiet --set train.threads=1 --set train.log_every=200 --set algo.width=64 --set algo.latent_dim=16 --set algo.support_size=128 --set algo.query_size=128 --set algo.value_lr=1e-3 --set algo.policy_lr=1e-3 --set eval.episodes=1"
for ds in pr cv; do
  if [ $ds = pr ]; then DS=omrl/point_robot_sparse/fidelity-small-v1; D="--set algo.context_length=16 --set algo.meta_batch=7"; else DS=omrl/cheetah_vel/vel10b-v1; D="--set algo.context_length=32 --set algo.meta_batch=8"; fi
  for ph in 1 2; do
    if [ $ph = 1 ]; then P="--set algo.encoder_steps=300"; else P="--set algo.encoder_steps=0"; fi
    echo "== r2pgo $ds phase $ph $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    nice -n 10 $T r2pgo --dataset $DS $D $P --steps 200 --eval-every 0 --quiet --set train.threads=1 --set train.log_every=200 --set algo.width=128 --set algo.batch_size=128 --set eval.episodes=1 --set eval.trial_episodes=2 --out timing-$ds-phase$ph > /dev/null 2>&1
    grep steps_per_s timing-$ds-phase$ph/metrics.csv
  done
  echo "== macaw $ds $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 10 $T macaw --dataset $DS $MAC --out macaw-timing-$ds > /dev/null 2>&1
  grep steps_per_s macaw-timing-$ds/metrics.csv
done
for run in pr-r2pgo-v2-s0 macaw-timing-pr cv-r2pgo-8k-s0 macaw-timing-cv; do
  echo "== omrl-eval $run $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "eval wall %e s" nice -n 10 $E $run --episodes 2 --set train.threads=1 --set eval.random_policy=false > eval-$run.txt 2>&1; tail -1 eval-$run.txt
done
echo "== done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
