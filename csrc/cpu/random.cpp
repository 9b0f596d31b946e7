// Dropout masks from Philox4x32-10: one generator call per 4 elements; threads take equal
// ranges of 4-element blocks (the values do not depend on the split). Within a range the AVX2 or
// AVX-512 build runs 8 or 16 generators at once over the blocks whose group of 8 or 16 lies
// inside it; the blocks before and after, and the last partial block, take the scalar call.
#include "cpu/random.h"

#include <algorithm>

#include "common/cpu_features.h"
#include "common/philox.h"
#include "common/threads.h"

namespace fastnn {
namespace {

const RandomKernels* vector_kernels(Isa isa) {
  switch (isa) {
    case Isa::avx512: return &random_kernels_avx512();
    case Isa::avx2: return &random_kernels_avx2();
    default: return nullptr;
  }
}

void scalar_blocks(float* mask, int64_t n, int64_t b0, int64_t b1, uint64_t seed, uint64_t offset, float p,
                   float scale) {
  for (int64_t b = b0; b < b1; ++b) {
    float four[4];
    dropout_mask4(four, static_cast<uint64_t>(b), seed, offset, p, scale);
    const int64_t first = 4 * b, count = std::min<int64_t>(4, n - first);
    std::copy(four, four + count, mask + first);
  }
}

}  // namespace

void dropout_mask(float* mask, int64_t n, double p, uint64_t seed, uint64_t offset) {
  const float keep_at = static_cast<float>(p), scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const int64_t blocks = (n + 3) / 4;
  // Ten rounds of multiplies per block: a second thread pays off from some 32 Ki blocks.
  const int threads = threads_for_items(static_cast<double>(blocks), blocks, 1 << 15);
  const RandomKernels* vec = vector_kernels(active_isa());
  const int64_t full_blocks = n / 4;
  run_parallel(threads, [&](int tid, int nt) {
    int64_t b0, b1;
    split_range(blocks, tid, nt, &b0, &b1);
    int64_t g0 = b0, g1 = b0;  // [g0, g1): whole vector groups of full blocks
    if (vec) {
      const int64_t w = vec->width;
      g0 = std::min((b0 + w - 1) / w * w, b1);
      g1 = std::max(g0, std::min(b1, full_blocks) / w * w);
      vec->dropout_groups(mask + 4 * g0, static_cast<uint64_t>(g0), (g1 - g0) / w, seed, offset, keep_at, scale);
    }
    scalar_blocks(mask, n, b0, g0, seed, offset, keep_at, scale);
    scalar_blocks(mask, n, g1, b1, seed, offset, keep_at, scale);
  });
}

}  // namespace fastnn
