// Built instead of src/cuda/ when HIMARI_ENABLE_CUDA is OFF (or AUTO without nvcc): the cuda::
// entry points report that CUDA is absent, so the rest of the core never needs #ifdefs.
#include "himari/dispatch.h"

namespace himari::cuda {

bool compiled() { return false; }
int device_count() { return 0; }

}  // namespace himari::cuda
