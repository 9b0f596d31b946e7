"""fastnn: a fast neural-network library with its own OpenMP C++ kernels."""
from fastnn import _C
from fastnn._config import (config, empty_cache, get_check_finite, get_num_threads, set_buffer_cache_limit,
                            set_check_finite, set_num_threads, threads)
from fastnn._tensor import (Tensor, from_dlpack, from_numpy, is_grad_enabled, manual_seed, no_grad, ones,
                            rand, randn, tensor, zeros)
from fastnn.ops.elementwise import add, div, exp, log, mul, neg, pow, relu, sigmoid, sqrt, sub, tanh
from fastnn.ops.linalg import matmul
from fastnn.ops.random import bernoulli
from fastnn.ops.reduce import max, mean, sum
from fastnn.ops.shape import cat, concatenate, flatten, permute, reshape, stack, transpose

# The training stack, in dependency order (nn needs io and model; model needs callbacks, progress).
from fastnn import callbacks, cuda, data, datasets, metrics, nn, optim
from fastnn.io import load, save

__version__ = _C.__version__
