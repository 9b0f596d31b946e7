// Philox4x32-10 on W counters at once (W = 8 with AVX2, 16 with AVX-512), written once over a
// small vector interface V and instantiated by random_kernel_avx2.cpp and random_kernel_avx512.cpp,
// each compiled with its own ISA flags. Including this header in any other file would leak wide
// instructions into baseline code.
//
// Lane l of a group holds block first + l: the rounds of common/philox.h run on all lanes at
// once, the 32 x 32 -> 64-bit products as two even/odd-lane multiplies. The four output words of
// a block then sit in four registers, one lane each; V::interleave4 regroups them so that each
// block's four mask elements are adjacent, as the scalar kernel writes them. The results are bit
// for bit those of dropout_mask4 (the uniform is exact: a 24-bit integer times 2**-24).
#pragma once
#include <cstdint>

#include "common/philox.h"

namespace fastnn {
namespace {

template <class V>
void simd_dropout_groups(float* mask, uint64_t first_block, int64_t groups, uint64_t seed, uint64_t offset,
                         float p, float scale) {
  constexpr int W = V::width;
  const typename V::ireg m0 = V::set1(kPhiloxM0), m1 = V::set1(kPhiloxM1);
  for (int64_t group = 0; group < groups; ++group, mask += 4 * W) {
    // first_block is a multiple of W, so the low counter word cannot wrap inside a group.
    const uint64_t block = first_block + static_cast<uint64_t>(group) * W;
    typename V::ireg c0 = V::add(V::set1(static_cast<uint32_t>(block)), V::lane_index());
    typename V::ireg c1 = V::set1(static_cast<uint32_t>(block >> 32));
    typename V::ireg c2 = V::set1(static_cast<uint32_t>(offset)), c3 = V::set1(static_cast<uint32_t>(offset >> 32));
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      typename V::ireg hi0, lo0, hi1, lo1;
      V::mul_wide(c0, m0, &hi0, &lo0);
      V::mul_wide(c2, m1, &hi1, &lo1);
      c0 = V::xor3(hi1, c1, V::set1(k0));
      c1 = lo1;
      c2 = V::xor3(hi0, c3, V::set1(k1));
      c3 = lo0;
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    typename V::ireg words[4] = {c0, c1, c2, c3};
    V::interleave4(words);
    for (int q = 0; q < 4; ++q) V::store_mask(mask + q * W, words[q], p, scale);
  }
}

}  // namespace
}  // namespace fastnn
