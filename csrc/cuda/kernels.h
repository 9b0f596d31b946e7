// The CUDA kernels' entry points, callable from C++ (no CUDA types). Every function takes the
// device that owns its pointers last, runs on fastnn's stream of that device (runtime.h), returns
// as soon as the work is queued, and throws CudaError when the launch fails. Pointers are device
// pointers; arguments go outputs, inputs, then sizes, as in csrc/cpu. The bindings check shapes.
#pragma once
#include <cstdint>

namespace fastnn {
namespace cuda {

// ---- gemm.cu (M, N, K) ----
// C (M, N) = alpha * op(A) op(B) + beta * C, then + bias_n[j] and max(., 0) when asked; row-major
// with leading dimensions. beta == 0 never reads C (it may hold NaN).
void sgemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M, int64_t N,
           int64_t K, bool trans_a, bool trans_b, float alpha, float beta, const float* bias_n, bool relu,
           int device);
// Whether sgemm may round its operands to TF32 and use the tensor cores (as PyTorch's
// allow_tf32): off by default; about 3 decimal digits per product instead of 7.
void set_allow_tf32(bool allow);
bool allow_tf32();

// ---- elementwise.cu (n elements) ----
enum class Binary { add = 0, sub = 1, mul = 2, div = 3 };
void fill(float* y, float value, int64_t n, int device);
// out[i] = a[i] op b[i % b_period]: b_period == n for equal shapes, the row width to broadcast a
// bias row over (rows, b_period), 1 for a scalar held on the device.
void binary(Binary op, float* out, const float* a, const float* b, int64_t n, int64_t b_period, int device);
// y = f(x); dx = dy * f'(.) from the saved value: the input for log, the output for the others
// (neg saves nothing).
enum class Unary { neg = 0, exp = 1, log = 2, sqrt = 3, sigmoid = 4, tanh = 5 };
void unary(Unary op, float* y, const float* x, int64_t n, int device);
void unary_backward(Unary op, float* dx, const float* dy, const float* saved, int64_t n, int device);
// y = alpha * x + beta * y (beta == 0 never reads y).
void axpby(float* y, float alpha, const float* x, float beta, int64_t n, int device);
void relu_forward(float* y, const float* x, int64_t n, int device);
void relu_backward(float* dx, const float* dy, const float* y, int64_t n, int device);
// out (cols,) = the sums of x's columns (x is rows x cols, row-major): a bias gradient.
void column_sums(float* out, const float* x, int64_t rows, int64_t cols, int device);
// out (1,) = scale * the sum of x's n elements.
void sum_all(float* out, const float* x, int64_t n, float scale, int device);

// out = x with its axes reordered (out axis i is x's axis perm[i]); at most 8 axes.
void permute(float* out, const float* x, const int64_t* shape, const int* perm, int ndim, int device);
// The slab [offset, offset + n) of out's middle axis (out is (A, total, inner), piece (A, n, inner))
// set from piece (to_out) or copied into piece: what cat and its backward do along any axis.
void copy_slab(float* out, float* piece, int64_t A, int64_t n, int64_t inner, int64_t total, int64_t offset,
               bool to_out, int device);

// ---- loss.cu (N rows, C classes) ----
// loss (1,) = mean over rows of logsumexp(logits) - logits[label]; labels are int64 in [0, C),
// or (labels_f32 instead, null labels) whole numbers held as float32 (a fastnn tensor of labels).
void cross_entropy_forward(float* loss, const float* logits, const int64_t* labels, const float* labels_f32,
                           int64_t N, int64_t C, int device);
// dlogits = grad_loss[0] / N * (softmax(logits) - onehot(label)); grad_loss is a device scalar.
void cross_entropy_backward(float* dlogits, const float* logits, const int64_t* labels, const float* labels_f32,
                            const float* grad_loss, int64_t N, int64_t C, int device);

// ---- optim.cu: all parameters in one launch per 64 of them ----
struct ParamSlot {
  float* param;
  const float* grad;
  float* state0;  // Adam: first moment; SGD: momentum buffer (or null without momentum)
  float* state1;  // Adam: second moment
  int64_t n;
};
// The same settings, and the same per-element arithmetic, as the CPU kernels (cpu/optim.h).
struct AdamSettings {
  float step_size, bc2_sqrt;  // lr / (1 - beta1^step) and sqrt(1 - beta2^step), from adam_bias_corrections
  float one_minus_beta1, beta2, one_minus_beta2, eps;
  float weight_decay;  // Adam: added to the gradient (L2); AdamW: see decay_factor
  float decay_factor;  // AdamW: 1 - lr * weight_decay, applied to the weights; Adam: 1
  bool decoupled, maximize;
};
void adam_step(const ParamSlot* slots, int count, const AdamSettings& s, int device);
// The same with the step count held on the device (for CUDA-graph capture, where host values
// are frozen into the graph): adds 1 to *step, then updates with the bias corrections of the new
// count, computed on the device in float (step_size and bc2_sqrt of s are not used).
void adam_step_capturable(const ParamSlot* slots, int count, const AdamSettings& s, float lr, float beta1,
                          float beta2, float* step, int device);
struct SgdSettings {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize;
  bool first_step;  // the momentum buffer starts as the gradient
};
void sgd_step(const ParamSlot* slots, int count, const SgdSettings& s, int device);

// ---- conv.cu (N, C, H, W input; K, C/groups, R, S weight; OH, OW output) ----
struct ConvShape {
  int64_t N, C, H, W, K, R, S, OH, OW;
  int64_t stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups;
};
void conv2d_forward(float* out, const float* x, const float* w, const float* bias, const ConvShape& s, int device);
// The gradients whose pointers are not null.
void conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                     const ConvShape& s, int device);

// ---- pool.cu (P = N * C planes of H x W; OH x OW outputs) ----
struct PoolShape {
  int64_t P, H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};
// indices: the flat index ih * W + iw of each maximum in its plane, as the CPU kernel writes it.
void max_pool2d_forward(float* out, int64_t* indices, const float* x, const PoolShape& s, int device);
void max_pool2d_backward(float* dx, const float* dy, const int64_t* indices, const PoolShape& s, int device);

// ---- norm.cu (N images, C channels, L values per channel of an image) ----
// Training: the batch's per-channel mean and invstd = 1 / sqrt(biased var + eps) (sums in
// double), running statistics (or null) updated in place with momentum and the unbiased
// variance; evaluation: the running statistics. y = (x - mean) * invstd * w + b (w, b may be null).
void batch_norm_forward(float* y, float* mean, float* invstd, const float* x, const float* w, const float* b,
                        float* running_mean, float* running_var, bool training, float momentum, float eps,
                        int64_t N, int64_t C, int64_t L, int device);
// dw, db (C,) always; dx as the CPU kernel (training: through the batch statistics).
void batch_norm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* mean,
                         const float* invstd, const float* w, bool training, int64_t N, int64_t C, int64_t L,
                         int device);

// ---- rnn.cu (T steps, B rows, I inputs, H units; see csrc/cpu/rnn.h for the buffers) ----
// cell: 0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu (the CPU's RnnCell); lengths: device int64 (B,) or null.
struct RnnDims {
  int64_t T, B, I, H;
};
void rnn_forward(int cell, float* y, float* h_n, float* c_n, float* hs, float* cs, float* gates, const float* x,
                 const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh, const float* h0,
                 const float* c0, const int64_t* lengths, bool reverse, const RnnDims& s, int device);
void rnn_backward(int cell, float* dx, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh, float* dh0, float* dc0,
                  const float* dy, const float* dh_n, const float* dc_n, const float* x, const float* w_ih,
                  const float* w_hh, const float* h0, const float* c0, const float* hs, const float* cs,
                  const float* gates, const int64_t* lengths, bool reverse, const RnnDims& s, int device);

// ---- pool.cu: global average pooling (adaptive average pooling to 1 x 1), P planes of L values ----
void global_avg_pool_forward(float* out, const float* x, int64_t P, int64_t L, int device);
void global_avg_pool_backward(float* dx, const float* dy, int64_t P, int64_t L, int device);

}  // namespace cuda
}  // namespace fastnn
