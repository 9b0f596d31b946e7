// SGEMM framework in the GotoBLAS/BLIS style.
//
//   for jc in N by NC:                  B panel KC x NC, packed into NR-wide slivers (L3)
//     for pc in K by KC:
//       pack B panel (all threads)      or, when op(B) is row-major and M is a few
//                                       MR tall, read B in place (skinny fast path:
//                                       each B element is used by so few tiles that
//                                       packing would cost as much as the product)
//       for ic in M by MC:              A block MC x KC, packed into MR-tall slivers (L2)
//         pack A block (all threads)
//         macro-kernel: the MR x NR tiles of this block, jr-major, split into one
//         contiguous range per thread; each tile is one micro-kernel call
//
// Threading: one OpenMP team for the whole product (run_parallel), barriers
// between packing and use. Tall C (M >= threads x MC): each thread takes a band
// of rows and packs its own A blocks, sharing only the packed B panel, and runs
// its tiles ir-major (row strip by row strip: the MR x KC A sliver in L1, the B
// panel streaming from L2/L3, C written along its rows). Otherwise the threads
// share each A block, pack it together and split its tiles. Every C element is
// computed by exactly one thread in the same K order whatever the thread count,
// so results are bitwise identical for any number of threads. A tile cut by the bottom edge of C runs the
// micro-kernel cut to its rows (GemmKernelInfo::kernels; its A sliver is
// packed with those rows), so no FMA is spent on padding rows (M = 64 in tiles of
// 12 would compute 72); a tile cut by the right edge goes through a small
// zero-padded buffer. Packing buffers are cached per calling thread and grow
// only, so the hot path allocates nothing.
#include "cpu/gemm.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/threads.h"
#include "common/workspace.h"

#if defined(__SSE2__)
#include <emmintrin.h>  // baseline on x86-64, so no ISA dispatch is needed for it
#endif

namespace fastnn {

GemmKernelTable gemm_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::avx512: return gemm_kernels_avx512();
    case Isa::avx2: return gemm_kernels_avx2();
    default: return gemm_kernels_ref();
  }
}

const GemmKernelInfo& gemm_kernel_for(Isa isa) { return gemm_kernels_for(isa).rows[0]; }

// The row whose tiles cover M x (blocks x N) with the least padding. Every row runs its
// full tiles equally fast, so the padded area is the work done; the general
// row keeps a shape unless another saves at least a tenth of it.
const GemmKernelInfo& gemm_kernel_for_shape(Isa isa, int64_t M, int64_t N, int64_t blocks) {
  const GemmKernelTable table = gemm_kernels_for(isa);
  auto padded_area = [&](const GemmKernelInfo& k) {
    return static_cast<double>((M + k.mr - 1) / k.mr * k.mr) *
           static_cast<double>(blocks * ((N + k.nr - 1) / k.nr * k.nr));
  };
  const GemmKernelInfo* best = &table.rows[0];
  double best_area = 0.9 * padded_area(*best);
  for (int r = 1; r < table.count; ++r) {
    const double area = padded_area(table.rows[r]);
    if (area < best_area) {
      best = &table.rows[r];
      best_area = area;
    }
  }
  return *best;
}

// The transposing copy behind packing a row-major A and a transposed B (and the
// convolutions' and recurrent layers' transposes, gemm.h). SSE 4 x 4 register
// transposes turn four strided scalar stores per element into one vector store
// per four elements.
void transpose_copy(const float* src, int64_t ld, int64_t rows, int64_t len, float* dst, int64_t dst_stride) {
  int64_t r = 0;
#if defined(__SSE2__)
  for (; r < rows; r += 4) {
    const int64_t n = std::min<int64_t>(4, rows - r);
    // Rows past the end re-read the last row (harmless) and are not stored.
    const float* s0 = src + r * ld;
    const float* s1 = src + (r + std::min<int64_t>(1, n - 1)) * ld;
    const float* s2 = src + (r + std::min<int64_t>(2, n - 1)) * ld;
    const float* s3 = src + (r + std::min<int64_t>(3, n - 1)) * ld;
    int64_t p = 0;
    for (; p + 4 <= len; p += 4) {
      __m128 x0 = _mm_loadu_ps(s0 + p), x1 = _mm_loadu_ps(s1 + p);
      __m128 x2 = _mm_loadu_ps(s2 + p), x3 = _mm_loadu_ps(s3 + p);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      float* d = dst + p * dst_stride + r;
      const __m128 cols[4] = {x0, x1, x2, x3};
      for (int q = 0; q < 4; ++q, d += dst_stride) {
        if (n == 4) {
          _mm_storeu_ps(d, cols[q]);
        } else {
          alignas(16) float lane[4];
          _mm_store_ps(lane, cols[q]);
          for (int64_t i = 0; i < n; ++i) d[i] = lane[i];
        }
      }
    }
    for (; p < len; ++p)
      for (int64_t i = 0; i < n; ++i) dst[p * dst_stride + r + i] = src[(r + i) * ld + p];
  }
#else
  for (; r < rows; ++r)
    for (int64_t p = 0; p < len; ++p) dst[p * dst_stride + r] = src[r * ld + p];
#endif
}

namespace {

constexpr int kMaxMR = 24, kMaxNR = 64;  // bounds for the edge-tile buffer

thread_local Workspace tls_pack_a, tls_pack_b;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The block size at most `block` (a multiple of `multiple`) that cuts `extent` into the fewest,
// most even blocks: 1024 rows by MC = 240 are 5 x 216, not 4 x 240 + 64 (a thin last block
// reads the whole B panel for a few tiles).
int64_t even_block(int64_t extent, int64_t block, int64_t multiple) {
  const int64_t blocks = (extent + block - 1) / block;
  return std::min(block, round_up((extent + blocks - 1) / blocks, multiple));
}

// dst[p * W + i] = src[p * ld + i] for p < kc, i < W: the packing of a full sliver from rows
// that are contiguous along it. With W a constant each row is a few vector moves; with W known
// only at run time, the per-row loop and its tail cost as much as the copy (measured: a third of
// a transposed-A GEMM's time at N = 64). Returns false for a width without a fixed copy.
template <int W>
void copy_rows_fixed(float* dst, const float* src, int64_t ld, int64_t kc) {
  for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * W, src + p * ld, sizeof(float) * W);
}

bool copy_rows(float* dst, const float* src, int64_t ld, int64_t kc, int width) {
  switch (width) {  // every register tile's MR and NR (gemm_kernel_*.cpp)
    case 4: copy_rows_fixed<4>(dst, src, ld, kc); return true;
    case 6: copy_rows_fixed<6>(dst, src, ld, kc); return true;
    case 8: copy_rows_fixed<8>(dst, src, ld, kc); return true;
    case 12: copy_rows_fixed<12>(dst, src, ld, kc); return true;
    case 16: copy_rows_fixed<16>(dst, src, ld, kc); return true;
    case 24: copy_rows_fixed<24>(dst, src, ld, kc); return true;
    case 32: copy_rows_fixed<32>(dst, src, ld, kc); return true;
    case 48: copy_rows_fixed<48>(dst, src, ld, kc); return true;
    case 64: copy_rows_fixed<64>(dst, src, ld, kc); return true;
    default: return false;
  }
}

// Sliver of the (mc x kc) block of op(A) at (i0, p0) with its `rows` rows (MR, or fewer
// at the bottom edge of C): dst[p * rows + i], the layout of the kernel cut to those rows.
void pack_a_sliver(const float* A, int64_t lda, bool trans_a, int64_t i0, int64_t rows, int64_t p0,
                   int64_t kc, float* dst) {
  if (!trans_a) {  // op(A)(i, p) = A[i * lda + p]
    transpose_copy(A + i0 * lda + p0, lda, rows, kc, dst, rows);
  } else {  // op(A)(i, p) = A[p * lda + i]
    if (copy_rows(dst, A + p0 * lda + i0, lda, kc, static_cast<int>(rows))) return;
    for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * rows, A + (p0 + p) * lda + i0, sizeof(float) * rows);
  }
}

// Sliver of the (kc x nc) panel of op(B) at (p0, j0): dst[p * NR + j], columns past
// the edge zero-filled.
void pack_b_sliver(const float* B, int64_t ldb, bool trans_b, int64_t p0, int64_t kc, int64_t j0,
                   int64_t cols, int nr, float* dst) {
  if (!trans_b) {  // op(B)(p, j) = B[p * ldb + j]
    if (cols == nr && copy_rows(dst, B + p0 * ldb + j0, ldb, kc, nr)) return;
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = B + (p0 + p) * ldb + j0;
      float* d = dst + p * nr;
      for (int64_t j = 0; j < cols; ++j) d[j] = src[j];
      for (int64_t j = cols; j < nr; ++j) d[j] = 0.0f;
    }
  } else {  // op(B)(p, j) = B[j * ldb + p]
    transpose_copy(B + j0 * ldb + p0, ldb, cols, kc, dst, nr);
    for (int64_t p = 0; p < kc; ++p)
      for (int64_t j = cols; j < nr; ++j) dst[p * nr + j] = 0.0f;
  }
}

// One MR x NR tile, or its first m_rem rows at the bottom edge of C (the kernel cut to
// them, whose A sliver was packed with m_rem rows), through a padded buffer when it is
// cut by the right edge.
void compute_tile(const GemmKernelInfo& kr, int64_t kc, const float* a, const float* b, int64_t rs_b,
                  float* c, int64_t ldc, int64_t m_rem, int64_t n_rem, const float* bias_n,
                  const float* bias_m, const GemmTile& base) {
  const int nr = kr.nr;
  const GemmMicroKernel ukernel = kr.kernels[m_rem];
  if (n_rem == nr) {
    GemmTile tile = base;
    tile.bias_n = bias_n;
    tile.bias_m = bias_m;
    ukernel(kc, a, b, rs_b, c, ldc, tile);
    return;
  }
  alignas(64) float ctmp[kMaxMR * kMaxNR];
  alignas(64) float bn[kMaxNR];
  std::memset(ctmp, 0, sizeof(float) * m_rem * nr);
  if (base.beta != 0.0f)
    for (int64_t i = 0; i < m_rem; ++i) std::memcpy(ctmp + i * nr, c + i * ldc, sizeof(float) * n_rem);
  GemmTile tile = base;
  tile.bias_n = tile.bias_m = nullptr;
  if (base.last && bias_n) {
    std::memset(bn, 0, sizeof(bn));
    std::memcpy(bn, bias_n, sizeof(float) * n_rem);
    tile.bias_n = bn;
  }
  if (base.last && bias_m) tile.bias_m = bias_m;
  ukernel(kc, a, b, rs_b, ctmp, nr, tile);
  for (int64_t i = 0; i < m_rem; ++i) std::memcpy(c + i * ldc, ctmp + i * nr, sizeof(float) * n_rem);
}

// C = beta * C + epilogue, for K == 0 or alpha == 0 (A and B are not read, as in BLAS).
bool scale_only(int64_t M, int64_t N, float beta, float* C, int64_t ldc, const GemmEpilogue& ep) {
  bool nonfinite = false;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float x = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
      if (ep.bias_n) x += ep.bias_n[j];
      if (ep.bias_m) x += ep.bias_m[i];
      if (!std::isfinite(x)) nonfinite = true;
      if (ep.relu && !(x > 0.0f)) x = 0.0f;
      C[i * ldc + j] = x;
    }
  }
  return nonfinite;
}

}  // namespace

bool sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           const GemmEpilogue& ep) {
  if (M <= 0 || N <= 0) return false;
  if (K <= 0 || alpha == 0.0f) return scale_only(M, N, beta, C, ldc, ep);

  const GemmKernelInfo& kr = gemm_kernel_for_shape(active_isa(), M, N);
  const int mr = kr.mr, nr = kr.nr;
  const int64_t MC = kr.mc, NC = kr.nc;
  // With more tiles per B sliver, an in-place sliver (rows ldb apart, often a power
  // of two) would fight over a few L1 sets; packed, it is contiguous.
  const bool b_in_place = !trans_b && M <= 4 * mr;
  // Even K blocks: 784 is 4 x 196, not 256 + 256 + 256 + 16 (a thin last block is
  // all overhead: each tile's C is loaded and stored once per block).
  const int64_t KC = even_block(K, kr.kc, 1);

  const int64_t kc_max = std::min(K, KC);
  const int threads = threads_for_work(static_cast<double>(M) * N * K);
  // Tall C: each thread takes its own band of rows and packs its own A blocks into its own slice
  // of the A buffer (which then stays in its core's L2); only the packed B panel is shared.
  // Otherwise all threads share each A block and split its tiles.
  const bool split_rows = threads > 1 && M >= threads * MC;
  const int a_slices = split_rows ? threads : 1;
  const int64_t a_slice = round_up(std::min(M, MC), mr) * kc_max;
  float* pack_a = tls_pack_a.get(static_cast<size_t>(a_slice * a_slices));
  float* pack_b = tls_pack_b.get(static_cast<size_t>(round_up(std::min(N, NC), nr) * kc_max));
  std::atomic<int> any_nonfinite{0};

  run_parallel(threads, [&](int tid, int nt) {
    int nonfinite = 0;
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = std::min(NC, N - jc);
      const int64_t n_jr = (nc + nr - 1) / nr;
      const int64_t tail_cols = nc % nr;  // the last sliver is partial when != 0
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const GemmTile tile{alpha, pc == 0 ? beta : 1.0f, nullptr, nullptr, ep.relu, pc + kc == K, &nonfinite};

        if (!b_in_place) {
          int64_t s0, s1;
          split_range(n_jr, tid, nt, &s0, &s1);
          for (int64_t s = s0; s < s1; ++s)
            pack_b_sliver(B, ldb, trans_b, pc, kc, jc + s * nr, std::min<int64_t>(nr, nc - s * nr), nr,
                          pack_b + s * nr * kc);
        } else if (tail_cols != 0 && tid == 0) {  // only the cut sliver needs padding
          pack_b_sliver(B, ldb, false, pc, kc, jc + (n_jr - 1) * nr, tail_cols, nr, pack_b);
        }

        // The B sliver of column tile jr: packed, or op(B) itself read in place.
        auto b_sliver = [&](int64_t jr, int64_t* rs_b) -> const float* {
          if (!b_in_place || (tail_cols != 0 && jr == n_jr - 1)) {
            *rs_b = nr;
            return b_in_place ? pack_b : pack_b + jr * nr * kc;
          }
          *rs_b = ldb;
          return B + pc * ldb + jc + jr * nr;
        };
        auto tile_at = [&](const float* a_block, int64_t ic, int64_t ir, int64_t jr) {
          const int64_t i = ic + ir * mr, j = jc + jr * nr;
          int64_t rs_b;
          const float* b = b_sliver(jr, &rs_b);
          compute_tile(kr, kc, a_block + ir * mr * kc, b, rs_b, C + i * ldc + j, ldc, std::min<int64_t>(mr, M - i),
                       std::min<int64_t>(nr, N - j), ep.bias_n ? ep.bias_n + j : nullptr,
                       ep.bias_m ? ep.bias_m + i : nullptr, tile);
        };

        if (split_rows) {
          team_barrier(nt);  // the packed B panel is complete
          const int64_t band = round_up((M + nt - 1) / nt, mr);
          const int64_t row_end = std::min(M, (tid + 1) * band);
          float* my_pack_a = pack_a + tid * a_slice;
          const int64_t my_mc = even_block(row_end - tid * band, MC, mr);
          for (int64_t ic = tid * band; ic < row_end; ic += my_mc) {
            const int64_t mc = std::min(my_mc, row_end - ic);
            const int64_t n_ir = (mc + mr - 1) / mr;
            for (int64_t s = 0; s < n_ir; ++s)
              pack_a_sliver(A, lda, trans_a, ic + s * mr, std::min<int64_t>(mr, mc - s * mr), pc, kc,
                            my_pack_a + s * mr * kc);
            // Row strip by row strip: the A sliver stays in L1 while the B panel streams past, and
            // C is written along its rows, which the hardware prefetchers follow (down a column of
            // tiles, each tile's 12 rows start 12 rows further on, and a 2048-column C lost 8-14%).
            for (int64_t ir = 0; ir < n_ir; ++ir)
              for (int64_t jr = 0; jr < n_jr; ++jr) tile_at(my_pack_a, ic, ir, jr);
          }
          team_barrier(nt);  // nobody repacks B while a tile still reads it
          continue;
        }

        const int64_t shared_mc = even_block(M, MC, mr);
        for (int64_t ic = 0; ic < M; ic += shared_mc) {
          const int64_t mc = std::min(shared_mc, M - ic);
          const int64_t n_ir = (mc + mr - 1) / mr;
          int64_t s0, s1;
          split_range(n_ir, tid, nt, &s0, &s1);
          for (int64_t s = s0; s < s1; ++s)
            pack_a_sliver(A, lda, trans_a, ic + s * mr, std::min<int64_t>(mr, mc - s * mr), pc, kc,
                          pack_a + s * mr * kc);
          team_barrier(nt);  // packed A (and B) complete

          int64_t t0, t1;
          split_range(n_ir * n_jr, tid, nt, &t0, &t1);
          for (int64_t t = t0; t < t1; ++t) tile_at(pack_a, ic, t % n_ir, t / n_ir);
          team_barrier(nt);  // nobody repacks A or B while a tile still reads them
        }
      }
    }
    if (nonfinite) any_nonfinite.store(1, std::memory_order_relaxed);
  });
  return any_nonfinite.load() != 0;
}

double measure_fma_peak_gflops(int threads, double seconds) {
  const GemmKernelInfo& kr = gemm_kernel_for(active_isa());
  using clock = std::chrono::steady_clock;
  // Calibrate the loop length on one thread, then run it on every thread at once.
  int64_t iters = 1 << 20;
  for (;;) {
    auto t0 = clock::now();
    kr.fma_loop(iters);
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    if (dt > 0.02) {
      iters = static_cast<int64_t>(iters * seconds / dt) + 1;
      break;
    }
    iters *= 4;
  }
  std::atomic<double> flops{0.0};
  auto t0 = clock::now();
  run_parallel(threads, [&](int, int) {
    double f = kr.fma_loop(iters);
    double cur = flops.load();
    while (!flops.compare_exchange_weak(cur, cur + f)) {
    }
  });
  double dt = std::chrono::duration<double>(clock::now() - t0).count();
  return flops.load() / dt * 1e-9;
}

}  // namespace fastnn
