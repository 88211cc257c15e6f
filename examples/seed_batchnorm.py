"""The book's BatchNormalization, whose eval-mode backward is wrong.

    gradcheck examples/seed_batchnorm.py:make --train   # exit 0
    gradcheck examples/seed_batchnorm.py:make --eval    # exit 1: x and gamma fail

Its eval-mode ``backward`` reuses the intermediates (batch mean and standard
deviation) of the last *train-mode* forward instead of differentiating the
eval-mode forward, which normalises with the running statistics.
"""

import numpy as np


class BatchNormalization:
    """"Deep Learning from Scratch", ``common/layers.py`` (condensed, same behaviour)."""

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.input_shape = None
        self.running_mean, self.running_var = running_mean, running_var
        self.batch_size = self.xc = self.std = self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        if self.running_mean is None:
            self.running_mean = np.zeros(x.shape[1])
            self.running_var = np.zeros(x.shape[1])
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size, self.xc, self.xn, self.std = x.shape[0], xc, xn, std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / np.sqrt(self.running_var + 10e-7)
        return (self.gamma * xn + self.beta).reshape(*self.input_shape)

    def backward(self, dout):
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return (dxc - dmu / self.batch_size).reshape(*self.input_shape)


def make():
    """A trained-for-one-step layer and a fresh batch, as in a real evaluation."""
    rng = np.random.default_rng(0)
    bn = BatchNormalization(rng.uniform(0.5, 1.5, 6), rng.normal(size=6))
    for _ in range(3):
        bn.forward(rng.normal(1.0, 2.0, size=(8, 6)), train_flg=True)
    return bn, rng.normal(1.0, 2.0, size=(8, 6))
