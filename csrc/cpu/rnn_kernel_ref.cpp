// Portable build of the recurrent pointwise loops (rnn_kernels.h): baseline flags only, the
// fallback on any CPU and the twin the tests compare the wide builds with (FASTNN_ISA=ref).
#include "cpu/rnn_kernels.h"

namespace fastnn {
const RnnPointwise& rnn_pointwise_ref() { return kRnnPointwise; }
}  // namespace fastnn
