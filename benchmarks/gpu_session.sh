#!/usr/bin/env bash
# Everything the CUDA backend needs from one device-tool call (benchmarks/README.md):
# build with CUDA, the C++ cuda tests, the pytest parity tests, compute-sanitizer memcheck on a
# small parity run, then benchmarks/bench_gpu.py and benchmarks/bench_backtest_scan.py. Logs and
# JSON go to $OUT (the tool's folder).
# Needs in the checkout: .whl/ (gymnasium wheels), .devdata/ (btcusdt_5m.csv.gz, googletest/).
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/himari-out}; mkdir -p "$OUT"
PARTS=${PARTS:-build,ctest,pytest,sanitizer,bench,bench-scan,bench-warp}
has() { [[ ",$PARTS," == *",$1,"* ]]; }
step() { echo "=== $1 ($(date +%T))"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
if has build; then
  step build
  HIMARI_ENABLE_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install --no-build-isolation --no-deps . \
    > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  (cd / && python3 -c "import himari.engine as e; print(e.build_info())")
fi
if has ctest; then
  step ctest
  { cmake -S . -B build/ctest-cuda -G Ninja -DHIMARI_ENABLE_CUDA=ON -DBUILD_TESTING=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DHIMARI_GTEST_SOURCE_DIR="$PWD/.devdata/googletest" && cmake --build build/ctest-cuda -j16; } > "$OUT/ctest-build.log" 2>&1 \
    && (cd build/ctest-cuda && ctest -L cuda --output-on-failure 2>&1 | tail -8) || tail -20 "$OUT/ctest-build.log"
fi
if has pytest; then
  step pytest
  HIMARI_SHARED_DATA="$PWD/.devdata" PYTHONSAFEPATH=1 timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" \
    --import-mode=importlib tests/python/engine/test_cuda_parity.py tests/python/engine/test_cuda_backtest_scan.py 2>&1 | tail -25
fi
if has sanitizer; then
  step sanitizer
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 python3 benchmarks/cuda_sanitize_run.py 2>&1 | tail -12
fi
if has bench; then
  step bench
  timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/bench_gpu.py --out "$OUT/gpu.json" ${BENCH_ARGS:-} 2>&1
fi
if has bench-scan; then
  step "bench (scan backtester against the per-strategy kernel)"
  timeout 240 python3 benchmarks/bench_backtest_scan.py --out "$OUT/backtest-scan.json" 2>&1 | tail -14
fi
if has bench-warp; then
  step "bench (warp observation path, N = 2^20)"
  HIMARI_CUDA_OBS=warp timeout 120 python3 benchmarks/bench_gpu.py --only env --sizes 1048576 --out "$OUT/gpu-warp.json" 2>&1 | tail -4
fi
step done
