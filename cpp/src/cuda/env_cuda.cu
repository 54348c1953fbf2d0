// The CUDA trading env: one thread per env runs the shared account and reward maths
// (account_math.h, reward_math.h, episode_math.h with T = double, exactly the CPU's), then the
// observation is written in the same launch by the warp, coalesced, in one of two ways:
// - row path (window 1, features a multiple of 4: the common case): lanes move 16-byte chunks,
//   several envs' rows per instruction and several instructions' loads in flight;
// - warp path (any window): the 32 lanes write the observations of the warp's 32 envs one env at
//   a time, which also handles the shift of the account history.
// benchmarks/GPU_NOTES.md has the measurements behind this (a thread-per-row variant with
// 16-byte accesses was slower: each of its warp instructions touched 32 separate rows).
// HIMARI_CUDA_OBS=warp forces the warp path (for benchmarks).
// An env whose episode ends at a step also gets its final observation (the one the step would
// have shown had the episode gone on) in b.final_obs, written before the fresh observation of
// the next episode overwrites b.obs: the row path needs no history (window 1), so each such
// env's thread writes its own row; the warp path writes it with the warp, from the previous
// observation still in b.obs, then synchronises the warp before the fresh observation.
#include <cuda_runtime.h>

#include <climits>
#include <cstdlib>
#include <cstring>

#include "check.cuh"
#include "himari/cuda/api.h"
#include "himari/env/account_math.h"
#include "himari/env/episode_math.h"
#include "himari/reward/reward_math.h"

namespace himari::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

cudaStream_t as_stream(Stream s) { return reinterpret_cast<cudaStream_t>(s); }

unsigned blocks_for(std::int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__device__ AccountState load_account(const EnvBuffers& b, std::int64_t i) {
  return AccountState{b.account[0][i],  b.account[1][i], b.account[2][i], b.account[3][i],  b.account[4][i],
                      b.account[5][i],  b.account[6][i], b.account[7][i], b.account[8][i],  b.account[9][i],
                      b.account[10][i], b.account[11][i], b.account[12][i]};
}

__device__ void store_account(const EnvBuffers& b, std::int64_t i, const AccountState& a) {
  const double v[kAccountFields] = {a.cash,     a.units,    a.equity,           a.peak,   a.entry_equity,
                                    a.turnover, a.position, a.bars_in_position, a.trades, a.closed_trades,
                                    a.wins,     a.bankrupt, a.drawdown};
#pragma unroll
  for (int f = 0; f < kAccountFields; ++f) b.account[f][i] = v[f];
}

// The env's state at an episode start (no observation: the warp writes it).
__device__ void begin_episode_state(const EnvBuffers& b, std::int64_t i) {
  const std::int64_t start = episode_start(b.bounds, b.config.random_start, b.config.seed,
                                           static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(b.episode_index[i]));
  b.episode_index[i] += 1;
  store_account(b, i, AccountState{});
  b.dsr_a[i] = 0.0;
  b.dsr_b[i] = 0.0;
  b.bar[i] = start;
  b.episode_step[i] = 0;
  b.episode_len[i] = episode_steps(b.n_bars, start, b.config.episode_length);
}

// The 4 account columns of the observation (docs/semantics.md), as the CPU writes them.
struct AccountColumns {
  float c[kAccountColumns];
};

__device__ AccountColumns account_columns(const AccountState& a) {
  AccountColumns out;
  out.c[0] = static_cast<float>(a.position);
  out.c[1] = static_cast<float>(fabs(a.position) * (a.equity / a.entry_equity - 1.0) + 0.0);
  out.c[2] = static_cast<float>(-a.drawdown);
  out.c[3] = static_cast<float>(log1p(a.bars_in_position));
  return out;
}

// Env e's observation, written by the 32 lanes of one warp. `fresh`: an episode start (zero
// account history); else the account history moves one row older and `cols` fills the last row.
__device__ void warp_write_observation(const EnvBuffers& b, std::int64_t e, bool fresh, const AccountColumns& cols,
                                       int lane) {
  const std::int64_t f = b.n_features;
  const std::int64_t row = f + kAccountColumns;
  const std::int64_t w_count = b.config.window;
  float* base = b.obs + e * w_count * row;
  const float* feat = b.features + (b.bar[e] - w_count + 1) * f;
  for (std::int64_t j = lane; j < w_count * f; j += 32) {
    const std::int64_t w = j / f;
    base[w * row + (j - w * f)] = feat[j];
  }
  if (fresh) {
    for (std::int64_t j = lane; j < w_count * kAccountColumns; j += 32)
      base[(j / kAccountColumns) * row + f + (j % kAccountColumns)] = 0.0f;
    return;
  }
  // Shift rows 1..W-1 of the account history one row older, 32 values at a time: each chunk is
  // read whole before it is written, and later chunks read only values no chunk has written yet.
  const std::int64_t history = (w_count - 1) * kAccountColumns;
  for (std::int64_t k0 = 0; k0 < history; k0 += 32) {
    const std::int64_t j = k0 + lane;
    const std::int64_t w = j / kAccountColumns, c = j % kAccountColumns;
    const float v = j < history ? base[(w + 1) * row + f + c] : 0.0f;
    __syncwarp();
    if (j < history) base[w * row + f + c] = v;
    __syncwarp();
  }
  if (lane < kAccountColumns) base[(w_count - 1) * row + f + lane] = cols.c[lane];
}

// Env e's final observation, written by the 32 lanes of one warp: the features of the window
// ending at `final_bar` (the bar the episode ended at), the account history of e's previous
// observation (still in b.obs) one row older, and `cols` (the account after the last step) in
// the last row. Reads b.obs of env e: the caller synchronises the warp before it is rewritten.
__device__ void warp_write_final_observation(const EnvBuffers& b, std::int64_t e, std::int64_t final_bar,
                                             const AccountColumns& cols, int lane) {
  const std::int64_t f = b.n_features;
  const std::int64_t row = f + kAccountColumns;
  const std::int64_t w_count = b.config.window;
  float* dst = b.final_obs + e * w_count * row;
  const float* prev = b.obs + e * w_count * row;
  const float* feat = b.features + (final_bar - w_count + 1) * f;
  for (std::int64_t j = lane; j < w_count * f; j += 32) {
    const std::int64_t w = j / f;
    dst[w * row + (j - w * f)] = feat[j];
  }
  for (std::int64_t j = lane; j < (w_count - 1) * kAccountColumns; j += 32) {
    const std::int64_t w = j / kAccountColumns, c = j % kAccountColumns;
    dst[w * row + f + c] = prev[(w + 1) * row + f + c];
  }
  if (lane < kAccountColumns) dst[(w_count - 1) * row + f + lane] = cols.c[lane];
}

// Env e's final observation at window 1 (no history), written by e's own thread: features[bar]
// and the account columns.
__device__ void thread_write_final_row(const EnvBuffers& b, std::int64_t e, std::int64_t final_bar,
                                       const AccountColumns& cols) {
  const std::int64_t f = b.n_features;
  float* dst = b.final_obs + e * (f + kAccountColumns);
  const float* feat = b.features + final_bar * f;
  for (std::int64_t j = 0; j < f; ++j) dst[j] = feat[j];
#pragma unroll
  for (int c = 0; c < kAccountColumns; ++c) dst[f + c] = cols.c[c];
}

// What a lane knows of its env's episode end, for the final observation.
struct EpisodeEnd {
  bool ended = false;
  std::int64_t bar = 0;   // the bar the ended episode's last observation ends at
  AccountColumns cols{};  // the account after its last step
};

// Every lane of the warp takes part: the observations of the warp's envs (those < n) are
// written one env after another, each ended episode's final observation first.
__device__ void warp_write_observations(const EnvBuffers& b, std::int64_t warp_first, bool fresh,
                                        const AccountColumns& cols, const EpisodeEnd& end) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const std::int64_t n = b.config.num_envs;
  const unsigned ended = b.final_obs != nullptr ? __ballot_sync(kFullMask, end.ended) : 0u;
  for (int k = 0; k < 32; ++k) {
    const std::int64_t e = warp_first + k;
    if (e >= n) break;  // uniform across the warp
    if ((ended >> k) & 1u) {  // uniform across the warp
      const std::int64_t final_bar = __shfl_sync(kFullMask, end.bar, k);
      AccountColumns fk;
#pragma unroll
      for (int c = 0; c < kAccountColumns; ++c) fk.c[c] = __shfl_sync(kFullMask, end.cols.c[c], k);
      warp_write_final_observation(b, e, final_bar, fk, lane);
      __syncwarp();  // every lane has read e's previous observation before any lane rewrites it
    }
    const bool fresh_k = __shfl_sync(kFullMask, fresh, k);
    AccountColumns ck;
#pragma unroll
    for (int c = 0; c < kAccountColumns; ++c) ck.c[c] = __shfl_sync(kFullMask, cols.c[c], k);
    warp_write_observation(b, e, fresh_k, ck, lane);
  }
}

// Window-1 observations of the warp's 32 envs as 16-byte chunks (F % 4 == 0, F + 4 <= 128):
// an env's row is R = F/4 + 1 chunks (F/4 of features, then the 4 account columns), each lane
// moves one chunk, so one warp instruction moves 32 / R whole rows (coalesced), and kUnroll such
// rounds load before any stores, so each lane keeps several loads in flight. `my_bar` and
// `cols` are the calling lane's env's bar and account columns; every lane must call this.
constexpr int kUnroll = 4;
__device__ void warp_write_rows(const EnvBuffers& b, std::int64_t warp_first, std::int64_t my_bar,
                                const AccountColumns& cols) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int feature_chunks = static_cast<int>(b.n_features / 4);
  const int row_chunks = feature_chunks + 1;
  const int per_round = 32 / row_chunks;  // envs per warp instruction
  const int sub = lane / row_chunks, chunk = lane - sub * row_chunks;
  const bool lane_used = sub < per_round;
  const auto* __restrict__ feats = reinterpret_cast<const float4*>(b.features);
  auto* __restrict__ obs = reinterpret_cast<float4*>(b.obs);
  const std::int64_t n = b.config.num_envs;
  for (int k0 = 0; k0 < 32; k0 += per_round * kUnroll) {
    float4 v[kUnroll];
    std::int64_t dst[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int k = k0 + u * per_round + sub;
      const int src_lane = k & 31;
      const std::int64_t bar = __shfl_sync(kFullMask, my_bar, src_lane);
      const float c0 = __shfl_sync(kFullMask, cols.c[0], src_lane), c1 = __shfl_sync(kFullMask, cols.c[1], src_lane);
      const float c2 = __shfl_sync(kFullMask, cols.c[2], src_lane), c3 = __shfl_sync(kFullMask, cols.c[3], src_lane);
      const std::int64_t e = warp_first + k;
      dst[u] = lane_used && k < 32 && e < n ? e * row_chunks + chunk : -1;
      if (dst[u] >= 0)
        v[u] = chunk < feature_chunks ? feats[bar * feature_chunks + chunk] : make_float4(c0, c1, c2, c3);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (dst[u] >= 0) obs[dst[u]] = v[u];
  }
}

__global__ void reset_kernel(EnvBuffers b) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < b.config.num_envs) begin_episode_state(b, i);
  __syncwarp();
  warp_write_observations(b, i - (threadIdx.x & 31), true, AccountColumns{}, EpisodeEnd{});
}

template <typename A, bool kRowPath>
__global__ void step_kernel(EnvBuffers b, const A* __restrict__ actions, unsigned long long* error) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  bool fresh = false;
  AccountColumns cols{};
  EpisodeEnd end;
  std::int64_t my_bar = 0;
  if (i < b.config.num_envs) {
    const auto raw = static_cast<long long>(actions[i]);
    double act = static_cast<double>(raw);
    if (raw < 0 || raw > 2) {
      atomicMin(error, static_cast<unsigned long long>(i));
      act = 1.0;  // HOLD; the host reports the error
    }
    AccountState a = load_account(b, i);
    DsrState dsr{b.dsr_a[i], b.dsr_b[i]};
    std::int64_t bar = b.bar[i];
    const double prev_drawdown = a.drawdown;
    const StepOutcome o = account_step(a, act, b.open[bar + 1], b.close[bar + 1], b.config.costs);
    const double log_return = lane_log(a.equity / o.prev_equity);
    const RewardTerms rt = shape_reward(log_return, prev_drawdown, a.drawdown, o.traded, dsr, b.reward);
    store_account(b, i, a);
    b.dsr_a[i] = dsr.a;
    b.dsr_b[i] = dsr.b;
    b.terms[0][i] = rt.log_return;
    b.terms[1][i] = rt.drawdown_penalty;
    b.terms[2][i] = rt.turnover_penalty;
    b.terms[3][i] = rt.dsr;
    b.reward_out[i] = static_cast<float>(rt.total);
    bar += 1;
    b.bar[i] = bar;
    const std::int64_t steps = b.episode_step[i] + 1;
    b.episode_step[i] = steps;
    const bool term = o.broke > 0.5;
    const bool trunc = !term && steps >= b.episode_len[i];
    b.terminated[i] = term;
    b.truncated[i] = trunc;
    b.episode_done[i] = term || trunc;
    if (term || trunc) {
      b.episode_return[i] = log(a.equity);
      b.episode_length[i] = steps;
      end = EpisodeEnd{true, bar, account_columns(a)};
      begin_episode_state(b, i);
      bar = b.bar[i];
      fresh = true;  // account columns stay 0: a fresh observation
    } else {
      cols = account_columns(a);
    }
    my_bar = bar;
  }
  const std::int64_t warp_first = i - (threadIdx.x & 31);
  if constexpr (kRowPath) {
    // Window 1: the final observation reads nothing of b.obs, so it needs no ordering.
    if (end.ended && b.final_obs != nullptr) thread_write_final_row(b, i, end.bar, end.cols);
    warp_write_rows(b, warp_first, my_bar, cols);
  } else {
    __syncwarp();  // bar[] of every env of the warp is written before the lanes read it
    warp_write_observations(b, warp_first, fresh, cols, end);
  }
}

}  // namespace

void env_reset(const EnvBuffers& b, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  reset_kernel<<<blocks_for(b.config.num_envs), kThreads, 0, as_stream(stream)>>>(b);
  HIMARI_CUDA_CHECK_LAUNCH("env reset_kernel");
}

// The row path needs window 1 and rows of 16-byte chunks that fit a warp; HIMARI_CUDA_OBS=warp
// forces the env-by-env warp path.
static bool use_row_path(const EnvBuffers& b) {
  static const bool forced_warp = [] {
    const char* v = std::getenv("HIMARI_CUDA_OBS");
    return v != nullptr && std::strcmp(v, "warp") == 0;
  }();
  return !forced_warp && b.config.window == 1 && b.n_features % 4 == 0 && b.n_features + kAccountColumns <= 128;
}

template <typename A>
void env_step(const EnvBuffers& b, const A* actions, unsigned long long* error, int device, Stream stream) {
  detail::DeviceGuard guard(device);
  if (use_row_path(b))
    step_kernel<A, true><<<blocks_for(b.config.num_envs), kThreads, 0, as_stream(stream)>>>(b, actions, error);
  else
    step_kernel<A, false><<<blocks_for(b.config.num_envs), kThreads, 0, as_stream(stream)>>>(b, actions, error);
  HIMARI_CUDA_CHECK_LAUNCH("env step_kernel");
}

#define HIMARI_INSTANTIATE(A) \
  template void env_step<A>(const EnvBuffers&, const A*, unsigned long long*, int, Stream);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE

}  // namespace himari::cuda
