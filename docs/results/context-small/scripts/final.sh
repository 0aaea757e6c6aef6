#!/bin/bash
# The one table over the three families (protocol's aggregation of the finished runs), copied to docs.
# $1: seed caps, e.g. cheetah_vel=2 (empty = every finished seed)
cd /work/wt-ctx2
export OMRL_HOME=/work/lead_home PYTHONPATH=/work/wt-ctx2
nice /work/main/.venv/bin/python /work/exp/ctx2/aggregate_done.py /work/exp/ctx2/fidelity 3 point_robot_sparse,cheetah_vel,hopper_params macaw,r2pgo,focal,corro,csro,borel,pearl $1
mkdir -p docs/results/context-small
cp /work/exp/ctx2/fidelity/results.{md,csv,json,png} docs/results/context-small/
python3 /work/exp/ctx2/report.py /work/exp/ctx2/fidelity > /work/exp/ctx2/report.md
