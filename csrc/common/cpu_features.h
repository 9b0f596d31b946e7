// CPU features and the instruction-set level the kernels run at.
//
// The level starts as the best one the CPU (and OS) supports, lowered by the
// environment variable FASTNN_ISA=avx512|avx2|ref at load time, and can be
// lowered again at run time (tests use that to reach every micro-kernel).
#pragma once
#include <string>
#include <vector>

namespace fastnn {

enum class Isa { ref = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool parse_isa(const std::string& name, Isa* out);

Isa best_supported_isa();               // what this CPU can run
std::vector<Isa> supported_isas();      // ref .. best, ascending
Isa active_isa();                       // what the kernels use now
// Returns false (and changes nothing) when the CPU cannot run `isa`.
bool set_active_isa(Isa isa);

}  // namespace fastnn
