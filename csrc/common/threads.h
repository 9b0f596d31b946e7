// Thread control for the kernels.
//
// The thread count is a process-wide atomic read at the start of every kernel, so
// set_num_threads() works at any time, from any Python thread, without touching
// OpenMP's global state. Default: the CPUs in this process's affinity mask, or
// FASTNN_NUM_THREADS, or OMP_NUM_THREADS. Small problems run on the calling thread
// (no OpenMP start-up cost).
//
// fork(): libgomp keeps its worker pool per master thread, and a forked child
// inherits the record of that pool but not its threads, so the child's first
// parallel region would wait forever. A child therefore starts on one thread
// (as PyTorch's), and if it asks for more, its parallel regions are started from
// a persistent helper thread of its own, whose pool is new and alive.
#pragma once
#include <cstdint>
#include <functional>

namespace fastnn {

int default_num_threads();
int get_num_threads();
void set_num_threads(int n);       // n >= 1
bool openmp_enabled();
int openmp_version();              // _OPENMP date, 0 without OpenMP

// Threads worth using for `work` units (about one multiply-add each): 1 below
// the threshold, then at most one thread per `min_work_per_thread` units.
int threads_for_work(double work, double min_work_per_thread = 1 << 17);
// The same for work cut into `items` pieces that are never split (planes, channels, rows, tiles):
// at most one thread per item, and at least one thread.
int threads_for_items(double work, int64_t items, double min_work_per_thread = 1 << 17);

// True in a process made by fork() from one that had started OpenMP threads.
bool needs_fork_master();
// Runs `task` on the child's helper thread and waits for it.
void run_on_fork_master(const std::function<void()>& task);

}  // namespace fastnn

// ---- helpers for kernels -----------------------------------------------------
#ifdef _OPENMP
#include <omp.h>
#endif
#include "common/denormals.h"

namespace fastnn {

// Runs body(thread_id, thread_count) on `threads` threads (an OpenMP team), or
// directly on the caller when threads == 1, so one-thread work never touches the
// OpenMP runtime (safe after fork, and inside a caller's own parallel region).
// Every thread runs the body with denormals off (common/denormals.h).
template <class Body>
void run_parallel(int threads, Body&& body) {
#ifdef _OPENMP
  if (threads > 1) {
    auto team = [&] {
#pragma omp parallel num_threads(threads)
      {
        DenormalsOff ftz;
        body(omp_get_thread_num(), omp_get_num_threads());
      }
    };
    if (needs_fork_master())
      run_on_fork_master(team);
    else
      team();
    return;
  }
#endif
  DenormalsOff ftz;
  body(0, 1);
}

// A barrier among the team of run_parallel; call it with the team's size.
inline void team_barrier(int team_size) {
#ifdef _OPENMP
  if (team_size > 1) {
#pragma omp barrier
  }
#else
  (void)team_size;
#endif
}

// The [begin, end) share of `total` items for thread `tid` of `nt`.
inline void split_range(int64_t total, int tid, int nt, int64_t* begin, int64_t* end) {
  *begin = total * tid / nt;
  *end = total * (tid + 1) / nt;
}

}  // namespace fastnn
