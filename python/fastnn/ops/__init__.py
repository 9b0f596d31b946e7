"""Differentiable ops, one module per family: linalg, elementwise, reduce, shape.

Each op is a `fastnn.autograd.Function` subclass with forward and backward side by side, plus
a plain function (`matmul`, `exp`, `sum`, ...) that checks the arguments and applies it.
"""
