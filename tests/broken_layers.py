"""Deliberately wrong BatchNormalization variants, each with one realistic bug.

``SeedBatchNormalization`` is the seed's class as the book ships it: its
eval-mode backward reuses the intermediates of the last train-mode forward.
"""

import numpy as np

from layers.batchnorm import BN_EPS, BatchNormalization


class SeedBatchNormalization:
    """The seed's class, verbatim in behaviour (eval backward is wrong)."""

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.input_shape = None
        self.running_mean, self.running_var = running_mean, running_var
        self.batch_size = self.xc = self.std = self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            N, C, H, W = x.shape
            x = x.reshape(N, -1)
        out = self.__forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def __forward(self, x, train_flg):
        if self.running_mean is None:
            N, D = x.shape
            self.running_mean = np.zeros(D)
            self.running_var = np.zeros(D)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / ((np.sqrt(self.running_var + 10e-7)))
        out = self.gamma * xn + self.beta
        return out

    def backward(self, dout):
        if dout.ndim != 2:
            N, C, H, W = dout.shape
            dout = dout.reshape(N, -1)
        dx = self.__backward(dout)
        dx = dx.reshape(*self.input_shape)
        return dx

    def __backward(self, dout):
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size
        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx


class NoMeanTermBN(BatchNormalization):
    """Train backward drops the mean term (``dx = dxc`` instead of ``dxc - dmu/N``)."""

    def _backward(self, dout):
        if not self.train_flg:
            return super()._backward(dout)
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        return dxc


class UnbiasedVarBN(BatchNormalization):
    """Train backward uses ``N - 1`` in the variance term where the forward uses ``N``."""

    def _backward(self, dout):
        if not self.train_flg:
            return super()._backward(dout)
        N = self.batch_size
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / (N - 1)) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / N


class CentredDgammaBN(BatchNormalization):
    """``dgamma`` from the centred input ``xc`` instead of the normalised ``xn``."""

    def _backward(self, dout):
        dx = super()._backward(dout)
        self.dgamma = np.sum(self.xc * dout, axis=0)
        return dx


class EvalBatchStatsBN(BatchNormalization):
    """Eval-mode backward uses the train-mode formula (batch statistics) for dx."""

    def _backward(self, dout):
        if self.train_flg:
            return super()._backward(dout)
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        N = dout.shape[0]
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / N) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / N


class WrongEpsBN(BatchNormalization):
    """Backward recomputes the std with eps 1e-5 where the forward used 1e-6."""

    def _backward(self, dout):
        var = self.std ** 2 - BN_EPS
        self.std = np.sqrt(var + 1e-5)
        return super()._backward(dout)


#: name -> (class, target that must fail, modes where the bug lives)
BROKEN = {
    "no-mean-term": (NoMeanTermBN, "x", (True,)),
    "unbiased-var-in-backward": (UnbiasedVarBN, "x", (True,)),
    "dgamma-from-centred": (CentredDgammaBN, "gamma", (True, False)),
    "eval-uses-batch-stats": (EvalBatchStatsBN, "x", (False,)),
    "backward-eps-differs": (WrongEpsBN, "x", (True, False)),
}
