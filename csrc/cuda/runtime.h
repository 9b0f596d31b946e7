// The CUDA runtime pieces every CUDA kernel family uses: devices, one stream per device, a caching
// device allocator, copies, and errors. The header has no CUDA types, so the bindings (compiled
// by the C++ compiler) include it without the CUDA headers.
//
// Streams: every fastnn kernel on device d runs on fastnn's own stream for d (created on first
// use, non-blocking with respect to the legacy default stream), so a whole training step can be
// captured into a CUDA graph. Host<->device copies are issued on that stream and wait for it.
//
// Allocator: cudaMalloc synchronizes the device and costs tens of microseconds, so freed blocks
// are kept per device in free lists keyed by their rounded size (512 B granularity below 1 MiB,
// 2 MiB above) and handed out again; empty_cache() gives the free blocks back to the driver. A
// block freed while kernels that use it are still queued is safe to reuse at once, because every
// kernel runs in order on the same stream.
//
// Errors: every runtime call and every launch is checked; a failure throws CudaError (a
// std::runtime_error, which pybind11 turns into RuntimeError) naming the operation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastnn {
namespace cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Devices present and usable; 0 when there is no driver or no device (never throws).
int device_count();
// Why device_count() is 0 (the driver's message), or "" when devices were found.
std::string unavailable_reason();
// Makes `device` current on this thread; throws when it does not exist.
void set_device(int device);
// Waits for all of fastnn's work on `device`.
void synchronize(int device);
// Waits for all work on `device`, every stream's (other libraries' included).
void device_synchronize(int device);
// fastnn's stream on `device`, as an opaque pointer (a cudaStream_t).
void* stream(int device);

// Caching allocator.
void* allocate(size_t bytes, int device);
void release(void* ptr, int device);
void empty_cache();
size_t memory_allocated(int device);  // bytes in live blocks (rounded sizes)
size_t memory_reserved(int device);   // live + cached

// CUDA graphs: the kernels queued on fastnn's stream between begin_capture and end_capture are
// recorded, not run (relaxed capture mode), and end_capture instantiates them as one graph that
// launch_graph replays with one call. Memory allocated during the capture comes from the graph's
// own pool (see runtime.cu); a synchronizing call during the capture fails. One capture at a time
// per device, from one thread.
struct CapturedGraph {
  void* exec;  // a cudaGraphExec_t, null when the capture was dropped
  int pool;
  int device;
};
void begin_capture(int device);
// keep = false drops the capture (after an error in the captured code).
CapturedGraph end_capture(int device, bool keep);
void launch_graph(const CapturedGraph& g);
void destroy_graph(const CapturedGraph& g);

// Copies (bytes), ordered on fastnn's stream of `device`; to_host and to_device return when done.
void copy_to_device(void* dst, const void* src, size_t bytes, int device);
void copy_to_host(void* dst, const void* src, size_t bytes, int device);
void copy_on_device(void* dst, const void* src, size_t bytes, int device);

}  // namespace cuda
}  // namespace fastnn
