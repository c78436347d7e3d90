#!/usr/bin/env bash
# The real study, v2 (THEORY.md section 10), end to end and resumable: run it again
# and it continues where it stopped, from its work folder or, on a new machine, from
# the thin record committed in data/real2/sweep/.
#
#   stage 1  the three smaller models: full FT and LoRA (two A-init seeds), SGD and
#            AdamW, the crossed contexts, T = 15, eta_c to 1%, eta_max to 5%
#            (data/sweeps/real2.toml); the thin record is published after each cell
#   stage 2  the quantities at init of all four models (every predictor), and the
#            blind prediction of qwen2.5-coder-1.5b's eta_c (full FT, SGD) by every
#            theory, fitted on the three smaller models only: data/real2/blind/.
#            The script stops here until those files are committed to git: the
#            commit is the pre-registration.
#   stage 3  the 1.5B's sweep (SGD, full and LoRA), then the blind score against
#            the pre-registration commit
#   stage 4  eta_c(T) at T = 60 and 240 on smollm2-135m (data/sweeps/real2-t*.toml)
#   then     LOAO over all four architectures (full FT, SGD), predictions for the
#            held-out contexts, the report and data/real2/README.md's tables.
#
# Usage: analyses/real2.sh [WORK_FOLDER]   (default runs/real2; CPU days on 2 cores,
# hours on one GPU with PHANTOM_DEVICE=cuda PHANTOM_ENGINE=batched: the device is not
# part of a run's definition, so a study begun on a CPU continues there)
set -euo pipefail
work="${1:-runs/real2}"
here="$(cd "$(dirname "$0")/.." && pwd)"
spec="$here/data/sweeps/real2.toml"
data="$here/data/real2"
small=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b)
blind=qwen2.5-coder-1.5b
engine="${PHANTOM_ENGINE:-sequential}"
device="${PHANTOM_DEVICE:-}"
mkdir -p "$work/sweep" "$data"

# A new machine resumes from the committed thin record (and the kept run files,
# which the sweep validates before it reuses them).
if [ ! -f "$work/sweep/spec.json" ] && [ -f "$data/sweep/sweep.nc" ]; then
    cp -r "$data/sweep/." "$work/sweep/"
fi
publish() { python "$here/analyses/real_publish.py" "$work" "$data" --per-cell 2; }
sweep() { phantom sweep "$@" --engine "$engine" ${device:+--device "$device"} --quiet; }

phantom models pull all

# -- stage 1 ----------------------------------------------------------------------
for cell in "full sgd" "lora sgd" "full adamw" "lora adamw"; do
    set -- $cell
    sweep "$spec" --out "$work/sweep" --models "${small[@]}" --modes "$1" --optimizers "$2"
    publish
done

# -- stage 2: quantities, and the pre-registered blind prediction -------------------
[ -f "$work/quantities.nc" ] || phantom quantities --spec "$spec" --modes full lora \
    --optimizers sgd adamw --hessian-tol 1e-2 --hessian-max-iter 20 \
    ${device:+--device "$device"} --out "$work/quantities.nc"
cp "$work/quantities.nc" "$data/quantities.nc"
if [ ! -f "$data/blind/SHA256SUMS" ]; then
    mkdir -p "$data/blind"
    for theory in $(python -c "from phantom_theory.theory.models import DEFAULT_THEORIES as t; print(*t)"); do
        phantom predict --held-out "$blind" --theory "$theory" --mode full --optimizer sgd \
            --fit-on "$work/sweep" "$work/quantities.nc" --allow-unconverged \
            --out "$data/blind/$theory.nc"
    done
    (cd "$data/blind" && sha256sum ./*.nc > SHA256SUMS)
fi
# the pre-registration is the prediction files and their sums, committed
registration=("$data"/blind/*.nc "$data/blind/SHA256SUMS")
if ! git -C "$here" diff --quiet HEAD -- "${registration[@]}" \
        || [ -n "$(git -C "$here" ls-files --others --exclude-standard -- "${registration[@]}")" ]; then
    echo "stage 2 done: commit the blind prediction before the $blind sweep starts (the" >&2
    echo "commit is the pre-registration):  git add $data/blind && git commit -m 'Pre-register" >&2
    echo "the blind prediction of $blind'; then run this script again" >&2
    exit 3
fi
registered="$(git -C "$here" log -n 1 --format=%H -- "$data/blind/SHA256SUMS")"

# -- stage 3: the held-out architecture's sweep, then its score --------------------
sweep "$spec" --out "$work/sweep" --models "$blind"
publish
for prediction in "$data"/blind/*.nc; do
    phantom score "$prediction" --sweep "$work/sweep" --commit "$registered"
done | tee "$data/blind-scores.txt"

# -- stage 4: eta_c(T) ---------------------------------------------------------------
for T in 60 240; do
    sweep "$here/data/sweeps/real2-t$T.toml" --out "$work/time-t$T"
    mkdir -p "$data/time-t$T" && cp "$work/time-t$T/sweep.nc" "$work/time-t$T/spec.json" "$data/time-t$T/"
done

# -- every architecture held out in turn, the held-out contexts, the report --------
phantom loao --fit-on "$work/sweep" "$work/quantities.nc" --mode full --optimizer sgd \
    --allow-unconverged --out "$work/theory" --overwrite
mkdir -p "$work/held-out-contexts"
phantom predict --context $(python -c "
import json; from phantom_theory.sweep import open_sweep
print(*json.loads(open_sweep('$work/sweep').attrs['sweep_spec'])['crossed']['held_out'])") \
    --theory hier --mode full --optimizer sgd --fit-on "$work/sweep" "$work/quantities.nc" \
    --allow-unconverged --out "$work/held-out-contexts/hier.nc" --overwrite
publish
phantom report "$data" -o "$data/report.html" --overwrite
python "$here/analyses/real_tables.py" "$data"
