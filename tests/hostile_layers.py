"""Correct layers at hostile points (shared by the false-failure and verdict tests).

``Pointwise`` applies a smooth function elementwise (``TINY_LAYERS``: those checked at
``|x| ~ 1e-22``); ``SortRows`` sorts each row, as ``torch.sort`` routes its gradient;
``RowSums`` sums ``tanh`` over each row, repeated (outputs exactly 0 where a row cancels).
Each takes a ``wrong`` that spoils one element of ``dx``.
"""

import numpy as np


class Pointwise:
    """``y = f(x)`` elementwise, with ``f'`` given (``wrong``: dx scaled on flat element
    ``at``)."""

    def __init__(self, f, df, wrong=1.0, at=1):
        self.f, self.df, self.wrong, self.at = f, df, wrong, at

    def forward(self, x):
        self.x = x
        return self.f(x)

    def backward(self, dout):
        dx = dout * self.df(self.x)
        dx.flat[self.at] *= self.wrong
        return dx


TINY_LAYERS = {
    "square": (lambda x: x ** 2, lambda x: 2 * x),
    "sin-1e20": (lambda x: np.sin(x) * 1e20, lambda x: np.cos(x) * 1e20),
    "reciprocal": (lambda x: 1 / x, lambda x: -1 / x ** 2),
    "log": (np.log, lambda x: 1 / x),
}

#: ``tanh`` and its derivative.
TANH = (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2)


class SortRows:
    """Each row sorted (stable), the gradient routed back by the same permutation as
    ``torch.sort`` does (``wrong``: dx scaled on one element)."""

    def __init__(self, wrong=None):
        self.wrong = wrong

    def forward(self, x):
        self.order = np.argsort(x, axis=1, kind="stable")
        return np.take_along_axis(x, self.order, axis=1)

    def backward(self, dout):
        dx = np.zeros_like(dout)
        np.put_along_axis(dx, self.order, dout, axis=1)
        if self.wrong is not None:
            dx.flat[self.wrong] *= 1.001
        return dx



class RowSums:
    """``sum_j tanh(x_ij)`` per row, repeated three times (equal outputs; ``wrong``: dx
    scaled on flat element 1)."""

    def __init__(self, wrong=1.0):
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return np.repeat(np.tanh(x).sum(axis=1, keepdims=True), 3, axis=1)

    def backward(self, dout):
        dx = dout.sum(axis=1, keepdims=True) * (1.0 - np.tanh(self.x) ** 2)
        dx.flat[1] *= self.wrong
        return dx
