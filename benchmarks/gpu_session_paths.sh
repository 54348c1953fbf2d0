#!/usr/bin/env bash
# Every path that claims the GPU, run on it (benchmarks/README.md): build with CUDA, the whole
# pytest suite (CUDA tests included), a short `--device cuda` training of each of the five models
# (the Trainer's CUDA and bf16 mixed-precision paths), `himari bench --device cuda`, a CPU-only
# build of the core feeding a GPU policy, flag-trader's training-step cost with maml and adversarial
# against a plain run, and the generators' fit on the GPU. PARTS picks steps; one device call may
# run 10 minutes, so the default is split over calls, e.g.:
#   PARTS=build,suite  then  PARTS=cuda-tests,train,bench,cpu-core  then  PARTS=adversarial,generators
# (cards: each model's defaults trained once on the BTC bars, for the model cards' H200 cost;
#  peers: CQL and CGDT updates/s against d3rlpy on the GPU, needs .whl-peers/: d3rlpy 2.8.1 and
#  its dependencies as cp312 wheels, gymnasium 1.0.0 among them, installed apart from .whl/;
#  PEERS="cql cgdt" picks them, PEERS_REPEATS the repeats (3), CGDT_ARGS more bench_cgdt options
#  (--only TEXT: some rows); timegan-graphs: one TimeGAN fit eager and replayed as CUDA graphs;
#  timegan-start, then timegan-wait in the following calls: TimeGAN's paper-size fit, which
#  outlasts one call, in the background of the held machine; replay-tests: the CUDA-graph and compiled-loss tests only;
#  graph-train: GRAPH_MODELS trained in float32 with and without train.cuda_graph;
#  cgdt-acting: cgdt's sequential acting replayed as CUDA graphs against eager, and its GPU tests;
#  cgdt-concurrent: CONC_N (4) runs of cgdt's recipe at once on the card, then one alone;
#  scan: the scan backtester's table, or with SCAN_ARGS=--held-sweep where held runs pay;
#  scan-ncu: Nsight Compute on the scan's kernels; CUDA_TESTS: the files cuda-tests runs (tests/python);
#  FLAG_ARGS: flag-bench's options besides --profile --compile (--end-to-end 8,64,256);
#  cgdt-full-start, then cgdt-full-wait: cgdt's recipe at full size, walk-forward, in the background)
# Needs in the checkout: .whl/ (offline wheels: gymnasium and farama-notifications; the GPU image
# has hypothesis, scikit-learn and scipy) and .devdata/ (the shared BTC and ETH bars). Logs and
# JSON go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 HOME=/tmp HIMARI_CACHE_DIR=/tmp/cache
OUT=${OUT:-/tmp/himari-out}; mkdir -p "$OUT"
PARTS=${PARTS:-build,suite}
ROOT=$PWD
has() { [[ ",$PARTS," == *",$1,"* ]]; }
step() { echo "=== $1 ($(date +%T))"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# The results' file names carry the card that measured them (h100, h200, ...), whichever came.
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -oiE "[a-z][0-9]{2,3}" | head -1 | tr A-Z a-z)
GPU=${GPU:-gpu}
if has build; then
  step build
  HIMARI_ENABLE_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --no-build-isolation --no-deps . \
    > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  (cd / && python3 -c "import himari.engine as e; print(e.build_info())")
fi
if has suite; then
  # Sharded by test file over SUITE_SHARDS processes (one process took longer than a call on the
  # 16-core machine); each shard has its own cache and two CPU threads; failures are printed as
  # they happen (-v), so a shard cut short by the timeout still names what failed.
  step "the whole pytest suite against the installed CUDA build, in ${SUITE_SHARDS:=8} shards"
  files=$(cd "$ROOT" && ls tests/python/*/test_*.py tests/python/test_*.py 2>/dev/null)
  for i in $(seq 0 $((SUITE_SHARDS - 1))); do
    shard=$(echo "$files" | awk -v n="$SUITE_SHARDS" -v i="$i" 'NR % n == i')
    HIMARI_CACHE_DIR=/tmp/cache-$i OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 HIMARI_SHARED_DATA="$ROOT/.devdata" \
      PYTHONSAFEPATH=1 timeout ${SUITE_TIMEOUT:-420} python3 -m pytest -v --tb=short -p no:cacheprovider \
      -o addopts="" --import-mode=importlib $shard -rfEs --durations=5 > "$OUT/suite-$i.log" 2>&1 &
  done
  wait
  grep -hE " (FAILED|ERROR)( |$)" "$OUT"/suite-*.log | sed 's/ - .*//' | sort | uniq | head -60
  grep -hE "^=+ .*(passed|failed).* in " "$OUT"/suite-*.log
  for f in "$OUT"/suite-*.log; do grep -qE "^=+ .* in [0-9.]+s" "$f" || echo "cut short by the timeout: $f"; done
fi
market_prepared() {  # MARKET (btc or eth): the shared bars of that market, prepared once in /tmp/MARKET-prepared
  [[ -d /tmp/$1-prepared ]] || (cd /tmp && himari data prepare "$ROOT/.devdata/${1}usdt_5m.csv.gz" --out /tmp/$1-prepared > /dev/null)
}
btc_prepared() { market_prepared btc; }
wait_background() {  # SECONDS PIDS...: wait up to SECONDS for background jobs of an earlier call, then say which still run
  local limit=$1; shift
  for _ in $(seq "$limit"); do
    local alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 1
  done
  for pid in "$@"; do kill -0 "$pid" 2>/dev/null && echo "still running (pid $pid)" || echo "finished (pid $pid)"; done
}
prepared() {  # a small synthetic market, prepared once
  [[ -d /tmp/synth-prepared ]] && return
  (cd /tmp && himari data synth --bars 20000 --seed 0 --out /tmp/synth.parquet > /dev/null \
    && himari data prepare /tmp/synth.parquet --out /tmp/synth-prepared > /dev/null)
}
timed_train() {  # NAME MODEL ARGS...: one run, its wall time and the summary's headline
  local name=$1; shift
  local start=$(date +%s.%N)
  (cd /tmp && timeout ${TRAIN_TIMEOUT:-240} himari train "$@" --run-dir "/tmp/run-$name" > "$OUT/train-$name.log" 2>&1)
  local rc=$? secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  python3 - "$name" "$rc" "$secs" "/tmp/run-$name/summary.json" <<'PY' | tee -a "$OUT/train.jsonl"
import json, sys
name, rc, secs, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
row = {"run": name, "exit": rc, "wall_s": secs}
try:
    s = json.load(open(path))
    row.update(device=s.get("device"), steps=s.get("steps"), seconds=s.get("seconds"),
               best_validation_sharpe=s.get("best_validation_sharpe"),
               validation_sharpe=((s.get("validation") or {}).get("model") or {}).get("sharpe"),
               test_sharpe=((s.get("test") or {}).get("model") or {}).get("sharpe"))
except OSError:
    pass
print(json.dumps(row))
PY
  [[ $rc -eq 0 ]] || tail -15 "$OUT/train-$name.log"
}
if has cuda-tests; then
  step "the tests marked cuda (parity of the native kernels, EKF preprocessing, VecNormalize, generators)"
  HIMARI_SHARED_DATA="$ROOT/.devdata" PYTHONSAFEPATH=1 timeout 300 python3 -m pytest -q -p no:cacheprovider \
    -o addopts="" --import-mode=importlib -m cuda ${CUDA_TESTS:-tests/python} -rfEs 2>&1 | tail -15
fi
if has replay-tests; then
  step "the CUDA-graph replay tests only (GraphReplay, the Trainer's GraphedStep and compiled loss, the generators' replayed fits)"
  HIMARI_SHARED_DATA="$ROOT/.devdata" PYTHONSAFEPATH=1 timeout 240 python3 -m pytest -q -p no:cacheprovider \
    -o addopts="" --import-mode=importlib -m cuda tests/python/training/test_graph_replay.py \
    tests/python/training/test_graph_step.py tests/python/training/test_compiled_loss.py tests/python/augment/test_cuda.py \
    -rfEs 2>&1 | tail -15
fi
if has graph-train; then
  # GRAPH_MODELS (default: cgdt) trained twice in float32, with and without train.cuda_graph: the two
  # runs' validation metrics should agree to float rounding, and the summaries say how long each took
  # (GRAPH_SETS: more --set options, e.g. "--set cgdt.critic_steps=200" to keep a call short).
  step "training with and without train.cuda_graph (float32): ${GRAPH_MODELS:=cgdt}"
  prepared
  for m in $GRAPH_MODELS; do
    for g in false true; do
      timed_train $m-graph-$g $m --data /tmp/synth-prepared --device cuda --epochs 1 --set train.amp=false \
        --set train.cuda_graph=$g --set train.max_steps_per_epoch=${GRAPH_STEPS:-200} ${GRAPH_SETS:-}
    done
  done
fi
if has cgdt-acting; then
  step "cgdt's acting step replayed as a CUDA graph against eager (decisions/s), and cgdt's GPU tests"
  PYTHONSAFEPATH=1 timeout 200 python3 -m pytest -q -p no:cacheprovider -o addopts="" --import-mode=importlib \
    -m cuda tests/python/builtin/test_cgdt.py -rfEs 2>&1 | tail -6
  timeout ${ACTING_TIMEOUT:-240} python3 benchmarks/bench_cgdt_acting.py --device cuda --steps ${ACTING_STEPS:-3000} \
    --targets 1,5 --out "$OUT/cgdt-acting-$GPU.json" 2>&1 | tail -8
fi
if has train; then
  step "a short --device cuda training of each model (synthetic market, 20,000 bars)"
  prepared
  D=/tmp/synth-prepared
  timed_train baseline-mlp baseline-mlp --data $D --device cuda --epochs 2
  timed_train cql cql --data $D --device cuda --epochs 1
  timed_train cgdt cgdt --data $D --device cuda --epochs 1
  timed_train ppo-lstm ppo-lstm --data $D --device cuda --epochs 1 --env-episodes 16
fi
if has cards; then
  step "each model's default recipe: one himari train on the BTC bars with --device cuda (the model cards' H200 cost)"
  btc_prepared
  for m in ${CARD_MODELS:-baseline-mlp cql ppo-lstm cgdt}; do
    TRAIN_TIMEOUT=${CARD_TIMEOUT:-240} timed_train card-$m $m --data /tmp/btc-prepared --device cuda
  done
fi
if has cgdt-concurrent; then
  # CONC_N runs of cgdt's default recipe trained at once on the card (seeds 0..CONC_N-1), then seed 0
  # alone: whether sharing the card raises throughput, and the recipe's cost per run
  step "cgdt's recipe: ${CONC_N:=4} runs at once on the BTC bars, then one alone"
  btc_prepared
  start=$(date +%s)
  for i in $(seq 0 $((CONC_N - 1))); do
    TRAIN_TIMEOUT=${CONC_TIMEOUT:-400} timed_train cgdt-at-once-$i cgdt --data /tmp/btc-prepared --device cuda \
      --set train.seed=$i &
  done
  wait
  echo "$CONC_N at once: $(( $(date +%s) - start )) s"
  timed_train cgdt-alone cgdt --data /tmp/btc-prepared --device cuda --set train.seed=0
fi
if has bench; then
  step "himari bench --device cuda"
  (cd /tmp && timeout 120 himari bench --device cuda 2>&1 | tail -25)
fi
if has cpu-core; then
  step "a CPU-only build of the core with a GPU policy (ppo-lstm --device cuda)"
  cmake -S . -B /tmp/cpu-core -G Ninja -DHIMARI_BUILD_PYTHON=ON -DHIMARI_ENABLE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" > "$OUT/cpu-core.log" 2>&1 \
    && cmake --build /tmp/cpu-core -j16 >> "$OUT/cpu-core.log" 2>&1 || tail -20 "$OUT/cpu-core.log"
  site=$(cd / && python3 -c "import himari, os; print(os.path.dirname(os.path.dirname(himari.__file__)))")
  rm -rf /tmp/cpu-site && mkdir -p /tmp/cpu-site && cp -r "$site/himari" "$site/himari_builtin" /tmp/cpu-site/ \
    && cp -r "$site"/himari-*.dist-info /tmp/cpu-site/ && rm -f /tmp/cpu-site/himari/_core*.so \
    && cp /tmp/cpu-core/cpp/_core*.so /tmp/cpu-site/himari/
  prepared
  (cd / && PYTHONPATH=/tmp/cpu-site:$PYTHONPATH python3 -c \
    "import himari.engine as e; print('cpu-only core:', e.build_info(), '| reason:', e.cuda_unavailable_reason())")
  PYTHONPATH=/tmp/cpu-site:$PYTHONPATH timed_train cpu-core-ppo-lstm ppo-lstm --data /tmp/synth-prepared --device cuda \
    --epochs 1 --env-episodes 16
fi
if has scan; then
  step "the chunked-scan backtester against the sequential kernel (time, bytes, copy bandwidth)"
  timeout ${SCAN_TIMEOUT:-150} python3 benchmarks/bench_backtest_scan.py ${SCAN_ARGS:-} --out "$OUT/backtest-scan${SCAN_ARGS:+-sweep}-$GPU.json" 2>&1 | tail -20
fi
if has scan-ncu; then
  # Nsight Compute on one call of each scan variant (SCAN_NCU_SIGNALS, default sticky:0.01):
  # throughput against the ceilings, warp stalls, memory traffic; the full report goes to $OUT.
  step "Nsight Compute on the scan backtester's kernels (${SCAN_NCU_SIGNALS:=sticky:0.01})"
  timeout ${SCAN_NCU_TIMEOUT:-240} ncu --clock-control none -k regex:"summary|positions" \
    --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section Occupancy \
    --section LaunchStats -c 4 python3 benchmarks/profile_backtest_scan.py --signals "$SCAN_NCU_SIGNALS" \
    > "$OUT/scan-ncu-$GPU.txt" 2>&1
  grep -E "_kernel<|Duration|Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Stall|Warp Cycles Per Issued|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Block Limit|Stall" \
    "$OUT/scan-ncu-$GPU.txt" | head -120
fi
if has flag-bench; then
  step "flag-trader: update MFU, where its GPU time goes, compiled; end to end at 8, 64, 256 envs, eager and graphed"
  timeout ${FLAG_TIMEOUT:-420} python3 benchmarks/bench_flag_trader.py --device cuda --profile --compile \
    ${FLAG_ARGS:---end-to-end 8,64,256} --out "$OUT/flag-trader-$GPU.json" 2>&1 | tail -60
fi
if has peers; then
  step "CQL and CGDT training updates on the GPU against d3rlpy's DiscreteCQL and DiscreteDecisionTransformer"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/d3site .whl-peers/*.whl \
    || echo "no .whl-peers/ wheels: the d3rlpy rows are skipped"
  printf '#!/bin/sh\nPYTHONPATH=/tmp/d3site:$PYTHONPATH exec python3 "$@"\n' > /tmp/d3python && chmod +x /tmp/d3python
  [[ " ${PEERS:-cql cgdt} " == *" cql "* ]] && timeout ${PEERS_TIMEOUT:-300} python3 benchmarks/bench_cql.py \
    --device cuda --compiled --repeats ${PEERS_REPEATS:-3} --updates 500 --d3rlpy-python /tmp/d3python --json "$OUT/cql-$GPU-cuda.json" \
    2>&1 | tail -11
  [[ " ${PEERS:-cql cgdt} " == *" cgdt "* ]] && timeout ${PEERS_TIMEOUT:-300} python3 benchmarks/bench_cgdt.py \
    --device cuda --compiled --repeats ${PEERS_REPEATS:-3} --updates 100 --batch 64 --d3rlpy-python /tmp/d3python \
    --json "$OUT/cgdt-$GPU-cuda.json" ${CGDT_ARGS:-} 2>&1 | tail -14
fi
if has sanitizer; then
  step "compute-sanitizer memcheck on a small run of every kernel"
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 python3 benchmarks/cuda_sanitize_run.py 2>&1 | tail -8
  step "compute-sanitizer racecheck and synccheck on the scan's shared-memory tiles"
  for tool in racecheck synccheck; do
    timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 python3 benchmarks/cuda_sanitize_run.py --tiles-only \
      2>&1 | tail -4
  done
fi
if has adversarial; then
  step "flag-trader --device cuda: cost of maml (first-order, reptile) and adversarial against a plain run"
  timeout ${COST_TIMEOUT:-300} python3 benchmarks/bench_online_methods_cost.py --model flag-trader --device cuda \
    --bars 12000 --cycles 1 --max-steps 4 --out "$OUT/online-methods-cost-flag-trader-cuda.json" 2>&1 | tail -14
fi
if has timegan-graphs; then
  step "timegan on the GPU: the same fit eager and replayed as CUDA graphs (TIMEGAN_ITERATIONS per phase)"
  btc_prepared
  for graphs in false true; do
    timeout ${GEN_TIMEOUT:-280} python3 benchmarks/bench_generators.py --data /tmp/btc-prepared --method timegan \
      --windows 2000 --set iterations=${TIMEGAN_ITERATIONS:-300} --set cuda_graphs=$graphs --report-steps 50 \
      --device cuda --out "$OUT/generator-timegan-btc-cuda-graphs-$graphs.json" 2>&1 | grep -iE "fit|seconds" | head -4
  done
fi
if has timegan-start; then
  # The paper-size fit outlasts one call: it runs in the background on the held machine, and
  # PARTS=timegan-wait (the next calls, chained before the machine is released) waits for it.
  step "timegan at the default (paper) size in the background: fit on the BTC train split, then the report"
  btc_prepared
  mkdir -p /tmp/timegan-full
  setsid nohup python3 benchmarks/bench_generators.py --data /tmp/btc-prepared --method timegan --windows 20000 \
    --report-steps ${TIMEGAN_REPORT_STEPS:-2000} --device cuda --out /tmp/timegan-full/generator-timegan-btc-cuda-$GPU.json \
    > /tmp/timegan-full/log 2>&1 &
  sleep 1; pgrep -f "timegan-full/generator-timegan" | head -1 > /tmp/timegan-full/pid
fi
if has timegan-wait; then
  step "waiting up to ${TIMEGAN_WAIT:-540} s for the background timegan fit"
  wait_background "${TIMEGAN_WAIT:-540}" "$(cat /tmp/timegan-full/pid)"
  tail -c 1500 /tmp/timegan-full/log
  cp /tmp/timegan-full/*.json /tmp/timegan-full/log "$OUT"/ 2>/dev/null
fi
if has cgdt-full-start; then
  # cgdt's recipe at the model's full size (d_model 256, 6 layers, 8 heads, 64-step windows): the
  # search protocol (folds 0-2, the last fold held out) with CGDT_FULL_SEEDS seeds on each of
  # CGDT_FULL_MARKETS at once on the card, in the background of the held machine; the scoring runs
  # there too (the checkpoints stay on the machine). PARTS=cgdt-full-wait in the next calls waits.
  step "cgdt's recipe at full size, walk-forward on ${CGDT_FULL_MARKETS:=btc eth} in the background (${CGDT_FULL_SEEDS:=1} seeds)"
  mkdir -p /tmp/cgdt-full; : > /tmp/cgdt-full/pid
  # each evaluation gets its share of the CPU cores: two processes with a thread per core each (the
  # default) had not scored their 3 runs after 20 minutes on an H100 machine's 16 cores, where one
  # alone took 2-4 minutes (a himari that scored every run on the CPU; runs now act on their GPU)
  markets=($CGDT_FULL_MARKETS); threads=$(( $(nproc) / ${#markets[@]} ))
  for m in "${markets[@]}"; do
    market_prepared "$m"
    (cd /tmp && OMP_NUM_THREADS=$threads setsid nohup himari evaluate cgdt --data /tmp/$m-prepared --walk-forward 4 --hold-out-last \
      --seeds "$CGDT_FULL_SEEDS" --fee 0.001 --slippage 0.0005 --set train.device=cuda --set cgdt.d_model=256 \
      --set cgdt.n_layers=6 --set cgdt.n_heads=8 --set cgdt.context_length=64 --out /tmp/cgdt-full/search-cgdt4-$m \
      > /tmp/cgdt-full/log-$m 2>&1 &)
    sleep 2; pgrep -f "cgdt-full/search-cgdt4-$m" | head -1 >> /tmp/cgdt-full/pid
  done
fi
if has cgdt-full-wait; then
  step "waiting up to ${CGDT_FULL_WAIT:-540} s for the background full-size cgdt evaluations"
  wait_background "${CGDT_FULL_WAIT:-540}" $(cat /tmp/cgdt-full/pid)
  for log in /tmp/cgdt-full/log-*; do echo "--- $log"; tail -c 1200 "$log"; done
  (cd /tmp/cgdt-full && tar czf "$OUT/cgdt-full-$GPU.tgz" --exclude=checkpoints --exclude=series log-* search-cgdt4-* 2>/dev/null)
fi
if has generators; then
  step "generators on the GPU: default sizes, BTC train split, with the quality report"
  btc_prepared
  # tab-ddpm and timegan at their default (the papers') sizes, or TIMEGAN_ITERATIONS per phase.
  for g in ${GENERATORS:-tab-ddpm timegan}; do
    case $g in
      tab-ddpm) size=(--rows 50000) ;;
      timegan) size=(--windows 20000 --set iterations=${TIMEGAN_ITERATIONS:-50000}) ;;
      *) size=() ;;
    esac
    timeout ${GEN_TIMEOUT:-280} python3 benchmarks/bench_generators.py --data /tmp/btc-prepared --method $g \
      "${size[@]}" --device cuda --out "$OUT/generator-$g-btc-cuda.json" 2>&1 | tail -30
  done
fi
step done
