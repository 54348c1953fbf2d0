#!/usr/bin/env bash
# N runs of cgdt's default recipe on the shared BTC bars trained at once on one GPU (seeds 0..N-1):
# each run's wall time and the total, whether sharing the card raises throughput, and each run's
# test-split headline. By hand on the GPU machine, after the build step of gpu_session_paths.sh
# (which installs into /tmp/site); .devdata/ carries btcusdt_5m.csv.gz:
#
#   PARTS=build bash benchmarks/gpu_session_paths.sh && N=4 bash benchmarks/gpu_cgdt_concurrent.sh
#
# Results: benchmarks/results/cgdt-recipe-h100-btc.json (and GPU_NOTES.md).
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
ROOT=$PWD; N=${N:-4}; OUT=${OUT:-/tmp/cgdt-concurrent}; mkdir -p "$OUT"
(cd /tmp && himari data prepare "$ROOT/.devdata/btcusdt_5m.csv.gz" --out /tmp/btc > /dev/null) || exit 1
t0=$(date +%s)
for i in $(seq 0 $((N - 1))); do
  ( s=$(date +%s); cd /tmp && timeout ${CONC_TIMEOUT:-400} himari train cgdt --data /tmp/btc --device cuda \
      --set train.seed=$i --run-dir /tmp/c$i > "$OUT/c$i.log" 2>&1
    echo "seed $i rc=$? wall=$(( $(date +%s) - s ))s" ) &
done
wait
echo "$N at once: $(( $(date +%s) - t0 ))s"
for i in $(seq 0 $((N - 1))); do
  cp /tmp/c$i/summary.json "$OUT/c$i-summary.json" 2>/dev/null
  python3 - /tmp/c$i/summary.json <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except OSError as e:
    sys.exit(f"no summary: {e}")
t = d["test"]["model"]
print({k: t.get(k) for k in ("sharpe", "total_return", "n_trades", "exposure", "actions", "dominant_share", "static_share")},
      "buy-and-hold", d["test"]["buy-and-hold"].get("sharpe"), "best epoch", d.get("best_epoch"), "of", d.get("epochs_run"),
      "training s", d.get("seconds"))
PY
done
