// The env step kernel compiled for AVX2 (four envs per vector); trading_env_cpu.cpp calls it
// when the CPU supports AVX2.
#include <cmath>
#include <cstring>

#include "himari/env/trading_env.h"
#include "env_obs.h"

namespace himari::cpu {
namespace avx2_detail {
#include "env_kernel.h"
}  // namespace avx2_detail

template <typename A>
void env_step_avx2(const EnvBuffers& b, const A* actions) {
  avx2_detail::step_all<Vec4d>(b, actions);
}

template void env_step_avx2<std::int8_t>(const EnvBuffers&, const std::int8_t*);
template void env_step_avx2<std::uint8_t>(const EnvBuffers&, const std::uint8_t*);
template void env_step_avx2<std::int16_t>(const EnvBuffers&, const std::int16_t*);
template void env_step_avx2<std::int32_t>(const EnvBuffers&, const std::int32_t*);
template void env_step_avx2<std::int64_t>(const EnvBuffers&, const std::int64_t*);

}  // namespace himari::cpu
