#!/bin/bash
export OMRL_HOME=/work/home-r2pgo PYTHONPATH=/work/wt-r2pgo
T=/work/main/.venv/bin/omrl-train
cd /work/exp-r2pgo
echo "== cv r2pgo 8000 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "wall %e s cpu %U s" nice -n 10 $T r2pgo --dataset omrl/cheetah_vel/vel10b-v1 --steps 8000 --eval-every 2000 --seed 0 --quiet --set train.threads=1 --set algo.encoder_steps=1000 --set algo.context_length=32 --set algo.width=128 --set algo.meta_batch=8 --set algo.batch_size=128 --set eval.episodes=2 --set eval.trial_episodes=2 --out cv-r2pgo-8k-s0 2>&1 | tail -4
echo "== done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
