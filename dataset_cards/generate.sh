#!/usr/bin/env bash
# Regenerate dataset_cards/: one collection per family's standard recipe at the budget stated in
# each card (dataset_cards/generate.py holds the budgets), then its card and plot.
#   dataset_cards/generate.sh                  # every family (several minutes on 2 CPU cores)
#   dataset_cards/generate.sh bandit ant_dir   # some families only
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
exec "$PY" -m dataset_cards.generate "$@"
