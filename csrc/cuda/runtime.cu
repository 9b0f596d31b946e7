// Devices, streams, the caching allocator and copies (see runtime.h).
#include "cuda/runtime.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/check.cuh"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kMaxDevices = 64;

std::once_flag count_once;
int count = 0;
std::string count_error;

void count_devices() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls report their own
    count = 0;
    count_error = std::string("no usable CUDA driver or GPU: ") + cudaGetErrorString(e);
  } else {
    count = n < kMaxDevices ? n : kMaxDevices;
    if (count == 0) count_error = "the driver reports no CUDA device";
  }
}

// The allocator's books for one device. Blocks belong to a pool: 0, the shared one, or the
// private pool of one captured CUDA graph (its blocks are handed out again only inside that
// graph's capture, because every replay reuses them in the same order; when the graph goes, its
// pool's blocks join the shared pool).
struct Block {
  size_t size;
  int pool;
};
struct DeviceBooks {
  std::unordered_map<void*, Block> live;
  std::map<int, std::multimap<size_t, void*>> free_blocks;  // by pool
  size_t allocated = 0, cached = 0;
  int capture_pool = 0;  // the pool of the capture in progress, 0 when none
};

std::mutex pool_mutex;
DeviceBooks books[kMaxDevices];
cudaStream_t streams[kMaxDevices] = {};
int next_pool = 1;

size_t round_size(size_t bytes) {
  constexpr size_t small = 512, large = size_t(2) << 20;
  if (bytes == 0) bytes = 1;
  return bytes < (size_t(1) << 20) ? (bytes + small - 1) / small * small : (bytes + large - 1) / large * large;
}

void check_device(int device, const char* what) {
  if (device < 0 || device >= device_count())
    throw CudaError(std::string(what) + ": no CUDA device " + std::to_string(device) + " (this machine has " +
                    std::to_string(device_count()) + ")");
}
}  // namespace

int device_count() {
  std::call_once(count_once, count_devices);
  return count;
}

std::string unavailable_reason() {
  device_count();
  return count_error;
}

void set_device(int device) {
  check_device(device, "set_device");
  check(cudaSetDevice(device), "cudaSetDevice");
}

void* stream(int device) {
  check_device(device, "stream");
  std::lock_guard<std::mutex> lock(pool_mutex);
  if (!streams[device]) {
    set_device(device);
    check(cudaStreamCreateWithFlags(&streams[device], cudaStreamNonBlocking), "cudaStreamCreate");
  }
  return streams[device];
}

void synchronize(int device) {
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  check(cudaStreamSynchronize(s), "synchronize");
}

void device_synchronize(int device) {
  set_device(device);
  check(cudaDeviceSynchronize(), "device synchronize");
}

void* allocate(size_t bytes, int device) {
  check_device(device, "allocate");
  const size_t size = round_size(bytes);
  int pool = 0;
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    DeviceBooks& b = books[device];
    pool = b.capture_pool;
    auto& free_list = b.free_blocks[pool];
    auto it = free_list.find(size);
    if (it != free_list.end()) {
      void* p = it->second;
      free_list.erase(it);
      b.cached -= size;
      b.live[p] = {size, pool};
      b.allocated += size;
      return p;
    }
  }
  set_device(device);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation && pool == 0) {  // give the cached blocks back and try once more
    cudaGetLastError();
    empty_cache();
    e = cudaMalloc(&p, size);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw CudaError("allocate: cudaMalloc of " + std::to_string(size) + " bytes on device " + std::to_string(device) +
                    " failed: " + cudaGetErrorString(e));
  }
  std::lock_guard<std::mutex> lock(pool_mutex);
  books[device].live[p] = {size, pool};
  books[device].allocated += size;
  return p;
}

void release(void* ptr, int device) {
  if (!ptr || device < 0 || device >= kMaxDevices) return;
  std::lock_guard<std::mutex> lock(pool_mutex);
  DeviceBooks& b = books[device];
  auto it = b.live.find(ptr);
  if (it == b.live.end()) return;  // not ours: never free what we did not allocate
  const Block block = it->second;
  b.live.erase(it);
  b.allocated -= block.size;
  b.free_blocks[block.pool].emplace(block.size, ptr);
  b.cached += block.size;
}

void empty_cache() {
  const int n = device_count();
  std::lock_guard<std::mutex> lock(pool_mutex);
  for (int d = 0; d < n; ++d) {
    DeviceBooks& b = books[d];
    auto shared = b.free_blocks.find(0);  // graphs keep their pools
    if (shared == b.free_blocks.end() || shared->second.empty()) continue;
    cudaSetDevice(d);
    if (streams[d]) cudaStreamSynchronize(streams[d]);  // queued kernels may still use a free block
    for (auto& kv : shared->second) {
      cudaFree(kv.second);
      b.cached -= kv.first;
    }
    shared->second.clear();
  }
}

size_t memory_allocated(int device) {
  if (device < 0 || device >= kMaxDevices) return 0;
  std::lock_guard<std::mutex> lock(pool_mutex);
  return books[device].allocated;
}

size_t memory_reserved(int device) {
  if (device < 0 || device >= kMaxDevices) return 0;
  std::lock_guard<std::mutex> lock(pool_mutex);
  return books[device].allocated + books[device].cached;
}

// ---- CUDA graphs ---------------------------------------------------------------------------
void begin_capture(int device) {
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  set_device(device);
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (books[device].capture_pool != 0) throw CudaError("begin_capture: a capture is already in progress on this device");
    books[device].capture_pool = next_pool++;
  }
  const cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    std::lock_guard<std::mutex> lock(pool_mutex);
    books[device].capture_pool = 0;
  }
  check(e, "begin_capture");
}

CapturedGraph end_capture(int device, bool keep) {
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  cudaGraph_t graph = nullptr;
  const cudaError_t e = cudaStreamEndCapture(s, &graph);
  int pool;
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    pool = books[device].capture_pool;
    books[device].capture_pool = 0;
  }
  CapturedGraph out{nullptr, pool, device};
  if (e != cudaSuccess || !keep) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    destroy_graph(out);
    check(e, "end_capture");
    return {nullptr, 0, device};
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ei = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (ei != cudaSuccess) {
    destroy_graph(out);
    check(ei, "cudaGraphInstantiate");
  }
  out.exec = exec;
  return out;
}

void launch_graph(const CapturedGraph& g) {
  if (!g.exec) throw CudaError("launch_graph: the graph was not captured");
  cudaStream_t s = static_cast<cudaStream_t>(stream(g.device));
  set_device(g.device);
  check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g.exec), s), "launch_graph");
}

void destroy_graph(const CapturedGraph& g) {
  if (g.exec) {
    cudaStream_t s = static_cast<cudaStream_t>(stream(g.device));
    cudaStreamSynchronize(s);  // a replay may still run
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g.exec));
  }
  if (g.pool == 0) return;
  // The pool's free blocks, and its live ones when they are released later, join the shared pool.
  std::lock_guard<std::mutex> lock(pool_mutex);
  DeviceBooks& b = books[g.device];
  auto it = b.free_blocks.find(g.pool);
  if (it != b.free_blocks.end()) {
    for (auto& kv : it->second) b.free_blocks[0].emplace(kv.first, kv.second);
    b.free_blocks.erase(it);
  }
  for (auto& kv : b.live)
    if (kv.second.pool == g.pool) kv.second.pool = 0;
}

void copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  set_device(device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "copy to device");
  check(cudaStreamSynchronize(s), "copy to device");  // the host buffer may go away after we return
}

void copy_to_host(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  set_device(device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "copy to host");
  check(cudaStreamSynchronize(s), "copy to host");
}

void copy_on_device(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream(device));
  set_device(device);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "copy on device");
}

}  // namespace cuda
}  // namespace fastnn
