"""Deliberately wrong BatchNormalization variants, each with one realistic bug.

``SeedBatchNormalization`` is the seed's class as the book ships it (kept in
``examples/seed_batchnorm.py``): its eval-mode backward reuses the
intermediates of the last train-mode forward.
"""

import importlib.util
from pathlib import Path

import numpy as np

from layers.batchnorm import BN_EPS, BatchNormalization


def _load_example(name):
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The seed's class as the book ships it (examples/seed_batchnorm.py).
SeedBatchNormalization = _load_example("seed_batchnorm").BatchNormalization


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
