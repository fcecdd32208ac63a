#!/usr/bin/env bash
# A training run for a lent GPU machine (the `device` tool); the project never needs one.
#
# The recipe of the default's last runs (every part but the flow and the pixel contexts learns,
# run 13e in the model card) from the default model, at batch 16: a short calibration run gives
# the steps per second, then the run goes on with its learning-rate schedule sized to the time
# left. Here, once per session (BSDS500 train+val, about 23 MB, and constriction's wheel into
# .devdata/, which git ignores):
#   bash scripts/device_train.sh --prepare
# There (device tool: carry [".devdata"], timeout_s 600; MINUTES of the whole network, 6 by default,
# then CONTEXT_MINUTES, 2, of the pixel contexts alone on it, as the card's 13d):
#   MINUTES=6 bash scripts/device_train.sh
# It leaves in $OUT the run's EMA weights (fp32), them joined with the contexts (merged, fp16: a
# candidate default), the logs and the commands. Then here:
#   python -m benchmarks.proxy_rd models/selfvae-downscale.safetensors $OUT/merged.safetensors
#   python -m benchmarks.proxy_lossless models/selfvae-downscale.safetensors $OUT/merged.safetensors
# Tested on the CPU with:
#   DEVICE=cpu BATCH=2 CROP=64 MINUTES=0.5 CALIBRATE=3 CONTEXT_MINUTES=0.2 bash scripts/device_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --prepare ]; then
    mkdir -p .devdata/whl
    grep -qx '/.devdata/' .git/info/exclude 2>/dev/null || echo '/.devdata/' >> .git/info/exclude
    for set in train val; do
        rm -rf ".devdata/$set" && cp -r "../shared/data/bsds500/$set" ".devdata/$set"
    done
    version=$(python3 -c 'import importlib.metadata as m; print(m.version("constriction"))')
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 -d .devdata/whl "constriction==$version"
    du -sh .devdata
    exit 0
fi

DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-6}
BATCH=${BATCH:-16}
CROP=${CROP:-256}
CALIBRATE=${CALIBRATE:-100}   # steps timed before the schedule is sized
CONTEXT_MINUTES=${CONTEXT_MINUTES:-2}   # then the pixel contexts alone (0: not)
OUT=${OUT:-runs/device-out}
RUN=${RUN:-/tmp/devrun}
mkdir -p "$OUT"
rm -rf "$RUN" "$RUN-contexts"
if ! python3 -c 'import constriction' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .devdata/whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" || true

train=(python3 -m selfcodec train --device "$DEVICE" --init models/selfvae-downscale.safetensors --quant mixed
       --freeze flow,context,context0 --y-weight 0.02 --cgen-weight 0.25 --data .devdata/train --data .devdata/val
       --by-area --batch "$BATCH" --crop "$CROP" --no-bf16 --no-compile --lr 1e-4 --warmup 50 --ckpt-minutes 2
       --run-dir "$RUN")
start=$(date +%s)
echo "${train[*]} --steps $CALIBRATE" > "$OUT/commands.txt"
"${train[@]}" --steps "$CALIBRATE"
# the steps that fit in the time left at the calibration's pace (its last logged rate), less a tenth
steps=$(python3 - "$RUN/log.csv" "$start" "$MINUTES" "$BATCH" "$CALIBRATE" <<'EOF'
import csv, sys, time
rows = list(csv.DictReader(open(sys.argv[1])))
left = float(sys.argv[3]) * 60 - (time.time() - float(sys.argv[2]))
per_s = float(rows[-1]["img_per_s"]) / int(sys.argv[4])
print(int(sys.argv[5]) + max(0, int(0.9 * left * per_s)))
EOF
)
left=$(python3 -c "import time; print(max(0.1, $MINUTES - (time.time() - $start) / 60))")
echo "${train[*]} --steps $steps --minutes $left --resume" >> "$OUT/commands.txt"
"${train[@]}" --steps "$steps" --minutes "$left" --resume
python3 -m selfcodec export "$RUN" -o "$OUT/weights.safetensors" --dtype fp32
cp "$RUN/log.csv" "$OUT/log.csv"
tail -n 2 "$OUT/log.csv"

# the pixel contexts alone on the new features (the card's 13d), joined with them: a candidate default
[ "$CONTEXT_MINUTES" = 0 ] && exit 0
contexts=(python3 -m selfcodec train --device "$DEVICE" --init "$OUT/weights.safetensors" --train-only context,context0
          --lossless --data .devdata/train --data .devdata/val --by-area --batch "$BATCH" --crop "$CROP" --no-bf16
          --no-compile --lr 3e-4 --warmup 20 --steps "$steps" --minutes "$CONTEXT_MINUTES" --ckpt-minutes 2
          --run-dir "$RUN-contexts")
echo "${contexts[*]}" >> "$OUT/commands.txt"
"${contexts[@]}"
python3 -m selfcodec merge "$OUT/weights.safetensors" -p "$RUN-contexts=context,context0" -o "$OUT/merged.safetensors"
cp "$RUN-contexts/log.csv" "$OUT/log-contexts.csv"
