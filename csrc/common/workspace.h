// A grow-only, 64-byte-aligned float buffer: the kernels keep one per calling thread
// (thread_local) for packed panels, columns and scratch, so the hot path allocates nothing after
// the first call of a given size.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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
      const size_t bytes = n * sizeof(float);
      // Buffers of a megabyte or more (a GEMM's packed B panel, im2col columns) are read in
      // sweeps that would miss the TLB on every 4 KiB page: ask for transparent huge pages.
      const size_t align = bytes >= (size_t{1} << 20) ? (size_t{2} << 20) : 64;
      const size_t size = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple
      data_ = static_cast<float*>(std::aligned_alloc(align, size));
      if (!data_) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (align > 64) madvise(data_, size, MADV_HUGEPAGE);
#endif
      capacity_ = n;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace fastnn
