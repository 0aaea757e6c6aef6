#!/bin/bash
# Third seed on hopper_params (the dynamics-changing family) while the time allows; cheetah_vel's
# third seed (~25 min) does not fit.
cd /work/wt-ctx2
export OMRL_HOME=/work/lead_home PYTHONPATH=/work/wt-ctx2
BIN=/work/main/.venv/bin
OUT=/work/exp/ctx2/fidelity
while kill -0 $1 2>/dev/null; do sleep 5; done
echo "=== $(date -u +%H:%M:%S) study seeds=3 families=hopper_params load: $(cut -d' ' -f1-3 /proc/loadavg)"
nice $BIN/omrl-study fidelity --budget small --seeds 3 --workers 1 --out $OUT --resume --algorithms macaw,r2pgo,focal,corro,csro,borel,pearl --families hopper_params
echo "=== $(date -u +%H:%M:%S) done rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)"
for algo in focal corro csro pearl; do
  run=$OUT/runs/hopper_params/$algo/s2
  [ -f $run/eval.json ] && [ ! -f $run/eval_zero_shot.json ] || continue
  echo "--- $(date -u +%H:%M:%S) zero-shot hopper_params/$algo/s2"
  nice $BIN/omrl-eval $run --set eval.mode=zero_shot > $run/eval_zero_shot.log 2>&1 && mv $run/eval_latest.json $run/eval_zero_shot.json
done
echo "=== $(date -u +%H:%M:%S) all finished; load: $(cut -d' ' -f1-3 /proc/loadavg)"
