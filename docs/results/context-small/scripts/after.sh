#!/bin/bash
# After the 2-seed study of cheetah_vel and hopper_params (pid $1): the zero-shot trials of
# FOCAL, CORRO, CSRO and PEARL on those runs (paper 004 Table 1). The third seeds did not fit.
cd /work/wt-ctx2
export OMRL_HOME=/work/lead_home PYTHONPATH=/work/wt-ctx2
BIN=/work/main/.venv/bin
OUT=/work/exp/ctx2/fidelity
while kill -0 $1 2>/dev/null; do sleep 10; done
echo "=== $(date -u +%H:%M:%S) study done; zero-shot evaluations; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for fam in cheetah_vel hopper_params; do for algo in focal corro csro pearl; do for s in 0 1; do
  run=$OUT/runs/$fam/$algo/s$s
  [ -f $run/eval.json ] && [ ! -f $run/eval_zero_shot.json ] || continue
  echo "--- $(date -u +%H:%M:%S) zero-shot $fam/$algo/s$s"
  nice $BIN/omrl-eval $run --set eval.mode=zero_shot > $run/eval_zero_shot.log 2>&1 && mv $run/eval_latest.json $run/eval_zero_shot.json
done; done; done
echo "=== $(date -u +%H:%M:%S) all finished; load: $(cut -d' ' -f1-3 /proc/loadavg)"
