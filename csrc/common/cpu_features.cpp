#include "common/cpu_features.h"

#include <atomic>
#include <cstdlib>

namespace fastnn {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "ref";
  }
}

bool parse_isa(const std::string& name, Isa* out) {
  if (name == "avx512") { *out = Isa::avx512; return true; }
  if (name == "avx2") { *out = Isa::avx2; return true; }
  if (name == "ref") { *out = Isa::ref; return true; }
  return false;
}

Isa best_supported_isa() {
#if defined(__x86_64__) || defined(__i386__)
  // libgcc's checks include the OS's XSAVE support for the wider registers.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::ref;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (int i = 0; i <= static_cast<int>(best_supported_isa()); ++i) out.push_back(static_cast<Isa>(i));
  return out;
}

static Isa initial_isa() {
  Isa best = best_supported_isa();
  const char* env = std::getenv("FASTNN_ISA");
  Isa wanted;
  if (env && parse_isa(env, &wanted) && static_cast<int>(wanted) < static_cast<int>(best)) return wanted;
  return best;  // unknown names and levels above the CPU's fall back to the best one
}

static std::atomic<int> g_active_isa{static_cast<int>(initial_isa())};

Isa active_isa() { return static_cast<Isa>(g_active_isa.load(std::memory_order_relaxed)); }

bool set_active_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_supported_isa())) return false;
  g_active_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

}  // namespace fastnn
