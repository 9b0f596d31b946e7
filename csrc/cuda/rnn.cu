// Recurrent layers on the GPU: LSTM, GRU and the plain RNN over a whole sequence, one layer and one
// direction per call, the same algorithm, buffers and equations as csrc/cpu/rnn.h.
// Dimension letters: T steps, B batch rows, I inputs, H hidden units, G = gates * H, S the saved
// width per (t, b) row (LSTM, GRU: 4H; RNN: none).
//
// Forward: the input projection of all T steps is one SGEMM (gemm.cu) into the saved gates (LSTM,
// GRU) or the states (RNN), with the biases in its epilogue; then per step one SGEMM
// h_{t-1} (B, H) x W_hh^T into a (B, G) scratch (GRU: + b_hh) and one fused pointwise kernel, a
// thread per (row, unit), for the gate nonlinearities, the cell update and the outputs.
// Backward: per step (last first) one fused pointwise kernel for the pre-activation gradients
// dA_t, then one SGEMM dA_h,t (B, G) x W_hh (G, H) for the recurrent part of dh_{t-1}; after the
// loop, dX = dA W_ih, dW_ih = dA^T X, dW_hh = dA_h^T H_prev and the bias sums, each one launch over
// the whole sequence. Two launches a step: the step's GEMM and its pointwise pass.
// Variable lengths as on the CPU: an inactive step holds the state, outputs zero, and passes the
// state's gradient through.
//
// Embedding (V rows of D values; n positions looked up): the forward gathers, a thread per output
// value. The backward is deterministic and free of atomics: embedding_row_groups groups the
// positions by row on the host, where the indices are (a stable counting sort), and a thread per (row, column)
// of the whole gradient sums its row's positions in increasing order: the CPU's np.add.at
// additions in the CPU's order, so the same bits, from run to run too. Rows never looked up, and
// padding_idx, get 0 from that same pass (no separate zeroing). Neighbouring threads take
// neighbouring columns of one row, so each gradient row is read coalesced. A row looked up m times
// costs its D threads m additions each: a very frequent row sets the time (as it would make
// atomics contend), a price paid for bits that do not change between runs.
#include <algorithm>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace fastnn {
namespace cuda {

namespace {

constexpr int kThreads = 256;
enum Cell { kLstm = 0, kGru = 1, kTanh = 2, kRelu = 3 };

__device__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ bool active(const int64_t* lengths, int64_t t, int64_t b) { return !lengths || t < lengths[b]; }

// One step of the forward for every (b, j). gx: the step's saved row block (B, S) holding the
// input projection; hp: the recurrent product (B, G).
__global__ void forward_step_kernel(int cell, float* g_t, const float* hp, float* h_t, float* y_t, float* c_t,
                                    const float* h_prev, const float* c_prev, const int64_t* lengths, int64_t t,
                                    int64_t B, int64_t H, int64_t S) {
  const int64_t G = (cell == kLstm ? 4 : cell == kGru ? 3 : 1) * H;
  GRID_STRIDE(e, B * H) {
    const int64_t b = e / H, j = e % H;
    if (!active(lengths, t, b)) {
      h_t[e] = h_prev[e];
      if (cell == kLstm) c_t[e] = c_prev[e];
      if (y_t != h_t) y_t[e] = 0.0f;
      continue;
    }
    const float* p = hp + b * G;
    float h;
    if (cell == kLstm) {
      float* g = g_t + b * S;
      const float i = sigmoid(g[j] + p[j]), f = sigmoid(g[H + j] + p[H + j]);
      const float gg = tanhf(g[2 * H + j] + p[2 * H + j]), o = sigmoid(g[3 * H + j] + p[3 * H + j]);
      const float c = f * c_prev[e] + i * gg;
      h = o * tanhf(c);
      g[j] = i, g[H + j] = f, g[2 * H + j] = gg, g[3 * H + j] = o;
      c_t[e] = c;
    } else if (cell == kGru) {
      float* g = g_t + b * S;
      const float r = sigmoid(g[j] + p[j]), z = sigmoid(g[H + j] + p[H + j]);
      const float hn = p[2 * H + j];
      const float n = tanhf(g[2 * H + j] + r * hn);
      h = n + z * (h_prev[e] - n);
      g[j] = r, g[H + j] = z, g[2 * H + j] = n, g[3 * H + j] = hn;
    } else {
      const float a = h_t[e] + p[j];  // h_t holds the input projection
      h = cell == kRelu ? (a < 0.0f ? 0.0f : a) : tanhf(a);
    }
    h_t[e] = h;
    if (y_t != h_t) y_t[e] = h;
  }
}

// One step of the backward for every (b, j): dh holds the direct part of dh_t (from step t + 1's
// pass), dhg the recurrent part (the product), dy the output's gradient. Writes da_t (B, G) and,
// for the GRU, dah_t; leaves dh (and dc) for step t - 1.
__global__ void backward_step_kernel(int cell, float* da_t, float* dah_t, float* dh, float* dc, const float* dhg,
                                     const float* dy_t, const float* g_t, const float* c_t, const float* c_prev,
                                     const float* h_t, const float* h_prev, const int64_t* lengths, int64_t t,
                                     int64_t B, int64_t H, int64_t S) {
  const int64_t G = (cell == kLstm ? 4 : cell == kGru ? 3 : 1) * H;
  GRID_STRIDE(e, B * H) {
    const int64_t b = e / H, j = e % H;
    float* da = da_t + b * G;
    if (!active(lengths, t, b)) {  // dh and dc pass through; no gate gradient
      dh[e] += dhg[e];
      for (int64_t q = 0; q < G / H; ++q) {
        da[q * H + j] = 0.0f;
        if (cell == kGru) dah_t[b * G + q * H + j] = 0.0f;
      }
      continue;
    }
    const float dht = dh[e] + dhg[e] + dy_t[e];
    if (cell == kLstm) {
      const float* g = g_t + b * S;
      const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
      const float tc = tanhf(c_t[e]);
      const float dct = dc[e] + dht * o * (1.0f - tc * tc);
      da[3 * H + j] = dht * tc * (o * (1.0f - o));
      da[j] = dct * gg * (i * (1.0f - i));
      da[2 * H + j] = dct * i * (1.0f - gg * gg);
      da[H + j] = dct * c_prev[e] * (f * (1.0f - f));
      dc[e] = dct * f;
      dh[e] = 0.0f;
    } else if (cell == kGru) {
      const float* g = g_t + b * S;
      const float r = g[j], z = g[H + j], n = g[2 * H + j], hn = g[3 * H + j];
      const float dan = dht * (1.0f - z) * (1.0f - n * n);
      const float dar = dan * hn * (r * (1.0f - r));
      const float daz = dht * (h_prev[e] - n) * (z * (1.0f - z));
      float* dah = dah_t + b * G;
      da[j] = dar, da[H + j] = daz, da[2 * H + j] = dan;
      dah[j] = dar, dah[H + j] = daz, dah[2 * H + j] = dan * r;
      dh[e] = dht * z;
    } else {
      const float h = h_t[e];
      da[j] = cell == kRelu ? (h > 0.0f ? dht : 0.0f) : dht * (1.0f - h * h);
      dh[e] = 0.0f;
    }
  }
}

__global__ void sum_biases_kernel(float* out, const float* a, const float* b, int64_t n) {
  GRID_STRIDE(i, n)
    out[i] = (a ? a[i] : 0.0f) + (b ? b[i] : 0.0f);
}

int gate_count(int cell) { return cell == kLstm ? 4 : cell == kGru ? 3 : 1; }

// out (n, D) = the rows indices (n,) of weight (V, D).
__global__ void embedding_forward_kernel(float* out, const float* weight, const int64_t* indices, int64_t n,
                                         int64_t D) {
  GRID_STRIDE(e, n * D) out[e] = weight[indices[e / D] * D + e % D];
}

// dw (V, D): row r sums the rows positions[row_starts[r] .. row_starts[r + 1]) of dy (n, D), in that
// order (0 for padding_idx; -1: none).
__global__ void embedding_backward_kernel(float* dw, const float* dy, const int64_t* row_starts,
                                          const int64_t* positions, int64_t V, int64_t D, int64_t padding_idx) {
  GRID_STRIDE(e, V * D) {
    const int64_t r = e / D, c = e % D;
    float sum = 0.0f;
    if (r != padding_idx)
      for (int64_t k = row_starts[r]; k < row_starts[r + 1]; ++k) sum += dy[positions[k] * D + c];
    dw[e] = sum;
  }
}

}  // namespace

void rnn_forward(int cell, float* y, float* h_n, float* c_n, float* hs, float* cs, float* gates, const float* x,
                 const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh, const float* h0,
                 const float* c0, const int64_t* lengths, bool reverse, const RnnDims& s, int device) {
  const int64_t T = s.T, B = s.B, I = s.I, H = s.H, G = gate_count(cell) * H, BH = B * H;
  const int64_t S = cell == kLstm || cell == kGru ? 4 * H : 0;
  const bool lstm = cell == kLstm, gru = cell == kGru;
  if (T == 0 || BH == 0) {
    if (BH > 0) {
      copy_on_device(h_n, h0, sizeof(float) * BH, device);
      if (lstm) copy_on_device(c_n, c0, sizeof(float) * BH, device);
    }
    return;
  }
  cudaStream_t st = stream_of(device);
  Scratch prod(B * G, device), bias(G, device);
  const float* proj_bias = nullptr;
  if (gru) {
    proj_bias = b_ih;  // b_hh goes to the hidden product, inside r * (W_hn h + b_hn)
  } else if (b_ih || b_hh) {
    sum_biases_kernel<<<grid_for(G, kThreads), kThreads, 0, st>>>(bias.ptr, b_ih, b_hh, G);
    check_launch("rnn_forward (biases)");
    proj_bias = bias.ptr;
  }
  float* proj = lstm || gru ? gates : hs;
  sgemm(proj, lstm || gru ? S : H, x, I, w_ih, I, T * B, G, I, false, true, 1.0f, 0.0f, proj_bias, false, device);
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = reverse ? T - 1 - step : step, prev = reverse ? t + 1 : t - 1;
    const float* h_prev = step == 0 ? h0 : hs + prev * BH;
    const float* c_prev = lstm ? (step == 0 ? c0 : cs + prev * BH) : nullptr;
    sgemm(prod.ptr, G, h_prev, H, w_hh, H, B, G, H, false, true, 1.0f, 0.0f, gru ? b_hh : nullptr, false, device);
    forward_step_kernel<<<grid_for(BH, kThreads), kThreads, 0, st>>>(
        cell, gates ? gates + t * B * S : nullptr, prod.ptr, hs + t * BH, y + t * BH, lstm ? cs + t * BH : nullptr,
        h_prev, c_prev, lengths, t, B, H, S);
    check_launch("rnn_forward (step)");
  }
  const int64_t last = reverse ? 0 : T - 1;
  copy_on_device(h_n, hs + last * BH, sizeof(float) * BH, device);
  if (lstm) copy_on_device(c_n, cs + last * BH, sizeof(float) * BH, device);
}

void rnn_backward(int cell, float* dx, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh, float* dh0, float* dc0,
                  const float* dy, const float* dh_n, const float* dc_n, const float* x, const float* w_ih,
                  const float* w_hh, const float* h0, const float* c0, const float* hs, const float* cs,
                  const float* gates, const int64_t* lengths, bool reverse, const RnnDims& s, int device) {
  const int64_t T = s.T, B = s.B, I = s.I, H = s.H, G = gate_count(cell) * H, BH = B * H, TB = T * B;
  const int64_t S = cell == kLstm || cell == kGru ? 4 * H : 0;
  const bool lstm = cell == kLstm, gru = cell == kGru;
  if (BH > 0) {
    copy_on_device(dh0, dh_n, sizeof(float) * BH, device);
    if (lstm) copy_on_device(dc0, dc_n, sizeof(float) * BH, device);
  }
  if (T == 0 || BH == 0) {  // no step: the weights get no gradient
    if (dx) fill(dx, 0.0f, TB * I, device);
    fill(dw_ih, 0.0f, G * I, device);
    fill(dw_hh, 0.0f, G * H, device);
    if (db_ih) fill(db_ih, 0.0f, G, device);
    if (db_hh) fill(db_hh, 0.0f, G, device);
    return;
  }
  cudaStream_t st = stream_of(device);
  Scratch da(TB * G, device), dah_own(gru ? TB * G : 1, device), prod(BH, device);
  float* dah = gru ? dah_own.ptr : da.ptr;
  fill(prod.ptr, 0.0f, BH, device);  // no recurrent gradient before the last step
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = reverse ? step : T - 1 - step, prev = reverse ? t + 1 : t - 1;
    const bool first = reverse ? t == T - 1 : t == 0;
    const float* h_prev = first ? h0 : hs + prev * BH;
    const float* c_prev = lstm ? (first ? c0 : cs + prev * BH) : nullptr;
    backward_step_kernel<<<grid_for(BH, kThreads), kThreads, 0, st>>>(
        cell, da.ptr + t * B * G, dah + t * B * G, dh0, lstm ? dc0 : nullptr, prod.ptr, dy + t * BH,
        gates ? gates + t * B * S : nullptr, lstm ? cs + t * BH : nullptr, c_prev, hs + t * BH, h_prev, lengths, t,
        B, H, S);
    check_launch("rnn_backward (step)");
    sgemm(prod.ptr, H, dah + t * B * G, G, w_hh, H, B, H, G, false, false, 1.0f, 0.0f, nullptr, false, device);
  }
  axpby(dh0, 1.0f, prod.ptr, 1.0f, BH, device);  // dh0 = direct part + recurrent part

  // Weight gradients over the whole sequence (the first step's h_prev is h0).
  if (dx) sgemm(dx, I, da.ptr, G, w_ih, I, TB, I, G, false, false, 1.0f, 0.0f, nullptr, false, device);
  sgemm(dw_ih, I, da.ptr, G, x, I, G, I, TB, true, false, 1.0f, 0.0f, nullptr, false, device);
  const int64_t first_t = reverse ? T - 1 : 0;
  const float* dah_rest = reverse ? dah : dah + B * G;  // steps whose h_prev is a stored state
  const float* h_rest = reverse ? hs + BH : hs;
  sgemm(dw_hh, H, dah_rest, G, h_rest, H, G, H, (T - 1) * B, true, false, 1.0f, 0.0f, nullptr, false, device);
  sgemm(dw_hh, H, dah + first_t * B * G, G, h0, H, G, H, B, true, false, 1.0f, 1.0f, nullptr, false, device);
  if (db_ih) column_sums(db_ih, da.ptr, TB, G, device);
  if (db_hh) column_sums(db_hh, dah, TB, G, device);
}

void embedding_row_groups(int64_t* row_starts, int64_t* positions, const int64_t* indices, int64_t n, int64_t V) {
  std::fill(row_starts, row_starts + V + 1, 0);
  for (int64_t k = 0; k < n; ++k) ++row_starts[indices[k] + 1];
  for (int64_t r = 0; r < V; ++r) row_starts[r + 1] += row_starts[r];
  std::vector<int64_t> next(row_starts, row_starts + V);
  for (int64_t k = 0; k < n; ++k) positions[next[indices[k]]++] = k;
}

void embedding_forward(float* out, const float* weight, const int64_t* indices, int64_t n, int64_t D, int device) {
  if (n * D == 0) return;
  embedding_forward_kernel<<<grid_for(n * D, kThreads), kThreads, 0, stream_of(device)>>>(out, weight, indices, n, D);
  check_launch("embedding_forward");
}

void embedding_backward(float* dw, const float* dy, const int64_t* row_starts, const int64_t* positions, int64_t V,
                        int64_t D, int64_t padding_idx, int device) {
  if (V * D == 0) return;
  embedding_backward_kernel<<<grid_for(V * D, kThreads), kThreads, 0, stream_of(device)>>>(
      dw, dy, row_starts, positions, V, D, padding_idx);
  check_launch("embedding_backward");
}

}  // namespace cuda
}  // namespace fastnn
