"""Custom layers to try the ``gradcheck`` command on.

    gradcheck examples/my_layers.py:make_swish           # exit 0
    gradcheck examples/my_layers.py:make_broken_swish    # exit 1, target 'x' fails
    gradcheck examples/my_layers.py:make_scale --shape 8,4 --train --eval
"""

import numpy as np


class Swish:
    """``out = x * sigmoid(beta * x)`` with a trainable ``beta`` of shape (D,)."""

    def __init__(self, beta):
        self.beta = beta
        self.dbeta = None

    def forward(self, x, train_flg=True):
        self.x = x
        self.s = 1.0 / (1.0 + np.exp(-self.beta * x))
        return x * self.s

    def backward(self, dout):
        s, x = self.s, self.x
        ds = dout * x                     # d out / d s
        dz = ds * s * (1.0 - s)           # d s / d (beta x)
        self.dbeta = np.sum(dz * x, axis=0)
        return dout * s + dz * self.beta


class BrokenSwish(Swish):
    """The same layer with a classic bug: the product rule's second term is dropped."""

    def backward(self, dout):
        super().backward(dout)
        return dout * self.s


class Scale:
    """``out = gamma * x`` (no train/eval difference); the factory returns it alone."""

    def __init__(self, D):
        self.gamma = np.linspace(0.5, 1.5, D)
        self.dgamma = None

    def forward(self, x):
        self.x = x
        return self.gamma * x

    def backward(self, dout):
        self.dgamma = np.sum(dout * self.x, axis=0)
        return dout * self.gamma


def make_swish():
    rng = np.random.default_rng(0)
    return Swish(rng.uniform(0.5, 2.0, 6)), rng.normal(size=(10, 6))


def make_broken_swish():
    rng = np.random.default_rng(0)
    return BrokenSwish(rng.uniform(0.5, 2.0, 6)), rng.normal(size=(10, 6))


def make_scale():
    return Scale(4)
