// Argument checks shared by the bindings. Every failure raises a Python
// TypeError/ValueError that names the function, the argument, what was expected
// and what was received.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace fastnn {
namespace py = pybind11;

std::string shape_str(const py::array& a);
[[noreturn]] void raise_value(const std::string& msg);
[[noreturn]] void raise_type(const std::string& msg);

// A float32 matrix whose rows are contiguous (unit stride along the last axis,
// any row stride >= the width: a slice of a wider array is fine).
struct MatrixArg {
  float* data;
  int64_t rows, cols, ld;
};
MatrixArg check_matrix(const py::array& a, const char* fn, const char* arg, const char* expected_shape,
                       bool writable = false);
// A contiguous float32 vector of length n.
const float* check_vector(const py::array& v, const char* fn, const char* arg, int64_t n);
// Raises when the bytes of two matrices overlap (an output must not alias an input).
void check_no_overlap(const MatrixArg& out, const MatrixArg& in, const char* fn, const char* out_name,
                      const char* in_name);
// Raises when the matrix holds a NaN or infinity, naming the first one.
void check_finite(const MatrixArg& m, const char* fn, const char* arg);

}  // namespace fastnn
