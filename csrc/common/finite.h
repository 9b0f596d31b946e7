// Locating a NaN or infinity in a strided matrix. The kernels only report that
// their output went non-finite; this finds and names the input that caused it,
// off the fast path.
#pragma once
#include <cmath>
#include <cstdint>

namespace fastnn {

// Returns true and sets (*row, *col) at the first non-finite value of the
// rows x cols matrix at p with row stride ld.
inline bool find_nonfinite(const float* p, int64_t rows, int64_t cols, int64_t ld, int64_t* row,
                           int64_t* col) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* r = p + i * ld;
    float probe = 0.0f;  // x * 0 is 0 for finite x, NaN otherwise: one vectorizable pass
    for (int64_t j = 0; j < cols; ++j) probe += r[j] * 0.0f;
    if (probe == 0.0f) continue;
    for (int64_t j = 0; j < cols; ++j) {
      if (!std::isfinite(r[j])) {
        *row = i;
        *col = j;
        return true;
      }
    }
  }
  return false;
}

}  // namespace fastnn
