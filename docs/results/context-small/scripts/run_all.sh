#!/bin/bash
# The context methods' comparison on one core, in the order of priority (docs/context-results.md).
cd /work/wt-ctx2
export OMRL_HOME=/work/lead_home PYTHONPATH=/work/wt-ctx2
BIN=/work/main/.venv/bin
OUT=/work/exp/ctx2/fidelity
ALGOS=macaw,r2pgo,focal,corro,csro,borel,pearl
study() {  # seeds families
  echo "=== $(date -u +%H:%M:%S) study seeds=$1 families=$2 load: $(cut -d' ' -f1-3 /proc/loadavg)"
  nice $BIN/omrl-study fidelity --budget small --seeds $1 --workers 1 --out $OUT --resume --algorithms $ALGOS --families $2
  echo "=== $(date -u +%H:%M:%S) done rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)"
}
zeroshot() {  # families seeds: zero-shot trials of the methods whose own protocol is another (paper 004 Table 1)
  for fam in $1; do for algo in focal corro csro pearl; do for s in $2; do
    run=$OUT/runs/$fam/$algo/s$s
    [ -f $run/eval.json ] && [ ! -f $run/eval_zero_shot.json ] || continue
    echo "--- $(date -u +%H:%M:%S) zero-shot $fam/$algo/s$s"
    nice $BIN/omrl-eval $run --set eval.mode=zero_shot > $run/eval_zero_shot.log 2>&1 && mv $run/eval_latest.json $run/eval_zero_shot.json
  done; done; done
}
study 3 point_robot_sparse
zeroshot point_robot_sparse "0 1 2"
study 2 cheetah_vel,hopper_params
zeroshot "cheetah_vel hopper_params" "0 1"
study 3 cheetah_vel,hopper_params
zeroshot "cheetah_vel hopper_params" "2"
echo "=== $(date -u +%H:%M:%S) all finished"
