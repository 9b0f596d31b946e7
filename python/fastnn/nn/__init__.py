"""fastnn.nn: Module, Parameter, Sequential, layers, losses; `functional` (as F) and `init`."""
from fastnn.nn import functional, init, utils
from fastnn.nn.layers import (GELU, Dropout, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid,
                              Softmax, Tanh)
from fastnn.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss
from fastnn.nn.module import Module, Parameter, Sequential
from fastnn.io import load_model

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Identity", "Flatten", "Dropout", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax", "MSELoss", "L1Loss", "HuberLoss", "BCELoss",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss", "functional", "init", "utils", "load_model"]
