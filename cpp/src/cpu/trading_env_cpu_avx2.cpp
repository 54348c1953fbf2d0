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

#define HIMARI_INSTANTIATE(A) template void env_step_avx2<A>(const EnvBuffers&, const A*);
HIMARI_FOR_EACH_ACTION_TYPE(HIMARI_INSTANTIATE)
#undef HIMARI_INSTANTIATE

}  // namespace himari::cpu
