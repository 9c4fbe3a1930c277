#!/usr/bin/env bash
# One lease of a GPU: the DDPM recipe search, then the three shipped checkpoints with its winner, then
# every quality sweep. Run from the repository root on the GPU machine, with MNIST's four raw files
# gzipped in .gpu/ (see benchmarks/README.md). Writes checkpoints and logs to $OUT.
#   SEARCH_EPOCHS   epochs per search run (batch 256), all runs in parallel      [6]
#   FINAL_SECONDS   wall-clock budget the three final runs are sized to fill        [240]
set -uo pipefail
OUT=${OUT:-/tmp/out}; W=/tmp/work; mkdir -p "$OUT" "$W" data/MNIST/raw
export PYTHONUNBUFFERED=1 CI=true
PY=${PY:-python3}
SEARCH_EPOCHS=${SEARCH_EPOCHS:-6}; FINAL_SECONDS=${FINAL_SECONDS:-240}
# a dry run on a CPU: DEVICE=cpu EXTRA="--preset tiny --limit 256" SWEEP_N=20 (EXTRA overrides the recipe)
DEVICE=${DEVICE:-cuda}; EXTRA=${EXTRA:-}; N=${SWEEP_N:-1000}
for f in .gpu/*.gz; do gunzip -c "$f" > "data/MNIST/raw/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

# ---- phase 1: recipe search at equal images seen, all in parallel
declare -A SEARCH=(
  [small]="--preset small"
  [book]="--preset book"
  [book_p2]="--preset book --patch_size 2"
  [book_cosine]="--preset book --schedule cosine"
  [book_lr2e-3]="--preset book --lr 2e-3"
  [book_ema9995]="--preset book --ema_decay 0.9995"
)
start=$(date +%s)
for name in "${!SEARCH[@]}"; do
  ( s=$(date +%s)
    timeout 170 $PY -m course_lib train ddpm ${SEARCH[$name]} --epochs "$SEARCH_EPOCHS" --batch_size 256 \
        --lr_decay_step $((SEARCH_EPOCHS / 2)) --prediction v --seed 0 --save_dir "$W/search_$name" --device $DEVICE $EXTRA \
        > "$W/search_$name.log" 2>&1
    echo "$name seconds $(( $(date +%s) - s ))" >> "$W/search_$name.log"
    timeout 40 $PY -m benchmarks.sweep uncond --ckpt "$W/search_$name/ddpm_uncond.pt" --n $N --no-record \
        --json "$W/search_$name.json" --ddim-only >> "$W/search_$name.log" 2>&1 ) &
done
wait
search_seconds=$(( $(date +%s) - start ))
echo "search took $search_seconds s"
tail -n 3 "$W"/search_*.log
winner=$($PY - "$W" <<'PYEOF'
import json, sys, pathlib
rows = {}
for f in pathlib.Path(sys.argv[1]).glob("search_*.json"):
    r = [x for x in json.loads(f.read_text()) if x["sampler"] == "ddim" and x["nfe"] == 50]
    if r: rows[f.stem[len("search_"):]] = r[0]["frechet"]
print(min(rows, key=rows.get) if rows else "book")
PYEOF
)
echo "winner: $winner"
# steps/s of the winner's search run (6 runs sharing the GPU), to size the final runs
steps=$(grep -o 'trained [0-9]*' "$W/search_$winner.log" | awk '{print $2}')
secs=$(grep -o "$winner seconds [0-9]*" "$W/search_$winner.log" | awk '{print $3}')
steps=${steps:-1000}; secs=${secs:-170}
epochs=$(( steps * FINAL_SECONDS / (secs > 0 ? secs : 1) / 235 ))
epochs=$(( epochs < 8 ? 8 : epochs )); epochs=$(( epochs / 4 * 4 ))
echo "final: $steps steps in $secs s in the search -> $epochs epochs in about $FINAL_SECONDS s"

# ---- phase 2: the shipped checkpoints with the winning recipe, in parallel
RECIPE="${SEARCH[$winner]} --epochs $epochs --batch_size 256 --lr_decay_step $((epochs / 4)) --seed 0"
timeout $((FINAL_SECONDS + 60)) $PY -m course_lib train ddpm $RECIPE --prediction v --save_dir "$W/final" --device $DEVICE $EXTRA > "$W/final_ddpm.log" 2>&1 &
timeout $((FINAL_SECONDS + 60)) $PY -m course_lib train cfg $RECIPE --prediction v --save_dir "$W/final" --device $DEVICE $EXTRA > "$W/final_cfg.log" 2>&1 &
FLOW_RECIPE=$(echo "$RECIPE" | sed 's/--schedule [a-z]*//')
timeout $((FINAL_SECONDS + 60)) $PY -m course_lib train flow $FLOW_RECIPE --save_dir "$W/final" --device $DEVICE $EXTRA > "$W/final_flow.log" 2>&1 &
wait
tail -n 2 "$W"/final_*.log
cp "$W"/final/ddpm_uncond.pt "$W"/final/ddpm_cfg.pt "$W"/final/flow_cfg.pt "$OUT"/ 2>/dev/null
echo "training done at $(( $(date +%s) - start )) s"

# ---- phase 3: quality sweeps (choose guidance first: the NFE and SDE sweeps read it)
( timeout 60 $PY -m benchmarks.sweep guidance --n $N --ckpt "$W/final/ddpm_cfg.pt" --kind cfg --choose --json "$W/guidance_cfg.json" --no-record
  timeout 40 $PY -m benchmarks.sweep guidance --n $N --ckpt "$W/final/flow_cfg.pt" --kind flow --choose --json "$W/guidance_flow.json" --no-record
  cp "$W"/final/ddpm_cfg.pt "$W"/final/flow_cfg.pt "$OUT"/
  $PY -m benchmarks.sweep nfe --n $N --flow "$W/final/flow_cfg.pt" --cfg "$W/final/ddpm_cfg.pt" --json "$W/nfe.json" --no-record
  $PY -m benchmarks.sweep sde --n $N --ckpt "$W/final/flow_cfg.pt" --json "$W/sde.json" --no-record ) > "$W/sweeps_cond.log" 2>&1 &
timeout 150 $PY -m benchmarks.sweep uncond --n $N --ckpt "$W/final/ddpm_uncond.pt" --json "$W/uncond.json" --no-record > "$W/sweeps_uncond.log" 2>&1 &
wait
echo "all done at $(( $(date +%s) - start )) s"
tar czf "$OUT/logs.tgz" -C "$W" $(cd "$W" && ls *.log *.json)
