// Portable build of the batch-norm element loops (norm_kernels.h): baseline flags only, the
// fallback on any CPU and the twin the tests compare the wide builds with (FASTNN_ISA=ref).
#include "cpu/norm_kernels.h"

namespace fastnn {
const NormKernels& norm_kernels_ref() { return kNormKernels; }
}  // namespace fastnn
