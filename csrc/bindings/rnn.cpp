// _C.rnn_forward / _C.rnn_backward: argument checks, then the GIL is released around the
// kernels of cpu/rnn.cpp. One call is one layer and one direction of an LSTM, GRU or RNN over a
// whole (T, B, I) sequence; the outputs are allocated here.
#include <string>
#include <vector>

#include "bindings/buffers.h"
#include "bindings/checks.h"
#include "cpu/rnn.h"

namespace fastnn {
namespace {

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (d.size() == 1 ? ",)" : ")");
}

RnnCell parse_cell(const std::string& name, const char* fn) {
  if (name == "lstm") return RnnCell::lstm;
  if (name == "gru") return RnnCell::gru;
  if (name == "rnn_tanh") return RnnCell::rnn_tanh;
  if (name == "rnn_relu") return RnnCell::rnn_relu;
  raise_value(std::string(fn) + ": cell must be 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu', got '" + name + "'");
}

// A C-contiguous float32 array of exactly `shape`; `meaning` says what the letters are.
float* check_array(const py::array& a, const char* fn, const char* arg, const std::vector<int64_t>& shape,
                   const char* meaning) {
  if (!a.dtype().is(py::dtype::of<float>()))
    raise_type(std::string(fn) + ": argument '" + arg + "' must be float32, got " + std::string(py::str(a.dtype())) +
               " (convert with .astype(numpy.float32))");
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  if (!same)
    raise_value(std::string(fn) + ": argument '" + arg + "' must have shape " + dims_str(shape) + " " + meaning +
                ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    raise_value(std::string(fn) + ": argument '" + arg + "' must be C-contiguous; pass numpy.ascontiguousarray(" +
                arg + ")");
  return static_cast<float*>(const_cast<void*>(a.data()));
}

const float* optional_array(const py::object& a, const char* fn, const char* arg, const std::vector<int64_t>& shape,
                            const char* meaning) {
  return a.is_none() ? nullptr : check_array(a.cast<py::array>(), fn, arg, shape, meaning);
}

const int64_t* check_lengths(const py::object& obj, const char* fn, int64_t T, int64_t B) {
  if (obj.is_none()) return nullptr;
  const py::array a = obj.cast<py::array>();
  if (a.dtype().kind() != 'i' || a.itemsize() != 8)
    raise_type(std::string(fn) + ": argument 'lengths' must be int64, got " + std::string(py::str(a.dtype())) +
               " (convert with .astype(numpy.int64))");
  if (a.ndim() != 1 || a.shape(0) != B)
    raise_value(std::string(fn) + ": argument 'lengths' must have shape (" + std::to_string(B) +
                ",) (one length per batch row), got " + shape_str(a));
  if (B > 1 && a.strides(0) != static_cast<py::ssize_t>(sizeof(int64_t)))
    raise_value(std::string(fn) + ": argument 'lengths' must be contiguous; pass numpy.ascontiguousarray(lengths)");
  const int64_t* p = static_cast<const int64_t*>(a.data());
  for (int64_t b = 0; b < B; ++b)
    if (p[b] < 0 || p[b] > T)
      raise_value(std::string(fn) + ": lengths[" + std::to_string(b) + "] = " + std::to_string(p[b]) +
                  " is out of range: expected 0 <= length <= " + std::to_string(T) + " (the sequence's steps)");
  return p;
}

struct Problem {
  RnnCell cell;
  RnnShape s;
  int64_t G, S, states;  // states: 2 (h, c) for the LSTM, else 1
  const float *x, *w_ih, *w_hh;
  const int64_t* lengths;
};

Problem check_problem(const char* fn, const std::string& cell_name, const py::array& x, const py::array& w_ih,
                      const py::array& w_hh, const py::object& lengths) {
  Problem p{};
  p.cell = parse_cell(cell_name, fn);
  const int gates = rnn_gates(p.cell);
  if (x.ndim() != 3)
    raise_value(std::string(fn) + ": argument 'x' must be 3-D (T, B, I) (steps, batch, features), got shape " +
                shape_str(x));
  if (w_hh.ndim() != 2 || w_hh.shape(0) % gates != 0 || w_hh.shape(0) / gates != w_hh.shape(1))
    raise_value(std::string(fn) + ": argument 'w_hh' must have shape (" + std::to_string(gates) +
                " * H, H) for a " + cell_name + " cell (H = hidden size), got " + shape_str(w_hh));
  p.s = {x.shape(0), x.shape(1), x.shape(2), w_hh.shape(1)};
  p.G = gates * p.s.H;
  p.S = rnn_saved_width(p.cell, p.s.H);
  p.states = p.cell == RnnCell::lstm ? 2 : 1;
  p.x = check_array(x, fn, "x", {p.s.T, p.s.B, p.s.I}, "(T, B, I)");
  p.w_hh = check_array(w_hh, fn, "w_hh", {p.G, p.s.H}, "(G, H)");
  p.w_ih = check_array(w_ih, fn, "w_ih", {p.G, p.s.I}, "(G, I): G rows as w_hh, I columns as x has features");
  p.lengths = check_lengths(lengths, fn, p.s.T, p.s.B);
  return p;
}

// h0/c0 as given, or zeros (kept alive by `holder`).
const float* state_or_zeros(const py::object& a, const char* fn, const char* arg, const Problem& p,
                            py::array_t<float>* holder) {
  if (!a.is_none()) return check_array(a.cast<py::array>(), fn, arg, {p.s.B, p.s.H}, "(B, H)");
  *holder = py::array_t<float>({p.s.B, p.s.H});
  std::fill(holder->mutable_data(), holder->mutable_data() + p.s.B * p.s.H, 0.0f);
  return holder->data();
}

py::tuple rnn_forward_py(const std::string& cell_name, const py::array& x, const py::array& w_ih,
                         const py::array& w_hh, const py::object& b_ih, const py::object& b_hh, const py::object& h0,
                         const py::object& c0, const py::object& lengths, bool reverse) {
  constexpr const char* fn = "rnn_forward";
  const Problem p = check_problem(fn, cell_name, x, w_ih, w_hh, lengths);
  const RnnShape& s = p.s;
  const float* bi = optional_array(b_ih, fn, "b_ih", {p.G}, "(G,)");
  const float* bh = optional_array(b_hh, fn, "b_hh", {p.G}, "(G,)");
  py::array_t<float> h0_zero, c0_zero;
  const float* h0p = state_or_zeros(h0, fn, "h0", p, &h0_zero);
  const float* c0p = nullptr;
  if (p.cell == RnnCell::lstm)
    c0p = state_or_zeros(c0, fn, "c0", p, &c0_zero);
  else if (!c0.is_none())
    raise_value(std::string(fn) + ": argument 'c0' is for the LSTM only; pass None for a " + cell_name + " cell");

  py::array_t<float> out = new_float_array({s.T + p.states, s.B, s.H});
  py::object hs_obj = py::none(), cs_obj = py::none(), gates_obj = py::none();
  float* y = out.mutable_data();
  float* hs = y;
  if (p.lengths) {
    py::array_t<float> a = new_float_array({s.T, s.B, s.H});
    hs = a.mutable_data();
    hs_obj = a;
  }
  float* cs = nullptr;
  if (p.cell == RnnCell::lstm) {
    py::array_t<float> a = new_float_array({s.T, s.B, s.H});
    cs = a.mutable_data();
    cs_obj = a;
  }
  float* gates = nullptr;
  if (p.S > 0) {
    py::array_t<float> a = new_float_array({s.T, s.B, p.S});
    gates = a.mutable_data();
    gates_obj = a;
  }
  float* h_n = y + s.T * s.B * s.H;
  float* c_n = p.cell == RnnCell::lstm ? h_n + s.B * s.H : nullptr;
  {
    py::gil_scoped_release release;
    rnn_forward(p.cell, y, h_n, c_n, hs, cs, gates, p.x, p.w_ih, p.w_hh, bi, bh, h0p, c0p, p.lengths, reverse, s);
  }
  return py::make_tuple(out, hs_obj, cs_obj, gates_obj);
}

py::tuple rnn_backward_py(const std::string& cell_name, const py::array& grad_out, const py::array& x,
                          const py::array& w_ih, const py::array& w_hh, const py::object& h0, const py::object& c0,
                          const py::array& out, const py::object& hs, const py::object& cs, const py::object& gates,
                          const py::object& lengths, bool reverse, bool need_dx, bool bias) {
  constexpr const char* fn = "rnn_backward";
  const Problem p = check_problem(fn, cell_name, x, w_ih, w_hh, lengths);
  const RnnShape& s = p.s;
  const std::vector<int64_t> packed = {s.T + p.states, s.B, s.H}, seq = {s.T, s.B, s.H};
  const float* g = check_array(grad_out, fn, "grad_out", packed, "(T + states, B, H): outputs, then h_n [, c_n]");
  const float* o = check_array(out, fn, "out", packed, "(T + states, B, H): the forward's output");
  const float* hsp = o;
  if (p.lengths) {
    if (hs.is_none())
      raise_value(std::string(fn) + ": argument 'hs' (the forward's held states) is required with lengths");
    hsp = check_array(hs.cast<py::array>(), fn, "hs", seq, "(T, B, H)");
  }
  const float* csp = nullptr;
  const float* gp = nullptr;
  if (p.cell == RnnCell::lstm) {
    if (cs.is_none()) raise_value(std::string(fn) + ": argument 'cs' (the forward's cell states) is required");
    csp = check_array(cs.cast<py::array>(), fn, "cs", seq, "(T, B, H)");
  }
  if (p.S > 0) {
    if (gates.is_none()) raise_value(std::string(fn) + ": argument 'gates' (the forward's saved gates) is required");
    gp = check_array(gates.cast<py::array>(), fn, "gates", {s.T, s.B, p.S}, "(T, B, S)");
  }
  py::array_t<float> h0_zero, c0_zero;
  const float* h0p = state_or_zeros(h0, fn, "h0", p, &h0_zero);
  const float* c0p = p.cell == RnnCell::lstm ? state_or_zeros(c0, fn, "c0", p, &c0_zero) : nullptr;

  py::array_t<float> dw_ih = new_float_array({p.G, s.I}), dw_hh = new_float_array({p.G, s.H}), dh0({s.B, s.H});
  py::object dx_obj = py::none(), db_ih_obj = py::none(), db_hh_obj = py::none(), dc0_obj = py::none();
  float *dx = nullptr, *db_ih = nullptr, *db_hh = nullptr, *dc0 = nullptr;
  if (need_dx) {
    py::array_t<float> a = new_float_array({s.T, s.B, s.I});
    dx = a.mutable_data();
    dx_obj = a;
  }
  if (bias) {
    py::array_t<float> a({p.G}), b({p.G});
    db_ih = a.mutable_data();
    db_hh = b.mutable_data();
    db_ih_obj = a;
    db_hh_obj = b;
  }
  if (p.cell == RnnCell::lstm) {
    py::array_t<float> a({s.B, s.H});
    dc0 = a.mutable_data();
    dc0_obj = a;
  }
  const int64_t BH = s.B * s.H;
  {
    py::gil_scoped_release release;
    rnn_backward(p.cell, dx, dw_ih.mutable_data(), dw_hh.mutable_data(), db_ih, db_hh, dh0.mutable_data(), dc0, g,
                 g + s.T * BH, p.cell == RnnCell::lstm ? g + (s.T + 1) * BH : nullptr, p.x, p.w_ih, p.w_hh, h0p,
                 c0p, hsp, csp, gp, p.lengths, reverse, s);
  }
  return py::make_tuple(dx_obj, dw_ih, dw_hh, db_ih_obj, db_hh_obj, dh0, dc0_obj);
}

}  // namespace

void bind_rnn(py::module_& m) {
  m.def("rnn_forward", &rnn_forward_py, py::arg("cell"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("b_ih") = py::none(), py::arg("b_hh") = py::none(), py::arg("h0") = py::none(),
        py::arg("c0") = py::none(), py::kw_only(), py::arg("lengths") = py::none(), py::arg("reverse") = false,
        "One layer-direction of an LSTM/GRU/RNN over a whole sequence. cell: 'lstm', 'gru', 'rnn_tanh',\n"
        "'rnn_relu'; x (T, B, I), w_ih (G, I), w_hh (G, H), biases (G,), h0/c0 (B, H) (None: zeros), all\n"
        "float32 C-contiguous; lengths: int64 (B,) or None. Returns (out, hs, cs, gates): out (T + states, B, H)\n"
        "holds the outputs (zero past each length), then h_n and, for the LSTM, c_n; hs (T, B, H) the held\n"
        "states (only with lengths, else None: out's first T rows are the states); cs the LSTM's cell states;\n"
        "gates the saved activations (LSTM, GRU). The last three feed rnn_backward.");
  m.def("rnn_backward", &rnn_backward_py, py::arg("cell"), py::arg("grad_out"), py::arg("x"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("h0"), py::arg("c0"), py::arg("out"), py::arg("hs"), py::arg("cs"),
        py::arg("gates"), py::kw_only(), py::arg("lengths") = py::none(), py::arg("reverse") = false,
        py::arg("need_dx") = true, py::arg("bias") = true,
        "Backward of rnn_forward: grad_out is the gradient of its packed `out`; the other arguments are the\n"
        "forward's inputs and results. Returns (dx or None, dw_ih, dw_hh, db_ih, db_hh (None without bias),\n"
        "dh0, dc0 (LSTM, else None)).");
}

}  // namespace fastnn
