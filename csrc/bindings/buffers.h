// Output arrays for the kernels' results, with large buffers recycled across calls.
//
// A training step allocates the same big arrays at every step (activations, their gradients,
// saved states), and memory fresh from the OS costs a page fault per 4 KiB at first touch. glibc
// hands large blocks back to the OS when they are freed (mmap, or trimming the top of the heap),
// so without a cache each step faults its outputs in again: measured here, a ReLU backward of a
// LeNet activation took 480 us instead of 46 us, and a third of an LSTM step went to faults.
// A buffer that Python frees (through its array's capsule) is kept, by exact size, up to a limit,
// and handed out again; small arrays come from numpy as usual. The GIL is held both ways (the
// capsule's destructor runs under it); a mutex orders the container all the same.
#pragma once
#include <pybind11/numpy.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastnn {
namespace py = pybind11;

// An uninitialized C-contiguous float32 array of `shape`; from the cache when it is large.
py::array_t<float> new_float_array(const std::vector<py::ssize_t>& shape);
py::array_t<int32_t> new_int32_array(const std::vector<py::ssize_t>& shape);
// An uninitialized float32 array of a's shape.
py::array_t<float> new_float_array_like(const py::array& a);

// Bytes held by the cache (freed by Python, kept for reuse), and its limit.
size_t buffer_cache_bytes();
size_t buffer_cache_limit();
// Sets the limit (0 turns the cache off), releasing what is above it; returns the previous one.
size_t set_buffer_cache_limit(size_t bytes);
// Gives every cached buffer back to the allocator; returns the bytes released.
size_t empty_buffer_cache();

}  // namespace fastnn
