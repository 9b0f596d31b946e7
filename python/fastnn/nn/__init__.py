"""fastnn.nn: Module, Parameter, Sequential, layers, losses; `functional` (as F) and `init`."""
from fastnn.nn import functional, init, utils
from fastnn.nn.layers import (GELU, Dropout, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid,
                              Softmax, Tanh, Unflatten)
from fastnn.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, L1Loss, MSELoss, NLLLoss
from fastnn.nn.module import Module, Parameter, Sequential
from fastnn.nn.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from fastnn.nn.dropout import Dropout2d
from fastnn.nn.normalization import BatchNorm1d, BatchNorm2d
from fastnn.nn.pooling import (AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool1d,
                               MaxPool2d)
from fastnn.nn.rbm import RBM
from fastnn.nn.rnn import GRU, LSTM, RNN, Embedding, GRUCell, LSTMCell, RNNCell
from fastnn.io import load_model

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Identity", "Flatten", "Unflatten", "Dropout", "ReLU", "LeakyReLU",
           "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax", "MSELoss", "L1Loss", "HuberLoss", "BCELoss",
           "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
           "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d",
           "MaxPool2d", "MaxPool1d", "AvgPool2d", "AvgPool1d", "AdaptiveAvgPool2d", "GlobalAvgPool2d",
           "GlobalMaxPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout2d",
           "RBM", "Embedding", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "functional", "init", "utils", "load_model"]
