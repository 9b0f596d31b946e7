// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011), the counter-based generator of cuRAND and PyTorch's CUDA generator: four 32-bit
// outputs are a pure function of a 128-bit counter and a 64-bit key, so element i of a random
// mask can be drawn by any thread, in any order, on the CPU or the GPU, with the same result.
// Compiled as host code by the C++ compiler and as host + device code by nvcc.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define FASTNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTNN_HOST_DEVICE inline
#endif

namespace fastnn {

struct Philox4 {
  uint32_t v[4];
};

// The round constants of Random123: the two multipliers, and the key's increments per round. The
// vector kernels (cpu/random_simd.h) run the same rounds.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

// Ten rounds on counter (c0, c1, c2, c3) with key (k0, k1).
FASTNN_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                         uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0, p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return {{c0, c1, c2, c3}};
}

// The dropout mask's four elements 4 * block .. 4 * block + 3 of draw number `offset` under
// `seed`: each is `scale` where its uniform u = (output >> 8) / 2**24 in [0, 1) is >= p, else 0
// (the keep test of the numpy path, u >= p).
FASTNN_HOST_DEVICE void dropout_mask4(float out[4], uint64_t block, uint64_t seed, uint64_t offset, float p,
                                      float scale) {
  const Philox4 r = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                  static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                                  static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  for (int i = 0; i < 4; ++i) out[i] = static_cast<float>(r.v[i] >> 8) * (1.0f / 16777216.0f) >= p ? scale : 0.0f;
}

}  // namespace fastnn
