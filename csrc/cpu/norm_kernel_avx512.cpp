// AVX-512 build of the batch-norm element loops (norm_kernels.h). Compiled with -mavx512f
// -mavx2 -mfma only; selected at run time.
#include "cpu/norm_kernels.h"

namespace fastnn {
const NormKernels& norm_kernels_avx512() { return kNormKernels; }
}  // namespace fastnn
