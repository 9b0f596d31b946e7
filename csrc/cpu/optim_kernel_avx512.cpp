// AVX-512 build of the optimizer element loops (optim_kernels.h): 16 floats per vector.
// Compiled with -mavx512f -mavx2 -mfma only; selected at run time.
#include "cpu/optim_kernels.h"

namespace fastnn {
const OptimKernels& optim_kernels_avx512() { return kOptimKernels; }
}  // namespace fastnn
