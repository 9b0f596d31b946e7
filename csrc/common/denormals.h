// Denormal (subnormal) floats off while a kernel runs: flush-to-zero and denormals-are-zero.
//
// A float below 2^-126 takes a microcode assist on x86 in every multiply or add that reads or
// produces it: tens to a hundred cycles instead of a few. Training produces such values as the
// gradients shrink (measured: a LeNet-5 MNIST epoch, 2.9 s with them, 1.7 s without), so every
// kernel runs with MXCSR's FTZ (bit 15) and DAZ (bit 6) set on every thread of its team -- as
// oneDNN does inside its kernels -- and restores the thread's previous bits afterwards, so numpy and
// the caller's own code keep IEEE gradual underflow. A result that would be subnormal becomes 0.
#pragma once

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define FASTNN_HAVE_MXCSR 1
#endif

namespace fastnn {

class DenormalsOff {
 public:
#ifdef FASTNN_HAVE_MXCSR
  DenormalsOff() : saved_(_mm_getcsr() & kBits) { _mm_setcsr(_mm_getcsr() | kBits); }
  ~DenormalsOff() { _mm_setcsr((_mm_getcsr() & ~kBits) | saved_); }
  DenormalsOff(const DenormalsOff&) = delete;
  DenormalsOff& operator=(const DenormalsOff&) = delete;

 private:
  static constexpr unsigned kBits = 0x8040u;
  unsigned saved_;
#endif
};

}  // namespace fastnn
