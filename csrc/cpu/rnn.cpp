// Recurrent layers: the sequence loops, the per-step product's driver, the step team and the
// denormal mode. The algorithm is stated in rnn.h; the pointwise loops live in rnn_kernels.h.
// Dimension letters: T, B, I, H, G = gates * H, S = the saved width per (t, b) row.
#include "cpu/rnn.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "common/denormals.h"
#include "common/threads.h"
#include "common/workspace.h"
#include "cpu/gemm.h"

namespace fastnn {

const RnnPointwise& rnn_pointwise_for(Isa isa) {
  switch (isa) {
    case Isa::avx512: return rnn_pointwise_avx512();
    case Isa::avx2: return rnn_pointwise_avx2();
    default: return rnn_pointwise_ref();
  }
}

namespace {

using RowProduct = void (*)(float*, const float*, int64_t, const float*, int64_t, int64_t, const float*);

thread_local Workspace tls_workspace;

size_t round16(int64_t n) { return static_cast<size_t>((n + 15) / 16 * 16); }

// ---- the per-step product ---------------------------------------------------------------------
// C (M, ldc) = A (M, K) x B, with B packed once per call into NR-wide slivers over the whole K
// (sliver s: bp[s * K * nr + p * nr + jj]) and A packed per step in row tiles: a thread's rows
// [b0, b1) are cut into tiles of MR rows from b0, the last one shorter, and the tile of rows
// [tb0, tb1) is packed with as many rows as it has, at ap[tb0 * K + p * (tb1 - tb0) + i]. Each
// tile is one call of the register kernel cut to its rows (GemmKernelInfo::kernels), so
// rows are split evenly between threads (at B = 64 on two threads, 32 rows each, not 36 and 28
// in whole tiles of 12) and no tile computes padding. Columns come in blocks of NR units, `ng`
// slivers (one per gate) to a block, so the thread that owns a block of units computes all of
// their gates. K is never blocked: every element of C is one FMA chain over k from zero,
// whichever register tile computes it, so the results do not depend on the tile, and so not on
// the thread count (which picks the tile and the rows, see plan_steps).
struct StepGemm {
  const GemmKernelInfo* kr;
  int64_t K, ldc;
  const float* bp;
  const float* bias;  // (ldc,) added at the last K block, or null
  // For M * 4 <= MR (batches of a few rows), row by row instead: the tile's kernel would run
  // mostly idle FMA chains.
  RowProduct row_product;

  // The tiles of rows [b0, b1) x slivers [s0, s1).
  void run(const float* ap, int64_t b0, int64_t b1, int64_t s0, int64_t s1, float* c) const {
    const int64_t mr = kr->mr, nr = kr->nr;
    int nonfinite = 0;  // not checked: NaN propagates as in PyTorch
    GemmTile tile{1.0f, 0.0f, nullptr, nullptr, false, true, &nonfinite};
    for (int64_t s = s0; s < s1; ++s) {
      tile.bias_n = bias ? bias + s * nr : nullptr;
      for (int64_t tb0 = b0; tb0 < b1; tb0 += mr) {
        const int64_t m = std::min(mr, b1 - tb0);
        const float* a = ap + tb0 * K;
        if (row_product) {
          for (int64_t i = 0; i < m; ++i)
            row_product(c + (tb0 + i) * ldc + s * nr, a + i, m, bp + s * K * nr, K, nr, tile.bias_n);
        } else {
          kr->kernels[m](K, a, bp + s * K * nr, nr, c + tb0 * ldc + s * nr, ldc, tile);
        }
      }
    }
  }
};

// Batches of a few rows take row products: by the general tile's height, not the chosen tile's,
// so the choice (and with it the order of the sums) never depends on the thread count.
bool few_rows(int64_t B) { return B * 4 <= gemm_kernel_for(active_isa()).mr; }

StepGemm make_step_gemm(const GemmKernelInfo& kr, const RnnPointwise& k, int64_t M, int64_t K, int64_t n_slivers) {
  return {&kr, K, n_slivers * kr.nr, nullptr, nullptr, few_rows(M) ? k.row_product : nullptr};
}

// Columns [j0, j1) of the rows [tb0, tb1) of one row tile of src (row stride ld) into a StepGemm's
// packed A, whose K index of column j is j, by register transposes. Row by row, each value would
// be a store into a cache line of its own (measured: 15% of an LSTM's backward).
void pack_tile(float* ap, int64_t K, const float* src, int64_t ld, int64_t tb0, int64_t tb1, int64_t j0, int64_t j1) {
  const int64_t m = tb1 - tb0;
  transpose_copy(src + tb0 * ld + j0, ld, m, j1 - j0, ap + tb0 * K + j0 * m, m);
}

// The barrier between steps. OpenMP's spins for a long time (libgomp: some 10^5 rounds) before
// it sleeps; when another process shares our cores, the thread we wait for may be descheduled
// behind the spinning one, and each of the T barriers of a call then costs a scheduler time slice
// (measured: a 2-thread forward 50x slower with one busy process beside it, 20x slower than on
// one thread). This one spins briefly (a step's threads normally arrive within microseconds of
// each other), then yields the core to whoever needs it.
class StepBarrier {
 public:
  // team_size: the size of the running team (OpenMP may start fewer threads than asked for).
  void wait(int team_size) {
    if (team_size <= 1) return;
    const unsigned generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team_size - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);  // publishes every thread's writes
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < kSpins)
        cpu_relax();
      else
        std::this_thread::yield();
    }
  }

 private:
  static constexpr int kSpins = 1000;  // some 20-50 microseconds of pause instructions
  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

// A thread's rectangle of the steps' work: batch rows [b0, b1) x blocks of units [u0, u1). The
// team packs W_hh split by units in both plans (pack(u0, u1)); split by rows, every thread then
// reads every sliver, so all wait for the whole packing.
struct StepPart {
  int64_t b0, b1, u0, u1;
};

// Per step, enough multiply-adds to make a thread worth a barrier.
constexpr double kStepWorkPerThread = 1 << 19;

// How the steps' work is shared. By units: every thread takes all rows and its blocks of units,
// and the threads meet at a barrier after each step (h_t, or dA_t, is made by all of them and
// read whole by each). By rows: every thread takes an even share of the rows and all units, and
// runs the recurrence of its own rows alone: no barrier, and nothing crosses between cores but
// the packed W_hh. Row tiles are cut to the rows (StepGemm), so the work is padded only in the
// units, to whole NR blocks. Rows are taken when some register tile gives each thread no more
// padded work than splitting units would (which also pays the barriers and the traffic), and
// that tile is then the one with the least padded work per thread.
struct StepPlan {
  const GemmKernelInfo* kr;
  int threads;
  bool by_rows;
};

StepPlan plan_steps(int64_t B, int64_t H, int64_t ng, int64_t G) {
  const int wanted = threads_for_work(static_cast<double>(B) * static_cast<double>(G) * static_cast<double>(H),
                                      kStepWorkPerThread);
  // The tile with the least padded area over all rows and the ng gate blocks of H units, as sgemm picks.
  const GemmKernelInfo& general = gemm_kernel_for_shape(active_isa(), B, H, ng);
  const int64_t nu = (H + general.nr - 1) / general.nr;
  StepPlan plan{&general, static_cast<int>(std::min<int64_t>(wanted, nu)), false};
  if (wanted <= 1 || few_rows(B)) return plan;  // row products over units
  auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  double best = static_cast<double>(B * ceil_div(nu, plan.threads) * ng * general.nr);
  // At least 4 rows a thread: a tile of m rows runs m x (NR / vector width) FMA chains, and
  // fewer than 8 leave the FMA units waiting on their latency.
  const int t = static_cast<int>(std::min<int64_t>(wanted, B / 4));
  if (t < 2) return plan;
  const GemmKernelTable table = gemm_kernels_for(active_isa());
  for (int r = 0; r < table.count; ++r) {
    const GemmKernelInfo& kr = table.rows[r];
    const double work = static_cast<double>(ceil_div(B, t) * ng * ceil_div(H, kr.nr) * kr.nr);
    if (plan.by_rows ? work < best : work <= best * 1.1) {  // ties keep the earlier (general) tile
      plan = {&kr, t, true};
      best = work;
    }
  }
  return plan;
}

template <class Pack>
StepPart step_part(const StepPlan& plan, int64_t B, int64_t nu, int tid, int nt, StepBarrier& barrier,
                   const Pack& pack) {
  StepPart part{0, B, 0, nu};
  split_range(nu, tid, nt, &part.u0, &part.u1);
  pack(part.u0, part.u1);
  if (plan.by_rows) {
    barrier.wait(nt);
    part.u0 = 0, part.u1 = nu;
    split_range(B, tid, nt, &part.b0, &part.b1);
  }
  return part;
}

inline bool active(const int64_t* lengths, int64_t t, int64_t b) { return !lengths || t < lengths[b]; }

void copy_cols(float* dst, const float* src, int64_t j0, int64_t j1) {
  std::memcpy(dst + j0, src + j0, sizeof(float) * static_cast<size_t>(j1 - j0));
}
void zero_cols(float* dst, int64_t j0, int64_t j1) { std::fill(dst + j0, dst + j1, 0.0f); }

}  // namespace

void rnn_forward(RnnCell cell, float* y, float* h_n, float* c_n, float* hs, float* cs, float* gates,
                 const float* x, const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
                 const float* h0, const float* c0, const int64_t* lengths, bool reverse, const RnnShape& s) {
  DenormalsOff ftz;
  const int64_t T = s.T, B = s.B, I = s.I, H = s.H;
  const int64_t ng = rnn_gates(cell), G = ng * H, S = rnn_saved_width(cell, H), BH = B * H;
  const bool lstm = cell == RnnCell::lstm, gru = cell == RnnCell::gru;
  const bool relu = cell == RnnCell::rnn_relu;
  if (T == 0 || B == 0 || H == 0) {
    if (BH > 0) {
      std::memcpy(h_n, h0, sizeof(float) * static_cast<size_t>(BH));
      if (lstm) std::memcpy(c_n, c0, sizeof(float) * static_cast<size_t>(BH));
    }
    return;
  }
  const RnnPointwise& k = rnn_pointwise_for(active_isa());
  const StepPlan plan = plan_steps(B, H, ng, G);
  const GemmKernelInfo& kr = *plan.kr;
  const int64_t nr = kr.nr, mr = kr.mr, nu = (H + nr - 1) / nr;
  StepGemm gemm = make_step_gemm(kr, k, B, H, nu * ng);

  // Workspace: W_hh packed (nu * ng slivers of H x NR), packed h (two buffers, B x H each), the
  // step's product (B x ldc), GRU's b_hh in the product's layout (ldc), the projection bias (G).
  const size_t n_bp = round16(nu * ng * H * nr), n_ap = round16(B * H), n_c = round16(B * gemm.ldc);
  float* ws = tls_workspace.get(n_bp + 2 * n_ap + n_c + round16(gemm.ldc) + round16(G));
  float* bp = ws;
  float* ap[2] = {bp + n_bp, bp + n_bp + n_ap};
  float* prod = ap[1] + n_ap;
  float* hidden_bias = prod + n_c;
  float* bias = hidden_bias + round16(gemm.ldc);
  // Sliver (u, q) of the packed W_hh is W_hh^T's columns q*H + u*NR + [0, NR), i.e. those rows of
  // W_hh, transposed. The step team packs them, each thread its own units (in parallel, and,
  // split by units, into the cache of the core that reads them).
  auto pack_units = [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u)
      for (int64_t q = 0; q < ng; ++q) {
        const int64_t j0 = u * nr, cols = std::min(nr, H - j0);
        float* sliver = bp + (u * ng + q) * H * nr;
        transpose_copy(w_hh + (q * H + j0) * H, H, cols, H, sliver, nr);
        for (int64_t p = 0; p < H; ++p) std::fill(sliver + p * nr + cols, sliver + (p + 1) * nr, 0.0f);
        if (gru && b_hh)  // the GRU's b_hh in the product's layout (gemm.bias)
          for (int64_t jj = 0; jj < nr; ++jj)
            hidden_bias[(u * ng + q) * nr + jj] = jj < cols ? b_hh[q * H + j0 + jj] : 0.0f;
      }
  };
  gemm.bp = bp;
  gemm.bias = gru && b_hh ? hidden_bias : nullptr;

  const float* proj_bias = nullptr;
  if (gru) {
    proj_bias = b_ih;  // b_hh goes to the hidden product, inside r * (W_hn h + b_hn)
  } else if (b_ih || b_hh) {
    for (int64_t j = 0; j < G; ++j) bias[j] = (b_ih ? b_ih[j] : 0.0f) + (b_hh ? b_hh[j] : 0.0f);
    proj_bias = bias;
  }

  // The input projection of every step: one GEMM, into the saved gates (LSTM, GRU) or into the
  // states themselves (RNN: the activation is applied in place).
  float* proj = lstm || gru ? gates : hs;
  GemmEpilogue proj_ep;
  proj_ep.bias_n = proj_bias;
  sgemm(false, true, T * B, G, I, 1.0f, x, I, w_ih, I, 0.0f, proj, lstm || gru ? S : H, proj_ep);

  // The steps: one team for the whole sequence, each thread owning a rectangle of rows x blocks
  // of units (all their gates; see plan_steps): its tiles of the product, then the fused pass
  // over its units of its rows, which also packs h_t for the next product; split by units, one
  // barrier per step. h0 is packed as each h_t is, by its part's owner.
  StepBarrier barrier;
  run_parallel(plan.threads, [&](int tid, int nt) {
    const auto [b0, b1, u0, u1] = step_part(plan, B, nu, tid, nt, barrier, pack_units);
    for (int64_t tb0 = b0; tb0 < b1; tb0 += mr)
      pack_tile(ap[0], H, h0, H, tb0, std::min(b1, tb0 + mr), u0 * nr, std::min(H, u1 * nr));
    if (!plan.by_rows) barrier.wait(nt);  // all of h0 packed before any thread's first product
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? T - 1 - step : step;
      const int64_t prev = reverse ? t + 1 : t - 1;
      const float* h_prev = step == 0 ? h0 : hs + prev * BH;
      const float* c_prev = lstm ? (step == 0 ? c0 : cs + prev * BH) : nullptr;
      float* h_t = hs + t * BH;
      float* y_t = y + t * BH;
      float* g_t = gates ? gates + t * B * S : nullptr;
      float* c_t = lstm ? cs + t * BH : nullptr;
      const float* a_cur = ap[step % 2];
      float* a_next = ap[(step + 1) % 2];

      gemm.run(a_cur, b0, b1, u0 * ng, u1 * ng, prod);
      for (int64_t tb0 = b0; tb0 < b1; tb0 += mr) {
        const int64_t tb1 = std::min(b1, tb0 + mr);
        for (int64_t b = tb0; b < tb1; ++b) {
          const bool on = active(lengths, t, b);
          float* h = h_t + b * H;
          float* yb = y_t + b * H;
          const float* hp = h_prev + b * H;
          for (int64_t u = u0; u < u1; ++u) {
            const int64_t j0 = u * nr, j1 = std::min(H, j0 + nr);
            const float* hg = prod + b * gemm.ldc + u * ng * nr - j0;  // hg[q * nr + j]: gate q of unit j
            if (!on) {  // the state is held, the output is zero
              copy_cols(h, hp, j0, j1);
              if (lstm) copy_cols(c_t + b * H, c_prev + b * H, j0, j1);
              if (yb != h) zero_cols(yb, j0, j1);
            } else if (lstm) {
              k.lstm_forward(g_t + b * S, hg, nr, c_t + b * H, h, yb, c_prev + b * H, H, j0, j1);
            } else if (gru) {
              k.gru_forward(g_t + b * S, hg, nr, h, yb, hp, H, j0, j1);
            } else {
              k.rnn_forward(h, hg, yb, relu, j0, j1);
            }
          }
        }
        pack_tile(a_next, H, h_t, H, tb0, tb1, u0 * nr, std::min(H, u1 * nr));
      }
      if (!plan.by_rows) barrier.wait(nt);  // h_t complete (and packed) before any thread's next product
    }
  });

  // Final states: those after the last step processed, held past each row's length.
  const int64_t last = reverse ? 0 : T - 1;
  std::memcpy(h_n, hs + last * BH, sizeof(float) * static_cast<size_t>(BH));
  if (lstm) std::memcpy(c_n, cs + last * BH, sizeof(float) * static_cast<size_t>(BH));
}

void rnn_backward(RnnCell cell, float* dx, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh, float* dh0,
                  float* dc0, const float* dy, const float* dh_n, const float* dc_n, const float* x,
                  const float* w_ih, const float* w_hh, const float* h0, const float* c0, const float* hs,
                  const float* cs, const float* gates, const int64_t* lengths, bool reverse, const RnnShape& s) {
  DenormalsOff ftz;
  const int64_t T = s.T, B = s.B, I = s.I, H = s.H;
  const int64_t ng = rnn_gates(cell), G = ng * H, S = rnn_saved_width(cell, H), BH = B * H, TB = T * B;
  const bool lstm = cell == RnnCell::lstm, gru = cell == RnnCell::gru;
  const bool relu = cell == RnnCell::rnn_relu;
  if (BH > 0) {
    std::memcpy(dh0, dh_n, sizeof(float) * static_cast<size_t>(BH));
    if (lstm) std::memcpy(dc0, dc_n, sizeof(float) * static_cast<size_t>(BH));
  }
  if (T == 0 || B == 0 || H == 0) {  // no step: the weights get no gradient
    if (dx) std::fill(dx, dx + TB * I, 0.0f);
    std::fill(dw_ih, dw_ih + G * I, 0.0f);
    std::fill(dw_hh, dw_hh + G * H, 0.0f);
    if (db_ih) std::fill(db_ih, db_ih + G, 0.0f);
    if (db_hh) std::fill(db_hh, db_hh + G, 0.0f);
    return;
  }
  const RnnPointwise& k = rnn_pointwise_for(active_isa());
  // The step's product dh_rec (B, H) = dA_h (B, G) W_hh (G, H): N = the units, K = the gates.
  const StepPlan plan = plan_steps(B, H, 1, G);
  const GemmKernelInfo& kr = *plan.kr;
  const int64_t nr = kr.nr, mr = kr.mr, nu = (H + nr - 1) / nr;
  StepGemm gemm = make_step_gemm(kr, k, B, G, nu);

  // Workspace: dA (T*B, G), the pre-activation gradients, and for the GRU dA_h (T*B, G), those of
  // the hidden product; W_hh packed (nu slivers of G x NR); packed dA_h rows (two buffers); the
  // step's product (B x ldc). dh0 and dc0 carry the direct part of dh, and dc, from step to step.
  // the bias gradients' per-row sums (B, G) of dA (and of dA_h); after the loop, the stacked
  // inputs Z (T*B, W) and the product Z^T dA (W, G) (see below).
  const int64_t W = I + H, n_sums = gru ? 2 : 1;
  const size_t n_da = round16(TB * G), n_bp = round16(nu * G * nr), n_ap = round16(B * G);
  const size_t n_c = round16(B * gemm.ldc), n_rs = round16(B * G), n_z = round16(TB * W);
  const size_t n_zt = round16(W * G);
  float* ws = tls_workspace.get(n_da * n_sums + n_bp + 2 * n_ap + n_c + n_rs * n_sums + n_z + n_zt);
  float* da = ws;
  float* dah = gru ? ws + n_da : ws;
  float* bp = ws + n_da * n_sums;
  float* ap[2] = {bp + n_bp, bp + n_bp + n_ap};
  float* prod = ap[1] + n_ap;
  float* row_sums = prod + n_c;
  float* row_sums_h = gru ? row_sums + n_rs : row_sums;
  float* z = row_sums + n_rs * n_sums;
  float* zt_da = z + n_z;
  // Sliver u of the packed W_hh: its columns u*NR + [0, NR) over all G rows; each thread packs
  // the slivers of its own units inside the step team, as in the forward.
  auto pack_units = [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t j0 = u * nr, cols = std::min(nr, H - j0);
      float* dst = bp + u * G * nr;
      for (int64_t p = 0; p < G; ++p) {
        std::memcpy(dst + p * nr, w_hh + p * H + j0, sizeof(float) * static_cast<size_t>(cols));
        std::fill(dst + p * nr + cols, dst + (p + 1) * nr, 0.0f);
      }
    }
  };
  gemm.bp = bp;
  std::fill(prod, prod + n_c, 0.0f);         // no recurrent gradient before the last step
  std::fill(row_sums, row_sums + n_rs * n_sums, 0.0f);
  float* dh = dh0;
  float* dc = dc0;

  // The steps, last first: one team, each thread owning a rectangle of rows x blocks of units
  // (see plan_steps). The fused pass over its units of its rows writes dA_t and packs dA_h
  // for the product; after a barrier when split by units, each thread computes the product for
  // its own rectangle, which its next fused pass reads.
  StepBarrier barrier;
  run_parallel(plan.threads, [&](int tid, int nt) {
    const auto [b0, b1, u0, u1] = step_part(plan, B, nu, tid, nt, barrier, pack_units);
    for (int64_t step = 0; step < T; ++step) {
      const int64_t t = reverse ? step : T - 1 - step;  // the forward's steps, last first
      const int64_t prev = reverse ? t + 1 : t - 1;
      const bool first = reverse ? t == T - 1 : t == 0;  // the forward's first step
      const float* h_prev = first ? h0 : hs + prev * BH;
      const float* c_prev = lstm ? (first ? c0 : cs + prev * BH) : nullptr;
      const float* g_t = gates ? gates + t * B * S : nullptr;
      const float* dy_t = dy + t * BH;
      float* da_t = da + t * B * G;
      float* dah_t = dah + t * B * G;
      float* a_next = ap[step % 2];

      for (int64_t tb0 = b0; tb0 < b1; tb0 += mr) {
        const int64_t tb1 = std::min(b1, tb0 + mr);
        for (int64_t b = tb0; b < tb1; ++b) {
          const bool on = active(lengths, t, b);
          const float* dhg = prod + b * gemm.ldc;  // unit j at j
          for (int64_t u = u0; u < u1; ++u) {
            const int64_t j0 = u * nr, j1 = std::min(H, j0 + nr);
            if (!on) {  // dh and dc pass through; no gate gradient
              float* d = dh + b * H;
              for (int64_t j = j0; j < j1; ++j) d[j] += dhg[j];
              for (int64_t q = 0; q < ng; ++q) {
                zero_cols(da_t + b * G + q * H, j0, j1);
                if (gru) zero_cols(dah_t + b * G + q * H, j0, j1);
              }
            } else if (lstm) {
              k.lstm_backward(da_t + b * G, dh + b * H, dhg, dc + b * H, dy_t + b * H, g_t + b * S, cs + t * BH + b * H,
                              c_prev + b * H, H, j0, j1);
            } else if (gru) {
              k.gru_backward(da_t + b * G, dah_t + b * G, dh + b * H, dhg, dy_t + b * H, g_t + b * S, h_prev + b * H, H,
                             j0, j1);
            } else {
              k.rnn_backward(da_t + b * G, dh + b * H, dhg, dy_t + b * H, hs + t * BH + b * H, relu, j0, j1);
            }
          }
        }
        // Each row's sums of its own dA over the steps: every value has one owner, whatever the
        // split, so the bias gradients do not depend on the thread count.
        for (int64_t q = 0; q < ng; ++q) {
          const int64_t j0 = q * H + u0 * nr, j1 = q * H + std::min(H, u1 * nr);
          for (int64_t b = tb0; b < tb1; ++b) {
            k.accumulate(row_sums + b * G + j0, da_t + b * G + j0, j1 - j0);
            if (gru) k.accumulate(row_sums_h + b * G + j0, dah_t + b * G + j0, j1 - j0);
          }
          pack_tile(a_next, G, dah_t, G, tb0, tb1, j0, j1);
        }
      }
      if (!plan.by_rows) barrier.wait(nt);  // dA_h complete (and packed) before any thread's product
      gemm.run(a_next, b0, b1, u0, u1, prod);  // the recurrent part of dh_{t-1}, for this thread's part
    }
    for (int64_t b = b0; b < b1; ++b)  // dh0 = direct part + recurrent part
      for (int64_t j = u0 * nr; j < std::min(H, u1 * nr); ++j) dh[b * H + j] += prod[b * gemm.ldc + j];
  });

  if (dx) sgemm(false, false, TB, I, G, 1.0f, da, G, w_ih, I, 0.0f, dx, I);

  // Weight gradients over the whole sequence, one GEMM per pre-activation gradient. Row t*B+b of
  // Z is that step's inputs [x | h_prev] (h_prev: the state the step started from, h0 at the
  // forward's first step), so Z^T dA holds dW_ih^T, then dW_hh^T: one pass over dA, which is the
  // largest operand (G = 4H columns for the LSTM) and which each GEMM packs anew. The GRU's
  // hidden product has a gradient of its own, dA_h, which takes the columns h_prev of Z in a
  // second GEMM.
  run_parallel(threads_for_work(static_cast<double>(TB * W)), [&](int tid, int nt) {
    int64_t r0, r1;
    split_range(TB, tid, nt, &r0, &r1);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r / B, b = r % B;
      const bool first = reverse ? t == T - 1 : t == 0;
      const float* h_prev = first ? h0 + b * H : hs + (reverse ? t + 1 : t - 1) * BH + b * H;
      std::memcpy(z + r * W, x + r * I, sizeof(float) * static_cast<size_t>(I));
      std::memcpy(z + r * W + I, h_prev, sizeof(float) * static_cast<size_t>(H));
    }
  });
  if (gru) {
    sgemm(true, false, I, G, TB, 1.0f, z, W, da, G, 0.0f, zt_da, G);
    sgemm(true, false, H, G, TB, 1.0f, z + I, W, dah, G, 0.0f, zt_da + I * G, G);
  } else {
    sgemm(true, false, W, G, TB, 1.0f, z, W, da, G, 0.0f, zt_da, G);
  }
  transpose_copy(zt_da, G, I, G, dw_ih, I);
  transpose_copy(zt_da + I * G, G, H, G, dw_hh, H);

  // The bias gradients: the rows' sums, added in row order.
  auto column_sums = [&](float* db, const float* sums) {
    std::fill(db, db + G, 0.0f);
    for (int64_t b = 0; b < B; ++b) k.accumulate(db, sums + b * G, G);
  };
  if (db_ih) column_sums(db_ih, row_sums);
  if (db_hh && !gru && db_ih)  // LSTM, RNN: both biases meet dA, so their gradients are equal
    std::memcpy(db_hh, db_ih, sizeof(float) * static_cast<size_t>(G));
  else if (db_hh)
    column_sums(db_hh, row_sums_h);
}

}  // namespace fastnn
