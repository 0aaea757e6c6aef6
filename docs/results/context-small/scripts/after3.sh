#!/bin/bash
# Third seed on cheetah_vel, started 22:51 in the hope that it ends by ~23:15.
cd /work/wt-ctx2
export OMRL_HOME=/work/lead_home PYTHONPATH=/work/wt-ctx2
BIN=/work/main/.venv/bin
OUT=/work/exp/ctx2/fidelity

echo "=== $(date -u +%H:%M:%S) study seeds=3 families=cheetah_vel load: $(cut -d' ' -f1-3 /proc/loadavg)"
nice $BIN/omrl-study fidelity --budget small --seeds 3 --workers 1 --out $OUT --resume --algorithms macaw,r2pgo,focal,corro,csro,borel,pearl --families cheetah_vel
echo "=== $(date -u +%H:%M:%S) done rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)"
for algo in focal corro csro pearl; do
  run=$OUT/runs/cheetah_vel/$algo/s2
  [ -f $run/eval.json ] && [ ! -f $run/eval_zero_shot.json ] || continue
  echo "--- $(date -u +%H:%M:%S) zero-shot cheetah_vel/$algo/s2"
  nice $BIN/omrl-eval $run --set eval.mode=zero_shot > $run/eval_zero_shot.log 2>&1 && mv $run/eval_latest.json $run/eval_zero_shot.json
done
echo "=== $(date -u +%H:%M:%S) all finished; load: $(cut -d' ' -f1-3 /proc/loadavg)"
