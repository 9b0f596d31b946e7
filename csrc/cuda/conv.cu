// 2-D convolution on the GPU, lowered to our SGEMM (gemm.cu) through im2col and col2im.
// Dimension letters: N, C, H, W input; K, C/groups, R, S weight; OH, OW output; L = nb * OH * OW
// the columns of a chunk of nb images.
//
// Forward, per chunk of images: im2col writes cols (C*R*S, L), one thread per element, column
// index fastest (coalesced stores, gathered loads); per group one GEMM
// tmp_g (K/G, L) = W_g (K/G, C/G*R*S) cols_g; a permute writes tmp (K, nb, OH*OW) to the output
// (nb, K, OH*OW) and adds the bias. Backward, per chunk: the inverse permute of dy into tmp;
// dW_g += tmp_g cols_g^T (the chunks accumulate through beta = 1); dcols_g = W_g^T tmp_g, and
// col2im gathers, for each input element, the dcols entries of the windows that read it (no
// atomics: every input element is written by one thread, so results are deterministic); db is
// a per-channel sum over the batch and the output plane, one block per channel. The chunk size
// keeps cols within 32 Mi floats; the buffers come from the caching allocator.
// Transposed convolution: the adjoint of a conv2d, so no kernels of its own (as on the CPU): its
// forward is that conv2d's input gradient, with the bias added by col2im; its input gradient
// that conv2d's forward; its weight gradient that conv2d's weight gradient with input and output
// exchanged; its bias gradient the channel sums of its output gradient.
// TODO(issue 6): a direct kernel for few input channels and 1x1 convolutions without im2col;
// measured only once a GPU is lent to the project.
#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxColsFloats = int64_t(32) << 20;

__global__ void im2col_kernel(float* cols, const float* x, ConvShape s, int64_t n0, int64_t nb) {
  const int64_t plane = s.OH * s.OW, L = nb * plane, cg_rs = s.C * s.R * s.S;
  GRID_STRIDE(e, cg_rs * L) {
    const int64_t row = e / L, col = e % L;
    const int64_t img = col / plane, p = col % plane, oh = p / s.OW, ow = p % s.OW;
    const int64_t c = row / (s.R * s.S), rs = row % (s.R * s.S), r = rs / s.S, q = rs % s.S;
    const int64_t ih = oh * s.stride_h - s.pad_top + r * s.dil_h, iw = ow * s.stride_w - s.pad_left + q * s.dil_w;
    cols[e] = (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) ? x[((n0 + img) * s.C + c) * s.H * s.W + ih * s.W + iw]
                                                          : 0.0f;
  }
}

// out (n0 + img, k, p) = tmp (k, img * plane + p) + bias[k]
__global__ void scatter_output_kernel(float* out, const float* tmp, const float* bias, ConvShape s, int64_t n0,
                                      int64_t nb) {
  const int64_t plane = s.OH * s.OW, L = nb * plane, total = nb * s.K * plane;
  GRID_STRIDE(e, total) {
    const int64_t img = e / (s.K * plane), k = (e / plane) % s.K, p = e % plane;
    out[n0 * s.K * plane + e] = tmp[k * L + img * plane + p] + (bias ? bias[k] : 0.0f);
  }
}

// tmp (k, img * plane + p) = dy (n0 + img, k, p)
__global__ void gather_grad_kernel(float* tmp, const float* dy, ConvShape s, int64_t n0, int64_t nb) {
  const int64_t plane = s.OH * s.OW, L = nb * plane, total = nb * s.K * plane;
  GRID_STRIDE(e, total) {
    const int64_t img = e / (s.K * plane), k = (e / plane) % s.K, p = e % plane;
    tmp[k * L + img * plane + p] = dy[n0 * s.K * plane + e];
  }
}

// dx = the col2im sum, + bias[c] when bias is not null (the transposed convolution's forward).
__global__ void col2im_kernel(float* dx, const float* dcols, const float* bias, ConvShape s, int64_t n0, int64_t nb) {
  const int64_t plane = s.OH * s.OW, L = nb * plane, total = nb * s.C * s.H * s.W;
  GRID_STRIDE(e, total) {
    const int64_t img = e / (s.C * s.H * s.W), c = (e / (s.H * s.W)) % s.C;
    const int64_t ih = (e / s.W) % s.H, iw = e % s.W;
    float sum = 0.0f;  // every tap, even when OH, OW are 0 (no dcols then) and only the bias remains
    for (int64_t r = 0; r < s.R; ++r) {
      const int64_t th = ih + s.pad_top - r * s.dil_h;  // = oh * stride_h
      if (th < 0 || th % s.stride_h) continue;
      const int64_t oh = th / s.stride_h;
      if (oh >= s.OH) continue;
      for (int64_t q = 0; q < s.S; ++q) {
        const int64_t tw = iw + s.pad_left - q * s.dil_w;
        if (tw < 0 || tw % s.stride_w) continue;
        const int64_t ow = tw / s.stride_w;
        if (ow >= s.OW) continue;
        sum += dcols[((c * s.R + r) * s.S + q) * L + img * plane + oh * s.OW + ow];
      }
    }
    dx[n0 * s.C * s.H * s.W + e] = bias ? sum + bias[c] : sum;
  }
}

__global__ void channel_sums_kernel(float* db, const float* dy, int64_t N, int64_t K, int64_t plane) {
  __shared__ float partial[kThreads];
  const int64_t k = blockIdx.x;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < N * plane; i += blockDim.x) sum += dy[(i / plane) * K * plane + k * plane + i % plane];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[k] = partial[0];
}

int64_t chunk_images(const ConvShape& s) {
  const int64_t per_image = std::max(s.C * s.R * s.S, s.K) * s.OH * s.OW;
  return std::max<int64_t>(1, std::min<int64_t>(s.N, kMaxColsFloats / std::max<int64_t>(per_image, 1)));
}

unsigned blocks_for(int64_t n) { return grid_for(n, kThreads); }

// dx (or null) = col2im(W^T dy) + dx_bias (or null); dw (or null) = dy cols(x)^T summed over the
// chunks of images (x is read only for dw).
void backward_chunks(float* dx, const float* dx_bias, float* dw, const float* dy, const float* x, const float* w,
                     const ConvShape& s, int device) {
  const int64_t plane = s.OH * s.OW;
  cudaStream_t st = stream_of(device);
  const int64_t G = s.groups, Kg = s.K / G, CRSg = s.C / G * s.R * s.S, nb_max = chunk_images(s);
  Scratch cols(s.C * s.R * s.S * nb_max * plane, device), tmp(s.K * nb_max * plane, device);
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), L = nb * plane;
    gather_grad_kernel<<<blocks_for(nb * s.K * plane), kThreads, 0, st>>>(tmp.ptr, dy, s, n0, nb);
    check_launch("conv2d_backward (gather)");
    if (dw) {
      im2col_kernel<<<blocks_for(s.C * s.R * s.S * L), kThreads, 0, st>>>(cols.ptr, x, s, n0, nb);
      check_launch("conv2d_backward (im2col)");
      for (int64_t g = 0; g < G; ++g)  // dW_g (+)= tmp_g cols_g^T
        sgemm(dw + g * Kg * CRSg, CRSg, tmp.ptr + g * Kg * L, L, cols.ptr + g * CRSg * L, L, Kg, CRSg, L, false,
              true, 1.0f, n0 == 0 ? 0.0f : 1.0f, nullptr, false, device);
    }
    if (dx) {
      for (int64_t g = 0; g < G; ++g)  // dcols_g = W_g^T tmp_g (cols is free again: reuse it)
        sgemm(cols.ptr + g * CRSg * L, L, w + g * Kg * CRSg, CRSg, tmp.ptr + g * Kg * L, L, CRSg, L, Kg, true, false,
              1.0f, 0.0f, nullptr, false, device);
      col2im_kernel<<<blocks_for(nb * s.C * s.H * s.W), kThreads, 0, st>>>(dx, cols.ptr, dx_bias, s, n0, nb);
      check_launch("conv2d_backward (col2im)");
    }
  }
}

// db (count,) = the sums of dy (N, count, plane) over the batch and the plane.
void channel_sums(float* db, const float* dy, int64_t N, int64_t count, int64_t plane, int device) {
  if (count == 0) return;
  channel_sums_kernel<<<static_cast<unsigned>(count), kThreads, 0, stream_of(device)>>>(db, dy, N, count, plane);
  check_launch("channel sums (bias gradient)");
}

}  // namespace

void conv2d_forward(float* out, const float* x, const float* w, const float* bias, const ConvShape& s, int device) {
  const int64_t plane = s.OH * s.OW;
  if (s.N == 0 || s.K == 0 || plane == 0) return;
  cudaStream_t st = stream_of(device);
  const int64_t G = s.groups, Kg = s.K / G, CRSg = s.C / G * s.R * s.S, nb_max = chunk_images(s);
  Scratch cols(s.C * s.R * s.S * nb_max * plane, device), tmp(s.K * nb_max * plane, device);
  for (int64_t n0 = 0; n0 < s.N; n0 += nb_max) {
    const int64_t nb = std::min(nb_max, s.N - n0), L = nb * plane;
    im2col_kernel<<<blocks_for(s.C * s.R * s.S * L), kThreads, 0, st>>>(cols.ptr, x, s, n0, nb);
    check_launch("conv2d_forward (im2col)");
    for (int64_t g = 0; g < G; ++g)
      sgemm(tmp.ptr + g * Kg * L, L, w + g * Kg * CRSg, CRSg, cols.ptr + g * CRSg * L, L, Kg, L, CRSg, false, false,
            1.0f, 0.0f, nullptr, false, device);
    scatter_output_kernel<<<blocks_for(nb * s.K * plane), kThreads, 0, st>>>(out, tmp.ptr, bias, s, n0, nb);
    check_launch("conv2d_forward (output)");
  }
}

void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s, int device) {
  if (s.N == 0 || s.OH * s.OW == 0) {  // no output element: zero gradients
    if (dx) fill(dx, 0.0f, s.N * s.C * s.H * s.W, device);
    if (dw) fill(dw, 0.0f, s.K * (s.C / s.groups) * s.R * s.S, device);
    if (db) fill(db, 0.0f, s.K, device);
    return;
  }
  if (db) channel_sums(db, dy, s.N, s.K, s.OH * s.OW, device);
  if (dx || dw) backward_chunks(dx, nullptr, dw, dy, x, w, s, device);
}

void conv_transpose2d_forward(float* out, const float* input, const float* w, const float* bias, const ConvShape& s,
                              int device) {
  // With an empty input plane (OH or OW 0) col2im still runs: it writes the bias alone.
  if (s.N * s.C * s.H * s.W == 0) return;
  backward_chunks(out, bias, nullptr, input, nullptr, w, s, device);
}

void conv_transpose2d_backward(float* dx, float* dw, float* db, const float* dy, const float* input, const float* w,
                               const ConvShape& s, int device) {
  if (dx) conv2d_forward(dx, dy, w, nullptr, s, device);
  if (dw) conv2d_backward(nullptr, dw, nullptr, input, dy, w, s, device);
  if (db) channel_sums(db, dy, s.N, s.C, s.H * s.W, device);  // zeros for an empty batch or plane
}

}  // namespace cuda
}  // namespace fastnn
