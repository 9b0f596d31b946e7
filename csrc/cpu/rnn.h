// Recurrent layers over a whole sequence: LSTM, GRU and the plain RNN (tanh or relu), one layer
// and one direction per call, forward and backward through time.
//
// Dimension letters: T steps, B batch rows, I input features, H hidden units, G = gates * H
// (LSTM 4H in PyTorch's order i, f, g, o; GRU 3H in the order r, z, n; RNN H). Sequences are
// time-major: x is (T, B, I), row t * B + b; weights are PyTorch's w_ih (G, I), w_hh (G, H).
//
// Equations (PyTorch's):
//   LSTM  i, f, o = sigmoid(.), g = tanh(.)  of  x W_ih^T + b_ih + h W_hh^T + b_hh
//         c' = f * c + i * g,  h' = o * tanh(c')
//   GRU   r, z = sigmoid(x W_i{r,z}^T + b_i{r,z} + h W_h{r,z}^T + b_h{r,z})
//         n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),  h' = (1 - z) * n + z * h
//   RNN   h' = tanh or relu(x W_ih^T + b_ih + h W_hh^T + b_hh)
//
// Forward: the input projection of all T steps is ONE GEMM, (T*B, I) x (I, G), with the biases
// added in its epilogue (LSTM/RNN: b_ih + b_hh; GRU: b_ih, b_hh goes to the hidden product
// because r multiplies its n part). Then per step ONE product h_{t-1} (B, H) x W_hh^T (H, G) for
// all gates at once, followed by ONE fused pass over the (B, H) units: gate nonlinearities, cell
// update, output, and the values the backward needs (the gate activations, c_t; GRU also
// W_hn h + b_hn). Backward: per step one fused pass turns dh, dc and the saved gates into the
// pre-activation gradients dA (B, G) and the direct part of dh_{t-1}, then one product
// dA (B, G) x W_hh (G, H) gives the recurrent part; the same pass adds dA_t into per-row sums
// (the bias gradients, summed over the rows at the end). After the loop, the weight gradients
// are large GEMMs over the whole sequence: [dW_ih | dW_hh]^T = [X | H_prev]^T dA, one GEMM
// for the LSTM and the RNN (dA_h = dA), two for the GRU; and dX = dA W_ih.
//
// The per-step products run on sgemm's micro-kernels (gemm.h) under a driver of their own:
// W_hh is packed once per call into NR-wide slivers over the whole K, its columns grouped in
// blocks of NR units holding all gates of those units; h_{t-1} (or dA_t) is packed by the fused
// pass that produced it; the product goes to a padded scratch, so every tile is full.
//
// Variable lengths: with lengths[b] (any order, 0 <= lengths[b] <= T), step t of row b is active
// when t < lengths[b], in both directions (the reverse direction starts at each row's own last
// step). An inactive step keeps the state (h, c) unchanged and outputs zeros, so the final state
// is the state after each row's own last step; its gradient passes dh, dc through unchanged and
// ignores dy.
//
// Threading: the projection and the weight-gradient GEMMs parallelize inside sgemm. The steps
// run in ONE team for the whole sequence (when a step has enough work: B * G * H >= 2^20 per two
// threads), each thread owning a rectangle of the step's product and of its fused pass, in one
// of two ways (plan_steps in rnn.cpp). By rows, when every thread can have register tiles of
// rows of its own at no more padded work than a split of units: each thread runs the recurrence
// of its own rows alone, all units, with no barrier between steps and nothing shared but the
// packed W_hh. By units otherwise (a batch of a few rows): each thread computes all rows of its blocks of units, and the team meets at one
// barrier per step (our own: it spins briefly, then yields, where OpenMP's would spin through a
// time slice when another process shares the cores -- a 2-thread call then ran 50x slower).
// The per-step product runs over the whole K without blocking, so every value is the same FMA
// chain whichever tile and split the thread count picks: results do not depend on it. The
// pointwise loops (rnn_kernels.h) are compiled per ISA and chosen by active_isa().
//
// Denormals: every call sets MXCSR flush-to-zero and denormals-are-zero on its thread and on
// every thread of its step team (common/denormals.h), as every kernel's run_parallel does, and
// restores their previous state before returning.
//
// Memory: outputs and saved buffers come from the caller; the packed weights, the packed rows,
// the per-step scratch and the backward's dA live in a grow-only buffer cached per calling thread.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"

namespace fastnn {

enum class RnnCell { lstm = 0, gru = 1, rnn_tanh = 2, rnn_relu = 3 };

inline int rnn_gates(RnnCell cell) { return cell == RnnCell::lstm ? 4 : cell == RnnCell::gru ? 3 : 1; }
// Floats per (t, b) row of the forward's saved `gates` buffer: LSTM i f g o (4H), GRU r z n and
// W_hn h + b_hn (4H), RNN none (its backward needs only h_t).
inline int64_t rnn_saved_width(RnnCell cell, int64_t H) {
  return cell == RnnCell::lstm || cell == RnnCell::gru ? 4 * H : 0;
}

struct RnnShape {
  int64_t T, B, I, H;
};

// Forward of one layer-direction.
//   y      (T, B, H)  outputs, zero at inactive steps
//   h_n    (B, H)     final hidden state; c_n (B, H) final cell state (LSTM; else null)
//   hs     (T, B, H)  hidden state after step t, held through inactive steps; may be y itself
//                     when lengths is null (the two are then equal)
//   cs     (T, B, H)  cell states (LSTM; else null)
//   gates  (T, B, rnn_saved_width)  saved activations (LSTM, GRU; else null)
//   x (T, B, I); w_ih (G, I); w_hh (G, H); b_ih, b_hh (G,) or null; h0, c0 (B, H), never null
//   (c0 LSTM only); lengths (B,) or null; reverse: run t = T-1 .. 0.
void rnn_forward(RnnCell cell, float* y, float* h_n, float* c_n, float* hs, float* cs, float* gates,
                 const float* x, const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
                 const float* h0, const float* c0, const int64_t* lengths, bool reverse, const RnnShape& s);

// Backward of one layer-direction, from the forward's inputs and saved buffers.
//   dx (T, B, I) or null (not wanted); dw_ih (G, I), dw_hh (G, H); db_ih, db_hh (G,) or null;
//   dh0 (B, H); dc0 (B, H) (LSTM; else null). All are overwritten.
//   dy (T, B, H), dh_n, dc_n (B, H): gradients of the forward's outputs (dc_n LSTM only); never null.
void rnn_backward(RnnCell cell, float* dx, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh, float* dh0,
                  float* dc0, const float* dy, const float* dh_n, const float* dc_n, const float* x,
                  const float* w_ih, const float* w_hh, const float* h0, const float* c0, const float* hs,
                  const float* cs, const float* gates, const int64_t* lengths, bool reverse, const RnnShape& s);

// ---- what rnn.cpp needs from a pointwise build (rnn_kernels.h) -------------------------------
// Each row function handles the units [j0, j1) of one batch row of one step. Arrays named g, dg
// hold a row's gates in PyTorch's layout (gate k of unit j at k * H + j); hg, the recurrent
// product, has gate k of unit j at k * hs + j (it comes from a GEMM scratch laid out per block of
// units); dhg is the recurrent product's part of dh (B, H layout like dh).
struct RnnPointwise {
  // LSTM forward: pre-activations g + hg; g gets i f g o; writes c, h and, when y != h, y.
  void (*lstm_forward)(float* g, const float* hg, int64_t hs, float* c, float* h, float* y, const float* c_prev,
                       int64_t H, int64_t j0, int64_t j1);
  // GRU forward: g holds x W_ih^T + b_ih in its first 3H; hg = h_prev W_hh^T + b_hh. g gets r, z,
  // n and, in its 4th block, hn = W_hn h + b_hn; writes h and, when y != h, y.
  void (*gru_forward)(float* g, const float* hg, int64_t hs, float* h, float* y, const float* h_prev, int64_t H,
                      int64_t j0, int64_t j1);
  // RNN forward: h holds the input projection and gets the activation of h + hg; y as above.
  void (*rnn_forward)(float* h, const float* hg, float* y, bool relu, int64_t j0, int64_t j1);
  // LSTM backward: dh (the direct part) + dhg + dy is the gradient of h_t; dh gets the direct
  // part of dh_{t-1} (zero); dc in and out; writes dg (4H).
  void (*lstm_backward)(float* dg, float* dh, const float* dhg, float* dc, const float* dy, const float* g,
                        const float* c, const float* c_prev, int64_t H, int64_t j0, int64_t j1);
  // GRU backward: writes dgx (r z n pre-activation gradients, 3H) and dgh (the same with the n
  // block times r: the gradient of W_hn h + b_hn); dh gets the direct part (dh_t * z).
  void (*gru_backward)(float* dgx, float* dgh, float* dh, const float* dhg, const float* dy, const float* g,
                       const float* h_prev, int64_t H, int64_t j0, int64_t j1);
  // RNN backward: da = (dh + dhg + dy) * act'(h); dh gets zero.
  void (*rnn_backward)(float* da, float* dh, const float* dhg, const float* dy, const float* h, bool relu,
                       int64_t j0, int64_t j1);
  // One row of a step's product against one packed B sliver (K x nr): c[j] = bias[j] (or 0) +
  // sum_p a[p * a_stride] b[p * nr + j]. For batches too small for the micro-kernel's tile.
  void (*row_product)(float* c, const float* a, int64_t a_stride, const float* b, int64_t K, int64_t nr,
                      const float* bias);
  // acc[i] += x[i] for i < n.
  void (*accumulate)(float* acc, const float* x, int64_t n);
};
const RnnPointwise& rnn_pointwise_ref();
const RnnPointwise& rnn_pointwise_avx2();
const RnnPointwise& rnn_pointwise_avx512();
const RnnPointwise& rnn_pointwise_for(Isa isa);

}  // namespace fastnn
