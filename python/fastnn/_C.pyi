"""Type stub for fastnn._C, the compiled kernels (see csrc/bindings/)."""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

def gemm(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], out: Optional[npt.NDArray[np.float32]] = None, *,
         trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0,
         bias: Optional[npt.NDArray[np.float32]] = None, row_bias: Optional[npt.NDArray[np.float32]] = None,
         relu: bool = False, check_finite: bool = True) -> npt.NDArray[np.float32]: ...
def cross_entropy_forward(logits: npt.NDArray[np.float32], target: npt.NDArray, *,
                          weight: Optional[npt.NDArray[np.float32]] = None, ignore_index: int = -100,
                          label_smoothing: float = 0.0, reduction: str = "mean"
                          ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]: ...
def cross_entropy_backward(grad_loss: npt.NDArray[np.float32], logits: npt.NDArray[np.float32], target: npt.NDArray,
                           lse: npt.NDArray[np.float64], *, weight: Optional[npt.NDArray[np.float32]] = None,
                           ignore_index: int = -100, label_smoothing: float = 0.0, reduction: str = "mean"
                           ) -> npt.NDArray[np.float32]: ...
# Fused optimizer steps (csrc/bindings/optim.cpp): lists of float32 C-contiguous arrays, updated in place.
_Arrays = Sequence[npt.NDArray[np.float32]]
def sgd_step(params: _Arrays, grads: _Arrays, momentum_buffers: _Arrays, *, lr: float, momentum: float = 0.0,
             dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False,
             new_buffers: Optional[Sequence[bool]] = None) -> None: ...
def adagrad_step(params: _Arrays, grads: _Arrays, state_sums: _Arrays, *, lr: float, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, eps: float = 1e-10, step: Union[int, Sequence[int]],
                 maximize: bool = False) -> None: ...
def rmsprop_step(params: _Arrays, grads: _Arrays, square_avgs: _Arrays, grad_avgs: _Arrays,
                 momentum_buffers: _Arrays, *, lr: float, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False) -> None: ...
def adam_step(params: _Arrays, grads: _Arrays, exp_avgs: _Arrays, exp_avg_sqs: _Arrays, max_exp_avg_sqs: _Arrays, *,
              lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
              amsgrad: bool = False, step: Union[int, Sequence[int]], decoupled: bool = False,
              maximize: bool = False) -> None: ...
def clip_grad_norm(grads: _Arrays, *, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> float: ...
def clip_grad_value(grads: _Arrays, *, clip_value: float) -> None: ...
def ema_update(shadows: _Arrays, params: _Arrays, *, decay: float) -> None: ...
def copy_buffers(dst: _Arrays, src: _Arrays) -> None: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
def set_isa(name: str) -> None: ...
def get_isa() -> str: ...
def best_isa() -> str: ...
def config() -> dict: ...
def fma_peak_gflops(threads: int, seconds: float = 0.2) -> float: ...

def linear_epilogue_backward(grad: np.ndarray, out: Optional[np.ndarray] = None, *,
                             bias_grad: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Backward of a Linear layer's bias + ReLU epilogue in one pass: (grad masked where out <= 0,
    or grad itself when out is None; its column sums, or None with bias_grad=False)."""
    ...
def relu(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """max(x, 0) of a float32 C-contiguous array of any shape, as a new array (NaN stays NaN)."""
    ...
def relu_backward(grad: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """grad where out (the ReLU's output) > 0, else 0."""
    ...

# Pooling (csrc/bindings/pool.cpp): float32 C-contiguous (N, C, H, W); window settings are (h, w) pairs.
_Pair = Tuple[int, int]
def max_pool2d_forward(input: npt.NDArray[np.float32], kernel_size: _Pair, stride: _Pair, padding: _Pair,
                       dilation: _Pair, ceil_mode: bool = False
                       ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]: ...
def max_pool2d_backward(grad_output: npt.NDArray[np.float32], indices: npt.NDArray[np.int32],
                        input_size: _Pair) -> npt.NDArray[np.float32]: ...
def avg_pool2d_forward(input: npt.NDArray[np.float32], kernel_size: _Pair, stride: _Pair, padding: _Pair,
                       ceil_mode: bool = False, count_include_pad: bool = True,
                       divisor_override: int = 0) -> npt.NDArray[np.float32]: ...
def avg_pool2d_backward(grad_output: npt.NDArray[np.float32], input_size: _Pair, kernel_size: _Pair, stride: _Pair,
                        padding: _Pair, ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: int = 0) -> npt.NDArray[np.float32]: ...
def adaptive_avg_pool2d_forward(input: npt.NDArray[np.float32], output_size: _Pair) -> npt.NDArray[np.float32]: ...
def adaptive_avg_pool2d_backward(grad_output: npt.NDArray[np.float32],
                                 input_size: _Pair) -> npt.NDArray[np.float32]: ...

# Batch normalization (csrc/bindings/norm.cpp): input float32 C-contiguous (N, C, *); vectors float32 (C,).
def batch_norm_forward(input: npt.NDArray[np.float32], weight: Optional[npt.NDArray[np.float32]],
                       bias: Optional[npt.NDArray[np.float32]], running_mean: Optional[npt.NDArray[np.float32]],
                       running_var: Optional[npt.NDArray[np.float32]], *, training: bool, momentum: float = 0.1,
                       eps: float = 1e-5
                       ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def batch_norm_backward(grad_output: npt.NDArray[np.float32], input: npt.NDArray[np.float32],
                        save_mean: npt.NDArray[np.float32], save_invstd: npt.NDArray[np.float32],
                        weight: Optional[npt.NDArray[np.float32]], *, training: bool
                        ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

# Recurrent layers (csrc/bindings/rnn.cpp): one layer-direction over a whole sequence; float32 C-contiguous.
# cell: 'lstm' | 'gru' | 'rnn_tanh' | 'rnn_relu'. x (T, B, I), w_ih (G, I), w_hh (G, H), biases (G,), states (B, H).
def rnn_forward(cell: str, x: npt.NDArray[np.float32], w_ih: npt.NDArray[np.float32], w_hh: npt.NDArray[np.float32],
                b_ih: Optional[npt.NDArray[np.float32]] = None, b_hh: Optional[npt.NDArray[np.float32]] = None,
                h0: Optional[npt.NDArray[np.float32]] = None, c0: Optional[npt.NDArray[np.float32]] = None, *,
                lengths: Optional[npt.NDArray[np.int64]] = None, reverse: bool = False
                ) -> Tuple[npt.NDArray[np.float32], Optional[npt.NDArray[np.float32]],
                           Optional[npt.NDArray[np.float32]], Optional[npt.NDArray[np.float32]]]:
    """(out (T + states, B, H): outputs then h_n [then c_n], hs (held states, with lengths only), cs (LSTM cell
    states), gates (saved activations, LSTM/GRU))."""
    ...
def rnn_backward(cell: str, grad_out: npt.NDArray[np.float32], x: npt.NDArray[np.float32],
                 w_ih: npt.NDArray[np.float32], w_hh: npt.NDArray[np.float32], h0: Optional[npt.NDArray[np.float32]],
                 c0: Optional[npt.NDArray[np.float32]], out: npt.NDArray[np.float32],
                 hs: Optional[npt.NDArray[np.float32]], cs: Optional[npt.NDArray[np.float32]],
                 gates: Optional[npt.NDArray[np.float32]], *, lengths: Optional[npt.NDArray[np.int64]] = None,
                 reverse: bool = False, need_dx: bool = True, bias: bool = True
                 ) -> Tuple[Optional[npt.NDArray[np.float32]], npt.NDArray[np.float32], npt.NDArray[np.float32],
                            Optional[npt.NDArray[np.float32]], Optional[npt.NDArray[np.float32]],
                            npt.NDArray[np.float32], Optional[npt.NDArray[np.float32]]]:
    """(dx or None, dw_ih, dw_hh, db_ih, db_hh (None without bias), dh0, dc0 (LSTM only))."""
    ...

# Convolution (csrc/bindings/conv.cpp): float32 C-contiguous input (N, C, H, W), weight (K, C/groups, R, S).
# stride, dilation: int or (h, w); padding: int, (h, w) or (top, bottom, left, right).
_IntOrTuple = Union[int, Sequence[int]]
def conv2d_forward(input: npt.NDArray[np.float32], weight: npt.NDArray[np.float32],
                   bias: Optional[npt.NDArray[np.float32]] = None, stride: _IntOrTuple = 1,
                   padding: _IntOrTuple = 0, dilation: _IntOrTuple = 1, groups: int = 1, *,
                   relu: bool = False, check_finite: bool = True) -> npt.NDArray[np.float32]: ...
def conv2d_backward(grad_out: npt.NDArray[np.float32], input: npt.NDArray[np.float32],
                    weight: npt.NDArray[np.float32], stride: _IntOrTuple = 1, padding: _IntOrTuple = 0,
                    dilation: _IntOrTuple = 1, groups: int = 1, needs: Tuple[bool, bool, bool] = (True, True, True)
                    ) -> Tuple[Optional[npt.NDArray[np.float32]], Optional[npt.NDArray[np.float32]],
                               Optional[npt.NDArray[np.float32]]]:
    """(grad_input, grad_weight, grad_bias), each None unless asked for in needs."""
    ...
# Transposed convolution: input (N, C_in, H, W), weight (C_in, C_out/groups, R, S); output_padding < stride.
def conv_transpose2d_forward(input: npt.NDArray[np.float32], weight: npt.NDArray[np.float32],
                             bias: Optional[npt.NDArray[np.float32]] = None, stride: _IntOrTuple = 1,
                             padding: _IntOrTuple = 0, output_padding: _IntOrTuple = 0, dilation: _IntOrTuple = 1,
                             groups: int = 1, *, check_finite: bool = True) -> npt.NDArray[np.float32]: ...
def conv_transpose2d_backward(grad_out: npt.NDArray[np.float32], input: npt.NDArray[np.float32],
                              weight: npt.NDArray[np.float32], stride: _IntOrTuple = 1, padding: _IntOrTuple = 0,
                              output_padding: _IntOrTuple = 0, dilation: _IntOrTuple = 1, groups: int = 1,
                              needs: Tuple[bool, bool, bool] = (True, True, True)
                              ) -> Tuple[Optional[npt.NDArray[np.float32]], Optional[npt.NDArray[np.float32]],
                                         Optional[npt.NDArray[np.float32]]]:
    """(grad_input, grad_weight, grad_bias), each None unless asked for in needs."""
    ...
def conv2d_workspace_budget() -> int: ...
def set_conv2d_workspace_budget(bytes: int) -> int:
    """Set the convolution work-buffer budget (bytes); returns the previous one (tests, tuning)."""
    ...

# fastnn._C.cuda (csrc/bindings/cuda.cpp): is_built(), device_count(), unavailable_reason(), the
# device Array type and the CUDA kernels' entry points; used through fastnn.cuda and fastnn._device.
cuda: object
