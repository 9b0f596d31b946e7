// Portable build of the optimizer element loops (optim_kernels.h): baseline flags only, the
// fallback on any CPU and the twin the tests compare the wide builds with (FASTNN_ISA=ref).
#include "cpu/optim_kernels.h"

namespace fastnn {
const OptimKernels& optim_kernels_ref() { return kOptimKernels; }
}  // namespace fastnn
