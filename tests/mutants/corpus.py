"""A corpus of realistic single bugs in the backward passes of the built-in layers.

Each mutant is a subclass of a built-in layer whose ``backward`` (or the
``_backward`` it delegates to) differs from the correct one by exactly one
bug, marked ``# BUG:``. :data:`MUTANTS` maps a name to a :class:`Mutant`:

- ``make(train_flg)`` builds a *correct* ``(layer, x)`` pair with a fixed
  seed, inputs away from kinks (no ReLU input or max-pool tie within a step);
  :meth:`Mutant.build` swaps the layer's class for the buggy subclass, so the
  mutant and the correct layer see identical parameters, state and input;
- ``target``: the target whose check must FAIL;
- ``modes``: the values of ``train_flg`` in which the bug lives (in the other
  modes the mutant is the correct layer).

Several factories choose shapes or scales that make a bug observable at
all: an axis bug ``sum(axis=1)`` instead of ``sum(axis=0)`` only keeps the
gradient's shape when the array is square (otherwise the engine reports a
:class:`~gradcheck.LayerProtocolError`, not a mismatch); a wrong variance
floor only matters when the variance is small.
"""

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np

from layers import (Affine, BatchNormalization, Convolution, Dropout, GroupNorm, LayerNorm,
                    Pooling, Relu, Sequential, Sigmoid, SoftmaxWithLoss,
                    SpatialBatchNormalization, Tanh)
from layers._im2col import output_size
from layers.batchnorm import BN_EPS
from gradcheck.gate.suite import (LayerSpec, make_activation, make_affine, make_batchnorm, make_convolution,
                          make_dropout, make_groupnorm, make_layernorm, make_mlp, make_pooling,
                          make_softmax_loss, make_spatial_batchnorm)

__all__ = ["Mutant", "MUTANTS", "SEED", "EXTRA_SPECS"]

#: Seed of every factory's generator.
SEED = 20240607


@dataclass(frozen=True)
class Mutant:
    """One buggy layer: its class, a factory, the target that must fail, the modes.

    Attributes
    ----------
    name : str
    cls : type
        The buggy subclass of a built-in layer.
    make : callable
        ``make(train_flg) -> (layer, x)``: the *correct* layer and its input.
    target : str
        ``"x"``, ``"W"``, ``"gamma"``, ...: the check of this target fails.
    modes : tuple of bool
        Values of ``train_flg`` in which the bug lives.
    bug : str
        One line: what is wrong.
    """

    name: str
    cls: type
    make: Callable
    target: str
    modes: tuple
    bug: str

    def build(self, train_flg, correct=False):
        """``(layer, x)``: the mutant (or, with ``correct``, the built-in layer)."""
        layer, x = self.make(train_flg)
        if not correct:
            _swap_class(layer, self.cls)
        return layer, x


def _swap_class(layer, cls):
    """Turn ``layer`` (or the one child of a Sequential that ``cls`` subclasses) into ``cls``."""
    if isinstance(layer, Sequential) and not issubclass(cls, Sequential):
        hits = [c for c in layer.layers if type(c) in cls.__mro__[1:]]
        assert len(hits) == 1, (cls, layer)
        hits[0].__class__ = cls
    else:
        assert type(layer) in cls.__mro__[1:], (cls, type(layer))
        layer.__class__ = cls


def _rng():
    return np.random.default_rng(SEED)


def _spec_factory(fn, shape, **kw):
    """``make(train_flg)`` from a :mod:`gradcheck.gate.suite` factory and a shape."""
    def make(train_flg):
        return fn(shape, _rng(), train_flg, **kw)
    return make


# ---------------------------------------------------------------------------
# Affine
# ---------------------------------------------------------------------------

class AffineTransposedDW(Affine):
    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = dout.T @ self.x  # BUG: W's gradient transposed (square W keeps the shape)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape)


class AffineDxUsesW(Affine):
    def backward(self, dout):
        dx = dout @ self.W  # BUG: W instead of W.T (square W keeps the shape)
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape)


class AffineDbWrongAxis(Affine):
    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=1)  # BUG: summed over the outputs, not the batch (N == M)
        return dx.reshape(self.original_x_shape)


class AffineDbMean(Affine):
    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = np.mean(dout, axis=0)  # BUG: divided by the batch size
        return dx.reshape(self.original_x_shape)


class AffineDWOnePercent(Affine):
    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.dW[1, 2] *= 1.01  # BUG: one element of dW off by 1 %
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape)


class AffineDxFortranReshape(Affine):
    def backward(self, dout):
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape, order="F")  # BUG: wrong memory order


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------

class ReluMaskInverted(Relu):
    def backward(self, dout):
        return np.where(~self.mask, 0.0, dout)  # BUG: passes the gradient where x <= 0


class ReluLeakyBackward(Relu):
    def backward(self, dout):
        return np.where(self.mask, 0.01 * dout, dout)  # BUG: leaky slope the forward lacks


class SigmoidMissingOneMinus(Sigmoid):
    def backward(self, dout):
        return dout * self.out  # BUG: dropped the (1 - out) factor


class TanhMissingSquare(Tanh):
    def backward(self, dout):
        return dout * (1.0 - self.out)  # BUG: 1 - y instead of 1 - y**2


class TanhSign(Tanh):
    def backward(self, dout):
        return dout * (self.out**2 - 1.0)  # BUG: sign


# ---------------------------------------------------------------------------
# SoftmaxWithLoss
# ---------------------------------------------------------------------------

class SoftmaxNotDividedByN(SoftmaxWithLoss):
    def backward(self, dout=1.0):
        t = self._onehot
        return dout * (self.y * np.sum(t, axis=1, keepdims=True) - t)  # BUG: no / N


class SoftmaxIgnoresDout(SoftmaxWithLoss):
    def backward(self, dout=1.0):
        t = self._onehot
        N = t.shape[0]
        return (self.y * np.sum(t, axis=1, keepdims=True) - t) / N  # BUG: dout dropped (book)


class SoftmaxSign(SoftmaxWithLoss):
    def backward(self, dout=1.0):
        t = self._onehot
        N = t.shape[0]
        return dout * (t - self.y * np.sum(t, axis=1, keepdims=True)) / N  # BUG: sign


class SoftmaxAssumesOneHot(SoftmaxWithLoss):
    def backward(self, dout=1.0):
        t = self._onehot
        N = t.shape[0]
        return dout * (self.y - t) / N  # BUG: the book's (y - t) / N: rows of t must sum to 1


def make_softmax_weighted(shape, rng, train_flg=True):
    """:class:`SoftmaxWithLoss` with non-negative target weights whose rows do not sum to 1."""
    N, C = shape
    t = rng.uniform(0.0, 1.0, (N, C)) * rng.uniform(0.5, 2.0, (N, 1))
    return SoftmaxWithLoss(t), rng.normal(0.0, 2.0, shape)


# ---------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------

class DropoutMaskNotApplied(Dropout):
    def backward(self, dout):
        if self.mask is None:
            return dout * self._factor
        return dout / (1.0 - self.dropout_ratio)  # BUG: the mask is not applied


class DropoutMissingScale(Dropout):
    def backward(self, dout):
        if self.mask is None:
            return dout * self._factor
        return dout * self.mask  # BUG: mask without the 1/(1-p) of the scaled forward


class DropoutEvalFactorDropped(Dropout):
    def backward(self, dout):
        if self.mask is None:
            return dout.copy()  # BUG: eval forward multiplies by 1-p, backward does not
        return dout * self._factor


# ---------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------

class _ConvBase(Convolution):
    def _grads(self, dout):
        F, C, FH, FW = self.W.shape
        return dout.transpose(0, 2, 3, 1).reshape(-1, F), (F, C, FH, FW)

    def _dx(self, dcol, FH, FW):
        from layers._im2col import col2im
        return col2im(dcol, self.x_shape, FH, FW, self.stride, self.pad)


class ConvTransposedDW(_ConvBase):
    def backward(self, dout):
        dout2, (F, C, FH, FW) = self._grads(dout)
        self.db = np.sum(dout2, axis=0)
        self.dW = (self.col.T @ dout2).reshape(F, C, FH, FW)  # BUG: missing .T before reshape
        return self._dx(dout2 @ self.col_W.T, FH, FW)


class ConvFlippedKernelDx(_ConvBase):
    def backward(self, dout):
        dout2, (F, C, FH, FW) = self._grads(dout)
        self.db = np.sum(dout2, axis=0)
        self.dW = (self.col.T @ dout2).T.reshape(F, C, FH, FW)
        flipped = self.W[:, :, ::-1, ::-1].reshape(F, -1)  # BUG: convolution vs correlation
        return self._dx(dout2 @ flipped, FH, FW)


class ConvDbDividedByN(_ConvBase):
    def backward(self, dout):
        dout2, (F, C, FH, FW) = self._grads(dout)
        self.db = np.sum(dout2, axis=0) / dout.shape[0]  # BUG: divided by the batch size
        self.dW = (self.col.T @ dout2).T.reshape(F, C, FH, FW)
        return self._dx(dout2 @ self.col_W.T, FH, FW)


class ConvDWOnePercent(_ConvBase):
    def backward(self, dout):
        dout2, (F, C, FH, FW) = self._grads(dout)
        self.db = np.sum(dout2, axis=0)
        self.dW = (self.col.T @ dout2).T.reshape(F, C, FH, FW)
        self.dW[1, 0, 2, 1] *= 1.01  # BUG: one element of dW off by 1 %
        return self._dx(dout2 @ self.col_W.T, FH, FW)


# ---------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------

def _col2im_overwrite(col, input_shape, fh, fw, stride, pad):
    """col2im that assigns overlapping contributions instead of adding them."""
    N, C, H, W = input_shape
    oh, ow = output_size(H, fh, stride, pad), output_size(W, fw, stride, pad)
    col = col.reshape(N, oh, ow, C, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for u in range(fh):
        for v in range(fw):
            img[:, :, u:u + stride * oh:stride, v:v + stride * ow:stride] = col[:, :, u, v]
    return img[:, :, pad:H + pad, pad:W + pad]


class _PoolBase(Pooling):
    def _fold(self, dcol, dout, col2im=None):
        from layers._im2col import col2im as default
        dcol = dcol.reshape(dout.shape[0] * dout.shape[2] * dout.shape[3], -1)
        return (col2im or default)(dcol, self.x_shape, self.pool_h, self.pool_w, self.stride,
                                   self.pad)


class MaxPoolRoutesToFirst(_PoolBase):
    def backward(self, dout):
        flat = dout.transpose(0, 2, 3, 1).reshape(-1)
        dcol = np.zeros((flat.size, self.pool_h * self.pool_w))
        dcol[:, 0] = flat  # BUG: the window's first element instead of its arg-max
        return self._fold(dcol, dout)


class MaxPoolWrongLayout(_PoolBase):
    def backward(self, dout):
        flat = dout.reshape(-1)  # BUG: not transposed to (N, OH, OW, C) like the forward's rows
        dcol = np.zeros((flat.size, self.pool_h * self.pool_w))
        dcol[np.arange(flat.size), self.arg_max] = flat
        return self._fold(dcol, dout)


class MaxPoolOverlapOverwrites(_PoolBase):
    def backward(self, dout):
        flat = dout.transpose(0, 2, 3, 1).reshape(-1)
        dcol = np.zeros((flat.size, self.pool_h * self.pool_w))
        dcol[np.arange(flat.size), self.arg_max] = flat
        return self._fold(dcol, dout, _col2im_overwrite)  # BUG: overlapping windows overwrite


class AvgPoolNotDivided(_PoolBase):
    def backward(self, dout):
        size = self.pool_h * self.pool_w
        flat = dout.transpose(0, 2, 3, 1).reshape(-1)
        dcol = np.repeat(flat[:, None], size, axis=1)  # BUG: not divided by the window size
        return self._fold(dcol, dout)


# ---------------------------------------------------------------------------
# BatchNormalization (the seed's flattened convention)
# ---------------------------------------------------------------------------

class _BN(BatchNormalization):
    """Correct eval branch; the train branch is each mutant's own copy."""

    def _eval(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        return self.gamma * dout / self.std


class BNNoMeanTerm(_BN):
    def _backward(self, dout):
        if not self.train_flg:
            return self._eval(dout)
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        return dxc  # BUG: the mean term - dmu / N is dropped


class BNUnbiasedVar(_BN):
    def _backward(self, dout):
        if not self.train_flg:
            return self._eval(dout)
        N = self.batch_size
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / (N - 1)) * self.xc * dvar  # BUG: N - 1 where the forward divides by N
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / N


class BNVarTermSign(_BN):
    def _backward(self, dout):
        if not self.train_flg:
            return self._eval(dout)
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc -= (2.0 / self.batch_size) * self.xc * dvar  # BUG: sign of the variance term
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / self.batch_size


class BNDgammaFromCentred(BatchNormalization):
    def _backward(self, dout):
        dx = super()._backward(dout)
        self.dgamma = np.sum(self.xc * dout, axis=0)  # BUG: xc (centred) instead of xn
        return dx


class BNDbetaWrongAxis(BatchNormalization):
    def _backward(self, dout):
        dx = super()._backward(dout)
        self.dbeta = dout.sum(axis=1)  # BUG: summed over features, not the batch (N == D)
        return dx


class BNEvalUsesBatchStats(_BN):
    def _backward(self, dout):
        if self.train_flg:
            return BatchNormalization._backward(self, dout)
        # BUG: eval mode differentiates the train-mode formula (batch statistics)
        N = dout.shape[0]
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / N) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / N


class BNEvalMissingGamma(_BN):
    def _backward(self, dout):
        if self.train_flg:
            return BatchNormalization._backward(self, dout)
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        return dout / self.std  # BUG: gamma dropped from the eval-mode dx


class BNBackwardEps(BatchNormalization):
    def _backward(self, dout):
        self.std = np.sqrt(self.std**2 - BN_EPS + 1e-5)  # BUG: eps 1e-5 (forward: 1e-6)
        return super()._backward(dout)


class BNOneElementOnePercent(BatchNormalization):
    def _backward(self, dout):
        dx = super()._backward(dout)
        dx[0, 1] *= 1.01  # BUG: one element of dx off by 1 %
        return dx


def make_bn_small_var(train_flg, shape=(6, 4)):
    """Features with variance ~4e-4 (eval: running_var in [1e-4, 1e-3]): eps matters."""
    rng = _rng()
    layer, _ = make_batchnorm(shape, rng, train_flg)
    if not train_flg:
        layer.running_var = rng.uniform(1e-4, 1e-3, shape[1])
        layer.running_mean = rng.normal(0.3, 0.02, shape[1])
    return layer, rng.normal(0.3, 0.02, shape)


# ---------------------------------------------------------------------------
# SpatialBatchNormalization
# ---------------------------------------------------------------------------

class SBNBatchDivisor(SpatialBatchNormalization):
    def _backward(self, dout):
        if not self.train_flg:
            return super()._backward(dout)
        N = self.input_shape[0]  # BUG: the batch size N, not the N*H*W values per channel
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / N) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / N


class SBNNoMoveaxis(SpatialBatchNormalization):
    def backward(self, dout):
        d2 = dout.reshape(-1, dout.shape[1])  # BUG: channels not moved last first
        dx = self._backward(d2)
        return np.moveaxis(dx.reshape(self._moved_shape()), -1, 1)


# ---------------------------------------------------------------------------
# LayerNorm and GroupNorm
# ---------------------------------------------------------------------------

class LayerNormNoMeanTerm(LayerNorm):
    def backward(self, dout):
        axes = tuple(range(1, dout.ndim))
        self.dbeta = np.sum(dout, axis=0)
        self.dgamma = np.sum(dout * self.xn, axis=0)
        g = dout * self.gamma
        # BUG: the mean term - mean(g) is dropped
        return (g - self.xn * np.mean(g * self.xn, axis=axes, keepdims=True)) / self.std


class LayerNormBatchAxis(LayerNorm):
    def backward(self, dout):
        axes = tuple(range(1, dout.ndim))
        self.dbeta = np.sum(dout, axis=0)
        self.dgamma = np.sum(dout * self.xn, axis=0)
        g = dout * self.gamma
        return (g - np.mean(g, axis=axes, keepdims=True)
                - self.xn * np.mean(g * self.xn, axis=0, keepdims=True)) / self.std  # BUG: axis 0


class LayerNormDgammaWrongAxis(LayerNorm):
    def backward(self, dout):
        axes = tuple(range(1, dout.ndim))
        self.dbeta = np.sum(dout, axis=0)
        self.dgamma = np.sum(dout * self.xn, axis=1)  # BUG: over features, not batch (N == D)
        g = dout * self.gamma
        return (g - np.mean(g, axis=axes, keepdims=True)
                - self.xn * np.mean(g * self.xn, axis=axes, keepdims=True)) / self.std


class GroupNormNoMeanTerm(GroupNorm):
    def backward(self, dout):
        axes = (0,) + tuple(range(2, dout.ndim))
        self.dbeta = np.sum(dout, axis=axes)
        self.dgamma = np.sum(dout * self.xn, axis=axes)
        N = dout.shape[0]
        g = (dout * self._channel(self.gamma)).reshape(N, self.num_groups, -1)
        xn = self.xn.reshape(N, self.num_groups, -1)
        dx = (g - xn * np.mean(g * xn, axis=2, keepdims=True)) / self.std  # BUG: no - mean(g)
        return dx.reshape(self.x_shape)


class GroupNormWholeSampleMean(GroupNorm):
    def backward(self, dout):
        axes = (0,) + tuple(range(2, dout.ndim))
        self.dbeta = np.sum(dout, axis=axes)
        self.dgamma = np.sum(dout * self.xn, axis=axes)
        N = dout.shape[0]
        g = (dout * self._channel(self.gamma)).reshape(N, self.num_groups, -1)
        xn = self.xn.reshape(N, self.num_groups, -1)
        dx = (g - np.mean(g, axis=(1, 2), keepdims=True)  # BUG: mean over the sample, not group
              - xn * np.mean(g * xn, axis=2, keepdims=True)) / self.std
        return dx.reshape(self.x_shape)


# ---------------------------------------------------------------------------
# Sequential
# ---------------------------------------------------------------------------

class SequentialSkipsActivation(Sequential):
    def backward(self, dout):
        try:
            for layer in reversed(self.layers):
                if isinstance(layer, Tanh):
                    continue  # BUG: an activation's backward skipped
                dout = layer.backward(dout)
        finally:
            self._sync()
        return dout


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

TRAIN, EVAL, BOTH = (True,), (False,), (True, False)

_conv = _spec_factory(make_convolution, (2, 2, 5, 5))
_conv_s2 = _spec_factory(partial(make_convolution, stride=2, pad=1), (2, 2, 5, 5))

_TABLE = [
    # name, class, factory, target, modes
    ("affine-transposed-dW", AffineTransposedDW,
     _spec_factory(make_affine, (4, 3), out_features=3), "W", TRAIN),
    ("affine-dx-uses-W", AffineDxUsesW,
     _spec_factory(make_affine, (4, 3), out_features=3), "x", TRAIN),
    ("affine-db-wrong-axis", AffineDbWrongAxis,
     _spec_factory(make_affine, (3, 5), out_features=3), "b", TRAIN),
    ("affine-db-mean", AffineDbMean, _spec_factory(make_affine, (4, 5)), "b", TRAIN),
    ("affine-dW-one-element-1pct", AffineDWOnePercent,
     _spec_factory(make_affine, (4, 5)), "W", TRAIN),
    ("affine-4d-dx-fortran-reshape", AffineDxFortranReshape,
     _spec_factory(make_affine, (2, 2, 3, 3)), "x", TRAIN),
    ("relu-mask-inverted", ReluMaskInverted,
     _spec_factory(partial(make_activation, Relu), (4, 5)), "x", TRAIN),
    ("relu-leaky-backward", ReluLeakyBackward,
     _spec_factory(partial(make_activation, Relu), (4, 5)), "x", TRAIN),
    ("sigmoid-missing-one-minus", SigmoidMissingOneMinus,
     _spec_factory(partial(make_activation, Sigmoid), (4, 5)), "x", TRAIN),
    ("tanh-missing-square", TanhMissingSquare,
     _spec_factory(partial(make_activation, Tanh), (4, 5)), "x", TRAIN),
    ("tanh-sign", TanhSign, _spec_factory(partial(make_activation, Tanh), (4, 5)), "x", TRAIN),
    ("softmax-not-divided-by-N", SoftmaxNotDividedByN,
     _spec_factory(make_softmax_loss, (4, 5)), "x", TRAIN),
    ("softmax-sign", SoftmaxSign,
     _spec_factory(partial(make_softmax_loss, onehot=True), (6, 3)), "x", TRAIN),
    ("softmax-assumes-onehot", SoftmaxAssumesOneHot,
     _spec_factory(make_softmax_weighted, (4, 5)), "x", TRAIN),
    ("dropout-mask-not-applied", DropoutMaskNotApplied,
     _spec_factory(make_dropout, (4, 5)), "x", TRAIN),
    ("dropout-missing-scale", DropoutMissingScale,
     _spec_factory(make_dropout, (4, 5)), "x", TRAIN),
    ("dropout-eval-factor-dropped", DropoutEvalFactorDropped,
     _spec_factory(partial(make_dropout, scale=False), (4, 5)), "x", EVAL),
    ("conv-transposed-dW", ConvTransposedDW, _conv, "W", TRAIN),
    ("conv-flipped-kernel-dx", ConvFlippedKernelDx, _conv_s2, "x", TRAIN),
    ("conv-db-divided-by-N", ConvDbDividedByN, _conv, "b", TRAIN),
    ("conv-dW-one-element-1pct", ConvDWOnePercent, _conv, "W", TRAIN),
    ("maxpool-routes-to-first", MaxPoolRoutesToFirst,
     _spec_factory(make_pooling, (2, 2, 4, 4)), "x", TRAIN),
    ("maxpool-wrong-layout", MaxPoolWrongLayout,
     _spec_factory(make_pooling, (2, 3, 4, 4)), "x", TRAIN),
    ("maxpool-overlap-overwrites", MaxPoolOverlapOverwrites,
     _spec_factory(partial(make_pooling, pool=3, stride=1, pad=1), (2, 2, 4, 4)), "x", TRAIN),
    ("avgpool-not-divided", AvgPoolNotDivided,
     _spec_factory(partial(make_pooling, mode="avg"), (2, 2, 4, 4)), "x", TRAIN),
    ("bn-no-mean-term", BNNoMeanTerm, _spec_factory(make_batchnorm, (8, 5)), "x", TRAIN),
    ("bn-unbiased-var", BNUnbiasedVar, _spec_factory(make_batchnorm, (8, 5)), "x", TRAIN),
    ("bn-var-term-sign", BNVarTermSign,
     _spec_factory(make_batchnorm, (4, 3, 2, 2)), "x", TRAIN),
    ("bn-dgamma-from-centred", BNDgammaFromCentred,
     _spec_factory(make_batchnorm, (8, 5)), "gamma", BOTH),
    ("bn-dbeta-wrong-axis", BNDbetaWrongAxis,
     _spec_factory(make_batchnorm, (5, 5)), "beta", BOTH),
    ("bn-eval-uses-batch-stats", BNEvalUsesBatchStats,
     _spec_factory(make_batchnorm, (8, 5)), "x", EVAL),
    ("bn-eval-missing-gamma", BNEvalMissingGamma,
     _spec_factory(make_batchnorm, (8, 5)), "x", EVAL),
    ("bn-backward-eps-differs", BNBackwardEps, make_bn_small_var, "x", BOTH),
    ("bn-dx-one-element-1pct", BNOneElementOnePercent,
     _spec_factory(make_batchnorm, (8, 5)), "x", BOTH),
    ("spatialbn-batch-divisor", SBNBatchDivisor,
     _spec_factory(make_spatial_batchnorm, (4, 3, 2, 2)), "x", TRAIN),
    ("spatialbn-no-moveaxis", SBNNoMoveaxis,
     _spec_factory(make_spatial_batchnorm, (2, 3, 2, 2)), "x", BOTH),
    ("layernorm-no-mean-term", LayerNormNoMeanTerm,
     _spec_factory(make_layernorm, (4, 6)), "x", TRAIN),
    ("layernorm-batch-axis", LayerNormBatchAxis,
     _spec_factory(make_layernorm, (4, 6)), "x", TRAIN),
    ("layernorm-dgamma-wrong-axis", LayerNormDgammaWrongAxis,
     _spec_factory(make_layernorm, (5, 5)), "gamma", TRAIN),
    ("groupnorm-no-mean-term", GroupNormNoMeanTerm,
     _spec_factory(make_groupnorm, (2, 4, 3, 3)), "x", TRAIN),
    ("groupnorm-whole-sample-mean", GroupNormWholeSampleMean,
     _spec_factory(make_groupnorm, (2, 4, 3, 3)), "x", TRAIN),
    ("sequential-skips-activation", SequentialSkipsActivation,
     _spec_factory(make_mlp, (4, 5)), "x", BOTH),
    ("sequential-child-bn-no-mean-term", BNNoMeanTerm,
     _spec_factory(make_mlp, (6, 3)), "x", TRAIN),
]


#: Configurations beyond :data:`gradcheck.gate.suite.SPECS` that the AST mutation run
#: (``ast_mutants.py``) showed are needed to kill real mutants: 3-D input to
#: the seed's BatchNormalization (flattened like 4-D), padding of 2 (the
#: col2im buffer), target weights whose rows do not sum to 1.
EXTRA_SPECS = [
    LayerSpec("BatchNormalization-3d", make_batchnorm, shapes=((4, 2, 3),),
              notes="(N, C, L) flattened to (N, C*L)"),
    LayerSpec("Convolution-stride3-pad2", partial(make_convolution, stride=3, pad=2),
              shapes=((1, 2, 5, 5), (2, 1, 4, 6)), modes=(True,)),
    LayerSpec("Pooling-max-5x5-stride2-pad2", partial(make_pooling, pool=5, stride=2, pad=2),
              shapes=((1, 2, 5, 5),), modes=(True,)),
    LayerSpec("Pooling-avg-5x5-stride2-pad2",
              partial(make_pooling, pool=5, stride=2, pad=2, mode="avg"),
              shapes=((1, 2, 5, 5),), modes=(True,)),
    LayerSpec("SoftmaxWithLoss-weighted", make_softmax_weighted, shapes=((4, 5), (3, 2)),
              modes=(True,), notes="non-negative target weights, rows not summing to 1"),
]


def _bug_line(cls):
    import inspect
    for line in inspect.getsource(cls).splitlines():
        if "# BUG:" in line:
            return line.split("# BUG:", 1)[1].strip()
    return (cls.__doc__ or "").strip()


#: name -> Mutant
MUTANTS = {name: Mutant(name, cls, make, target, modes, _bug_line(cls))
           for name, cls, make, target, modes in _TABLE}
