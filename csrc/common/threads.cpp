#include "common/threads.h"

#include <atomic>
#include <cstdlib>
#include <sched.h>
#include <pthread.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastnn {

static int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return 0;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);  // OMP_NUM_THREADS may be a list "4,2": take the first
  return (end != v && n > 0 && n < 4096) ? static_cast<int>(n) : 0;
}

static int affinity_cpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  return 1;
}

int default_num_threads() {
  if (int n = env_threads("FASTNN_NUM_THREADS")) return n;
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  return affinity_cpus();
}

static std::atomic<int> g_num_threads{0};  // 0: not decided yet

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = default_num_threads();
    g_num_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_num_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

// fork() copies only the calling thread; libgomp's idle workers do not come
// along. Drop to one thread in the child (kernels then never enter an OpenMP
// region, so the dead pool is never waited on).
static void after_fork_in_child() { g_num_threads.store(1, std::memory_order_relaxed); }
static const bool g_fork_handler_installed = [] {
  pthread_atfork(nullptr, nullptr, after_fork_in_child);
  return true;
}();

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int openmp_version() {
#ifdef _OPENMP
  return _OPENMP;
#else
  return 0;
#endif
}

int threads_for_work(double work, double min_work_per_thread) {
  int n = get_num_threads();
  if (!openmp_enabled() || n <= 1 || work < 2 * min_work_per_thread) return 1;
  double by_work = work / min_work_per_thread;
  return by_work < n ? static_cast<int>(by_work) : n;
}

}  // namespace fastnn
