// 2-D convolution lowered to our SGEMM through im2col / col2im (letters in conv.h).
//
// Forward, per group g (Kg = K/G output channels, CRSg = C/G * R * S):
//   col (C*R*S, L)   = im2col of a chunk of the input: row (c, r, s), column (image, p, q)
//   out_g (Kg, L)    = weight_g (Kg, CRSg) @ col_g (CRSg, L) + bias (GEMM epilogue, bias_m) [ReLU]
// Backward:
//   grad_weight_g   += dY_g (Kg, L) @ col_g^T (L, CRSg), chunk after chunk (beta = 1 after the
//                      first); by the GEMM, or, when Kg x CRSg is small, by dot-product tiles
//                      along L that read dY's NCHW rows in place (no transposing packs)
//   dcol_g (CRSg, L) = weight_g^T @ dY_g;  grad_input = col2im(dcol): stride 1 in the gather
//                      form (each input element summed over its taps in registers, written
//                      once), strided by scattering the taps into a padded plane
//   grad_bias[k]     = sum over n, p, q of dY, in a fixed order (rows summed in double)
// im2col reads zero-padded copies of the input planes (none when the padding is zero), so its
// row loops (conv_kernels.h, one build per ISA) test no bounds and move whole vectors, the
// last one of a row masked.
//
// Chunking: a chunk is a run of whole images, or a run of output rows of one image when one
// image does not fit, sized so the column buffer (C*R*S x L), the staged output or output
// gradient (K x L) and the padded input rows fit the workspace budget: 2 MiB by default
// (conv2d_workspace_budget()), about one core's L2, so the columns im2col writes are still in
// cache when the GEMM packs them (at one thread, 2 MiB ran 5-15% faster than 8 MiB on the
// CIFAR shapes). The weight gradient's chunks, which it accumulates over, depend only on the
// shape and the budget, never on the thread count. The forward and the input gradient chunk
// each thread's range of images within its share of the budget; their values do not depend on
// the chunking (each element comes out of one GEMM dot product or one col2im sum). With a
// chunk of one image (or rows of one), the GEMMs read and write the NCHW tensors in place (row
// stride P*Q) and nothing is staged. The buffers (for every thread's range) are cached per
// calling thread and only grow: no allocation on the hot path.
//
// Transposed convolution (conv_transpose2d_*): the adjoint of a conv2d, so no kernels of its
// own: its forward is that conv2d's input gradient (GEMM + col2im) plus a bias pass, its input
// gradient that conv2d's forward, its weight gradient that conv2d's weight gradient with input
// and output exchanged.
//
// Special paths:
//   1x1, stride 1, no padding: the image is already the (C, H*W) column matrix. The forward and
//     the input gradient are one GEMM per image, straight between the NCHW tensors; the weight
//     gradient reads the images in place too (dot tiles), or gathers chunks of them (GEMM).
//   direct (one group, stride 1 along W, C*R*S <= conv2d_direct_limit(), 160 by default): few
//     input channels make the column matrix many times the input and its GEMM a few rows tall,
//     so the forward keeps a block of output channels x two vectors of columns in registers over
//     every tap, reading padded input rows in place (conv_kernels.h direct_row); the input
//     gradient (stride 1, padding within the kernel's extent, K*R*S within the limit) is the same
//     pass over the output gradient padded by the extent, taps flipped, C and K exchanged. Threads
//     take ranges of output rows. Where the output channels fill more vector lanes than the
//     columns do (LeNet's second layer: 16 channels, rows of 10), the same sums run with the
//     channels across the lanes (pixels_row: tiles of columns x one vector of channels). The
//     weight gradient of a direct shape with a 3- or 5-wide kernel and channels filling >= 3/4 of
//     the lanes runs the same way (weight_channel): dY transposed to channels-fastest rows once,
//     then per (input channel, vector of output channels) every tap's sum over the images, rows
//     of taps in registers, no im2col (3.5x faster than dot tiles on LeNet's second layer).
//     With few output channels but rows that fill the lanes (LeNet's first layer: 6 channels,
//     rows of 28), the weight gradient is instead dot products along the rows of the padded input
//     planes, read in place (weight_row_dots: a few channels x a row of taps in registers).
//   depthwise (C/G == 1): direct loops over the R x S taps, one vector of outputs kept in a
//     register over all taps (the input gradient of stride 1 likewise, as a pass of the flipped
//     taps over the zero-padded output gradient); a GEMM with one row per group would run
//     almost empty.
//
// Threading (OpenMP via run_parallel). Forward and input gradient: when the images share out
// evenly and one image fits a thread's share of the budget, each thread takes a contiguous
// range of images and runs im2col, the GEMM (alone on its thread: a nested region) and the
// copy-out without a single barrier; otherwise one range, each stage threaded: im2col pads the
// planes, then gathers rows over (column row, image) pairs, with one barrier between; col2im
// runs over (image, input channel) planes; the GEMMs thread themselves. Weight gradient: fixed
// chunks of the whole batch, dot tiles split over threads (each tile by one thread) or the
// threaded GEMM. Per-image GEMMs (1x1) run one image per thread at a time. The depthwise loops
// run over input planes (forward, input gradient) and output channels (weight gradient, the
// images summed in order). Every output element is computed by one thread in one order, so
// results are bitwise the same for any thread count. No region throws: buffers are taken
// before it starts.
#include "cpu/conv.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "common/finite.h"
#include "common/threads.h"
#include "common/workspace.h"
#include "cpu/conv_kernels.h"
#include "cpu/gemm.h"

namespace fastnn {

bool conv2d_output_size(Conv2dShape* s) {
  const int64_t h = s->H + s->pad_top + s->pad_bottom, w = s->W + s->pad_left + s->pad_right;
  const int64_t kh = s->dil_h * (s->R - 1) + 1, kw = s->dil_w * (s->S - 1) + 1;
  if (h < kh || w < kw) {
    s->P = s->Q = 0;
    return false;
  }
  s->P = (h - kh) / s->stride_h + 1;
  s->Q = (w - kw) / s->stride_w + 1;
  return true;
}

const ConvKernels& conv_kernels_for(Isa isa) {
  switch (isa) {
    case Isa::avx512: return conv_kernels_avx512();
    case Isa::avx2: return conv_kernels_avx2();
    default: return conv_kernels_ref();
  }
}

namespace {

std::atomic<int64_t> g_budget_bytes{int64_t(2) << 20};

thread_local Workspace tls_col, tls_stage, tls_padded, tls_planes;
thread_local std::vector<double> tls_tap_sums;
thread_local std::vector<float> tls_weights;  // a weight repacked for one call (taps flipped, axes swapped)

// A chunk: images [n0, n0 + nb) and output rows [p0, p1) of each (nb > 1 only with all rows).
struct Chunk {
  int64_t n0, nb, p0, p1;
  bool whole(const Conv2dShape& s) const { return p0 == 0 && p1 == s.P; }
};

bool has_padding(const Conv2dShape& s) { return s.pad_top || s.pad_bottom || s.pad_left || s.pad_right; }

// The sizes derived once per call, and the chunk shape.
struct Dims {
  int64_t Cg, Kg, RS, CRSg, CRS, HW, PQ;
  int64_t Wp;       // row stride of a padded plane
  bool padded;      // whether planes are copied with their zero padding (else read in place)
  int64_t images_per_chunk, rows_per_chunk;

  // Chunks of `images` images (or of rows of one) within `budget` floats.
  Dims(const Conv2dShape& s, int64_t staged_rows, int64_t budget, int64_t images) {
    Cg = s.C / s.G;
    Kg = s.K / s.G;
    RS = s.R * s.S;
    CRSg = Cg * RS;
    CRS = s.C * RS;
    HW = s.H * s.W;
    PQ = s.P * s.Q;
    padded = has_padding(s);
    Wp = s.W + s.pad_left + s.pad_right;
    // Floats of one chunk of `rows` output rows of one image: its columns, the staged rows and
    // its padded input rows (rows * sh + extent - sh of them).
    const int64_t per_row = (CRS + staged_rows) * s.Q + (padded ? s.C * s.stride_h * Wp : 0);
    const int64_t fixed = padded ? s.C * ((s.R - 1) * s.dil_h + 1 - s.stride_h) * Wp : 0;
    budget = std::max<int64_t>(1, budget);
    const int64_t per_image = std::max<int64_t>(1, per_row * s.P + fixed);
    if (per_image <= budget) {
      const int64_t fit = std::max<int64_t>(1, std::min(images, budget / per_image));
      const int64_t chunks = std::max<int64_t>(1, (images + fit - 1) / fit);
      images_per_chunk = std::max<int64_t>(1, (images + chunks - 1) / chunks);  // even chunks
      rows_per_chunk = s.P;
    } else {
      images_per_chunk = 1;
      const int64_t fit = std::max<int64_t>(1, (budget - fixed) / std::max<int64_t>(per_row, 1));
      const int64_t blocks = (s.P + fit - 1) / fit;
      rows_per_chunk = (s.P + blocks - 1) / blocks;
    }
  }
  int64_t max_columns(const Conv2dShape& s) const { return images_per_chunk * rows_per_chunk * s.Q; }
  int64_t col_floats(const Conv2dShape& s) const { return CRS * max_columns(s); }
  int64_t stage_floats(const Conv2dShape& s) const { return images_per_chunk > 1 ? s.K * max_columns(s) : 0; }
  int64_t padded_floats(const Conv2dShape& s) const {
    return padded ? images_per_chunk * s.C * pad_rows(s, rows_per_chunk) * Wp : 0;
  }
  // Padded input rows that output rows [p0, p1) read: [p0 * sh, p0 * sh + pad_rows) (padded coordinates).
  int64_t pad_rows(const Conv2dShape& s, int64_t rows) const { return (rows - 1) * s.stride_h + (s.R - 1) * s.dil_h + 1; }
};

int64_t budget_floats() { return conv2d_workspace_budget() / static_cast<int64_t>(sizeof(float)); }

// The threads for one stage: `requested` (1 inside a caller's parallel image range), or, with
// 0, as many as the work is worth, at most one per item.
int stage_threads(int requested, double work, int64_t items) {
  if (requested > 0) return requested;
  return threads_for_items(work, items);
}

// Whether images can be shared out, one contiguous range per thread, evenly enough.
int image_teams(int64_t N) {
  const int nt = get_num_threads();
  if (nt <= 1 || !openmp_enabled() || N < nt || !(N % nt == 0 || N >= 4 * nt)) return 1;
  return nt;
}

// The image ranges of the forward and the input gradient: one per thread (image_teams) when a
// whole image fits each thread's share of the budget. Then every chunk holds whole images and
// the input gradient does not depend on the chunking; chunks of rows of an image (one range,
// the whole budget) add their partial sums into the rows they share, in an order that depends
// on the row blocks, which must then not depend on the thread count.
int range_teams(const Conv2dShape& s) {
  const int teams = image_teams(s.N);
  if (teams == 1) return 1;
  const Dims one(s, s.K, budget_floats() / teams, 1);
  return one.rows_per_chunk == s.P ? teams : 1;
}

template <class Fn>
void for_each_chunk(const Conv2dShape& s, const Dims& d, int64_t n_begin, int64_t n_end, Fn fn) {
  for (int64_t n0 = n_begin; n0 < n_end; n0 += d.images_per_chunk) {
    const int64_t nb = std::min(d.images_per_chunk, n_end - n0);
    for (int64_t p0 = 0; p0 < s.P; p0 += d.rows_per_chunk) fn(Chunk{n0, nb, p0, std::min(s.P, p0 + d.rows_per_chunk)});
  }
}

// buf (Hb, Wb) = zeros with plane x (H, W) placed at row oy, column ox of it (a negative offset
// crops the plane). The interior rows go through the vector copy of the ISA's kernels.
void place_plane(float* buf, int64_t Hb, int64_t Wb, const float* x, int64_t H, int64_t W, int64_t oy, int64_t ox,
                 const ConvKernels& k) {
  std::memset(buf, 0, sizeof(float) * Hb * Wb);
  const int64_t i0 = std::max<int64_t>(0, -oy), i1 = std::min(H, Hb - oy);
  const int64_t j0 = std::max<int64_t>(0, -ox), j1 = std::min(W, Wb - ox);
  if (i1 > i0 && j1 > j0) k.gather_rows(buf + (i0 + oy) * Wb + j0 + ox, Wb, x + i0 * W + j0, W, 1, i1 - i0, j1 - j0);
}

// dst (rows, Wp) = padded rows [row0, row0 + rows) of plane x (H, W) with its zero padding.
void pad_plane(float* dst, const float* x, const Conv2dShape& s, int64_t Wp, int64_t row0, int64_t rows,
               const ConvKernels& k) {
  place_plane(dst, rows, Wp, x, s.H, s.W, s.pad_top - row0, s.pad_left, k);
}

// ---- im2col / col2im ------------------------------------------------------------------------

// col (C*R*S, L) for chunk ch; column (i, p - p0, q), L = nb * (p1 - p0) * Q. `padded` holds
// room for the chunk's padded planes (nb * C * pad_rows * Wp floats) when d.padded.
void im2col(float* col, float* padded, const float* input, const Conv2dShape& s, const Dims& d, const Chunk& ch,
            const ConvKernels& k, int requested_threads) {
  const int64_t rows = ch.p1 - ch.p0, per_image = rows * s.Q, L = ch.nb * per_image;
  const int64_t row0 = ch.p0 * s.stride_h, prow = d.pad_rows(s, rows);
  const int64_t plane = d.padded ? prow * d.Wp : d.HW;  // stride between the planes read
  const float* planes = d.padded ? padded : input + ch.n0 * s.C * d.HW + row0 * s.W;
  const int64_t items = d.CRS * ch.nb, planes_count = ch.nb * s.C;
  const int threads = stage_threads(requested_threads, static_cast<double>(d.CRS) * L, items);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t t0, t1;
    if (d.padded) {
      split_range(planes_count, tid, nt, &t0, &t1);
      for (int64_t t = t0; t < t1; ++t)
        pad_plane(padded + t * plane, input + (ch.n0 * s.C + t) * d.HW, s, d.Wp, row0, prow, k);
      team_barrier(nt);
    }
    split_range(items, tid, nt, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t row = t / ch.nb, i = t % ch.nb;
      const int64_t c = row / d.RS, r = (row / s.S) % s.R, u = row % s.S;
      const float* src = planes + (i * s.C + c) * plane + r * s.dil_h * d.Wp + u * s.dil_w;
      k.gather_rows(col + row * L + i * per_image, s.Q, src, s.stride_h * d.Wp, s.stride_w, rows, s.Q);
    }
  });
}

// grad_input planes of chunk ch get the columns of dcol added back where im2col took them
// (written for a chunk that starts at row 0; added to the rows of the chunks before,
// otherwise). Each thread owns whole planes. Stride 1: the gather form, each element summed in
// registers over its taps and written once. Strided: the taps scattered into a padded plane
// (`scratch`, one per thread, when d.padded), then copied out.
void col2im(float* grad_input, const float* dcol, float* scratch, const Conv2dShape& s, const Dims& d,
            const Chunk& ch, const ConvKernels& k, int threads) {
  const int64_t rows = ch.p1 - ch.p0, per_image = rows * s.Q, L = ch.nb * per_image;
  const int64_t row0 = ch.p0 * s.stride_h, prow = d.pad_rows(s, rows);
  const int64_t items = ch.nb * s.C;
  const bool whole = ch.whole(s);
  if (s.stride_h == 1 && s.stride_w == 1) {  // gather form: each element written once
    run_parallel(threads, [&](int tid, int nt) {
      int64_t t0, t1;
      split_range(items, tid, nt, &t0, &t1);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = t / s.C, c = t % s.C;
        k.col2im_plane(grad_input + ((ch.n0 + i) * s.C + c) * d.HW, s.H, s.W, dcol + c * d.RS * L + i * per_image, L,
                       rows, s.Q, s.R, s.S, s.dil_h, s.dil_w, s.pad_top - row0, s.pad_left, ch.p0 > 0);
      }
    });
    return;
  }
  run_parallel(threads, [&](int tid, int nt) {
    int64_t t0, t1;
    split_range(items, tid, nt, &t0, &t1);
    float* buf = scratch + tid * prow * d.Wp;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i = t / s.C, c = t % s.C;
      float* dx = grad_input + ((ch.n0 + i) * s.C + c) * d.HW;
      if (ch.p0 == 0 && (!whole || !d.padded)) std::memset(dx, 0, sizeof(float) * d.HW);
      float* target = d.padded ? buf : dx + row0 * s.W;  // unpadded: add straight into the plane
      if (d.padded) std::memset(buf, 0, sizeof(float) * prow * d.Wp);
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t u = 0; u < s.S; ++u)
          k.scatter_add_rows(target + r * s.dil_h * d.Wp + u * s.dil_w,
                             dcol + ((c * s.R + r) * s.S + u) * L + i * per_image, s.stride_h * d.Wp, s.stride_w, rows,
                             s.Q);
      if (!d.padded) continue;
      for (int64_t ih = 0; ih < s.H; ++ih) {  // the padded window back into the plane
        const int64_t j = ih + s.pad_top - row0;
        float* dst = dx + ih * s.W;
        if (j < 0 || j >= prow) {
          if (whole) std::memset(dst, 0, sizeof(float) * s.W);
          continue;
        }
        const float* src = buf + j * d.Wp + s.pad_left;
        if (whole) {
          std::memcpy(dst, src, sizeof(float) * s.W);
        } else {
          for (int64_t w = 0; w < s.W; ++w) dst[w] += src[w];
        }
      }
    }
  });
}

// staged (K, L) column block of image i <-> NCHW rows of images n0.. (gather, or scatter back).
void stage_rows(float* staged, float* nchw, const Conv2dShape& s, const Dims& d, const Chunk& ch, bool gather,
                int requested_threads) {
  const int64_t L = ch.nb * d.PQ, items = ch.nb * s.K;
  const int threads = stage_threads(requested_threads, static_cast<double>(s.K) * L, items);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t t0, t1;
    split_range(items, tid, nt, &t0, &t1);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t kk = t / ch.nb, i = t % ch.nb;
      float* a = staged + kk * L + i * d.PQ;
      float* b = nchw + ((ch.n0 + i) * s.K + kk) * d.PQ;
      if (gather)
        std::memcpy(a, b, sizeof(float) * d.PQ);
      else
        std::memcpy(b, a, sizeof(float) * d.PQ);
    }
  });
}

// Runs fn(n) for every image: one image per thread at a time (each GEMM inside then runs on
// its thread alone) when the images share out evenly, else image after image with every
// thread in each GEMM. The per-image results do not depend on which way was taken.
template <class Fn>
void for_each_image(int64_t N, double work_per_image, Fn fn) {
  const int nt = get_num_threads();
  const bool by_image = nt > 1 && threads_for_work(work_per_image * N) > 1 && (N % nt == 0 || N >= 4 * nt);
  if (by_image) {
    run_parallel(static_cast<int>(std::min<int64_t>(nt, N)), [&](int tid, int team) {
      int64_t n0, n1;
      split_range(N, tid, team, &n0, &n1);
      for (int64_t n = n0; n < n1; ++n) fn(n);
    });
  } else {
    for (int64_t n = 0; n < N; ++n) fn(n);
  }
}

// gw (M, N) (+)= sum over segments of a rows . b rows (ConvKernels::dot_tile), the tiles split
// over threads, each tile computed by one thread; b-major tile order, so consecutive tiles
// share the (larger) b rows. The segments are taken in blocks whose M + N rows fill about
// 512 KiB, so a block stays in the thread's L2 while all its tiles read it (each row is read
// by N/nr or M/mr tiles); the block sums are added in order, so the blocking, fixed by the
// shape, is the same for any thread count.
void weight_grad_dots(float* gw, int64_t M, int64_t N, const float* a, int64_t lda, int64_t a_seg, const float* b,
                      int64_t ldb, int64_t b_seg, int64_t segments, int64_t len, bool accumulate, const ConvKernels& k) {
  const int64_t mr = k.dot_mr, nr = k.dot_nr;
  const int64_t tm = (M + mr - 1) / mr, tn = (N + nr - 1) / nr, tiles = tm * tn;
  const int64_t block = std::max<int64_t>(256, (int64_t(128) << 10) / (M + N)) / 16 * 16;  // floats per row
  // Either blocks of whole segments, or (one long segment) blocks of one segment's columns.
  const bool split_segment = segments == 1 && len > block;
  const int64_t seg_per_block = split_segment ? 1 : std::max<int64_t>(1, block / std::max<int64_t>(len, 1));
  const int64_t blocks = split_segment ? (len + block - 1) / block : (segments + seg_per_block - 1) / seg_per_block;
  const int threads = threads_for_items(static_cast<double>(M) * N * segments * len, tiles);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t t0, t1;
    split_range(tiles, tid, nt, &t0, &t1);
    for (int64_t q = 0; q < blocks; ++q) {
      int64_t offset, nseg, n_len;
      if (split_segment) {
        offset = q * block;
        nseg = 1;
        n_len = std::min(block, len - offset);
      } else {
        offset = 0;
        nseg = std::min(seg_per_block, segments - q * seg_per_block);
        n_len = len;
      }
      const float* aq = a + (split_segment ? offset : q * seg_per_block * a_seg);
      const float* bq = b + (split_segment ? offset : q * seg_per_block * b_seg);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t i = (t % tm) * mr, j = (t / tm) * nr;
        k.dot_tile(gw + i * N + j, N, static_cast<int>(std::min(mr, M - i)), static_cast<int>(std::min(nr, N - j)),
                   aq + i * lda, lda, a_seg, bq + j * ldb, ldb, b_seg, nseg, n_len, accumulate || q > 0);
      }
    }
  });
}

// Whether the weight gradient goes through dot tiles rather than the GEMM: when its (Kg, CRSg)
// output is small (LeNet: 6 x 25, 16 x 150; a first CIFAR layer: 32 x 27), the GEMM's
// transposing packs of the two long operands cost more than the products (2.5x slower for
// LeNet's conv1); for larger outputs the GEMM's register tiles win (2.6x for 128 x 576).
bool weight_grad_by_dots(const Dims& d) { return d.Kg * d.CRSg <= 4096; }

bool is_pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && !has_padding(s);
}

bool is_depthwise(const Conv2dShape& s) { return s.C / s.G == 1 && s.G > 1; }

// ---- bias gradient ------------------------------------------------------------------------------

// The sum of a float row in 8 lanes (vectorizable without reassociation flags), lanes in a fixed order.
float row_sum(const float* __restrict x, int64_t n) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += x[j + l];
  float total = ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
  for (; j < n; ++j) total += x[j];
  return total;
}

// sums[k] = sum over images (in order) of the row sums of plane x[n, k] (N, K, plane), in double.
void channel_sums(float* sums, const float* x, int64_t N, int64_t K, int64_t plane) {
  const int threads = threads_for_items(static_cast<double>(N) * K * plane, K);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t k0, k1;
    split_range(K, tid, nt, &k0, &k1);
    for (int64_t kk = k0; kk < k1; ++kk) {
      double total = 0.0;
      for (int64_t n = 0; n < N; ++n) total += row_sum(x + (n * K + kk) * plane, plane);
      sums[kk] = static_cast<float>(total);
    }
  });
}

// all_finite over a whole tensor, threaded.
bool all_finite_parallel(const float* x, int64_t n) {
  std::atomic<bool> bad{false};
  run_parallel(threads_for_work(static_cast<double>(n), 1 << 18), [&](int tid, int nt) {
    int64_t i0, i1;
    split_range(n, tid, nt, &i0, &i1);
    if (!all_finite(x + i0, i1 - i0)) bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

// out[n, k] += bias[k] over planes of `plane` floats, (N, K, plane).
void add_channel_bias(float* out, const float* bias, int64_t N, int64_t K, int64_t plane) {
  const int threads = threads_for_items(static_cast<double>(N) * K * plane, N * K);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t i0, i1;
    split_range(N * K, tid, nt, &i0, &i1);
    for (int64_t i = i0; i < i1; ++i) {
      float* __restrict row = out + i * plane;
      const float b = bias[i % K];
      for (int64_t j = 0; j < plane; ++j) row[j] += b;
    }
  });
}

// ---- depthwise: direct loops over padded planes -------------------------------------------------

ConvTaps taps_of(const Conv2dShape& s) {
  return ConvTaps{s.W + s.pad_left + s.pad_right, s.P, s.Q, s.R, s.S, s.stride_h, s.stride_w, s.dil_h, s.dil_w};
}

// The padded plane of input plane x: x itself without padding, else a copy into buf.
const float* padded_plane(float* buf, const float* x, const Conv2dShape& s, const ConvTaps& t, const ConvKernels& k) {
  if (!has_padding(s)) return x;
  pad_plane(buf, x, s, t.Wp, 0, s.H + s.pad_top + s.pad_bottom, k);
  return buf;
}

// True when an input plane holds a NaN or infinity (checked while the plane is in cache: the
// fused ReLU would hide a NaN in the output).
bool depthwise_forward(float* out, const float* input, const float* weight, const float* bias, bool relu,
                       const Conv2dShape& s, const ConvKernels& k) {
  const ConvTaps t = taps_of(s);
  const int64_t Kg = s.K / s.G, PQ = s.P * s.Q, RS = s.R * s.S, HW = s.H * s.W, items = s.N * s.C;
  const int64_t plane = (s.H + s.pad_top + s.pad_bottom) * t.Wp;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * RS, items);
  float* scratch = tls_planes.get(threads * plane);
  std::atomic<bool> nonfinite{false};
  run_parallel(threads, [&](int tid, int nt) {
    int64_t t0, t1;
    split_range(items, tid, nt, &t0, &t1);
    bool bad = false;
    for (int64_t it = t0; it < t1; ++it) {  // input plane (n, c) feeds output channels c*Kg ..
      const int64_t n = it / s.C, c = it % s.C;
      bad = bad || !all_finite(input + it * HW, HW);
      const float* x = padded_plane(scratch + tid * plane, input + it * HW, s, t, k);
      for (int64_t m = 0; m < Kg; ++m) {
        const int64_t kk = c * Kg + m;
        k.depthwise_forward(out + (n * s.K + kk) * PQ, x, weight + kk * RS, bias ? bias[kk] : 0.0f, relu, false, t);
      }
    }
    if (bad) nonfinite.store(true, std::memory_order_relaxed);
  });
  return nonfinite.load();
}

// grad_input plane (n, c) = sum over its Kg output channels and the taps of w * grad_out.
// Stride 1: a forward depthwise pass of grad_out, zero-padded by the kernel extent minus the
// padding on each side, with the taps flipped, straight into grad_input, each element summed in
// registers. Strided: scattered tap by tap into a padded plane, then copied out.
void depthwise_backward_input(float* grad_input, const float* grad_out, const float* weight, const Conv2dShape& s,
                              const ConvKernels& k) {
  const int64_t Kg = s.K / s.G, PQ = s.P * s.Q, HW = s.H * s.W, RS = s.R * s.S, items = s.N * s.C;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * RS, items);
  if (s.stride_h == 1 && s.stride_w == 1) {
    const int64_t ext_h = (s.R - 1) * s.dil_h, ext_w = (s.S - 1) * s.dil_w;
    const int64_t Hb = s.H + ext_h, Wb = s.W + ext_w;
    const ConvTaps t{Wb, s.H, s.W, s.R, s.S, 1, 1, s.dil_h, s.dil_w};
    float* scratch = tls_planes.get(threads * Hb * Wb);
    tls_weights.resize(static_cast<size_t>(s.K * RS));  // the taps reversed, per output channel
    float* flipped = tls_weights.data();
    for (int64_t kk = 0; kk < s.K; ++kk)
      for (int64_t j = 0; j < RS; ++j) flipped[kk * RS + j] = weight[kk * RS + RS - 1 - j];
    run_parallel(threads, [&](int tid, int nt) {
      int64_t t0, t1;
      split_range(items, tid, nt, &t0, &t1);
      float* buf = scratch + tid * Hb * Wb;
      for (int64_t it = t0; it < t1; ++it) {
        const int64_t n = it / s.C, c = it % s.C;
        for (int64_t m = 0; m < Kg; ++m) {
          const int64_t kk = c * Kg + m;
          place_plane(buf, Hb, Wb, grad_out + (n * s.K + kk) * PQ, s.P, s.Q, ext_h - s.pad_top, ext_w - s.pad_left, k);
          k.depthwise_forward(grad_input + it * HW, buf, flipped + kk * RS, 0.0f, false, m > 0, t);
        }
      }
    });
    return;
  }
  const ConvTaps t = taps_of(s);
  const int64_t plane = (s.H + s.pad_top + s.pad_bottom) * t.Wp;
  float* scratch = tls_planes.get(threads * plane);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t t0, t1;
    split_range(items, tid, nt, &t0, &t1);
    float* buf = scratch + tid * plane;
    for (int64_t it = t0; it < t1; ++it) {
      const int64_t n = it / s.C, c = it % s.C;
      float* dx = grad_input + it * HW;
      std::memset(buf, 0, sizeof(float) * plane);
      for (int64_t m = 0; m < Kg; ++m) {
        const int64_t kk = c * Kg + m;
        k.depthwise_backward_input(buf, grad_out + (n * s.K + kk) * PQ, weight + kk * RS, t);
      }
      k.gather_rows(dx, s.W, buf + s.pad_top * t.Wp + s.pad_left, t.Wp, 1, s.H, s.W);
    }
  });
}

// grad_weight[k, 0, r, s] = sum over images (in order) of each image's float sum, in double.
void depthwise_backward_weight(float* grad_weight, const float* grad_out, const float* input, const Conv2dShape& s,
                               const ConvKernels& k) {
  const ConvTaps t = taps_of(s);
  const int64_t Kg = s.K / s.G, PQ = s.P * s.Q, HW = s.H * s.W, RS = s.R * s.S;
  const int64_t plane = (s.H + s.pad_top + s.pad_bottom) * t.Wp;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * RS, s.K);
  float* scratch = tls_planes.get(threads * plane);
  tls_tap_sums.resize(static_cast<size_t>(threads * RS));  // before the region: it may allocate
  double* tap_sums = tls_tap_sums.data();
  run_parallel(threads, [&](int tid, int nt) {
    int64_t k0, k1;
    split_range(s.K, tid, nt, &k0, &k1);
    double* sums = tap_sums + tid * RS;
    for (int64_t kk = k0; kk < k1; ++kk) {
      const int64_t c = kk / Kg;
      std::fill(sums, sums + RS, 0.0);
      for (int64_t n = 0; n < s.N; ++n) {
        const float* x = padded_plane(scratch + tid * plane, input + (n * s.C + c) * HW, s, t, k);
        k.depthwise_backward_weight(sums, grad_out + (n * s.K + kk) * PQ, x, t);
      }
      for (int64_t j = 0; j < RS; ++j) grad_weight[kk * RS + j] = static_cast<float>(sums[j]);
    }
  });
}

// ---- direct: few input channels, no im2col --------------------------------------------------

// With few input channels the column matrix is many times the input (25x for LeNet's first
// layer) and its GEMM has a handful of output rows; a direct loop keeps a block of output
// channels x two vectors of columns in registers over every tap, reading the (padded) input rows
// in place. Used when C * R * S is at most this many taps (one group, stride 1 along W).
std::atomic<int64_t> g_direct_limit{160};

// dst (cols, rows) = src (rows, cols) transposed: the direct paths' channels-fastest copies of a
// weight or an output gradient, and back.
void transpose(float* dst, const float* src, int64_t rows, int64_t cols) {
  transpose_copy(src, cols, rows, cols, dst, rows);
}

bool use_direct(int64_t reduction, const Conv2dShape& s) {
  return s.G == 1 && s.stride_w == 1 && reduction <= g_direct_limit.load(std::memory_order_relaxed);
}

// The share of the lanes doing work when n values are laid across vectors of `width` lanes.
double lane_use(int64_t n, int width) {
  return static_cast<double>(n) / static_cast<double>((n + width - 1) / width * width);
}

// direct_row (columns across the lanes) or pixels_row (output channels across them), whichever
// fills more lanes; a tie keeps direct_row. Both sum the same products in the same order.
auto direct_row_for(int64_t channels, int64_t columns, const ConvKernels& k) {
  return lane_use(channels, k.width) > lane_use(columns, k.width) ? k.pixels_row : k.direct_row;
}

// out (N, K, P, Q) by direct rows: threads take contiguous ranges of the N * P output rows, each
// padding its current image's C planes into its own buffer. wt is the weight with the output
// channel fastest: wt[((c * R + r) * S + s) * K + k]. Returns true when an input plane held a NaN
// or infinity (checked when the image is padded).
bool direct_forward(float* out, const float* input, const float* weight, const float* bias, bool relu,
                    const Conv2dShape& s, const ConvKernels& k) {
  const int64_t RS = s.R * s.S, CRS = s.C * RS, HW = s.H * s.W, PQ = s.P * s.Q;
  const ConvTaps t = taps_of(s);
  const int64_t plane = (s.H + s.pad_top + s.pad_bottom) * t.Wp;
  tls_weights.resize(static_cast<size_t>(s.K * CRS));
  float* wt = tls_weights.data();
  transpose(wt, weight, s.K, CRS);
  const int64_t rows = s.N * s.P;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * CRS, rows);
  const bool padded = has_padding(s);
  float* scratch = padded ? tls_planes.get(threads * s.C * plane) : nullptr;
  const auto row_kernel = direct_row_for(s.K, s.Q, k);
  std::atomic<bool> nonfinite{false};
  run_parallel(threads, [&](int tid, int nt) {
    int64_t r0, r1;
    split_range(rows, tid, nt, &r0, &r1);
    float* buf = padded ? scratch + tid * s.C * plane : nullptr;
    const float* image = nullptr;
    int64_t current = -1;
    bool bad = false;
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row / s.P, p = row % s.P;
      if (n != current) {
        const float* x = input + n * s.C * HW;
        bad = bad || !all_finite(x, s.C * HW);
        if (padded)
          for (int64_t c = 0; c < s.C; ++c) pad_plane(buf + c * plane, x + c * HW, s, t.Wp, 0, plane / t.Wp, k);
        image = padded ? buf : x;
        current = n;
      }
      row_kernel(out + n * s.K * PQ + p * s.Q, PQ, image + p * s.stride_h * t.Wp, plane, wt, bias, s.K, s.C, relu, t);
    }
    if (bad) nonfinite.store(true, std::memory_order_relaxed);
  });
  return nonfinite.load();
}

// Whether the input gradient can run as a direct stride-1 pass over the output gradient: the
// padding on each side within the kernel's extent (so the output gradient padded by the extent
// minus the padding covers every tap).
bool direct_input_gradient_fits(const Conv2dShape& s) {
  const int64_t ext_h = (s.R - 1) * s.dil_h, ext_w = (s.S - 1) * s.dil_w;
  return s.stride_h == 1 && s.pad_top <= ext_h && s.pad_bottom <= ext_h && s.pad_left <= ext_w &&
         s.pad_right <= ext_w && use_direct(s.K * s.R * s.S, s);
}

// grad_input (N, C, H, W) as a direct stride-1 convolution of grad_out, zero-padded by the
// kernel's extent minus the padding on each side, with the taps flipped and the roles of C and
// K exchanged: dx[c, ih, iw] = sum over k, r, s of w[k, c, R-1-r, S-1-s] * dy_padded[k, ih + r dh, iw + s dw].
void direct_backward_input(float* grad_input, const float* grad_out, const float* weight, const Conv2dShape& s,
                           const ConvKernels& k) {
  const int64_t RS = s.R * s.S, CRS = s.C * RS, HW = s.H * s.W, PQ = s.P * s.Q;
  const int64_t ext_h = (s.R - 1) * s.dil_h, ext_w = (s.S - 1) * s.dil_w;
  const int64_t Hb = s.H + ext_h, Wb = s.W + ext_w, plane = Hb * Wb;
  const ConvTaps t{Wb, s.H, s.W, s.R, s.S, 1, 1, s.dil_h, s.dil_w};
  tls_weights.resize(static_cast<size_t>(s.K * CRS));
  float* wt = tls_weights.data();  // wt[((k * R + r) * S + s) * C + c] = w[k, c, R-1-r, S-1-s]
  for (int64_t kk = 0; kk < s.K; ++kk)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t j = 0; j < RS; ++j) wt[(kk * RS + j) * s.C + c] = weight[(kk * s.C + c) * RS + RS - 1 - j];
  const int64_t rows = s.N * s.H;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * CRS, rows);
  float* scratch = tls_planes.get(threads * s.K * plane);
  const auto row_kernel = direct_row_for(s.C, s.W, k);
  run_parallel(threads, [&](int tid, int nt) {
    int64_t r0, r1;
    split_range(rows, tid, nt, &r0, &r1);
    float* buf = scratch + tid * s.K * plane;
    int64_t current = -1;
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row / s.H, ih = row % s.H;
      if (n != current) {
        for (int64_t kk = 0; kk < s.K; ++kk)
          place_plane(buf + kk * plane, Hb, Wb, grad_out + (n * s.K + kk) * PQ, s.P, s.Q, ext_h - s.pad_top,
                      ext_w - s.pad_left, k);
        current = n;
      }
      row_kernel(grad_input + n * s.C * HW + ih * s.W, HW, buf + ih * Wb, plane, wt, nullptr, s.C, s.K, false, t);
    }
  });
}

// The shapes both direct weight-gradient kernels take: a direct-path shape (few input channels,
// not 1x1) with a 3- or 5-wide kernel, stride 1 and no dilation along W.
bool direct_weight_shape(const Conv2dShape& s) {
  return !is_pointwise(s) && use_direct(s.C * s.R * s.S, s) && s.dil_w == 1 && (s.S == 3 || s.S == 5);
}

// The padded plane of input channel c of image n for a thread's run of work items (c-major, so
// consecutive items share it): padded again only when c changes.
struct PlaneCache {
  float* buf;  // null without padding: the input plane itself
  int64_t c = -1;
  const float* plane = nullptr;
  const float* get(const float* input, int64_t n, int64_t c_wanted, const Conv2dShape& s, const ConvTaps& t,
                   const ConvKernels& k) {
    if (c_wanted != c) {
      plane = padded_plane(buf, input + (n * s.C + c_wanted) * s.H * s.W, s, t, k);
      c = c_wanted;
    }
    return plane;
  }
};

// Whether the weight gradient can run as direct loops with the output channels across the
// lanes (ConvKernels::weight_channel): a direct-path shape, stride 1 and no dilation along W,
// a 3- or 5-wide kernel, channels filling at least 3/4 of the lanes (LeNet's 16 of 16), and
// output planes of at most 256 pixels. With few input channels the column matrix im2col writes
// is many times the input, and the GEMM or dot tiles over it run at a fraction of the direct
// loops' speed on small planes (LeNet conv2, 10x10: 3.5x faster); on CIFAR's first layer (32x32
// planes, 32 channels) the direct loops measured 2.4x slower than the dot tiles, so larger
// planes keep those.
bool direct_weight_gradient_fits(const Conv2dShape& s, const ConvKernels& k) {
  return k.weight_channel && direct_weight_shape(s) && lane_use(s.K, k.width) >= 0.75 && s.P * s.Q <= 256;
}

// grad_weight by direct loops: dY is transposed to channels-fastest rows (dyt, one pass), then
// each work item, an input channel x a vector of output channels, runs over the images in order,
// summing every tap's products into dwt[(c, r, s)][k] (one thread per item: the same bits for any
// thread count). dwt is transposed into grad_weight (K, C, R, S) at the end.
void direct_backward_weight(float* grad_weight, const float* grad_out, const float* input, const Conv2dShape& s,
                            const ConvKernels& k) {
  const int64_t RS = s.R * s.S, CRS = s.C * RS, PQ = s.P * s.Q;
  const ConvTaps t = taps_of(s);
  const int64_t plane = (s.H + s.pad_top + s.pad_bottom) * t.Wp;
  const int64_t k_blocks = (s.K + k.width - 1) / k.width, items = s.C * k_blocks;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * CRS, items);
  float* dyt = tls_stage.get(s.N * PQ * s.K);
  float* dwt = tls_col.get(CRS * s.K);
  const bool padded = has_padding(s);
  float* scratch = padded ? tls_planes.get(threads * plane) : nullptr;
  run_parallel(threads, [&](int tid, int nt) {
    int64_t n0, n1;
    split_range(s.N, tid, nt, &n0, &n1);
    for (int64_t n = n0; n < n1; ++n) transpose(dyt + n * PQ * s.K, grad_out + n * s.K * PQ, s.K, PQ);
    team_barrier(nt);
    int64_t i0, i1;
    split_range(items, tid, nt, &i0, &i1);
    // Images outside, items inside: an image's dyt rows stay in cache over this thread's items
    // (item after item over all images ran 10x slower on 32x32 planes); each item still sums the
    // images in order.
    for (int64_t n = 0; n < s.N; ++n) {
      PlaneCache x{padded ? scratch + tid * plane : nullptr};
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t c = item / k_blocks, k0 = item % k_blocks * k.width, kb = std::min<int64_t>(k.width, s.K - k0);
        k.weight_channel(dwt + c * RS * s.K + k0, x.get(input, n, c, s, t, k), dyt + n * PQ * s.K + k0, s.K, kb,
                         n > 0, t);
      }
    }
  });
  transpose(grad_weight, dwt, CRS, s.K);
}

// Whether the weight gradient can run as dot products along the rows of the (padded) input
// planes, read in place (ConvKernels::weight_row_dots): a direct weight-gradient shape with rows
// filling >= 3/4 of the lanes and at most 8 output channels. For few output channels (LeNet's
// first layer: 6, 1.4x faster than the dot tiles); with 32 (CIFAR's first layer) the dot tiles
// over im2col's columns measured 2.5x faster.
bool row_dots_weight_gradient_fits(const Conv2dShape& s, const ConvKernels& k) {
  return k.weight_row_dots && direct_weight_shape(s) && s.K <= 8 && lane_use(s.Q, k.width) >= 0.75;
}

// grad_weight by row dots: each work item, an input channel x a kernel row x a block of output
// channels, runs over the images in order, adding each image's lane sums into its part of
// grad_weight (one thread per item).
void row_dots_backward_weight(float* grad_weight, const float* grad_out, const float* input, const Conv2dShape& s,
                              const ConvKernels& k) {
  const int64_t RS = s.R * s.S, CRS = s.C * RS, PQ = s.P * s.Q;
  const ConvTaps t = taps_of(s);
  const bool padded = has_padding(s);
  const int64_t plane = (s.H + s.pad_top + s.pad_bottom) * t.Wp;
  const int64_t kb_max = k.row_dots_kb, k_blocks = (s.K + kb_max - 1) / kb_max, items = s.C * s.R * k_blocks;
  const int threads = threads_for_items(static_cast<double>(s.N) * s.K * PQ * CRS, items);
  float* scratch = padded ? tls_planes.get(threads * plane) : nullptr;
  run_parallel(threads, [&](int tid, int nt) {
    int64_t i0, i1;
    split_range(items, tid, nt, &i0, &i1);
    auto part = [&](int64_t item, int64_t* c, int64_t* r, int64_t* k0, int64_t* kb) {
      *c = item / (s.R * k_blocks), *r = item / k_blocks % s.R, *k0 = item % k_blocks * kb_max;
      *kb = std::min(kb_max, s.K - *k0);
    };
    for (int64_t item = i0; item < i1; ++item) {
      int64_t c, r, k0, kb;
      part(item, &c, &r, &k0, &kb);
      float* dw = grad_weight + (k0 * s.C + c) * RS + r * s.S;  // dw[kk * CRS + ss]
      for (int64_t kk = 0; kk < kb; ++kk) std::fill(dw + kk * CRS, dw + kk * CRS + s.S, 0.0f);
    }
    // Images outside, items inside: an image's planes stay in cache over all of this thread's
    // items; each item still sums the images in order.
    for (int64_t n = 0; n < s.N; ++n) {
      PlaneCache x{padded ? scratch + tid * plane : nullptr};
      for (int64_t item = i0; item < i1; ++item) {
        int64_t c, r, k0, kb;
        part(item, &c, &r, &k0, &kb);
        k.weight_row_dots(grad_weight + (k0 * s.C + c) * RS + r * s.S, CRS, grad_out + (n * s.K + k0) * PQ, PQ, kb,
                          x.get(input, n, c, s, t, k), r, t);
      }
    }
  });
}

}  // namespace

int64_t conv2d_direct_limit() { return g_direct_limit.load(std::memory_order_relaxed); }
void set_conv2d_direct_limit(int64_t taps) { g_direct_limit.store(std::max<int64_t>(taps, 0), std::memory_order_relaxed); }

int64_t conv2d_workspace_budget() { return g_budget_bytes.load(std::memory_order_relaxed); }
void set_conv2d_workspace_budget(int64_t bytes) {
  g_budget_bytes.store(std::max<int64_t>(bytes, static_cast<int64_t>(sizeof(float))), std::memory_order_relaxed);
}

// ---- forward ----------------------------------------------------------------------------------

bool conv2d_forward(float* out, const float* input, const float* weight, const float* bias, const Conv2dShape& s,
                    bool relu) {
  if (s.N == 0 || s.K == 0 || s.P == 0 || s.Q == 0) return false;
  const ConvKernels& k = conv_kernels_for(active_isa());
  if (is_depthwise(s)) return depthwise_forward(out, input, weight, bias, relu, s, k);
  if (use_direct(s.C * s.R * s.S, s) && !is_pointwise(s)) return direct_forward(out, input, weight, bias, relu, s, k);
  std::atomic<bool> nonfinite{false};  // an output went NaN or infinite (the GEMM epilogue's check)
  if (is_pointwise(s)) {  // out_n (K, HW) = weight (K, C) @ input_n (C, HW), per group
    const int64_t Cg = s.C / s.G, Kg = s.K / s.G, HW = s.H * s.W;
    for_each_image(s.N, static_cast<double>(s.K) * Cg * HW, [&](int64_t n) {
      for (int64_t g = 0; g < s.G; ++g) {
        GemmEpilogue e;  // per image: images may run on several threads at once
        e.relu = relu;
        e.bias_m = bias ? bias + g * Kg : nullptr;
        if (sgemm(false, false, Kg, HW, Cg, 1.0f, weight + g * Kg * Cg, Cg, input + (n * s.C + g * Cg) * HW, HW,
                  0.0f, out + (n * s.K + g * Kg) * HW, HW, e))
          nonfinite.store(true, std::memory_order_relaxed);
      }
    });
    return nonfinite.load();
  }

  // With enough images, each thread takes a contiguous range of them with its own share of the
  // budget and runs im2col, the GEMM and the copy-out alone: no barrier in the whole call. Else
  // one range, every stage threaded. The output does not depend on the chunking.
  const int teams = range_teams(s);
  const Dims d(s, s.K, budget_floats() / teams, (s.N + teams - 1) / teams);
  const int64_t col_n = d.col_floats(s), stage_n = d.stage_floats(s), pad_n = d.padded_floats(s);
  float* cols = tls_col.get(teams * col_n);
  float* stages = tls_stage.get(teams * stage_n);
  float* pads = tls_padded.get(teams * pad_n);
  auto run_range = [&](int64_t n_begin, int64_t n_end, int team, int inner_threads) {
    float *col = cols + team * col_n, *stage = stages + team * stage_n, *padded = pads + team * pad_n;
    for_each_chunk(s, d, n_begin, n_end, [&](const Chunk& ch) {
      const int64_t L = ch.nb * (ch.p1 - ch.p0) * s.Q;
      im2col(col, padded, input, s, d, ch, k, inner_threads);
      // One image: write the NCHW output rows in place (row stride P*Q); else stage (K, L).
      float* dst = ch.nb == 1 ? out + ch.n0 * s.K * d.PQ + ch.p0 * s.Q : stage;
      const int64_t ldd = ch.nb == 1 ? d.PQ : L;
      for (int64_t g = 0; g < s.G; ++g) {
        GemmEpilogue ep;
        ep.relu = relu;
        ep.bias_m = bias ? bias + g * d.Kg : nullptr;
        if (sgemm(false, false, d.Kg, L, d.CRSg, 1.0f, weight + g * d.Kg * d.CRSg, d.CRSg, col + g * d.CRSg * L, L,
                  0.0f, dst + g * d.Kg * ldd, ldd, ep))
          nonfinite.store(true, std::memory_order_relaxed);
      }
      if (ch.nb > 1) stage_rows(stage, out, s, d, ch, /*gather=*/false, inner_threads);
    });
  };
  if (teams > 1) {
    run_parallel(teams, [&](int tid, int nt) {
      int64_t n0, n1;
      split_range(s.N, tid, nt, &n0, &n1);
      run_range(n0, n1, tid, 1);  // the GEMMs inside run on this thread alone (nested region)
    });
  } else {
    run_range(0, s.N, 0, 0);
  }
  return nonfinite.load();
}

// ---- backward ---------------------------------------------------------------------------------

namespace {

// grad_weight over fixed chunks of the whole batch (the chunking depends on the shape and the
// budget only), each stage threaded: dot tiles reading dY in place, or the GEMM on staged dY.
void weight_backward(float* grad_weight, const float* grad_out, const float* input, const Conv2dShape& s,
                     const ConvKernels& k) {
  const bool pointwise = is_pointwise(s);
  const Dims probe(s, 0, budget_floats(), s.N);
  const bool dots = weight_grad_by_dots(probe);
  const Dims d(s, dots ? 0 : s.K, budget_floats(), s.N);
  const bool need_col = !(pointwise && (dots || d.images_per_chunk == 1));
  float* col = need_col ? tls_col.get(d.col_floats(s)) : nullptr;
  float* stage = dots ? nullptr : tls_stage.get(d.stage_floats(s));
  float* padded = need_col ? tls_padded.get(d.padded_floats(s)) : nullptr;
  bool first = true;
  for_each_chunk(s, d, 0, s.N, [&](const Chunk& ch) {
    const int64_t per_image = (ch.p1 - ch.p0) * s.Q, L = ch.nb * per_image;
    const float* dy = grad_out + ch.n0 * s.K * d.PQ + ch.p0 * s.Q;  // NCHW rows in place
    const float* cols = col;
    int64_t ld_col = L, col_seg = per_image;
    if (pointwise && !need_col) {  // the image rows are the columns
      cols = input + ch.n0 * s.C * d.HW + ch.p0 * s.Q;
      ld_col = d.HW;
      col_seg = s.C * d.HW;
    } else {
      im2col(col, padded, input, s, d, ch, k, 0);
    }
    if (dots) {
      for (int64_t g = 0; g < s.G; ++g)
        weight_grad_dots(grad_weight + g * d.Kg * d.CRSg, d.Kg, d.CRSg, dy + g * d.Kg * d.PQ, d.PQ, s.K * d.PQ,
                         cols + g * d.CRSg * ld_col, ld_col, col_seg, ch.nb, per_image, !first, k);
    } else {
      int64_t ld_dy = d.PQ;
      if (ch.nb > 1) {
        stage_rows(stage, const_cast<float*>(grad_out), s, d, ch, /*gather=*/true, 0);
        dy = stage;
        ld_dy = L;
      }
      for (int64_t g = 0; g < s.G; ++g)
        sgemm(false, true, d.Kg, d.CRSg, L, 1.0f, dy + g * d.Kg * ld_dy, ld_dy, cols + g * d.CRSg * ld_col, ld_col,
              first ? 0.0f : 1.0f, grad_weight + g * d.Kg * d.CRSg, d.CRSg);
    }
    first = false;
  });
}

// grad_input through dcol = weight^T @ dY and col2im; images in ranges per thread as in the
// forward (each input gradient element is computed by one thread in one order either way).
void input_backward(float* grad_input, const float* grad_out, const float* weight, const Conv2dShape& s,
                    const ConvKernels& k) {
  const int teams = range_teams(s);
  const Dims d(s, s.K, budget_floats() / teams, (s.N + teams - 1) / teams);
  const bool strided = s.stride_h != 1 || s.stride_w != 1;  // col2im scatters through padded planes
  // col2im's threads in the single-range case (one scratch plane each when it scatters)
  const int inner = teams > 1 ? 1 : stage_threads(0, static_cast<double>(d.CRS) * d.max_columns(s),
                                                  d.images_per_chunk * s.C);
  const int64_t col_n = d.col_floats(s), stage_n = d.stage_floats(s);
  const int64_t plane_n = strided && d.padded ? d.pad_rows(s, d.rows_per_chunk) * d.Wp : 0;
  float* cols = tls_col.get(teams * col_n);
  float* stages = tls_stage.get(teams * stage_n);
  float* scratch = tls_planes.get(teams * inner * plane_n);
  auto run_range = [&](int64_t n_begin, int64_t n_end, int team, int inner_threads) {
    float *col = cols + team * col_n, *stage = stages + team * stage_n;
    for_each_chunk(s, d, n_begin, n_end, [&](const Chunk& ch) {
      const int64_t L = ch.nb * (ch.p1 - ch.p0) * s.Q;
      const float* dy = grad_out + ch.n0 * s.K * d.PQ + ch.p0 * s.Q;
      int64_t ld_dy = d.PQ;
      if (ch.nb > 1) {
        stage_rows(stage, const_cast<float*>(grad_out), s, d, ch, /*gather=*/true, inner_threads);
        dy = stage;
        ld_dy = L;
      }
      for (int64_t g = 0; g < s.G; ++g)
        sgemm(true, false, d.CRSg, L, d.Kg, 1.0f, weight + g * d.Kg * d.CRSg, d.CRSg, dy + g * d.Kg * ld_dy, ld_dy,
              0.0f, col + g * d.CRSg * L, L);
      const int threads = inner_threads > 0 ? inner_threads
                                            : static_cast<int>(std::min<int64_t>(inner, std::max<int64_t>(1, ch.nb * s.C)));
      col2im(grad_input, col, scratch + team * inner * plane_n, s, d, ch, k, threads);
    });
  };
  if (teams > 1) {
    run_parallel(teams, [&](int tid, int nt) {
      int64_t n0, n1;
      split_range(s.N, tid, nt, &n0, &n1);
      run_range(n0, n1, tid, 1);
    });
  } else {
    run_range(0, s.N, 0, 0);
  }
}

}  // namespace

void conv2d_backward(float* grad_input, float* grad_weight, float* grad_bias, const float* grad_out,
                     const float* input, const float* weight, const Conv2dShape& s) {
  const int64_t weight_size = s.K * (s.C / std::max<int64_t>(s.G, 1)) * s.R * s.S;
  if (grad_bias) {
    if (s.N == 0 || s.P * s.Q == 0)
      std::fill(grad_bias, grad_bias + s.K, 0.0f);
    else
      channel_sums(grad_bias, grad_out, s.N, s.K, s.P * s.Q);
  }
  if (s.N == 0 || s.P * s.Q == 0 || s.K == 0) {
    if (grad_weight) std::fill(grad_weight, grad_weight + weight_size, 0.0f);
    if (grad_input) std::fill(grad_input, grad_input + s.N * s.C * s.H * s.W, 0.0f);
    return;
  }
  const ConvKernels& k = conv_kernels_for(active_isa());
  if (is_depthwise(s)) {
    if (grad_input) depthwise_backward_input(grad_input, grad_out, weight, s, k);
    if (grad_weight) depthwise_backward_weight(grad_weight, grad_out, input, s, k);
    return;
  }
  if (grad_weight) {
    if (direct_weight_gradient_fits(s, k))
      direct_backward_weight(grad_weight, grad_out, input, s, k);
    else if (row_dots_weight_gradient_fits(s, k))
      row_dots_backward_weight(grad_weight, grad_out, input, s, k);
    else
      weight_backward(grad_weight, grad_out, input, s, k);
  }
  if (!grad_input) return;
  if (!is_pointwise(s) && direct_input_gradient_fits(s)) {
    direct_backward_input(grad_input, grad_out, weight, s, k);
    return;
  }
  if (is_pointwise(s)) {  // grad_input_n (C, HW) = weight^T (C, K) @ grad_out_n (K, HW), per group
    const int64_t Cg = s.C / s.G, Kg = s.K / s.G, HW = s.H * s.W;
    for_each_image(s.N, static_cast<double>(s.K) * Cg * HW, [&](int64_t n) {
      for (int64_t g = 0; g < s.G; ++g)
        sgemm(true, false, Cg, HW, Kg, 1.0f, weight + g * Kg * Cg, Cg, grad_out + (n * s.K + g * Kg) * HW, HW, 0.0f,
              grad_input + (n * s.C + g * Cg) * HW, HW);
    });
    return;
  }
  input_backward(grad_input, grad_out, weight, s, k);
}

// ---- transposed convolution: the adjoint of conv2d ------------------------------------------------

bool conv_transpose2d_forward(float* out, const float* input, const float* weight, const float* bias,
                              const Conv2dShape& s) {
  conv2d_backward(out, nullptr, nullptr, input, nullptr, weight, s);
  if (bias && s.N * s.H * s.W > 0) add_channel_bias(out, bias, s.N, s.C, s.H * s.W);
  return !all_finite_parallel(input, s.N * s.K * s.P * s.Q);
}

void conv_transpose2d_backward(float* grad_input, float* grad_weight, float* grad_bias, const float* grad_out,
                               const float* input, const float* weight, const Conv2dShape& s) {
  if (grad_input) {
    if (s.N * s.K * s.P * s.Q > 0) conv2d_forward(grad_input, grad_out, weight, nullptr, s);
  }
  if (grad_weight) conv2d_backward(nullptr, grad_weight, nullptr, input, grad_out, weight, s);
  if (grad_bias) {
    if (s.N == 0 || s.H * s.W == 0)
      std::fill(grad_bias, grad_bias + s.C, 0.0f);
    else
      channel_sums(grad_bias, grad_out, s.N, s.C, s.H * s.W);
  }
}

}  // namespace fastnn
