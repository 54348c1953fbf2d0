#!/usr/bin/env bash
# One device-tool call for the models on one GPU: build with CUDA, the env benchmark of the
# current observation path next to the warp path (same machine), FLAG-TRADER's benchmark
# (bench_flag_trader.py) and a real FLAG-TRADER training run with --device cuda on the shared
# BTC bars (default architecture; the env budget bounded by EPISODES). Needs .whl/ and .devdata/.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/himari-out}; mkdir -p "$OUT"
PARTS=${PARTS:-build,env,flag-bench,flag-train}
EPISODES=${EPISODES:-12}
has() { [[ ",$PARTS," == *",$1,"* ]]; }
step() { echo "=== $1 ($(date +%T))"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
if has build; then
  step build
  HIMARI_ENABLE_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --no-build-isolation --no-deps . \
    > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
fi
if has env; then
  step "env benchmark: current path, then the warp path"
  timeout 150 python3 benchmarks/bench_gpu.py --only env --out "$OUT/gpu-env.json" 2>&1 | tail -6
  HIMARI_CUDA_OBS=warp timeout 90 python3 benchmarks/bench_gpu.py --only env --sizes 65536,1048576 \
    --out "$OUT/gpu-env-warp.json" 2>&1 | tail -3
fi
if has flag-bench; then
  step "bench_flag_trader"
  timeout 150 python3 benchmarks/bench_flag_trader.py --out "$OUT/flag-bench.json" 2>&1 | tail -16
fi
if has flag-train; then
  step "himari train flag-trader --device cuda (BTC, $EPISODES episodes of env experience)"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 1000 > "$OUT/gpu-mem.csv" &
  SMI=$!
  cd /tmp && HIMARI_CACHE_DIR=/tmp/cache timeout ${TRAIN_TIMEOUT:-330} himari train flag-trader \
    --data "$OLDPWD/.devdata/btcusdt_5m.csv.gz" --device cuda --epochs 1 --lr 1e-4 --env-episodes "$EPISODES" \
    --run-dir /tmp/ft-run ${TRAIN_ARGS:-} 2>&1 | tail -45
  cd "$OLDPWD"
  kill $SMI 2>/dev/null
  cp /tmp/ft-run/summary.json "$OUT/flag-summary.json" 2>/dev/null
  cp /tmp/ft-run/metrics.jsonl "$OUT/flag-metrics.jsonl" 2>/dev/null
  echo "peak GPU memory used (nvidia-smi, MiB): $(sort -n "$OUT/gpu-mem.csv" | tail -1)"
fi
step done
