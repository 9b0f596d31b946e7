// AVX2 + FMA build of the recurrent pointwise loops (rnn_kernels.h): 8 floats per vector.
// Compiled with -mavx2 -mfma only; selected at run time.
#include "cpu/rnn_kernels.h"

namespace fastnn {
const RnnPointwise& rnn_pointwise_avx2() { return kRnnPointwise; }
}  // namespace fastnn
