#include "common/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <new>
#include <pthread.h>
#include <sched.h>

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

// ---- fork ------------------------------------------------------------------

// One helper thread per forked process; it starts every parallel region there.
class ForkMaster {
 public:
  ForkMaster() : worker_([this] { loop(); }) { worker_.detach(); }
  void run(const std::function<void()>& task) {
    std::lock_guard<std::mutex> one_call_at_a_time(call_mutex_);
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = &task;
    cv_.notify_all();
    cv_.wait(lock, [this] { return task_ == nullptr; });
  }
  bool is_worker() const { return std::this_thread::get_id() == worker_id_.load(); }

 private:
  void loop() {
    worker_id_.store(std::this_thread::get_id());
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return task_ != nullptr; });
      (*task_)();
      task_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex call_mutex_, mutex_;
  std::condition_variable cv_;
  const std::function<void()>* task_ = nullptr;
  std::atomic<std::thread::id> worker_id_{};
  std::thread worker_;
};

static std::atomic<bool> g_forked{false};
static std::atomic<ForkMaster*> g_fork_master{nullptr};
static std::mutex g_fork_master_init;

static void after_fork_in_child() {
  g_forked.store(true);
  g_fork_master.store(nullptr);  // the parent's helper thread (if any) did not come along
  new (&g_fork_master_init) std::mutex();  // it may have been held by another parent thread
  g_num_threads.store(1, std::memory_order_relaxed);
}
static const bool g_fork_handler_installed = [] {
  pthread_atfork(nullptr, nullptr, after_fork_in_child);
  return true;
}();

bool needs_fork_master() {
  if (!g_forked.load(std::memory_order_relaxed)) return false;
#ifdef _OPENMP
  if (omp_get_level() > 0) return false;  // already inside a region the helper started
#endif
  ForkMaster* m = g_fork_master.load();
  return !(m && m->is_worker());
}

void run_on_fork_master(const std::function<void()>& task) {
  ForkMaster* m = g_fork_master.load();
  if (!m) {
    std::lock_guard<std::mutex> lock(g_fork_master_init);
    m = g_fork_master.load();
    if (!m) {
      m = new ForkMaster();  // lives as long as the process
      g_fork_master.store(m);
    }
  }
  m->run(task);
}

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

int threads_for_items(double work, int64_t items, double min_work_per_thread) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads_for_work(work, min_work_per_thread), items)));
}

}  // namespace fastnn
