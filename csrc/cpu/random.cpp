// Dropout masks from Philox4x32-10: one generator call per 4 elements; threads take equal
// ranges of 4-element blocks (the values do not depend on the split).
#include "cpu/random.h"

#include <algorithm>

#include "common/philox.h"
#include "common/threads.h"

namespace fastnn {

void dropout_mask(float* mask, int64_t n, double p, uint64_t seed, uint64_t offset) {
  const float keep_at = static_cast<float>(p), scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const int64_t blocks = (n + 3) / 4;
  // Ten rounds of multiplies per block: a second thread pays off from some 32 Ki blocks.
  const int threads = static_cast<int>(std::min<int64_t>(threads_for_work(static_cast<double>(blocks), 1 << 15), blocks));
  run_parallel(std::max(threads, 1), [&](int tid, int nt) {
    int64_t b0, b1;
    split_range(blocks, tid, nt, &b0, &b1);
    for (int64_t b = b0; b < b1; ++b) {
      float four[4];
      dropout_mask4(four, static_cast<uint64_t>(b), seed, offset, keep_at, scale);
      const int64_t first = 4 * b, count = std::min<int64_t>(4, n - first);
      std::copy(four, four + count, mask + first);
    }
  });
}

}  // namespace fastnn
