// AVX2 + FMA build of the batch-norm element loops (norm_kernels.h): 4 doubles, 8 floats per
// vector. Compiled with -mavx2 -mfma only; selected at run time.
#include "cpu/norm_kernels.h"

namespace fastnn {
const NormKernels& norm_kernels_avx2() { return kNormKernels; }
}  // namespace fastnn
