// A grow-only, 64-byte-aligned float buffer: the kernels keep one per calling thread
// (thread_local) for packed panels, columns and scratch, so the hot path allocates nothing after
// the first call of a given size.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace fastnn {

class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { std::free(data_); }

  // At least `count` floats (at least one), the old contents not kept when it grows.
  float* get(int64_t count) {
    const size_t n = static_cast<size_t>(std::max<int64_t>(count, 1));
    if (n > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      data_ = static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64));
      if (!data_) throw std::bad_alloc();
      capacity_ = n;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace fastnn
