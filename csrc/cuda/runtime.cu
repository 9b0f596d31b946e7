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

// The allocator's books for one device: free blocks by rounded size, live blocks by pointer.
struct DevicePool {
  std::multimap<size_t, void*> free_blocks;
  std::unordered_map<void*, size_t> live;
  size_t allocated = 0, cached = 0;
};

std::mutex pool_mutex;
DevicePool pools[kMaxDevices];
cudaStream_t streams[kMaxDevices] = {};

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
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    DevicePool& pool = pools[device];
    auto it = pool.free_blocks.find(size);
    if (it != pool.free_blocks.end()) {
      void* p = it->second;
      pool.free_blocks.erase(it);
      pool.cached -= size;
      pool.live[p] = size;
      pool.allocated += size;
      return p;
    }
  }
  set_device(device);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation) {  // give the cached blocks back and try once more
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
  pools[device].live[p] = size;
  pools[device].allocated += size;
  return p;
}

void release(void* ptr, int device) {
  if (!ptr || device < 0 || device >= kMaxDevices) return;
  std::lock_guard<std::mutex> lock(pool_mutex);
  DevicePool& pool = pools[device];
  auto it = pool.live.find(ptr);
  if (it == pool.live.end()) return;  // not ours: never free what we did not allocate
  const size_t size = it->second;
  pool.live.erase(it);
  pool.allocated -= size;
  pool.free_blocks.emplace(size, ptr);
  pool.cached += size;
}

void empty_cache() {
  const int n = device_count();
  std::lock_guard<std::mutex> lock(pool_mutex);
  for (int d = 0; d < n; ++d) {
    DevicePool& pool = pools[d];
    if (pool.free_blocks.empty()) continue;
    cudaSetDevice(d);
    if (streams[d]) cudaStreamSynchronize(streams[d]);  // queued kernels may still use a free block
    for (auto& kv : pool.free_blocks) cudaFree(kv.second);
    pool.free_blocks.clear();
    pool.cached = 0;
  }
}

size_t memory_allocated(int device) {
  if (device < 0 || device >= kMaxDevices) return 0;
  std::lock_guard<std::mutex> lock(pool_mutex);
  return pools[device].allocated;
}

size_t memory_reserved(int device) {
  if (device < 0 || device >= kMaxDevices) return 0;
  std::lock_guard<std::mutex> lock(pool_mutex);
  return pools[device].allocated + pools[device].cached;
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
