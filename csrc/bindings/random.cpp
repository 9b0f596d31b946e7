// _C.dropout_mask: argument checks, then the GIL is released around cpu/random.cpp's kernel.
#include <cmath>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "cpu/random.h"

namespace fastnn {
namespace {

py::array_t<float> dropout_mask_py(const std::vector<py::ssize_t>& shape, double p, uint64_t seed, uint64_t offset) {
  if (!(p >= 0.0 && p <= 1.0))
    raise_value("dropout_mask: argument 'p' must be in [0, 1], got p=" + std::to_string(p));
  double count = 1.0;
  for (py::ssize_t d : shape) {
    if (d < 0) raise_value("dropout_mask: argument 'shape' must be non-negative, got a size of " + std::to_string(d));
    count *= static_cast<double>(d);
  }
  if (count > std::ldexp(1.0, 40)) raise_value("dropout_mask: argument 'shape' asks for more than 2**40 elements");
  py::array_t<float> mask = new_float_array(shape);
  float* out = mask.mutable_data();
  const int64_t n = mask.size();
  {
    py::gil_scoped_release release;
    dropout_mask(out, n, p, seed, offset);
  }
  return mask;
}

}  // namespace

void bind_random(py::module_& m) {
  m.def("dropout_mask", &dropout_mask_py, py::arg("shape"), py::arg("p"), py::arg("seed"), py::arg("offset"),
        "Inverted dropout's mask (1 / (1 - p) with probability 1 - p, else 0) of the given shape: Philox4x32-10\n"
        "draw number `offset` under `seed`, the same on any thread count and on the GPU.");
}

}  // namespace fastnn
