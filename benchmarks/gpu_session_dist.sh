#!/usr/bin/env bash
# One device-tool call on a machine with several GPUs: build with CUDA, FLAG-TRADER data-parallel
# scaling (bench_distributed.py: 1 GPU vs all GPUs, same global batch), then a FLAG-TRADER
# training run with --device cuda on the shared BTC bars on one GPU (default architecture; env
# budget EPISODES), evaluated on validation and test. Needs .whl/ and .devdata/.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/himari-out}; mkdir -p "$OUT"
EPISODES=${EPISODES:-8}
PARTS=${PARTS:-dist,train}
has() { [[ ",$PARTS," == *",$1,"* ]]; }
step() { echo "=== $1 ($(date +%T))"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -5
step build
HIMARI_ENABLE_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=32 python3 -m pip install --no-build-isolation --no-deps . \
  > /tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
if has dist; then
  # 16 envs: a PPO minibatch of 4 env sequences x 128 steps = 512 windows of 256 bars on one GPU
  # (32 envs made it 1,024 windows, which ran out of the H100's memory without checkpointing).
  step "bench_distributed flag-trader (1 GPU vs all)"
  timeout ${DIST_TIMEOUT:-200} python3 benchmarks/bench_distributed.py --model flag-trader \
    --data .devdata/btcusdt_5m.csv.gz --updates ${DIST_UPDATES:-3} --warmup 1 --set flag-trader.n_envs=${DIST_ENVS:-16} \
    --timeout 170 --out "$OUT/dist.json" > "$OUT/dist.log" 2>&1
  grep -v -i "warning\|^\s*$\|return Variable\|from_numpy" "$OUT/dist.log" | tail -30
fi
if ! has train; then step done; exit 0; fi
step "himari train flag-trader --device cuda (BTC, $EPISODES episodes)"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 1000 > "$OUT/gpu-mem.csv" &
SMI=$!
REPO=$PWD
cd /tmp && HIMARI_CACHE_DIR=/tmp/cache timeout ${TRAIN_TIMEOUT:-320} himari train flag-trader \
  --data "$REPO/.devdata/btcusdt_5m.csv.gz" --device cuda --epochs 1 --lr 1e-4 --env-episodes "$EPISODES" \
  --run-dir /tmp/ft-run 2>&1 | grep -v Warning | tail -30
cd "$REPO"
kill $SMI 2>/dev/null
cp /tmp/ft-run/summary.json "$OUT/flag-summary.json" 2>/dev/null
cp /tmp/ft-run/metrics.jsonl "$OUT/flag-metrics.jsonl" 2>/dev/null
echo "peak GPU memory used on GPU 0 (nvidia-smi, MiB): $(sort -n "$OUT/gpu-mem.csv" | tail -1)"
step done
