"""Random sampling ops: bernoulli.

Samples come from fastnn's global generator (`fastnn.manual_seed` reseeds it), or from the
numpy Generator or int seed given as `generator`, so a run is reproducible; numpy draws them on
the calling thread, so they do not depend on the thread count. Samples are constants: they carry
no gradient (as in PyTorch, whose bernoulli passes none back to the probabilities).
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._tensor import Tensor, default_generator
from fastnn.ops._common import as_array

__all__ = ["bernoulli"]


def resolve_generator(fn: str, generator) -> np.random.Generator:
    """None: the global generator; an int: a fresh generator seeded with it; a numpy Generator."""
    if generator is None:
        return default_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return np.random.Generator(np.random.PCG64(int(generator) % 2 ** 64))
    raise TypeError(f"{fn}: generator must be None (fastnn's global generator), an int seed or a "
                    f"numpy.random.Generator, got {type(generator).__name__}")


def bernoulli(probs, generator=None) -> Tensor:
    """A tensor of the shape of `probs` holding 1.0 with probability probs[i] and 0.0 otherwise.

    probs: a Tensor, array or number with every value in [0, 1].
    generator: None (fastnn's global generator, seeded by fastnn.manual_seed), an int seed, or a
    numpy.random.Generator.
    """
    p = as_array(probs)
    outside = ~((p >= 0) & (p <= 1))  # also catches NaN
    if outside.any():
        bad = p[outside].reshape(-1)[0]
        raise ValueError(f"bernoulli: every probability must be in [0, 1], found {bad}; "
                         f"apply sigmoid to scores first")
    rng = resolve_generator("bernoulli", generator)
    # u in [0, 1): u < p is never true for p = 0 and always true for p = 1
    return Tensor((rng.random(p.shape, dtype=np.float32) < p).astype(np.float32))
