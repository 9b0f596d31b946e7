// fastnn._C: the compiled kernels. One bind_<family>() per file in bindings/.
#include <pybind11/stl.h>

#include <string>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "common/cpu_features.h"
#include "common/threads.h"
#include "cpu/gemm.h"

#ifndef FASTNN_VERSION
#define FASTNN_VERSION "0.0.0"
#endif

namespace fastnn {
void bind_gemm(py::module_& m);
void bind_optim(py::module_& m);
void bind_loss(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_rnn(py::module_& m);
void bind_pool(py::module_& m);
void bind_norm(py::module_& m);
void bind_conv(py::module_& m);
void bind_random(py::module_& m);
void bind_cuda(py::module_& m);
}

namespace py = pybind11;
using namespace fastnn;

static constexpr int kMaxThreads = 1024;

static void set_num_threads_py(int n) {
  if (n < 1 || n > kMaxThreads)
    raise_value("set_num_threads: n must be between 1 and " + std::to_string(kMaxThreads) + ", got " +
                std::to_string(n));
  set_num_threads(n);
}

static void set_isa_py(const std::string& name) {
  Isa isa;
  if (!parse_isa(name, &isa)) raise_value("set_isa: unknown ISA '" + name + "'; expected 'avx512', 'avx2' or 'ref'");
  if (!set_active_isa(isa))
    raise_value(std::string("set_isa: this CPU cannot run '") + name + "'; the best it supports is '" +
                isa_name(best_supported_isa()) + "'");
}

static py::dict config_py() {
  py::dict d;
  d["version"] = FASTNN_VERSION;
  d["isa"] = isa_name(active_isa());
  py::list isas;
  for (Isa i : supported_isas()) isas.append(isa_name(i));
  d["isa_supported"] = isas;
  const GemmKernelInfo& k = gemm_kernel_for(active_isa());
  d["gemm_tile"] = std::to_string(k.mr) + "x" + std::to_string(k.nr);
  d["openmp"] = openmp_enabled();
  d["openmp_version"] = openmp_version();
  d["num_threads"] = get_num_threads();
  d["cuda_built"] = static_cast<bool>(FASTNN_CUDA_BUILT);
  return d;
}

static double fma_peak_py(int threads, double seconds) {
  if (threads < 1 || threads > kMaxThreads) raise_value("fma_peak_gflops: threads must be >= 1");
  if (!(seconds > 0.0 && seconds <= 10.0)) raise_value("fma_peak_gflops: seconds must be in (0, 10]");
  py::gil_scoped_release release;
  return measure_fma_peak_gflops(threads, seconds);
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastnn compiled kernels";
  m.attr("__version__") = FASTNN_VERSION;
  m.def("set_num_threads", &set_num_threads_py, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("default_num_threads", &default_num_threads);
  m.def("set_isa", &set_isa_py, py::arg("name"), "Lower (or restore) the ISA of the micro-kernels.");
  m.def("get_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("best_isa", [] { return std::string(isa_name(best_supported_isa())); });
  m.def("config", &config_py);
  m.def("fma_peak_gflops", &fma_peak_py, py::arg("threads"), py::arg("seconds") = 0.2,
        "GFLOP/s of a pure FMA loop on `threads` threads with the active ISA: the machine's peak.");
  bind_gemm(m);
  bind_optim(m);
  bind_loss(m);
  bind_elementwise(m);
  bind_rnn(m);
  bind_pool(m);
  bind_norm(m);
  bind_conv(m);
  bind_random(m);
  bind_cuda(m);
  m.def("buffer_cache_bytes", &buffer_cache_bytes, "Bytes of freed output buffers kept for reuse.");
  m.def("buffer_cache_limit", &buffer_cache_limit, "The most bytes of freed output buffers kept (default 1 GiB).");
  m.def("set_buffer_cache_limit", [](int64_t bytes) {
        if (bytes < 0) raise_value("set_buffer_cache_limit: bytes must be >= 0, got " + std::to_string(bytes));
        return set_buffer_cache_limit(static_cast<size_t>(bytes));
      }, py::arg("bytes"), "Set the limit (0 turns the cache off), releasing what is above it; returns the previous one.");
  m.def("empty_buffer_cache", &empty_buffer_cache, "Free every cached output buffer; returns the bytes freed.");
}
