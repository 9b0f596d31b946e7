// Finding NaN and infinity: all_finite (one cheap pass), and find_nonfinite, which locates one in
// a strided matrix. The kernels mostly only report that their output went non-finite; the
// bindings then find and name the input that caused it, off the fast path.
#pragma once
#include <cmath>
#include <cstdint>

namespace fastnn {

// Whether x[0, n) holds no NaN or infinity: x * 0 is 0 for finite x, NaN otherwise, summed in
// 8 lanes (one vectorizable pass, no reassociation flags needed).
inline bool all_finite(const float* __restrict x, int64_t n) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += x[j + l] * 0.0f;
  float probe = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
  for (; j < n; ++j) probe += x[j] * 0.0f;
  return probe == 0.0f;
}

// Returns true and sets (*row, *col) at the first non-finite value of the
// rows x cols matrix at p with row stride ld.
inline bool find_nonfinite(const float* p, int64_t rows, int64_t cols, int64_t ld, int64_t* row,
                           int64_t* col) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* r = p + i * ld;
    if (all_finite(r, cols)) continue;
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
