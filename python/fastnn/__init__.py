"""fastnn: a fast neural-network library with its own OpenMP C++ kernels."""
from fastnn import _C
from fastnn._config import (config, get_check_finite, get_num_threads, set_check_finite,
                            set_num_threads, threads)

__version__ = _C.__version__
