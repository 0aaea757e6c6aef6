#!/bin/bash
# R2PGO small runs (1 seed), sequential; each an ordinary omrl-train run folder.
export OMRL_HOME=/work/home-r2pgo PYTHONPATH=/work/wt-r2pgo
T=/work/main/.venv/bin/omrl-train
cd /work/exp-r2pgo
PR="--dataset omrl/point_robot_sparse/fidelity-small-v1 --steps 3000 --eval-every 1000 --seed 0 --quiet --set train.threads=1 --set algo.encoder_steps=1000 --set algo.context_length=16 --set algo.width=128 --set algo.meta_batch=7 --set algo.batch_size=128 --set eval.episodes=3 --set eval.trial_episodes=2"
for v in "r2pgo:" "nortcr:--set algo.negatives=uniform" "neither:--set algo.negatives=uniform --set algo.conditioning=concat"; do
  name=${v%%:*}; extra=${v#*:}
  echo "== pr $name $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -f "wall %e s cpu %U s" nice -n 10 $T r2pgo $PR $extra --out pr-$name-s0 2>&1 | tail -4
done
echo "== macaw timing pr $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 10 $T macaw --dataset omrl/point_robot_sparse/fidelity-small-v1 --steps 200 --eval-every 0 --quiet --set train.threads=1 --set algo.width=64 --set algo.latent_dim=16 --set algo.support_size=128 --set algo.query_size=128 --set algo.value_lr=1e-3 --set algo.policy_lr=1e-3 --set eval.episodes=1 --out macaw-timing-pr 2>&1 | tail -1
CV="--dataset omrl/cheetah_vel/vel10b-v1 --steps 3000 --eval-every 1000 --seed 0 --quiet --set train.threads=1 --set algo.encoder_steps=1000 --set algo.context_length=32 --set algo.width=128 --set algo.meta_batch=8 --set algo.batch_size=128 --set eval.episodes=2 --set eval.trial_episodes=2"
echo "== cv r2pgo $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "wall %e s cpu %U s" nice -n 10 $T r2pgo $CV --out cv-r2pgo-s0 2>&1 | tail -4
echo "== macaw timing cv $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
nice -n 10 $T macaw --dataset omrl/cheetah_vel/vel10b-v1 --steps 200 --eval-every 0 --quiet --set train.threads=1 --set algo.width=64 --set algo.latent_dim=16 --set algo.support_size=128 --set algo.query_size=128 --set algo.value_lr=1e-3 --set algo.policy_lr=1e-3 --set eval.episodes=1 --out macaw-timing-cv 2>&1 | tail -1
echo "== done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
