// Splitting a loop over independent items between threads, for the CPU kernels that offer a
// `threads` argument. Plain std::thread per call: the kernels that use it are long (milliseconds
// or more, see kMinStepsPerThread), so a pool would save microseconds and add shared state.
#pragma once

#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

namespace himari {

// Calls fn(first, last) on up to `parts` contiguous ranges covering [0, n) (never more parts than
// items), every boundary a multiple of `align` (except n itself); part 0 runs on the calling
// thread. If the system refuses a thread its range runs on the calling thread too, so the call
// always completes. fn must not throw.
template <typename F>
void parallel_parts(std::int64_t n, int parts, std::int64_t align, F&& fn) {
  if (parts > n) parts = static_cast<int>(n);
  if (parts < 1) parts = 1;
  std::vector<std::int64_t> edge(static_cast<std::size_t>(parts) + 1, n);
  edge[0] = 0;
  for (std::size_t p = 1; p < edge.size() - 1; ++p) {
    const std::int64_t e = n * static_cast<std::int64_t>(p) / parts / align * align;
    edge[p] = e > edge[p - 1] ? e : edge[p - 1];
  }
  std::vector<std::thread> pool;
  std::vector<int> inline_parts;
  pool.reserve(static_cast<std::size_t>(parts));  // so that only starting a thread can fail below,
  inline_parts.reserve(static_cast<std::size_t>(parts));  // never while threads are running
  for (int p = 1; p < parts; ++p) {
    const std::int64_t a = edge[static_cast<std::size_t>(p)], b = edge[static_cast<std::size_t>(p) + 1];
    if (a >= b) continue;
    try {
      pool.emplace_back([&fn, a, b] { fn(a, b); });
    } catch (const std::system_error&) {
      inline_parts.push_back(p);
    }
  }
  if (edge[1] > 0) fn(std::int64_t{0}, edge[1]);
  for (int p : inline_parts) fn(edge[static_cast<std::size_t>(p)], edge[static_cast<std::size_t>(p) + 1]);
  for (auto& t : pool) t.join();
}

}  // namespace himari
