// Built instead of src/cuda/ when HIMARI_ENABLE_CUDA is OFF (or AUTO without nvcc): discovery
// reports no CUDA, and every other entry point throws CudaUnavailable, so the rest of the core
// and the bindings never need #ifdefs.
#include <string>

#include "himari/common/error.h"
#include "himari/cuda/api.h"
#include "himari/dispatch.h"

namespace himari::cuda {

namespace {
constexpr const char* kCpuBuild =
    "this build of himari has no CUDA support (a CPU build); install the CUDA wheel, or rebuild with "
    "HIMARI_ENABLE_CUDA=ON pip install . on a machine with nvcc";

[[noreturn]] void unavailable() {
  throw CudaUnavailable(std::string(kCpuBuild));
}
}  // namespace

std::string unavailable_reason() { return kCpuBuild; }
std::string build_summary() { return {}; }

bool compiled() { return false; }
int device_count() { return 0; }
void require(int) { unavailable(); }
std::shared_ptr<void> allocate(std::size_t, int) { unavailable(); }
void copy_to_device(void*, const void*, std::size_t, int, Stream) { unavailable(); }
void copy_to_host(void*, const void*, std::size_t, int, Stream) { unavailable(); }
void fill_zero(void*, std::size_t, int, Stream) { unavailable(); }
int pointer_device(const void*) { return -1; }
void check_device_pointer(const void*, int, const char*) { unavailable(); }
void synchronize(int, Stream) { unavailable(); }
void env_reset(const EnvBuffers&, int, Stream) { unavailable(); }
template <typename A>
void env_step(const EnvBuffers&, const A*, unsigned long long*, int, Stream) {
  unavailable();
}
template <typename A>
void backtest_signals(const BacktestInputs&, const A*, Metrics*, double*, unsigned long long*, int, Stream) {
  unavailable();
}
template <typename A>
void backtest_signals_sequential(const BacktestInputs&, const A*, Metrics*, double*, unsigned long long*, int, Stream) {
  unavailable();
}
template <typename A>
void backtest_signals_scan(const BacktestInputs&, const A*, Metrics*, unsigned long long*, std::int64_t, int, Stream,
                           const runs::TablesView*, bool) {
  unavailable();
}
template <typename P>
void ekf(const P*, std::int64_t, std::int64_t, const EkfParams&, double*, double*, unsigned long long*, int, Stream) {
  unavailable();
}

#define HIMARI_INSTANTIATE(A)                                                                      \
  template void env_step<A>(const EnvBuffers&, const A*, unsigned long long*, int, Stream);        \
  template void backtest_signals<A>(const BacktestInputs&, const A*, Metrics*, double*, unsigned long long*, int, \
                                    Stream);                                                                  \
  template void backtest_signals_sequential<A>(const BacktestInputs&, const A*, Metrics*, double*,             \
                                               unsigned long long*, int, Stream);                             \
  template void backtest_signals_scan<A>(const BacktestInputs&, const A*, Metrics*, unsigned long long*,       \
                                         std::int64_t, int, Stream, const runs::TablesView*, bool);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE
template void ekf<float>(const float*, std::int64_t, std::int64_t, const EkfParams&, double*, double*, unsigned long long*,
                         int, Stream);
template void ekf<double>(const double*, std::int64_t, std::int64_t, const EkfParams&, double*, double*,
                          unsigned long long*, int, Stream);

}  // namespace himari::cuda
