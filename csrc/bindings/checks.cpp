#include "bindings/checks.h"

#include <sstream>

#include "common/finite.h"

namespace fastnn {

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

void raise_value(const std::string& msg) { throw py::value_error(msg); }
void raise_type(const std::string& msg) { throw py::type_error(msg); }

static void check_float32(const py::array& a, const char* fn, const char* arg) {
  if (!a.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " +
               std::string(py::str(a.dtype())) + " (convert with .astype(numpy.float32))");
}

MatrixArg check_matrix(const py::array& a, const char* fn, const char* arg, const char* expected_shape,
                       bool writable) {
  check_float32(a, fn, arg);
  if (a.ndim() != 2)
    raise_value(std::string(fn) + ": argument '" + arg + "' must be 2-D of shape " + expected_shape +
                ", got shape " + shape_str(a));
  const int64_t rows = a.shape(0), cols = a.shape(1);
  const int64_t s0 = a.strides(0), s1 = a.strides(1);
  const bool empty = rows == 0 || cols == 0;  // no element to reach: any strides will do
  const bool unit_inner = empty || cols <= 1 || s1 == static_cast<int64_t>(sizeof(float));
  const bool row_ok = empty || rows <= 1 || (s0 > 0 && s0 % static_cast<int64_t>(sizeof(float)) == 0 &&
                                    s0 / static_cast<int64_t>(sizeof(float)) >= cols);
  if (!unit_inner || !row_ok)
    raise_value(std::string(fn) + ": argument '" + arg + "' of shape " + shape_str(a) +
                " must have contiguous rows (unit stride along the last axis), got strides (" +
                std::to_string(s0) + ", " + std::to_string(s1) +
                ") bytes; pass numpy.ascontiguousarray(" + arg + ") or use the transpose flag");
  if (writable && !a.writeable())
    raise_value(std::string(fn) + ": argument '" + arg + "' is read-only; pass a writable array");
  int64_t ld = (empty || rows <= 1) ? std::max<int64_t>(cols, 1) : s0 / static_cast<int64_t>(sizeof(float));
  return {static_cast<float*>(const_cast<void*>(a.data())), rows, cols, ld};
}

const float* check_vector(const py::array& v, const char* fn, const char* arg, int64_t n) {
  check_float32(v, fn, arg);
  if (v.ndim() != 1 || v.shape(0) != n)
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape (" + std::to_string(n) +
                ",), got shape " + shape_str(v));
  if (n > 1 && v.strides(0) != static_cast<py::ssize_t>(sizeof(float)))
    raise_value(std::string(fn) + ": argument '" + arg + "' must be contiguous; pass numpy.ascontiguousarray(" +
                arg + ")");
  return static_cast<const float*>(v.data());
}

void check_no_overlap(const MatrixArg& out, const MatrixArg& in, const char* fn, const char* out_name,
                      const char* in_name) {
  if (out.rows == 0 || out.cols == 0 || in.rows == 0 || in.cols == 0) return;
  const float* o0 = out.data;
  const float* o1 = out.data + (out.rows - 1) * out.ld + out.cols;
  const float* i0 = in.data;
  const float* i1 = in.data + (in.rows - 1) * in.ld + in.cols;
  if (o0 < i1 && i0 < o1)
    raise_value(std::string(fn) + ": argument '" + out_name + "' overlaps '" + in_name +
                "' in memory; pass a separate output array");
}

void check_finite(const MatrixArg& m, const char* fn, const char* arg) {
  int64_t r, c;
  if (find_nonfinite(m.data, m.rows, m.cols, m.ld, &r, &c)) {
    float x = m.data[r * m.ld + c];
    raise_value(std::string(fn) + ": argument '" + arg + "' contains " + (std::isnan(x) ? "NaN" : "infinity") +
                " at [" + std::to_string(r) + ", " + std::to_string(c) +
                "]; fix the input or disable the check with fastnn.set_check_finite(False)");
  }
}

}  // namespace fastnn
