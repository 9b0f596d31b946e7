"""fastnn.optim: optimizers as fused C++ kernels (one call per parameter group), EMA and the learning-rate schedulers."""
from fastnn.optim.adagrad import Adagrad
from fastnn.optim.adam import Adam, AdamW
from fastnn.optim.ema import EMA
from fastnn.optim.optimizer import Optimizer
from fastnn.optim.rmsprop import RMSprop
from fastnn.optim.sgd import SGD
from fastnn.optim import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "EMA", "lr_scheduler"]
