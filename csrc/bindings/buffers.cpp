// Output arrays with large buffers recycled across calls (see buffers.h).
#include "bindings/buffers.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>

namespace fastnn {
namespace {

constexpr size_t kMinBytes = size_t(128) << 10;  // glibc's default mmap threshold: smaller blocks stay in the heap

class BufferCache {
 public:
  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: capsules may outlive statics
    return *cache;
  }
  float* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        float* p = it->second;
        free_.erase(it);
        cached_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<float*>(p);
  }
  void give(float* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= limit_) {
        free_.emplace(bytes, p);
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  size_t limit() {
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_;
  }
  // Frees cached buffers until at most `keep` bytes remain; returns the bytes freed.
  size_t trim(size_t keep) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t released = 0;
    for (auto it = free_.begin(); it != free_.end() && cached_ > keep;) {
      std::free(it->second);
      cached_ -= it->first;
      released += it->first;
      it = free_.erase(it);
    }
    return released;
  }
  size_t set_limit(size_t bytes) {
    size_t previous;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      previous = limit_;
      limit_ = bytes;
    }
    trim(bytes);
    return previous;
  }

 private:
  std::mutex mutex_;
  std::unordered_multimap<size_t, float*> free_;
  size_t cached_ = 0;
  size_t limit_ = size_t(1) << 30;  // 1 GiB: a few training steps' worth of activations
};

}  // namespace

namespace {

template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
  size_t n = 1;
  for (py::ssize_t d : shape) n *= static_cast<size_t>(d);
  const size_t bytes = n * sizeof(T);
  if (bytes < kMinBytes || BufferCache::instance().limit() == 0) return py::array_t<T>(shape);
  struct Block {
    float* data;
    size_t bytes;
  };
  Block* block = new Block{BufferCache::instance().take(bytes), bytes};
  py::capsule owner(block, [](void* b) {
    Block* blk = static_cast<Block*>(b);
    BufferCache::instance().give(blk->data, blk->bytes);
    delete blk;
  });
  return py::array_t<T>(shape, reinterpret_cast<T*>(block->data), owner);
}

}  // namespace

py::array_t<float> new_float_array(const std::vector<py::ssize_t>& shape) { return new_array<float>(shape); }
py::array_t<int32_t> new_int32_array(const std::vector<py::ssize_t>& shape) { return new_array<int32_t>(shape); }

py::array_t<float> new_float_array_like(const py::array& a) {
  return new_float_array(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

size_t buffer_cache_bytes() { return BufferCache::instance().cached(); }
size_t buffer_cache_limit() { return BufferCache::instance().limit(); }
size_t set_buffer_cache_limit(size_t bytes) { return BufferCache::instance().set_limit(bytes); }
size_t empty_buffer_cache() { return BufferCache::instance().trim(0); }

}  // namespace fastnn
