// The CUDA backend as seen from host C++ (the bindings, the CUDA env class, the tests): plain
// functions over raw device pointers, no CUDA headers. Implemented in src/cuda/*.cu, or by
// src/cuda_stub.cpp (every call throws CudaUnavailable) when the build has no CUDA.
//
// Streams are passed as integers (a cudaStream_t's value; 0 is the legacy default stream, the
// one torch uses unless told otherwise), so work is ordered with the caller's own work on that
// stream and nothing here synchronises unless it says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "himari/backtest/backtest.h"
#include "himari/backtest/held_runs.h"
#include "himari/env/trading_env.h"
#include "himari/filters/ekf.h"

namespace himari::cuda {

using Stream = std::uintptr_t;

bool compiled();
int device_count();

// CUDA runtime version and the architectures compiled, e.g. "CUDA 13.0, sm 80-real 90"; empty
// in a CPU build.
std::string build_summary();

// Why no CUDA device can be used, in words a user can act on (no driver, a driver older than
// this build's CUDA, no GPU visible, a CPU-only build); empty when at least one device is visible.
std::string unavailable_reason();

// Throws CudaUnavailable unless `device` names a visible device of a CUDA build.
void require(int device);

// `bytes` of device memory on `device`, freed (on that device) with the last owner.
std::shared_ptr<void> allocate(std::size_t bytes, int device);

// Blocking copies (pageable host memory); stream-ordered after earlier work on `stream`.
void copy_to_device(void* dst, const void* src, std::size_t bytes, int device, Stream stream);
void copy_to_host(void* dst, const void* src, std::size_t bytes, int device, Stream stream);
void fill_zero(void* dst, std::size_t bytes, int device, Stream stream);  // asynchronous

// The device that owns `ptr`, or -1 when it is host memory (pageable or pinned); throws
// DeviceError for a pointer the driver does not know as device memory of this process when
// `ptr` is claimed to be device memory (see check_device_pointer).
int pointer_device(const void* ptr);
void check_device_pointer(const void* ptr, int device, const char* name);

void synchronize(int device, Stream stream);

// ---- kernels ----------------------------------------------------------------------------
// A new episode in every env (counter-RNG starts, fresh accounts, fresh observations). The
// buffers of `b` are device pointers on `device`.
void env_reset(const EnvBuffers& b, int device, Stream stream);

// One step of all envs, observations written in the same launch. An action outside {0,1,2} is
// applied as HOLD and the lowest such env index is recorded in *error (device memory, initially
// UINT64_MAX) for the host to report.
template <typename A>
void env_step(const EnvBuffers& b, const A* actions, unsigned long long* error, int device, Stream stream);

// The fused signal backtester: in.open/in.close, signals [T, M], metrics [M] and equity [T, M]
// (or nullptr) are device pointers. Values of signals outside {0,1,2} are recorded in *error like
// env_step (flat index), the strategy then holds.
// Runs backtest_signals_scan when `equity` is nullptr, else backtest_signals_sequential.
template <typename A>
void backtest_signals(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity,
                      unsigned long long* error, int device, Stream stream);

// One thread per strategy walking all bars (writes the equity curve when `equity` is not null).
template <typename A>
void backtest_signals_sequential(const BacktestInputs& in, const A* signals, Metrics* metrics, double* equity,
                                 unsigned long long* error, int device, Stream stream);

// The chunked scan over time (himari/backtest/chunked_scan.h): metrics only, the same positions
// and counts as the sequential kernel and its equity-derived metrics to rounding. `chunk` steps
// per chunk, or 0 to size chunks from T and M. With `tables` (long-flat mode; its pointers in
// this device's memory) each chunk is summarised by held runs (summarize_chunk_runs). `tiles`:
// stage the signals in shared memory where rows allow it (see backtest_scan_cuda.cu); false
// reads them one action per thread per bar (the same results to the bit, kept to measure and
// test against).
template <typename A>
void backtest_signals_scan(const BacktestInputs& in, const A* signals, Metrics* metrics, unsigned long long* error,
                           std::int64_t chunk, int device, Stream stream, const runs::TablesView* tables = nullptr,
                           bool tiles = true);

// Batched EKF over device prices [B, T]: states [B, T, 4], innovations [B, T, 2] or nullptr. A
// price that is not finite and > 0 is recorded in *error (flat index, lowest wins).
template <typename P>
void ekf(const P* prices, std::int64_t batch, std::int64_t n_bars, const EkfParams& params, double* states,
         double* innovations, unsigned long long* error, int device, Stream stream);

}  // namespace himari::cuda
