// AVX-512 build of the recurrent pointwise loops (rnn_kernels.h): 16 floats per vector.
// Compiled with -mavx512f -mavx2 -mfma only; selected at run time.
#include "cpu/rnn_kernels.h"

namespace fastnn {
const RnnPointwise& rnn_pointwise_avx512() { return kRnnPointwise; }
}  // namespace fastnn
