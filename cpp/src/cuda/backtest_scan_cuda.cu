// The signal backtester as a chunked scan over time (the algorithm and its proof against the
// sequential kernel: himari/backtest/chunked_scan.h and tests/cpp/test_backtest_scan.cpp).
// Bars are cut into K chunks of C steps so that K x M threads share the work:
//   positions_kernel  one thread per (chunk, strategy): where the chunk leaves the position
//                     (read backwards from the chunk's end, usually a few bars);
//   carry_kernel      one thread per strategy: the scan of those over the K chunks;
//   summary_kernel    one thread per (chunk, strategy): the chunk in units of its entry equity;
//   compose_kernel    one thread per strategy: chunk results in order, metrics, and the first
//                     chunk that may touch the bankruptcy floor, if any;
//   floor_kernel      one warp per such strategy: that chunk again as 32 sub-chunks (the same
//                     three phases), the one sub-chunk near the floor with account_step itself.
// Every (chunk, strategy) array is [K, M] with the strategy fastest, like the signals [T, M]: a
// warp reads 32 consecutive strategies of a bar. Scratch comes from the stream-ordered pool.
//
// Tiles: where each row of signals is a whole number of 4-byte words (M * sizeof(A) % 4 == 0
// for 1- and 2-byte actions; always for wider ones), the positions and summary kernels run a
// block of kThreads strategies over one chunk and stage its signals in shared memory, a tile of
// bars at a time, with asynchronous copies of 4 bytes or more (cp.async), the next tile in flight
// while this one is read. Loading one byte per thread per bar kept too few bytes in flight to
// use the memory system (about 15% of copy bandwidth on signals that never act); the same walks
// (chunked_scan.h) are fed either way, so the results are the same to the bit.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "himari/backtest/chunked_scan.h"
#include "himari/cuda/api.h"

namespace himari::cuda {

namespace {

using scan::ChunkSummary;
using scan::Composer;
using scan::PositionCarry;
using scan::PositionSummary;

constexpr int kThreads = 128;
constexpr int kWarp = 32;

// Chunk summaries as one array per field ([K, M] each), so every load and store is coalesced.
struct SummaryArrays {
  double* f[7];
  std::uint32_t* n[5];
};

__device__ __forceinline__ void store(const SummaryArrays& a, std::int64_t i, const ChunkSummary& s) {
  a.f[0][i] = s.growth;
  a.f[1][i] = s.low;
  a.f[2][i] = s.high;
  a.f[3][i] = s.drawdown;
  a.f[4][i] = s.sum;
  a.f[5][i] = s.sum_sq;
  a.f[6][i] = s.down_sq;
  a.n[0][i] = s.trades;
  a.n[1][i] = s.turnover;
  a.n[2][i] = s.closed_trades;
  a.n[3][i] = s.wins;
  a.n[4][i] = s.exposed;
}

__device__ __forceinline__ ChunkSummary load(const SummaryArrays& a, std::int64_t i) {
  ChunkSummary s;
  s.growth = a.f[0][i];
  s.low = a.f[1][i];
  s.high = a.f[2][i];
  s.drawdown = a.f[3][i];
  s.sum = a.f[4][i];
  s.sum_sq = a.f[5][i];
  s.down_sq = a.f[6][i];
  s.trades = a.n[0][i];
  s.turnover = a.n[1][i];
  s.closed_trades = a.n[2][i];
  s.wins = a.n[3][i];
  s.exposed = a.n[4][i];
  return s;
}

struct Plan {
  std::int64_t steps;  // T - 1
  std::int64_t chunk;  // C
  std::int64_t n_chunks;  // K
  __device__ std::int64_t begin(std::int64_t k) const { return k * chunk; }
  __device__ std::int64_t end(std::int64_t k) const { return k * chunk + chunk < steps ? k * chunk + chunk : steps; }
};

template <typename A>
__global__ void positions_kernel(BacktestInputs in, Plan plan, const A* __restrict__ signals,
                                 PositionSummary* __restrict__ out) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t m_total = in.n_strategies;
  if (i >= plan.n_chunks * m_total) return;
  const std::int64_t k = i / m_total, m = i - k * m_total;
  out[i] = scan::summarize_positions(signals, m_total, m, plan.begin(k), plan.end(k), in.costs.mode);
}

__global__ void carry_kernel(BacktestInputs in, Plan plan, const PositionSummary* __restrict__ summaries,
                             PositionCarry* __restrict__ carries) {
  const std::int64_t m = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t m_total = in.n_strategies;
  if (m >= m_total) return;
  PositionCarry c;
  for (std::int64_t k = 0; k < plan.n_chunks; ++k) {
    carries[k * m_total + m] = c;
    c = scan::carry_positions(c, summaries[k * m_total + m], plan.begin(k));
  }
}

// Phase 2: a chunk summary per (chunk, strategy) thread; with kHeldRuns (long-flat mode) by held
// runs over the shared tables in device memory: per bar a compare, account maths at fills.
template <typename A, bool kHeldRuns>
__global__ void summary_kernel(BacktestInputs in, Plan plan, const A* __restrict__ signals,
                               const PositionCarry* __restrict__ carries, SummaryArrays out,
                               unsigned long long* error, runs::TablesView tables) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t m_total = in.n_strategies;
  if (i >= plan.n_chunks * m_total) return;
  const std::int64_t k = i / m_total, m = i - k * m_total;
  std::int64_t bad;
  if constexpr (kHeldRuns)
    store(out, i,
          scan::summarize_chunk_runs(signals, m_total, m, plan.begin(k), plan.end(k), carries[i], in.open, in.close,
                                     in.costs, tables, &bad));
  else
    store(out, i,
          scan::summarize_chunk(signals, m_total, m, plan.begin(k), plan.end(k), carries[i], in.open, in.close,
                                in.costs, &bad));
  if (bad >= 0) atomicMin(error, static_cast<unsigned long long>(bad));
}

// Composes chunks k0.. of strategy m; returns the first chunk that needs an exact run, or -1
// after writing the metrics.
__device__ std::int64_t compose_from(const BacktestInputs& in, const Plan& plan, const SummaryArrays& sums,
                                     std::int64_t m, std::int64_t k0, Composer& c, Metrics* metrics) {
  for (std::int64_t k = k0; k < plan.n_chunks; ++k) {
    const ChunkSummary s = load(sums, k * in.n_strategies + m);
    if (scan::needs_exact_run(c, s)) return k;
    scan::compose(c, s);
  }
  metrics[m] = scan::finish(c, in.n_bars, in.bars_per_year);
  return -1;
}

__global__ void compose_kernel(BacktestInputs in, Plan plan, SummaryArrays sums, Composer* composers,
                               std::int64_t* flagged, Metrics* metrics) {
  const std::int64_t m = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= in.n_strategies) return;
  Composer c;
  const std::int64_t k = compose_from(in, plan, sums, m, 0, c, metrics);
  flagged[m] = k;
  if (k >= 0) composers[m] = c;
}

// One warp per strategy flagged by compose_kernel (the others return at once).
template <typename A>
__global__ void floor_kernel(BacktestInputs in, Plan plan, const A* __restrict__ signals,
                             const PositionCarry* __restrict__ carries, SummaryArrays sums,
                             const Composer* __restrict__ composers, const std::int64_t* __restrict__ flagged,
                             Metrics* metrics) {
  // Raw storage: __shared__ variables cannot have constructors.
  __shared__ alignas(8) unsigned char pos_raw[kWarp * sizeof(PositionSummary)];
  __shared__ alignas(8) unsigned char carry_raw[kWarp * sizeof(PositionCarry)];
  __shared__ alignas(8) unsigned char part_raw[kWarp * sizeof(ChunkSummary)];
  auto* pos = reinterpret_cast<PositionSummary*>(pos_raw);
  auto* carry = reinterpret_cast<PositionCarry*>(carry_raw);
  auto* part = reinterpret_cast<ChunkSummary*>(part_raw);
  const std::int64_t m = blockIdx.x;
  const int lane = static_cast<int>(threadIdx.x);
  const std::int64_t m_total = in.n_strategies;
  std::int64_t k = flagged[m];
  if (k < 0) return;
  Composer c = composers[m];  // lane 0's is the one that counts
  while (k >= 0) {
    const std::int64_t a = plan.begin(k), b = plan.end(k);
    const std::int64_t sub = (b - a + kWarp - 1) / kWarp;
    const std::int64_t sa = a + lane * sub < b ? a + lane * sub : b;
    const std::int64_t sb = sa + sub < b ? sa + sub : b;
    pos[lane] = scan::summarize_positions(signals, m_total, m, sa, sb, in.costs.mode);
    __syncwarp();
    if (lane == 0) {
      PositionCarry cc = carries[k * m_total + m];
      for (int j = 0; j < kWarp; ++j) {
        carry[j] = cc;
        cc = scan::carry_positions(cc, pos[j], a + j * sub);
      }
    }
    __syncwarp();
    std::int64_t bad;
    part[lane] = scan::summarize_chunk(signals, m_total, m, sa, sb, carry[lane], in.open, in.close, in.costs, &bad);
    __syncwarp();
    std::int64_t next = -1;
    if (lane == 0) {
      for (int j = 0; j < kWarp && c.bankrupt == 0; ++j) {
        const std::int64_t ja = a + j * sub < b ? a + j * sub : b;
        const std::int64_t jb = ja + sub < b ? ja + sub : b;
        if (ja >= jb) break;
        if (scan::needs_exact_run(c, part[j]))
          scan::exact_run(c, carry[j], signals, m_total, m, ja, jb, in.open, in.close, in.costs);
        else
          scan::compose(c, part[j]);
      }
      if (c.bankrupt != 0)
        metrics[m] = scan::finish(c, in.n_bars, in.bars_per_year);
      else
        next = compose_from(in, plan, sums, m, k + 1, c, metrics);
    }
    k = __shfl_sync(0xffffffffu, next, 0);
    __syncwarp();
  }
}

// ---- the tiled kernels ------------------------------------------------------------------------

constexpr int kTileBytes = 8192;  // one stage: kThreads strategies x kTileBars<A> bars
template <typename A>
constexpr int kTileBars = kTileBytes / (kThreads * static_cast<int>(sizeof(A)));
template <typename A>
constexpr int kCopyBytes = sizeof(A) >= 4 ? static_cast<int>(sizeof(A)) : 4;  // per cp.async

// Whether the signals can be staged by kCopyBytes copies: every row of this block's strategies
// starts and ends on such a boundary.
template <typename A>
bool tiles_fit(const A* signals, std::int64_t n_strategies) {
  return (static_cast<std::uint64_t>(n_strategies) * sizeof(A)) % kCopyBytes<A> == 0 &&
         reinterpret_cast<std::uintptr_t>(signals) % kCopyBytes<A> == 0;
}

// Issues the copies of bars [first, first + rows) of strategies [m0, m0 + kThreads) (fewer in the
// last block) into `stage` (row r at r * kThreads actions), then commits them as one group.
template <typename A>
__device__ __forceinline__ void stage_tile(unsigned char* stage, const A* signals, std::int64_t n_strategies,
                                           std::int64_t m0, std::int64_t first, int rows) {
  constexpr int kCopy = kCopyBytes<A>;
  const std::int64_t width = n_strategies - m0 < kThreads ? n_strategies - m0 : kThreads;
  const int per_row = static_cast<int>(width * static_cast<std::int64_t>(sizeof(A)) / kCopy);
  const auto* base = reinterpret_cast<const unsigned char*>(signals + first * n_strategies + m0);
  const std::int64_t pitch = n_strategies * static_cast<std::int64_t>(sizeof(A));
  for (int piece = static_cast<int>(threadIdx.x); piece < rows * per_row; piece += kThreads) {
    const int r = piece / per_row, c = piece - r * per_row;
    __pipeline_memcpy_async(stage + r * kThreads * static_cast<int>(sizeof(A)) + c * kCopy, base + r * pitch + c * kCopy,
                            kCopy);
  }
  __pipeline_commit();
}

// Feeds this thread's strategy the actions of steps [t0, t1) in order (`live`: a strategy of
// this block; the others only help stage). Every thread of the block must call it with the same
// range: the tiles are shared.
template <typename A, typename Walk>
__device__ void feed_forward_tiled(unsigned char (*stages)[kTileBytes], const A* signals, std::int64_t n_strategies,
                                   std::int64_t m0, std::int64_t t0, std::int64_t t1, bool live, Walk& walk) {
  constexpr int kBars = kTileBars<A>;
  const std::int64_t n_tiles = (t1 - t0 + kBars - 1) / kBars;
  auto rows_of = [&](std::int64_t i) { return static_cast<int>(t1 - (t0 + i * kBars) < kBars ? t1 - (t0 + i * kBars) : kBars); };
  if (n_tiles > 0) stage_tile(stages[0], signals, n_strategies, m0, t0, rows_of(0));
  for (std::int64_t i = 0; i < n_tiles; ++i) {
    if (i + 1 < n_tiles)
      stage_tile(stages[(i + 1) & 1], signals, n_strategies, m0, t0 + (i + 1) * kBars, rows_of(i + 1));
    else
      __pipeline_commit();  // an empty group, so that "all but the newest" is this tile
    __pipeline_wait_prior(1);
    __syncthreads();
    if (live) {
      const A* column = reinterpret_cast<const A*>(stages[i & 1]) + threadIdx.x;
      const int rows = rows_of(i);
      const std::int64_t first = t0 + i * kBars;
#pragma unroll 8
      for (int r = 0; r < rows; ++r) walk.feed(static_cast<long long>(column[r * kThreads]), first + r);
    }
    __syncthreads();  // every thread is done with this stage before tile i + 2 lands in it
  }
}

// The same backwards from step t1 - 1; the block stops after the first tile at whose end no
// strategy's walk wants more.
template <typename A, typename Walk>
__device__ void feed_backward_tiled(unsigned char (*stages)[kTileBytes], const A* signals, std::int64_t n_strategies,
                                    std::int64_t m0, std::int64_t t0, std::int64_t t1, bool live, Walk& walk) {
  constexpr int kBars = kTileBars<A>;
  const std::int64_t n_tiles = (t1 - t0 + kBars - 1) / kBars;
  // tile i holds steps [lo(i), t1 - i * kBars)
  auto lo_of = [&](std::int64_t i) { return t1 - (i + 1) * kBars > t0 ? t1 - (i + 1) * kBars : t0; };
  auto rows_of = [&](std::int64_t i) { return static_cast<int>(t1 - i * kBars - lo_of(i)); };
  if (n_tiles > 0) stage_tile(stages[0], signals, n_strategies, m0, lo_of(0), rows_of(0));
  bool wants = live;
  for (std::int64_t i = 0; i < n_tiles; ++i) {
    if (i + 1 < n_tiles)
      stage_tile(stages[(i + 1) & 1], signals, n_strategies, m0, lo_of(i + 1), rows_of(i + 1));
    else
      __pipeline_commit();
    __pipeline_wait_prior(1);
    __syncthreads();
    if (wants) {
      const A* column = reinterpret_cast<const A*>(stages[i & 1]) + threadIdx.x;
      const std::int64_t lo = lo_of(i);
      for (int r = rows_of(i) - 1; r >= 0 && wants; --r) wants = walk.feed(static_cast<long long>(column[r * kThreads]), lo + r);
    }
    if (__syncthreads_or(wants ? 1 : 0) == 0) break;  // also: every thread is done with this stage
  }
  __pipeline_wait_prior(0);  // no copy may still be landing when the block ends
}

// Phase 1 by tiles: block (x, y) is strategies [x * kThreads, ...) of chunks y, y + gridDim.y, ...
template <typename A>
__global__ void __launch_bounds__(kThreads) positions_tiled_kernel(BacktestInputs in, Plan plan,
                                                                   const A* __restrict__ signals,
                                                                   PositionSummary* __restrict__ out) {
  __shared__ alignas(16) unsigned char stages[2][kTileBytes];
  const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.x) * kThreads, m = m0 + threadIdx.x;
  const bool live = m < in.n_strategies;
  for (std::int64_t k = blockIdx.y; k < plan.n_chunks; k += gridDim.y) {
    scan::PositionWalk walk(plan.begin(k), in.costs.mode);
    feed_backward_tiled(stages, signals, in.n_strategies, m0, plan.begin(k), plan.end(k), live, walk);
    if (live) out[k * in.n_strategies + m] = walk.s;
  }
}

// Phase 2 by tiles, per bar (ChunkWalk) or by held runs (HeldRunWalk, long-flat mode).
template <typename A, bool kHeldRuns>
__global__ void __launch_bounds__(kThreads) summary_tiled_kernel(BacktestInputs in, Plan plan,
                                                                 const A* __restrict__ signals,
                                                                 const PositionCarry* __restrict__ carries,
                                                                 SummaryArrays out, unsigned long long* error,
                                                                 runs::TablesView tables) {
  __shared__ alignas(16) unsigned char stages[2][kTileBytes];
  const std::int64_t m_total = in.n_strategies;
  const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.x) * kThreads, m = m0 + threadIdx.x;
  const bool live = m < m_total;
  for (std::int64_t k = blockIdx.y; k < plan.n_chunks; k += gridDim.y) {
    const std::int64_t i = k * m_total + m, t0 = plan.begin(k), t1 = plan.end(k);
    const PositionCarry carry = live ? carries[i] : PositionCarry{};
    std::int64_t bad;
    if constexpr (kHeldRuns) {
      scan::HeldRunWalk walk(carry, in.open, in.close, t0, in.costs, tables);
      feed_forward_tiled(stages, signals, m_total, m0, t0, t1, live, walk);
      if (!live) continue;
      store(out, i, walk.finish(t1));
      bad = walk.first_bad;
    } else {
      scan::ChunkWalk walk(carry, in.open, in.close, t0, in.costs);
      feed_forward_tiled(stages, signals, m_total, m0, t0, t1, live, walk);
      if (!live) continue;
      store(out, i, walk.finish());
      bad = walk.first_bad;
    }
    if (bad >= 0) atomicMin(error, static_cast<unsigned long long>(bad * m_total + m));
  }
}

unsigned blocks_for(std::int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// Enough (chunk, strategy) threads to fill the GPU several times over, chunks long enough that
// their summaries (about 100 bytes) stay small next to the signals they summarise.
std::int64_t auto_chunk(std::int64_t steps, std::int64_t strategies) {
  constexpr std::int64_t kTargetThreads = std::int64_t{1} << 19;
  const std::int64_t c = (steps * strategies + kTargetThreads - 1) / kTargetThreads;
  return std::clamp<std::int64_t>(c, 64, 16384);
}

}  // namespace

template <typename A>
void backtest_signals_scan(const BacktestInputs& in, const A* signals, Metrics* metrics, unsigned long long* error,
                           std::int64_t chunk, int device, Stream stream, const runs::TablesView* tables, bool tiles) {
  const std::int64_t m = in.n_strategies;
  if (m <= 0) return;
  detail::DeviceGuard guard(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  Plan plan;
  plan.steps = in.n_bars > 1 ? in.n_bars - 1 : 0;
  plan.chunk = chunk > 0 ? chunk : auto_chunk(plan.steps, m);
  plan.n_chunks = (plan.steps + plan.chunk - 1) / plan.chunk;
  const std::int64_t pairs = plan.n_chunks * m;
  // Scratch: per pair a position summary, a carry and a chunk summary; per strategy a composer
  // and the flagged chunk.
  const std::size_t bytes = static_cast<std::size_t>(pairs) *
                                (sizeof(PositionSummary) + sizeof(PositionCarry) + 7 * sizeof(double) +
                                 5 * sizeof(std::uint32_t)) +
                            static_cast<std::size_t>(m) * (sizeof(Composer) + sizeof(std::int64_t)) + 256;
  void* scratch = nullptr;
  HIMARI_CUDA_CHECK(cudaMallocAsync(&scratch, bytes, s));
  auto* base = static_cast<char*>(scratch);
  std::size_t offset = 0;
  auto take = [&](std::size_t n, std::size_t align) {
    offset = (offset + align - 1) / align * align;
    char* p = base + offset;
    offset += n;
    return p;
  };
  const auto np = static_cast<std::size_t>(pairs);
  SummaryArrays sums;
  for (auto& f : sums.f) f = reinterpret_cast<double*>(take(np * sizeof(double), 8));
  auto* carries = reinterpret_cast<PositionCarry*>(take(np * sizeof(PositionCarry), 8));
  auto* positions = reinterpret_cast<PositionSummary*>(take(np * sizeof(PositionSummary), 8));
  for (auto& n : sums.n) n = reinterpret_cast<std::uint32_t*>(take(np * sizeof(std::uint32_t), 4));
  auto* composers = reinterpret_cast<Composer*>(take(static_cast<std::size_t>(m) * sizeof(Composer), 8));
  auto* flagged = reinterpret_cast<std::int64_t*>(take(static_cast<std::size_t>(m) * sizeof(std::int64_t), 8));

  if (pairs > 0 && tiles && tiles_fit(signals, m)) {
    const dim3 grid(blocks_for(m), static_cast<unsigned>(std::min<std::int64_t>(plan.n_chunks, 65535)));
    positions_tiled_kernel<A><<<grid, kThreads, 0, s>>>(in, plan, signals, positions);
    HIMARI_CUDA_CHECK_LAUNCH("positions_tiled_kernel");
    carry_kernel<<<blocks_for(m), kThreads, 0, s>>>(in, plan, positions, carries);
    HIMARI_CUDA_CHECK_LAUNCH("carry_kernel");
    if (tables != nullptr)
      summary_tiled_kernel<A, true><<<grid, kThreads, 0, s>>>(in, plan, signals, carries, sums, error, *tables);
    else
      summary_tiled_kernel<A, false><<<grid, kThreads, 0, s>>>(in, plan, signals, carries, sums, error, {});
    HIMARI_CUDA_CHECK_LAUNCH("summary_tiled_kernel");
  } else if (pairs > 0) {
    positions_kernel<A><<<blocks_for(pairs), kThreads, 0, s>>>(in, plan, signals, positions);
    HIMARI_CUDA_CHECK_LAUNCH("positions_kernel");
    carry_kernel<<<blocks_for(m), kThreads, 0, s>>>(in, plan, positions, carries);
    HIMARI_CUDA_CHECK_LAUNCH("carry_kernel");
    if (tables != nullptr)
      summary_kernel<A, true><<<blocks_for(pairs), kThreads, 0, s>>>(in, plan, signals, carries, sums, error, *tables);
    else
      summary_kernel<A, false><<<blocks_for(pairs), kThreads, 0, s>>>(in, plan, signals, carries, sums, error, {});
    HIMARI_CUDA_CHECK_LAUNCH("summary_kernel");
  }
  compose_kernel<<<blocks_for(m), kThreads, 0, s>>>(in, plan, sums, composers, flagged, metrics);
  HIMARI_CUDA_CHECK_LAUNCH("compose_kernel");
  floor_kernel<A><<<static_cast<unsigned>(m), kWarp, 0, s>>>(in, plan, signals, carries, sums, composers, flagged,
                                                             metrics);
  HIMARI_CUDA_CHECK_LAUNCH("floor_kernel");
  HIMARI_CUDA_CHECK(cudaFreeAsync(scratch, s));
}

#define HIMARI_INSTANTIATE(A)                                                                                 \
  template void backtest_signals_scan<A>(const BacktestInputs&, const A*, Metrics*, unsigned long long*, \
                                         std::int64_t, int, Stream, const runs::TablesView*, bool);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE

}  // namespace himari::cuda
