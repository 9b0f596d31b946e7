// AVX2 + FMA build of the optimizer element loops (optim_kernels.h): 8 floats per vector.
// Compiled with -mavx2 -mfma only; selected at run time.
#include "cpu/optim_kernels.h"

namespace fastnn {
const OptimKernels& optim_kernels_avx2() { return kOptimKernels; }
}  // namespace fastnn
