"""Layers written the way other code bases write them, each with a broken look-alike.

Every class here follows one convention met in real numpy layer code (the
second "Deep Learning from Scratch" book, numpy-ml, "Neural Networks from
Scratch", CS231n) as that code writes it, and is checked by ``check_layer``
without an adapter class. ``CASES`` maps a convention to ``(correct factory,
broken factory, the target the broken one must FAIL on, the targets both have)``.
"""

import numpy as np

RNG = np.random.default_rng(7)


def _w(*shape):
    return RNG.normal(size=shape) * 0.5


# -- containers: lists (book 2) ---------------------------------------------------------------
class ListAffine:
    """``self.params = [W, b]``, ``self.grads`` written in place (``grads[0][...] = dW``)."""

    def __init__(self, D=3, H=2):
        W, b = _w(D, H), _w(H)
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        W, b = self.params
        self.x = x
        return x @ W + b

    def backward(self, dout):
        W, b = self.params
        self.grads[0][...] = self.x.T @ dout
        self.grads[1][...] = self.wrong(dout.sum(axis=0))
        return dout @ W.T

    def wrong(self, db):
        return db


class ListAffineBroken(ListAffine):
    def wrong(self, db):
        return -db


class TiedAutoencoder:
    """One weight in two list slots (``params = [W, b, W]``): ``out = (x W + b) W^T``;
    the gradient of the tied weight is the sum of both slots."""

    def __init__(self, D=3, H=2):
        W, b = _w(D, H), _w(H)
        self.params = [W, b, W]
        self.grads = [np.zeros_like(W), np.zeros_like(b), np.zeros_like(W)]

    def forward(self, x):
        W, b, W2 = self.params
        self.x, self.h = x, x @ W + b
        return self.h @ W2.T

    def backward(self, dout):
        W, b, W2 = self.params
        dh = dout @ W2
        self.grads[0][...] = self.x.T @ dh
        self.grads[1][...] = dh.sum(axis=0)
        self.grads[2][...] = self.second(dout)
        return dh @ W.T

    def second(self, dout):
        return dout.T @ self.h


class TiedAutoencoderBroken(TiedAutoencoder):
    """Forgets the second use of the tied weight."""

    def second(self, dout):
        return np.zeros_like(self.params[2])


# -- containers: accumulating dicts (numpy-ml) ------------------------------------------------
class AccumulatingDense:
    """numpy-ml's ``FullyConnected``: ``parameters``/``gradients`` dicts, ``backward``
    accumulates (``+=``) over every input ``forward`` appended to ``self.X`` (and returns
    a list when it holds several), ``flush_gradients()`` (end of ``update()``) zeroes the
    gradients and clears ``X``."""

    def __init__(self, D=3, H=2):
        self.parameters = {"W": _w(D, H), "b": _w(1, H)}
        self.gradients = {"W": np.zeros((D, H)), "b": np.zeros((1, H))}
        self.X = []

    def forward(self, X, retain_derived=True):
        if retain_derived:
            self.X.append(X)
        return X @ self.parameters["W"] + self.parameters["b"]

    def backward(self, dLdy, retain_grads=True):
        # as numpy-ml's: one gradient per kept input (a list after two forwards)
        dX = []
        for dy, X in zip(dLdy if isinstance(dLdy, list) else [dLdy], self.X):
            dX.append(dy @ self.parameters["W"].T)
            if retain_grads:
                self.gradients["W"] += X.T @ dy
                self.gradients["b"] += self.bias_grad(dy)
        return dX[0] if len(self.X) == 1 else dX

    def bias_grad(self, dLdy):
        return dLdy.sum(axis=0, keepdims=True)

    def flush_gradients(self):
        self.X = []
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)


class AccumulatingDenseBroken(AccumulatingDense):
    def bias_grad(self, dLdy):
        return 0.5 * dLdy.sum(axis=0, keepdims=True)


class LazyFullyConnected(AccumulatingDense):
    """numpy-ml's real ``FullyConnected``: ``parameters = {"W": None, "b": None}`` until the
    first forward initialises them (and the gradients) for the input's width."""

    def __init__(self, D=3, H=2):
        self.H, self.X, self.is_initialized = H, [], False
        self.parameters = {"W": None, "b": None}

    def forward(self, X, retain_derived=True):
        if not self.is_initialized:
            D = X.shape[1]
            rng = np.random.default_rng(8)
            self.parameters = {"W": rng.normal(size=(D, self.H)) * 0.5,
                               "b": rng.normal(size=(1, self.H)) * 0.5}
            self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}
            self.is_initialized = True
        return super().forward(X, retain_derived)


class LazyFullyConnectedBroken(LazyFullyConnected):
    def bias_grad(self, dLdy):
        return 0.5 * dLdy.sum(axis=0, keepdims=True)


class LazyDense:
    """``self.W = None`` until the first forward creates it for the input's width."""

    def __init__(self, H=2):
        self.H, self.W, self.b = H, None, None

    def forward(self, x):
        if self.W is None:
            rng = np.random.default_rng(9)
            self.W, self.b = rng.normal(size=(x.shape[1], self.H)), np.zeros(self.H)
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, self.bias_grad(dout)
        return dout @ self.W.T

    def bias_grad(self, dout):
        return dout.sum(axis=0)


class LazyDenseBroken(LazyDense):
    def bias_grad(self, dout):
        return dout.mean(axis=0)


class AccumulatingDenseStale(AccumulatingDense):
    """Never writes ``gradients['b']``: the flushed buffer stays zero."""

    def bias_grad(self, dLdy):
        return 0.0


# -- names ------------------------------------------------------------------------------------
class NNFSDense:
    """"Neural Networks from Scratch": ``weights``/``dweights``, ``biases``/``dbiases``;
    ``forward`` stores ``self.output`` and returns it here (see ``NNFSDenseNoReturn``)."""

    def __init__(self, D=3, H=2):
        self.weights, self.biases = _w(D, H), _w(1, H)

    def forward(self, inputs, training=True):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases
        return self.output

    def backward(self, dvalues):
        self.dweights = self.inputs.T @ dvalues
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = dvalues @ self.weights.T
        return self.dinputs


class NNFSDenseBroken(NNFSDense):
    def backward(self, dvalues):
        dx = super().backward(dvalues)
        self.dweights = self.inputs.T @ dvalues * 1.01
        return dx


class NNFSDenseRegularized(NNFSDense):
    """NNFS's ``Layer_Dense`` with L1 and L2 regularization: ``backward`` adds the gradient
    of the penalty that ``Loss.regularization_loss`` computes apart (not in forward)."""

    def __init__(self, D=3, H=2):
        super().__init__(D, H)
        self.weight_regularizer_l1, self.weight_regularizer_l2 = 5e-3, 0.1
        self.bias_regularizer_l1, self.bias_regularizer_l2 = 0, 5e-4

    def backward(self, dvalues):
        dx = super().backward(dvalues)
        dL1 = np.ones_like(self.weights)
        dL1[self.weights < 0] = -1
        self.dweights += self.weight_regularizer_l1 * dL1
        self.dweights += self.l2_factor() * self.weight_regularizer_l2 * self.weights
        self.dbiases += 2 * self.bias_regularizer_l2 * self.biases
        return dx

    def l2_factor(self):
        return 2


class NNFSDenseRegularizedBroken(NNFSDenseRegularized):
    """The L2 term without its factor 2."""

    def l2_factor(self):
        return 1


class NNFSDenseRegularizedRenamed(NNFSDense):
    """An NNFS variant (Kowallskiy/neural-network-from-scratch ``f.py``) naming its
    coefficients ``l1_weight_regularizer``, ``l2_bias_regularizer``: the same penalty."""

    def __init__(self, D=3, H=2):
        super().__init__(D, H)
        self.l1_weight_regularizer, self.l2_weight_regularizer = 5e-3, 0.1
        self.l1_bias_regularizer, self.l2_bias_regularizer = 0, 5e-4

    def backward(self, dvalues):
        dx = super().backward(dvalues)
        if self.l1_weight_regularizer > 0:
            dl1 = np.ones_like(self.weights)
            dl1[self.weights < 0] = -1
            self.dweights += self.l1_weight_regularizer * dl1
        if self.l2_weight_regularizer > 0:
            self.dweights += self.l2_factor() * self.l2_weight_regularizer * self.weights
        if self.l2_bias_regularizer > 0:
            self.dbiases += 2 * self.l2_bias_regularizer * self.biases
        return dx

    def l2_factor(self):
        return 2


class NNFSDenseRegularizedRenamedBroken(NNFSDenseRegularizedRenamed):
    def l2_factor(self):
        return 1


class GradSuffix:
    """``weight``/``weight_grad`` and ``bias``/``grad_bias``."""

    def __init__(self, D=3, H=2):
        self.weight, self.bias = _w(D, H), _w(H)
        self.weight_grad, self.grad_bias = None, None

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.weight + self.bias)

    def backward(self, dout):
        self.out = np.tanh(self.x @ self.weight + self.bias)
        dz = dout * (1 - self.out ** 2)
        self.weight_grad = self.x.T @ dz
        self.grad_bias = self.wrong(dz.sum(axis=0))
        return dz @ self.weight.T

    def wrong(self, db):
        return db


class GradSuffixBroken(GradSuffix):
    def wrong(self, db):
        return db * 1.1


# -- scalar parameters ------------------------------------------------------------------------
class Swish:
    """``x * sigmoid(beta x)`` with a learnable scalar ``beta`` (a Python float)."""

    def __init__(self, beta=1.3):
        self.beta = beta
        self.dbeta = 0.0

    def forward(self, x):
        self.x = x
        self.s = 1.0 / (1.0 + np.exp(-self.beta * x))
        return x * self.s

    def backward(self, dout):
        x, s = self.x, self.s
        ds = s * (1 - s)
        self.dbeta = float(np.sum(dout * x * x * ds)) * self.scale()
        return dout * (s + self.beta * x * ds)

    def scale(self):
        return 1.0


class SwishBroken(Swish):
    def scale(self):
        return -1.0


class Swish0d(Swish):
    """The same with ``beta`` a 0-d array and ``dbeta`` a 0-d array."""

    def __init__(self):
        super().__init__()
        self.beta = np.array(1.3)
        self.dbeta = np.array(0.0)

    def backward(self, dout):
        dx = super().backward(dout)
        self.dbeta = np.asarray(self.dbeta)
        return dx


class Swish0dBroken(Swish0d):
    def scale(self):
        return 0.5


# -- sub-layers -------------------------------------------------------------------------------
class Dense:
    """The first book's convention: ``W``/``dW``, ``b``/``db``."""

    def __init__(self, D, H, bias_sign=1.0):
        self.W, self.b = _w(D, H), _w(H)
        self.dW = self.db = None
        self.bias_sign = bias_sign

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = self.bias_sign * dout.sum(axis=0)
        return dout @ self.W.T


class Tanh:
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out ** 2)


class Blocks:
    """Sub-layers in a list, a dict and an attribute: ``blocks.0.W``, ``heads.out.W``,
    ``norm_scale.W``."""

    def __init__(self, broken=False):
        self.blocks = [Dense(3, 3), Tanh(), Dense(3, 2, -1.0 if broken else 1.0)]
        self.heads = {"out": Dense(2, 2)}
        self.final = Dense(2, 2)

    def forward(self, x):
        for layer in self.blocks + [self.heads["out"], self.final]:
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self.blocks + [self.heads["out"], self.final]):
            dout = layer.backward(dout)
        return dout


def BlocksBroken():
    return Blocks(broken=True)


# -- state beside a gradient-like name --------------------------------------------------------
class RecurrentStep:
    """Keeps its last hidden state ``h`` (written by forward) beside ``dh`` (the gradient
    of its output, kept by backward): ``h`` is state, not a parameter."""

    def __init__(self, D=3, H=2):
        self.Wx, self.b = _w(D, H), _w(H)
        self.dWx = self.db = None
        self.h = np.zeros(H)

    def forward(self, x):
        self.x = x
        self.h = np.tanh(x @ self.Wx + self.b)
        return self.h

    def backward(self, dout):
        self.dh = dout
        dz = dout * (1 - self.h ** 2)
        self.dWx = self.x.T @ dz
        self.db = self.wrong(dz.sum(axis=0))
        return dz @ self.Wx.T

    def wrong(self, db):
        return db


class RecurrentStepBroken(RecurrentStep):
    def wrong(self, db):
        return db[::-1].copy()


class ListWeights:
    """``weights = [W1, W2]`` beside ``dweights = [...]`` (any name, not only params/grads)."""

    def __init__(self):
        self.weights = [_w(3, 4), _w(4, 2)]

    def forward(self, x):
        self.x = x
        self.h = x @ self.weights[0]
        return self.h @ self.weights[1]

    def backward(self, dout):
        dh = dout @ self.weights[1].T
        self.dweights = [self.x.T @ dh, self.wrong(self.h.T @ dout)]
        return dh @ self.weights[0].T

    def wrong(self, g):
        return g


class ListWeightsBroken(ListWeights):
    def wrong(self, g):
        return 0.0 * g


class DictWeights:
    """``weights = {'W': ...}`` beside ``weights_grad = {'W': ...}``."""

    def __init__(self):
        self.weights = {"W": _w(3, 2), "b": _w(2)}

    def forward(self, x):
        self.x = x
        return x @ self.weights["W"] + self.weights["b"]

    def backward(self, dout):
        self.weights_grad = {"W": self.wrong(self.x.T @ dout), "b": dout.sum(axis=0)}
        return dout @ self.weights["W"].T

    def wrong(self, g):
        return g


class DictWeightsBroken(DictWeights):
    def wrong(self, g):
        return 2.0 * g


class TupleParams:
    """``params = (W, b)`` and ``grads = (dW, db)`` as tuples, rebound by backward."""

    def __init__(self):
        self.params = (_w(3, 2), _w(2))

    def forward(self, x):
        self.x = x
        return x @ self.params[0] + self.params[1]

    def backward(self, dout):
        self.grads = (self.x.T @ dout, self.wrong(dout.sum(axis=0)))
        return dout @ self.params[0].T

    def wrong(self, g):
        return g


class TupleParamsBroken(TupleParams):
    def wrong(self, g):
        return g[::-1].copy()


class ZeroedInForward:
    """Zeroes ``dW`` in forward (a fresh buffer) and accumulates into it in backward."""

    def __init__(self):
        self.W = _w(3, 2)

    def forward(self, x):
        self.x = x
        self.dW = np.zeros_like(self.W)
        return x @ self.W

    def backward(self, dout):
        self.dW += self.wrong(self.x.T @ dout)
        return dout @ self.W.T

    def wrong(self, g):
        return g


class ZeroedInPlaceInForward(ZeroedInForward):
    """Zeroes a ``dW`` made in ``__init__`` in place in forward (``self.dW[...] = 0``)."""

    def __init__(self):
        super().__init__()
        self.dW = np.zeros_like(self.W)

    def forward(self, x):
        self.x = x
        self.dW[...] = 0
        return x @ self.W


class ZeroedInForwardBroken(ZeroedInForward):
    def wrong(self, g):
        return 1.5 * g


class MisnamedDense:
    """``W`` with its gradient misnamed ``dw`` beside a found ``b``/``db``."""

    def __init__(self):
        self.W, self.b = np.eye(3) * 1.5, np.ones(3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dw = 1.5 * self.x.T @ dout  # wrong, and not found under its name
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class TiedAttributes:
    """The same ``W`` in two attributes, ``W_in`` and ``W_out``, each with its gradient."""

    def __init__(self):
        W = _w(3, 2)
        self.W_in, self.W_out = W, W

    def forward(self, x):
        self.x = x
        self.h = np.tanh(x @ self.W_in)
        return self.h @ self.W_out.T

    def backward(self, dout):
        self.dW_out = self.wrong(dout.T @ self.h)
        dz = dout @ self.W_out * (1 - self.h ** 2)
        self.dW_in = self.x.T @ dz
        return dz @ self.W_in.T

    def wrong(self, g):
        return g


class TiedAttributesBroken(TiedAttributes):
    def wrong(self, g):
        return 0.5 * g


class TiedTranspose:
    """``Wt = W.T`` (a view) with its own gradient ``dWt`` beside ``dW``."""

    def __init__(self):
        self.W = _w(3, 2)
        self.Wt = self.W.T

    def forward(self, x):
        self.x = x
        self.h = np.tanh(x @ self.W)
        return self.h @ self.Wt

    def backward(self, dout):
        self.dWt = self.wrong(self.h.T @ dout)
        dz = dout @ self.Wt.T * (1 - self.h ** 2)
        self.dW = self.x.T @ dz
        return dz @ self.W.T

    def wrong(self, g):
        return g


class TiedTransposeBroken(TiedTranspose):
    def wrong(self, g):
        return g[::-1].copy()


# -- ML-From-Scratch (eriklindernoren): forward_pass / backward_pass, optimizer objects ----------
class MomentumSGD:
    """An optimizer object in ML-From-Scratch's shape: ``update(w, grad_wrt_w)`` returns the
    new ``w`` and keeps a velocity between calls."""

    def __init__(self, learning_rate=0.05, momentum=0.9):
        self.learning_rate, self.momentum = learning_rate, momentum
        self.velocity = None

    def update(self, w, grad_wrt_w):
        if self.velocity is None:
            self.velocity = np.zeros(np.shape(w))
        self.velocity = self.momentum * self.velocity + (1 - self.momentum) * grad_wrt_w
        return w - self.learning_rate * self.velocity


class MLFSTanh:
    """An activation layer: ``forward_pass(X, training=True)``, ``backward_pass(accum_grad)``,
    no parameters and no optimizer."""

    def forward_pass(self, X, training=True):
        self.layer_input = X
        return np.tanh(X)

    def backward_pass(self, accum_grad):
        return accum_grad * self.slope(np.tanh(self.layer_input))

    def slope(self, y):
        return 1 - y ** 2


class MLFSTanhBroken(MLFSTanh):
    def slope(self, y):
        return 1 - y ** 2 + 0.01 * y


class MLFSDense:
    """A fully connected layer as ML-From-Scratch writes it: ``initialize(optimizer)`` keeps a
    copy of the optimizer per parameter, ``backward_pass`` hands each gradient to its
    optimizer (``self.W = self.W_opt.update(self.W, grad)``) and returns the input gradient
    taken with the weights it started from."""

    def __init__(self, n_in=3, n_units=2, optimizer=None):
        import copy

        rng = np.random.default_rng(11)
        self.n_units, self.trainable, self.layer_input = n_units, True, None
        self.W = rng.uniform(-0.8, 0.8, (n_in, n_units))
        self.w0 = rng.normal(size=(1, n_units))
        optimizer = optimizer or MomentumSGD()
        self.W_opt, self.w0_opt = copy.copy(optimizer), copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        self.layer_input = X
        return X.dot(self.W) + self.w0

    def backward_pass(self, accum_grad):
        W_before = self.W
        if self.trainable:
            self.W = self.W_opt.update(self.W, self.weight_gradient(accum_grad))
            self.w0 = self.w0_opt.update(self.w0, accum_grad.sum(axis=0, keepdims=True))
        return self.input_gradient(accum_grad, W_before)

    def weight_gradient(self, accum_grad):
        return self.layer_input.T.dot(accum_grad)

    def input_gradient(self, accum_grad, W):
        return accum_grad.dot(W.T)


class MLFSDenseBroken(MLFSDense):
    """``grad_w`` off by 1e-3 relative on one element."""

    def weight_gradient(self, accum_grad):
        g = super().weight_gradient(accum_grad)
        g[1, 0] *= 1 + 1e-3
        return g


class MLFSDenseBrokenDx(MLFSDense):
    """``dx`` off by 1e-3 relative."""

    def input_gradient(self, accum_grad, W):
        return accum_grad.dot(W.T) * 1.001


class MLFSDenseDxAfterStep(MLFSDense):
    """``dx`` taken with the weights after the optimizer step, ``accum_grad.dot(self.W.T)``
    (ML-From-Scratch keeps ``W = self.W`` from before it; a real optimizer moves them)."""

    def input_gradient(self, accum_grad, W):
        return accum_grad.dot(self.W.T)


class MLFSBatchNorm:
    """Batch normalisation as ML-From-Scratch writes it: ``gamma`` and ``beta`` stepped in
    ``backward_pass`` through ``gamma_opt`` / ``beta_opt``, running statistics updated in
    train mode."""

    def __init__(self, n=3, optimizer=None, momentum=0.9):
        import copy

        rng = np.random.default_rng(12)
        self.momentum, self.eps, self.trainable = momentum, 0.01, True
        self.gamma, self.beta = rng.uniform(0.5, 1.5, n), rng.normal(size=n)
        self.running_mean, self.running_var = np.zeros(n), np.ones(n)
        optimizer = optimizer or MomentumSGD()
        self.gamma_opt, self.beta_opt = copy.copy(optimizer), copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        if training:
            mean, var = X.mean(axis=0), X.var(axis=0)
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mean
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            mean, var = self.running_mean, self.running_var
        self.X_centered = X - mean
        self.stddev_inv = 1 / np.sqrt(var + self.eps)
        self.training = training
        return self.gamma * self.X_centered * self.stddev_inv + self.beta

    def backward_pass(self, accum_grad):
        gamma = self.gamma
        X_norm = self.X_centered * self.stddev_inv
        if self.trainable:
            self.gamma = self.gamma_opt.update(self.gamma, self.gamma_gradient(accum_grad, X_norm))
            self.beta = self.beta_opt.update(self.beta, accum_grad.sum(axis=0))
        if not self.training:
            return accum_grad * gamma * self.stddev_inv
        n = accum_grad.shape[0]
        return gamma * self.stddev_inv / n * (
            n * accum_grad - accum_grad.sum(axis=0)
            - X_norm * (accum_grad * X_norm).sum(axis=0))

    def gamma_gradient(self, accum_grad, X_norm):
        return (accum_grad * X_norm).sum(axis=0)


class MLFSBatchNormBroken(MLFSBatchNorm):
    def gamma_gradient(self, accum_grad, X_norm):
        return (accum_grad * X_norm).sum(axis=0) * (1 + 1e-3)


class MLFSNetwork:
    """Sub-layers, each with its own optimizers: ``self.layers = [MLFSDense(), MLFSTanh(),
    MLFSDense()]``, passes run in order and backwards in reverse."""

    def __init__(self):
        self.layers = [MLFSDense(3, 4), MLFSTanh(), MLFSDense(4, 2)]

    def forward_pass(self, X, training=True):
        for layer in self.layers:
            X = layer.forward_pass(X, training)
        return X

    def backward_pass(self, accum_grad):
        for layer in reversed(self.layers):
            accum_grad = layer.backward_pass(accum_grad)
        return accum_grad


# -- CMU 11-785's mytorch: dLdW / dLdb -------------------------------------------------------
class CMULinear:
    """``forward(A)``, ``backward(dLdZ) -> dLdA``, gradients ``dLdW``, ``dLdb``; ``W`` is
    (out, in), ``b`` (out, 1)."""

    def __init__(self, D=3, H=2):
        self.W, self.b = _w(H, D), _w(H, 1)

    def forward(self, A):
        self.A, self.Ones = A, np.ones((A.shape[0], 1))
        return A @ self.W.T + self.Ones @ self.b.T

    def backward(self, dLdZ):
        self.dLdW = self.wrong(dLdZ.T @ self.A)
        self.dLdb = dLdZ.T @ self.Ones
        return dLdZ @ self.W

    def wrong(self, dW):
        return dW


class CMULinearBroken(CMULinear):
    def wrong(self, dW):
        return dW * (1 + 1e-3)


# -- parameter objects (dlcourse.ai, UW CSE 599): W.value / W.grad, += ----------------------
class Param:
    """A parameter object: ``value`` and ``grad`` (zeroed by the model, added to by backward)."""

    def __init__(self, value):
        self.value, self.grad = value, np.zeros_like(value)


class ParamObjectDense:
    """``self.W = Param(W)``; backward adds into ``self.W.grad`` and ``self.B.grad``."""

    def __init__(self, D=3, H=2):
        self.W, self.B = Param(_w(D, H)), Param(_w(1, H))

    def forward(self, X):
        self.X = X
        return X @ self.W.value + self.B.value

    def backward(self, d_out):
        self.W.grad += self.X.T @ d_out
        self.B.grad += self.wrong(np.sum(d_out, axis=0, keepdims=True))
        return d_out @ self.W.value.T

    def params(self):
        return {"W": self.W, "B": self.B}

    def wrong(self, dB):
        return dB


class ParamObjectDenseBroken(ParamObjectDense):
    def wrong(self, dB):
        return dB * (1 + 1e-3)


#: convention -> (correct, broken, failing target, all targets)
CASES = {
    "tied-transpose": (TiedTranspose, TiedTransposeBroken, "W", ["x", "W"]),
    "tied-attributes": (TiedAttributes, TiedAttributesBroken, "W_in", ["x", "W_in"]),
    "list-attribute": (ListWeights, ListWeightsBroken, "weights[1]",
                       ["x", "weights[0]", "weights[1]"]),
    "dict-attribute": (DictWeights, DictWeightsBroken, "weights['W']",
                       ["x", "weights['W']", "weights['b']"]),
    "tuple-params": (TupleParams, TupleParamsBroken, "params[1]", ["x", "params[0]", "params[1]"]),
    "zeroed-in-forward": (ZeroedInForward, ZeroedInForwardBroken, "W", ["x", "W"]),
    "list-params": (ListAffine, ListAffineBroken, "params[1]", ["x", "params[0]", "params[1]"]),
    "tied-list": (TiedAutoencoder, TiedAutoencoderBroken, "params[0]",
                  ["x", "params[0]", "params[1]"]),
    "accumulating-dict": (AccumulatingDense, AccumulatingDenseBroken, "parameters['b']",
                          ["x", "parameters['W']", "parameters['b']"]),
    "accumulating-stale": (AccumulatingDense, AccumulatingDenseStale, "parameters['b']",
                           ["x", "parameters['W']", "parameters['b']"]),
    "created-by-forward": (LazyDense, LazyDenseBroken, "b", ["x", "W", "b"]),
    "created-by-forward-dict": (LazyFullyConnected, LazyFullyConnectedBroken, "parameters['b']",
                                ["x", "parameters['W']", "parameters['b']"]),
    "nnfs-names": (NNFSDense, NNFSDenseBroken, "weights", ["x", "weights", "biases"]),
    "nnfs-regularized": (NNFSDenseRegularized, NNFSDenseRegularizedBroken, "weights",
                         ["x", "weights", "biases"]),
    "nnfs-regularized-renamed": (NNFSDenseRegularizedRenamed,
                                 NNFSDenseRegularizedRenamedBroken, "weights",
                                 ["x", "weights", "biases"]),
    "grad-suffix": (GradSuffix, GradSuffixBroken, "bias", ["x", "weight", "bias"]),
    "scalar-float": (Swish, SwishBroken, "beta", ["x", "beta"]),
    "scalar-0d": (Swish0d, Swish0dBroken, "beta", ["x", "beta"]),
    "sub-layers": (Blocks, BlocksBroken, "blocks.2.b",
                   ["x", "blocks.0.W", "blocks.0.b", "blocks.2.W", "blocks.2.b",
                    "heads.out.W", "heads.out.b", "final.W", "final.b"]),
    "state-beside-gradient": (RecurrentStep, RecurrentStepBroken, "b", ["x", "Wx", "b"]),
    "dLd-names": (CMULinear, CMULinearBroken, "W", ["x", "W", "b"]),
    "param-objects": (ParamObjectDense, ParamObjectDenseBroken, "B.value",
                      ["x", "W.value", "B.value"]),
}


# -- several inputs and outputs (book 2's LSTM, attention) ------------------------------------
class LSTMCell:
    """``forward(x, h_prev, c_prev) -> (h_next, c_next)``, ``backward(dh_next, dc_next)
    -> (dx, dh_prev, dc_prev)``, parameters in ``params``/``grads`` lists (book 2)."""

    def __init__(self, D=3, H=2):
        Wx, Wh, b = _w(D, 4 * H), _w(H, 4 * H), _w(4 * H)
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        A = x @ Wx + h_prev @ Wh + b
        f = 1 / (1 + np.exp(-A[:, :H]))
        g = np.tanh(A[:, H:2 * H])
        i = 1 / (1 + np.exp(-A[:, 2 * H:3 * H]))
        o = 1 / (1 + np.exp(-A[:, 3 * H:]))
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, b = self.params
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c ** 2)
        dc_prev = self.forget(ds * f)
        di, df, do, dg = ds * g, ds * c_prev, dh_next * tanh_c, ds * i
        dA = np.hstack((df * f * (1 - f), dg * (1 - g ** 2), di * i * (1 - i), do * o * (1 - o)))
        self.grads[0][...] = x.T @ dA
        self.grads[1][...] = h_prev.T @ dA
        self.grads[2][...] = dA.sum(axis=0)
        return dA @ Wx.T, dA @ Wh.T, dc_prev

    def forget(self, dc_prev):
        return dc_prev


class LSTMCellBroken(LSTMCell):
    def forget(self, dc_prev):
        return 0.9 * dc_prev


class Attention:
    """Book 2's ``AttentionWeight``+``WeightSum``: ``forward(hs, h) -> c`` with ``hs`` of
    shape (N, T, H) and ``h`` of shape (N, H); no parameters."""

    def forward(self, hs, h):
        s = np.sum(hs * h[:, None, :], axis=2)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        a = e / e.sum(axis=1, keepdims=True)
        self.cache = (hs, h, a)
        return np.sum(hs * a[:, :, None], axis=1)

    def backward(self, dc):
        hs, h, a = self.cache
        dhs = dc[:, None, :] * a[:, :, None]
        da = np.sum(dc[:, None, :] * hs, axis=2)
        ds = a * (da - np.sum(a * da, axis=1, keepdims=True))
        dhs = dhs + ds[:, :, None] * h[:, None, :]
        dh = self.dh(np.sum(ds[:, :, None] * hs, axis=1))
        return dhs, dh

    def dh(self, dh):
        return dh


class AttentionBroken(Attention):
    def dh(self, dh):
        return dh * 1.05


class Gate:
    """Keyword inputs: ``forward(x, *, gate)`` -> ``x * sigmoid(gate)``."""

    def forward(self, x, gate):
        self.x, self.s = x, 1 / (1 + np.exp(-gate))
        return x * self.s

    def backward(self, dout):
        return dout * self.s, self.dgate(dout * self.x * self.s * (1 - self.s))

    def dgate(self, d):
        return d


class GateBroken(Gate):
    def dgate(self, d):
        return -d


# -- loss layers ------------------------------------------------------------------------------
class SoftmaxCrossEntropy:
    """Book 2's ``SoftmaxWithLoss``: ``forward(x, t) -> loss``, ``backward(dout=1)``."""

    def forward(self, x, t):
        self.t = t
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        return -np.mean(np.log(self.y[np.arange(len(t)), t]))

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dx * dout / self.n()

    def n(self):
        return len(self.t)


class SoftmaxCrossEntropyBroken(SoftmaxCrossEntropy):
    """Forgets the mean: gradient of the sum."""

    def n(self):
        return 1


class IgnoresDout(SoftmaxCrossEntropy):
    """A terminal loss whose backward ignores dout: fine at dout = 1, with a note."""

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dx / len(self.t)


# -- integer indices: an embedding ------------------------------------------------------------
class Embedding:
    """Book 2's ``Embedding``: ``forward(idx)``; ``np.add.at`` for repeated indices."""

    def __init__(self, V=5, D=2):
        self.params = [_w(V, D)]
        self.grads = [np.zeros((V, D))]

    def forward(self, idx):
        W, = self.params
        self.idx = idx
        return W[idx]

    def backward(self, dout):
        dW, = self.grads
        dW[...] = 0
        self.scatter(dW, dout)
        return None

    def scatter(self, dW, dout):
        np.add.at(dW, self.idx, dout)


class EmbeddingBroken(Embedding):
    """The classic bug: ``dW[idx] = dout`` loses repeated indices."""

    def scatter(self, dW, dout):
        dW[self.idx] = dout


class EmbeddingBareGrads:
    """``params = [weights]`` and ``self.grads`` one ndarray (DanFosing/numpy_ai's
    ``Embedding``: backward rebinds ``self.grads = zeros_like(weights)``)."""

    def __init__(self, V=5, D=2):
        self.weights = _w(V, D)
        self.params = [self.weights]

    def forward(self, x):
        self.x = x
        return self.weights[x]

    def backward(self, d_out):
        self.grads = np.zeros_like(self.weights)
        self.scatter(self.grads, d_out)
        return None

    def scatter(self, dW, dout):
        np.add.at(dW, self.x, dout)


class EmbeddingBareGradsBroken(EmbeddingBareGrads):
    def scatter(self, dW, dout):
        dW[self.x] = dout


class StackedGrads:
    """``params = [W1, W2]`` of one shape, ``self.grads`` one array stacking their
    gradients (shape ``(2,) + W1.shape``): ``out = x W1 + tanh(x) W2``."""

    def __init__(self, D=3):
        self.params = [_w(D, D), _w(D, D)]
        self.grads = np.zeros((2, D, D))

    def forward(self, x):
        self.x = x
        return x @ self.params[0] + np.tanh(x) @ self.params[1]

    def backward(self, dout):
        W1, W2 = self.params
        self.grads[0] = self.x.T @ dout
        self.grads[1] = self.wrong(np.tanh(self.x).T @ dout)
        return dout @ W1.T + (dout @ W2.T) * (1 - np.tanh(self.x) ** 2)

    def wrong(self, dW2):
        return dW2


class StackedGradsBroken(StackedGrads):
    def wrong(self, dW2):
        return dW2 * (1 + 1e-3)


# -- backward returning None (NNFS) -----------------------------------------------------------
class NNFSNoReturn:
    """"Neural Networks from Scratch": forward keeps ``self.output`` and returns nothing;
    backward keeps ``self.dinputs`` and returns nothing."""

    def __init__(self, D=3, H=2):
        self.weights, self.biases = _w(D, H), _w(1, H)

    def forward(self, inputs, training):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases

    def backward(self, dvalues):
        self.dweights = self.inputs.T @ dvalues
        self.dbiases = np.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = self.wrong(dvalues @ self.weights.T)

    def wrong(self, dx):
        return dx


class NNFSNoReturnBroken(NNFSNoReturn):
    def wrong(self, dx):
        return dx[:, ::-1].copy() if dx.shape[1] > 1 else -dx


# -- function pairs (CS231n) ------------------------------------------------------------------
def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    return (dout @ w.T).reshape(x.shape), x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)


def affine_backward_broken(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, db * 2


def batchnorm_forward(x, gamma, beta, bn_param):
    mode, eps = bn_param["mode"], bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D))
    running_var = bn_param.get("running_var", np.ones(D))
    if mode == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        xhat = (x - mu) / np.sqrt(var + eps)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        var = running_var
        xhat = (x - running_mean) / np.sqrt(running_var + eps)
    bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
    return gamma * xhat + beta, (xhat, gamma, var, eps, mode)


def batchnorm_backward(dout, cache):
    xhat, gamma, var, eps, mode = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    if mode == "train":
        dx = (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) \
            / (N * np.sqrt(var + eps))
    else:
        dx = dxhat / np.sqrt(var + eps)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_broken(dout, cache):
    """Drops the mean term of dx (the usual first attempt)."""
    xhat, gamma, var, eps, mode = cache
    N = dout.shape[0]
    dxhat = dout * gamma
    dx = (N * dxhat - xhat * (dxhat * xhat).sum(axis=0)) / (N * np.sqrt(var + eps))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = x.shape[0]
    dx = np.exp(logp)
    dx[np.arange(N), y] -= 1
    return -logp[np.arange(N), y].sum() / N, dx / N


def softmax_loss_broken(x, y):
    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]


def _xs(*shapes):
    rng = np.random.default_rng(3)
    return tuple(rng.normal(size=s) for s in shapes)


def load_example(name):
    """A module of ``examples/`` (a standalone file a user runs), loaded by path."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: "The Independent Code" / Omar Aflak's Dense layer: column inputs ``(in, 1)``, and
#: ``backward(output_gradient, learning_rate)`` steps the weights itself (no gradient
#: attribute at all); the one in ``examples/conventions.py``.
SGDDense = load_example("conventions").SGDDense


class SGDDenseBroken(SGDDense):
    """The weights step by twice their gradient."""

    def backward(self, output_gradient, learning_rate):
        weights_gradient = 2 * np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class SGDDenseLrScaledDx(SGDDense):
    """The input gradient returned times the learning rate: right at ``learning_rate = 1``
    only."""

    def backward(self, output_gradient, learning_rate):
        return learning_rate * super().backward(output_gradient, learning_rate)


class SGDRebinding:
    """A row-batch affine layer whose ``backward(dout, lr=0.01)`` rebinds its parameters
    (``self.W = self.W - lr * dW``) and keeps ``dW`` too."""

    def __init__(self):
        rng = np.random.default_rng(6)
        self.W, self.b = rng.normal(size=(3, 2)), rng.normal(size=2)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout, lr=0.01):
        self.dW = self.x.T @ dout
        db = dout.sum(axis=0)
        dx = dout @ self.W.T
        self.W = self.W - lr * self.dW
        self.b = self.b - lr * db
        return dx


class SGDRebindingBroken(SGDRebinding):
    """``dx`` computed with the weights after the step."""

    def backward(self, dout, lr=0.01):
        self.dW = self.x.T @ dout
        db = dout.sum(axis=0)
        self.W = self.W - lr * self.dW
        self.b = self.b - lr * db
        return dout @ self.W.T


class NNFSLoss:
    """NNFS's ``Loss.calculate`` base: the mean of the per-sample losses of ``forward``."""

    def calculate(self, output, y):
        return np.mean(self.forward(output, y))


class NNFSCategoricalCrossentropy(NNFSLoss):
    """NNFS's ``Loss_CategoricalCrossentropy``: ``forward(y_pred, y_true)`` gives one loss
    per sample; ``backward(dvalues, y_true)`` takes the prediction again and keeps the
    gradient of the mean loss in ``self.dinputs``."""

    def forward(self, y_pred, y_true):
        samples = len(y_pred)
        y_pred_clipped = np.clip(y_pred, 1e-7, 1 - 1e-7)
        if len(y_true.shape) == 1:
            correct_confidences = y_pred_clipped[range(samples), y_true]
        else:
            correct_confidences = np.sum(y_pred_clipped * y_true, axis=1)
        return -np.log(correct_confidences)

    def backward(self, dvalues, y_true):
        samples = len(dvalues)
        labels = len(dvalues[0])
        if len(y_true.shape) == 1:
            y_true = np.eye(labels)[y_true]
        self.dinputs = -y_true / dvalues
        self.dinputs = self.normalise(self.dinputs, samples)

    def normalise(self, g, samples):
        return g / samples


class NNFSCategoricalCrossentropyBroken(NNFSCategoricalCrossentropy):
    """Forgets to normalise by the number of samples."""

    def normalise(self, g, samples):
        return g


class NNFSSoftmaxLoss:
    """NNFS's ``Activation_Softmax_Loss_CategoricalCrossentropy``: ``forward(inputs,
    y_true)`` keeps the softmax in ``self.output`` and returns the mean loss;
    ``backward(dvalues, y_true)`` gets that softmax output back."""

    def __init__(self):
        self.loss = NNFSCategoricalCrossentropy()

    def forward(self, inputs, y_true):
        exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / np.sum(exp_values, axis=1, keepdims=True)
        return self.loss.calculate(self.output, y_true)

    def backward(self, dvalues, y_true):
        samples = len(dvalues)
        if len(y_true.shape) == 2:
            y_true = np.argmax(y_true, axis=1)
        self.dinputs = dvalues.copy()
        self.dinputs[range(samples), y_true] -= self.one()
        self.dinputs = self.dinputs / samples

    def one(self):
        return 1


class NNFSSoftmaxLossBroken(NNFSSoftmaxLoss):
    def one(self):
        return 0.9


class NNFSMeanSquaredError(NNFSLoss):
    """NNFS's ``Loss_MeanSquaredError`` (one-hot or regression targets, floating)."""

    def forward(self, y_pred, y_true):
        return np.mean((y_true - y_pred) ** 2, axis=-1)

    def backward(self, dvalues, y_true):
        samples, outputs = len(dvalues), len(dvalues[0])
        self.dinputs = -2 * (y_true - dvalues) / outputs
        self.dinputs = self.dinputs / samples


class NNFSMeanSquaredErrorBroken(NNFSMeanSquaredError):
    def backward(self, dvalues, y_true):
        samples = len(dvalues)
        self.dinputs = -2 * (y_true - dvalues) / samples  # forgot / outputs


LABELS = np.array([0, 2, 1])
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
INDICES = np.array([0, 3, 3, 1])

#: convention -> (make layer, make broken layer, inputs, failing target, all targets)
CALL_CASES = {
    "several-inputs-outputs": (LSTMCell, LSTMCellBroken, lambda: _xs((3, 3), (3, 2), (3, 2)),
                               "c_prev", ["x", "h_prev", "c_prev", "params[0]", "params[1]",
                                          "params[2]"]),
    "attention-inputs": (Attention, AttentionBroken, lambda: _xs((2, 3, 2), (2, 2)), "h",
                         ["hs", "h"]),
    "keyword-inputs": (Gate, GateBroken, lambda: dict(zip(("x", "gate"), _xs((3, 2), (3, 2)))),
                       "gate", ["x", "gate"]),
    "loss-with-labels": (SoftmaxCrossEntropy, SoftmaxCrossEntropyBroken,
                         lambda: (_xs((3, 3))[0], LABELS), "x", ["x"]),
    "embedding-indices": (Embedding, EmbeddingBroken, lambda: INDICES, "params[0]",
                          ["params[0]"]),
    "backward-returns-none": (NNFSNoReturn, NNFSNoReturnBroken, lambda: _xs((3, 3))[0], "x",
                              ["x", "weights", "biases"]),
    "sgd-step-in-backward": (SGDDense, SGDDenseBroken, lambda: _xs((3, 1))[0], "weights",
                             ["input", "weights", "bias"]),
    "sgd-step-rebinding": (SGDRebinding, SGDRebindingBroken, lambda: _xs((4, 3))[0], "x",
                           ["x", "W", "b"]),
    "mlfs-names": (MLFSTanh, MLFSTanhBroken, lambda: _xs((3, 3))[0], "x", ["x"]),
    "mlfs-optimizer-dense": (MLFSDense, MLFSDenseBroken, lambda: _xs((4, 3))[0], "W",
                             ["X", "W", "w0"]),
    "mlfs-optimizer-dx": (MLFSDense, MLFSDenseBrokenDx, lambda: _xs((4, 3))[0], "X",
                          ["X", "W", "w0"]),
    "mlfs-optimizer-dx-after-step": (MLFSDense, MLFSDenseDxAfterStep, lambda: _xs((4, 3))[0],
                                     "X", ["X", "W", "w0"]),
    "mlfs-optimizer-batchnorm": (MLFSBatchNorm, MLFSBatchNormBroken, lambda: _xs((5, 3))[0],
                                 "gamma", ["X", "gamma", "beta"]),
    "loss-backward-takes-labels": (NNFSCategoricalCrossentropy,
                                   NNFSCategoricalCrossentropyBroken,
                                   lambda: (PROBS, LABELS), "y_pred", ["y_pred"]),
    "combined-softmax-loss": (NNFSSoftmaxLoss, NNFSSoftmaxLossBroken,
                              lambda: (_xs((3, 3))[0], LABELS), "inputs", ["inputs"]),
    "loss-float-targets": (NNFSMeanSquaredError, NNFSMeanSquaredErrorBroken,
                           lambda: (_xs((3, 3))[0], _xs((3, 3), (3, 3))[1]), "y_pred",
                           ["y_pred"]),
}

class TwoLayerNet:
    """CS231n assignment 2's ``TwoLayerNet``: ``loss(X, y) -> (loss, grads)`` over
    ``self.params`` (the API its ``Solver`` trains), L2 regularisation included."""

    def __init__(self, D=5, H=4, C=3, reg=0.1):
        rng = np.random.default_rng(0)
        self.params = {"W1": rng.normal(size=(D, H)) * 0.5, "b1": rng.normal(size=H) * 0.1,
                       "W2": rng.normal(size=(H, C)) * 0.5, "b2": np.zeros(C)}
        self.reg = reg

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        h = np.maximum(0, X @ W1 + b1)
        scores = h @ W2 + b2
        if y is None:
            return scores
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        N = X.shape[0]
        loss = (-np.log(p[np.arange(N), y]).mean()
                + 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2)))
        dscores = p.copy()
        dscores[np.arange(N), y] -= 1
        dscores /= N
        grads = {"W2": h.T @ dscores + self.reg * W2, "b2": dscores.sum(axis=0)}
        dh = dscores @ W2.T
        dh[h <= 0] = 0
        grads["W1"] = X.T @ dh + self.reg_grad(W1)
        grads["b1"] = dh.sum(axis=0)
        return loss, grads

    def reg_grad(self, W):
        return self.reg * W


class TwoLayerNetBroken(TwoLayerNet):
    """Half the regularisation gradient on ``W1``."""

    def reg_grad(self, W):
        return 0.5 * self.reg * W


#: convention -> (forward, backward, broken backward or forward, inputs, failing, targets)
FUNCTION_CASES = {
    "affine-pair": (affine_forward, affine_backward, (affine_forward, affine_backward_broken),
                    lambda: _xs((3, 2, 2), (4, 2), (2,)), "b", ["x", "w", "b"]),
    "batchnorm-pair": (batchnorm_forward, batchnorm_backward,
                       (batchnorm_forward, batchnorm_backward_broken),
                       lambda: _xs((4, 3), (3,), (3,)) + ({"mode": "train"},), "x",
                       ["x", "gamma", "beta"]),
    "loss-function": (softmax_loss, None, (softmax_loss_broken, None),
                      lambda: (_xs((3, 3))[0], LABELS), "x", ["x"]),
}


class KeepdimsLayerNorm:
    """Layer norm whose ``dgamma``/``dbeta`` keep the reduced axis (``keepdims=True``: shape
    ``(1, D)`` for ``(D,)`` parameters, as CS231n solutions write them)."""

    def __init__(self, D=3):
        self.gamma, self.beta = 1.0 + 0.1 * _w(D).ravel(), 0.1 * _w(D).ravel()

    def forward(self, x, train_flg=True):
        mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
        self.std = np.sqrt(var + 1e-5)
        self.xn = (x - mu) / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        self.dgamma = np.sum(dout * self.xn, axis=0, keepdims=True)
        self.dbeta = self.wrong(np.sum(dout, axis=0, keepdims=True))
        dxn = dout * self.gamma
        D = dout.shape[1]
        return (dxn - dxn.mean(axis=1, keepdims=True)
                - self.xn * (dxn * self.xn).sum(axis=1, keepdims=True) / D) / self.std

    def wrong(self, g):
        return g


class KeepdimsLayerNormBroken(KeepdimsLayerNorm):
    def wrong(self, g):
        g = g.copy()
        g[0, 1] *= 1.01
        return g


class DUnderscoreDense:
    """``d_weights``/``d_biases``/``d_inputs`` (an NNFS variant): ``forward`` returns None and
    keeps ``self.output``, ``backward`` returns None and keeps ``self.d_inputs``."""

    def __init__(self, D=3, H=2):
        self.weights, self.biases = _w(D, H), _w(1, H)

    def forward(self, inputs):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases

    def backward(self, d_values):
        self.d_weights = self.inputs.T @ d_values
        self.d_biases = np.sum(d_values, axis=0, keepdims=True)
        self.d_inputs = d_values @ self.weights.T


class DUnderscoreDenseBroken(DUnderscoreDense):
    def backward(self, d_values):
        super().backward(d_values)
        self.d_inputs = self.d_inputs.copy()
        self.d_inputs[1, 0] += 1e-3


CASES["keepdims-gradients"] = (KeepdimsLayerNorm, KeepdimsLayerNormBroken, "beta",
                               ["x", "gamma", "beta"])
CASES["d-underscore-names"] = (DUnderscoreDense, DUnderscoreDenseBroken, "x",
                               ["x", "weights", "biases"])


def layernorm_forward_keepdims(x, gamma, beta, ln_param):
    """CS231n's ``layernorm_forward(x, gamma, beta, ln_param) -> (out, cache)``."""
    eps = ln_param.get("eps", 1e-5)
    mu, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    std = np.sqrt(var + eps)
    xn = (x - mu) / std
    return gamma * xn + beta, (xn, std, gamma)


def layernorm_backward_keepdims(dout, cache):
    """``-> (dx, dgamma, dbeta)``, ``dgamma``/``dbeta`` with ``keepdims=True``."""
    xn, std, gamma = cache
    dxn = dout * gamma
    D = dout.shape[1]
    dx = (dxn - dxn.mean(axis=1, keepdims=True)
          - xn * (dxn * xn).sum(axis=1, keepdims=True) / D) / std
    return (dx, np.sum(dout * xn, axis=0, keepdims=True),
            np.sum(dout, axis=0, keepdims=True))


def layernorm_backward_keepdims_broken(dout, cache):
    dx, dgamma, dbeta = layernorm_backward_keepdims(dout, cache)
    dgamma[0, 2] *= 1.01
    return dx, dgamma, dbeta


FUNCTION_CASES["layernorm-pair-keepdims"] = (
    layernorm_forward_keepdims, layernorm_backward_keepdims,
    (layernorm_forward_keepdims, layernorm_backward_keepdims_broken),
    lambda: _xs((4, 3), (3,), (3,)) + ({},), "gamma", ["x", "gamma", "beta"])


class CarriedCell:
    """numpy-ml's ``RNNCell`` in small: ``backward`` adds the gradient carried from the
    later step's backward (``dLdA_accumulator``, ``None`` at first), and its
    ``flush_gradients()`` sets the accumulator to ``[]``, which the next backward cannot
    add (the library's own bug): checked without flushing."""

    def __init__(self, D=3, H=2):
        self.parameters = {"Wax": _w(D, H)}
        self.gradients = {"Wax": np.zeros((D, H))}
        self.X, self.derived_variables = [], {"Z": [], "dLdA_accumulator": None}

    def forward(self, X):
        self.X.append(X)
        Z = X @ self.parameters["Wax"]
        self.derived_variables["Z"].append(Z)
        return np.tanh(Z)

    def backward(self, dLdA):
        acc = self.derived_variables["dLdA_accumulator"]
        dA = dLdA + (np.zeros_like(dLdA) if acc is None else acc)
        dZ = dA * (1.0 - np.tanh(self.derived_variables["Z"][-1]) ** 2)
        self.gradients["Wax"] += self.X[-1].T @ dZ
        self.derived_variables["dLdA_accumulator"] = 0.5 * dZ
        return dZ @ self.parameters["Wax"].T

    def flush_gradients(self):
        self.X = []
        for k in self.derived_variables:
            self.derived_variables[k] = []
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)


class TwoOutputsOneGradient:
    """numpy-ml's ``LSTMCell`` in small: ``forward`` returns ``(A, Z)``, ``backward(dLdA)``
    takes the first output's gradient only: checked with a zero one for ``Z``."""

    def __init__(self, D=3, H=2):
        self.W = _w(D, H)

    def forward(self, X):
        self.X, self.Z = X, X @ self.W
        return np.tanh(self.Z), self.Z

    def backward(self, dLdA):
        dZ = dLdA * (1.0 - np.tanh(self.Z) ** 2)
        self.dW = self.wrong(self.X.T @ dZ)
        return dZ @ self.W.T

    def wrong(self, g):
        return g


class TwoOutputsOneGradientBroken(TwoOutputsOneGradient):
    def wrong(self, g):
        g = g.copy()
        g[1, 0] *= 1.01
        return g


CALL_CASES["backward-takes-fewer-gradients"] = (
    TwoOutputsOneGradient, TwoOutputsOneGradientBroken, lambda: _xs((3, 3)), "W", ["X", "W"])


class ListMultiply:
    """numpy-ml's ``Multiply``: ``forward(X)`` takes one list of arrays, ``backward(dLdY)``
    returns one gradient per member, as a list; targets ``X[0]``, ``X[1]``, ..."""

    def forward(self, X, retain_derived=True):
        self.X = [np.array(a) for a in X]
        out = self.X[0].copy()
        for a in self.X[1:]:
            out = out * a
        return out

    def backward(self, dLdY, retain_grads=True):
        grads = []
        for i in range(len(self.X)):
            others = np.ones_like(dLdY)
            for j, a in enumerate(self.X):
                if j != i:
                    others = others * a
            grads.append(self.wrong(i, dLdY * others))
        return grads

    def wrong(self, i, g):
        return g


class _SecondGradientOff:
    """``wrong(i, g)``: the second gradient off by 1 % at ``[0, 1]``."""

    def wrong(self, i, g):
        if i == 1:
            g = g.copy()
            g[0, 1] *= 1.01
        return g


class ListMultiplyBroken(_SecondGradientOff, ListMultiply):
    pass


CALL_CASES["list-input"] = (ListMultiply, ListMultiplyBroken, lambda: list(_xs((3, 2), (3, 2))),
                            "X[1]", ["X[0]", "X[1]"])
CALL_CASES["list-input-in-tuple"] = (ListMultiply, ListMultiplyBroken,
                                     lambda: (list(_xs((3, 2), (3, 2), (3, 2))),), "X[1]",
                                     ["X[0]", "X[1]", "X[2]"])


class _StepRNN:
    """One time step over its parent's own arrays (the second book's ``RNN``)."""

    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        self.x, self.h_prev = x, h_prev
        self.h = np.tanh(h_prev @ Wh + x @ Wx + b)
        return self.h

    def backward(self, dh):
        Wx, Wh, b = self.params
        dt = dh * (1 - self.h ** 2)
        self.grads[0][...] = self.x.T @ dt
        self.grads[1][...] = self.h_prev.T @ dt
        self.grads[2][...] = dt.sum(axis=0)
        return dt @ Wx.T, dt @ Wh.T


class TimeSteps:
    """The second book's ``TimeRNN``: ``forward`` makes one ``_StepRNN`` per time step over
    the layer's own ``params`` (``self.layers`` anew each call), ``backward`` adds their
    gradients up into its own ``grads``: the sub-layers are state, not tied copies."""

    def __init__(self, D=3, H=2):
        self.params = [_w(D, H), _w(H, H), _w(H).ravel()]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.layers = None

    def forward(self, xs):
        N, T, _ = xs.shape
        H = self.params[1].shape[0]
        self.layers, hs, h = [], np.empty((N, T, H)), np.zeros((N, H))
        for t in range(T):
            layer = _StepRNN(*self.params)
            h = layer.forward(xs[:, t, :], h)
            hs[:, t, :] = h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        N, T, H = dhs.shape
        D = self.params[0].shape[0]
        dxs, dh = np.empty((N, T, D)), 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            dx, dh = self.layers[t].backward(dhs[:, t, :] + dh)
            dxs[:, t, :] = dx
            for i, g in enumerate(self.layers[t].grads):
                grads[i] = grads[i] + g
        for i, g in enumerate(grads):
            self.grads[i][...] = self.wrong(i, g)
        return dxs

    def wrong(self, i, g):
        return g


class TimeStepsBroken(_SecondGradientOff, TimeSteps):
    pass


class JoinedChildren:
    """The second book's ``TimeBiLSTM``: ``params``/``grads`` are its two children's lists
    joined (the same arrays), the children write into them."""

    def __init__(self, cls=TimeSteps):
        self.a, self.b = cls(), cls()
        self.params = self.a.params + self.b.params
        self.grads = self.a.grads + self.b.grads

    def forward(self, xs):
        return self.a.forward(xs) + self.b.forward(xs[:, ::-1])[:, ::-1]

    def backward(self, dhs):
        return self.a.backward(dhs) + self.b.backward(dhs[:, ::-1])[:, ::-1]


def _joined_broken():
    return JoinedChildren(TimeStepsBroken)




# -- __call__ keeps the input, forward does not (a training loop calls layer(x)) --------------
class CallKeepsInput:
    """``__call__`` keeps ``self.x`` and calls ``forward``, which keeps nothing; backward reads
    ``self.x``: only ``layer(x)`` leaves what backward needs."""

    def __init__(self, D=3, H=2):
        self.W, self.b = _w(D, H), _w(H)

    def __call__(self, x):
        self.x = x
        return self.forward(x)

    def forward(self, x):
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.wrong(self.x.T @ dout)
        self.db = dout.sum(axis=0)
        return dout @ self.W.T

    def wrong(self, dW):
        return dW


class CallKeepsInputBroken(CallKeepsInput):
    def wrong(self, dW):
        return dW * (1 + 1e-3)


CASES["call-keeps-input"] = (CallKeepsInput, CallKeepsInputBroken, "W", ["x", "W", "b"])


# -- __call__ calls forward but returns something else: a helper, not the forward pass -------
class CallHelperLinear(CallKeepsInput):
    """``forward`` keeps its input too (the subclasses differ in ``__call__``)."""

    def forward(self, x):
        self.x = x
        return super().forward(x)


class CallDoubled(CallHelperLinear):
    """Broken: backward is 2x forward's gradient; ``__call__`` returns ``2 * forward(x)``."""

    def __call__(self, x):
        return self.forward(x) * 2

    def backward(self, dout):
        return 2 * super().backward(dout)

    def wrong(self, dW):
        return 2 * dW


class CallLogits(CallHelperLinear):
    """``__call__`` predicts probabilities of forward's logits."""

    def __call__(self, x):
        z = self.forward(x)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


class CallArgmax(CallHelperLinear):
    """``__call__`` predicts classes."""

    def __call__(self, x):
        return np.argmax(self.forward(x), axis=1)


class CallEval:
    """Dropout whose ``__call__`` is inference, ``forward(x, train_flg=False)``."""

    def __call__(self, x):
        return self.forward(x, train_flg=False)

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > 0.5
            return x * self.mask
        return x * 0.5

    def backward(self, dout):
        return dout * self.mask


# -- Torch7 / lua-nn modules: updateOutput, updateGradInput, accGradParameters (+=) ----------
class Torch7Linear:
    """Torch7's ``nn.Linear`` as its Python ports write it: ``weight`` (out, in) and
    ``bias``, ``gradWeight``/``gradBias`` that ``accGradParameters`` adds into (``+=``;
    ``zeroGradParameters`` zeroes them); ``output`` and ``gradInput`` kept."""

    def __init__(self, D=3, H=2):
        self.weight, self.bias = _w(H, D), _w(H)
        self.gradWeight, self.gradBias = np.zeros((H, D)), np.zeros(H)
        self.output, self.gradInput = np.zeros(0), np.zeros(0)

    def updateOutput(self, input):
        self.output = input @ self.weight.T + self.bias
        return self.output

    def updateGradInput(self, input, gradOutput):
        self.gradInput = self.wrong_dx(gradOutput @ self.weight)
        return self.gradInput

    def accGradParameters(self, input, gradOutput, scale=1):
        self.gradWeight += scale * self.wrong_dw(gradOutput.T @ input)
        self.gradBias += scale * gradOutput.sum(axis=0)

    def zeroGradParameters(self):
        self.gradWeight[...] = 0
        self.gradBias[...] = 0

    def wrong_dx(self, dx):
        return dx

    def wrong_dw(self, dw):
        return dw


class Torch7LinearBroken(Torch7Linear):
    def wrong_dw(self, dw):
        return dw * (1 + 1e-3)


class Torch7LinearBrokenDx(Torch7Linear):
    def wrong_dx(self, dx):
        return dx * (1 + 1e-3)


class PortLinear(Torch7Linear):
    """A Python port that spells the passes ``forward(input)`` and ``backward(input,
    gradOutput)`` (the input first), returning ``gradInput`` and accumulating the
    parameter gradients, as ``nn.Module:backward`` does."""

    def forward(self, input):
        return self.updateOutput(input)

    def backward(self, input, gradOutput):
        self.updateGradInput(input, gradOutput)
        self.accGradParameters(input, gradOutput)
        return self.gradInput


class PortLinearBroken(Torch7LinearBroken, PortLinear):
    pass


class PortLinearBrokenDx(Torch7LinearBrokenDx, PortLinear):
    pass


_TORCH7_TARGETS = ["input", "weight", "bias"]
CALL_CASES["torch7-module"] = (Torch7Linear, Torch7LinearBroken, lambda: _xs((4, 3))[0],
                               "weight", _TORCH7_TARGETS)
CALL_CASES["torch7-module-dx"] = (Torch7Linear, Torch7LinearBrokenDx, lambda: _xs((4, 3))[0],
                                  "input", _TORCH7_TARGETS)
CALL_CASES["torch7-port"] = (PortLinear, PortLinearBroken, lambda: _xs((4, 3))[0], "weight",
                             _TORCH7_TARGETS)
CALL_CASES["torch7-port-dx"] = (PortLinear, PortLinearBrokenDx, lambda: _xs((4, 3))[0], "input",
                                _TORCH7_TARGETS)


# -- backward returning (dx, dW, db): the parameter gradients read from its return value ------
class ReturnsGradients:
    """``backward(dout) -> (dx, dW, db)``, the gradients kept nowhere."""

    def __init__(self, D=3, H=2):
        self.W, self.b = _w(D, H), _w(H)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        dW, db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.W.T, self.wrong(dW), db

    def wrong(self, dW):
        return dW


class ReturnsGradientsBroken(ReturnsGradients):
    def wrong(self, dW):
        return dW * (1 + 1e-3)


class ReturnsKeptGradients(ReturnsGradients):
    """The same, returning the ``self.dW``, ``self.db`` it keeps (``db`` kept with its
    reduced axis: ``(1, H)`` for a ``(H,)`` bias)."""

    def backward(self, dout):
        self.dW = self.wrong(self.x.T @ dout)
        self.db = dout.sum(axis=0, keepdims=True)
        return self.dx(dout @ self.W.T), self.dW, self.db

    def dx(self, dx):
        return dx


class ReturnsKeptGradientsBroken(ReturnsKeptGradients):
    def dx(self, dx):
        return dx * (1 + 1e-3)


class ReturnsTwoOfAShape:
    """Two weights of one shape, ``out = tanh(x W1) W2``: ``return dx, dW1, dW2`` is matched
    in the order the layer defines them."""

    def __init__(self, D=3):
        self.W1, self.W2 = _w(D, D), _w(D, D)

    def forward(self, x):
        self.x, self.h = x, np.tanh(x @ self.W1)
        return self.h @ self.W2

    def backward(self, dout):
        dW2, dh = self.h.T @ dout, dout @ self.W2.T
        dz = dh * (1 - self.h ** 2)
        return dz @ self.W1.T, *self.order(self.x.T @ dz, dW2)

    def order(self, dW1, dW2):
        return dW1, dW2


class ReturnsTwoOfAShapeSwapped(ReturnsTwoOfAShape):
    def order(self, dW1, dW2):
        return dW2, dW1


class ReturnsBatchNormStateFirst:
    """``return dx, dgamma, dbeta`` of a batch norm defining ``running_mean`` and
    ``running_var`` (of ``gamma``'s shape, updated in place by a training forward) before
    ``gamma`` and ``beta`` (a CS231n-derived numpy framework's): the returned gradients are
    gamma's and beta's by their names, the running statistics are state."""

    def __init__(self, D=3, momentum=0.9, eps=1e-5):
        self.running_mean, self.running_var = np.zeros(D), np.ones(D)
        self.gamma, self.beta = 1 + 0.3 * _w(D), _w(D)
        self.momentum, self.eps = momentum, eps

    def forward(self, x, train_flg=True):
        if train_flg:
            mu, var = x.mean(axis=0), x.var(axis=0)
            self.running_mean *= self.momentum
            self.running_mean += (1 - self.momentum) * mu
            self.running_var *= self.momentum
            self.running_var += (1 - self.momentum) * var
        else:
            mu, var = self.running_mean, self.running_var
        self.train, self.std = train_flg, np.sqrt(var + self.eps)
        self.xn = (x - mu) / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        dgamma = self.wrong((dout * self.xn).sum(axis=0))
        dbeta = dout.sum(axis=0)
        dxn, n = dout * self.gamma, dout.shape[0]
        if not self.train:
            return dxn / self.std, dgamma, dbeta
        dx = (n * dxn - dxn.sum(0) - self.xn * (dxn * self.xn).sum(0)) / (n * self.std)
        return dx, dgamma, dbeta

    def wrong(self, dgamma):
        return dgamma


class ReturnsBatchNormStateFirstBroken(ReturnsBatchNormStateFirst):
    def wrong(self, dgamma):
        return dgamma * (1 + 1e-3)


class ReturnsBatchNormStateFirstUnnamed(ReturnsBatchNormStateFirst):
    """The same returning ``dx, *rest``: no names, so matched by shape and order, among
    the arrays a training forward does not write."""

    def backward(self, dout):
        dx, *rest = ReturnsBatchNormStateFirst.backward(self, dout)
        return dx, *rest


class ReturnsMaskedLinear:
    """A MADE-style masked dense layer, its fixed ``mask`` (of ``W``'s shape) defined
    before ``W``: ``return dx, dW, db`` is W's and b's gradient by their names."""

    def __init__(self, D=3):
        self.mask = np.tril(np.ones((D, D)), -1)
        self.W, self.b = _w(D, D), _w(D)

    def forward(self, x):
        self.x = x
        return x @ (self.W * self.mask) + self.b

    def backward(self, dout):
        dW = self.wrong((self.x.T @ dout) * self.mask)
        db = dout.sum(axis=0)
        return dout @ (self.W * self.mask).T, dW, db

    def wrong(self, dW):
        return dW


class ReturnsMaskedLinearBroken(ReturnsMaskedLinear):
    def wrong(self, dW):
        return dW * (1 + 1e-3)


class ReturnsMaskedLinearKeyed(ReturnsMaskedLinear):
    """The same returning ``dx, grads['W'], grads['b']``."""

    def backward(self, dout):
        grads = {"W": self.wrong((self.x.T @ dout) * self.mask), "b": dout.sum(axis=0)}
        return dout @ (self.W * self.mask).T, grads["W"], grads["b"]


class ReturnsMaskedLinearKeyedBroken(ReturnsMaskedLinearKeyed):
    def wrong(self, dW):
        return dW * (1 + 1e-3)


CALL_CASES["returns-gradients"] = (ReturnsGradients, ReturnsGradientsBroken,
                                   lambda: _xs((4, 3))[0], "W", ["x", "W", "b"])
CALL_CASES["returns-kept-gradients"] = (ReturnsKeptGradients, ReturnsKeptGradientsBroken,
                                        lambda: _xs((4, 3))[0], "x", ["x", "W", "b"])


# -- deeplearning.ai (Coursera) function pairs: examples in columns, caches nested ----------
def relu(Z):
    """``relu(Z) -> (A, cache)``, the cache is ``Z``."""
    return np.maximum(0, Z), Z


def relu_backward(dA, cache):
    dZ = np.array(dA, copy=True)
    dZ[cache <= 0] = 0
    return dZ


def relu_backward_broken(dA, cache):
    """Lets the gradient through at ``Z < 0`` too (the mask forgotten on one side)."""
    dZ = np.array(dA, copy=True)
    dZ[cache == 0] = 0
    return dZ


def dlai_linear_forward(A, W, b):
    """``linear_forward(A, W, b) -> (Z, cache)``: ``Z = W A + b``, ``A`` of shape
    ``(n_prev, m)``."""
    return W @ A + b, (A, W, b)


def dlai_linear_backward(dZ, cache, wrong=1.0):
    """``linear_backward(dZ, cache) -> (dA_prev, dW, db)`` as the course writes it: ``dW``
    and ``db`` of the batch mean (``1./m``), ``dA_prev`` of the sum."""
    A_prev, W, b = cache
    m = A_prev.shape[1]
    dW = 1. / m * np.dot(dZ, A_prev.T)
    db = 1. / m * np.sum(dZ, axis=1, keepdims=True)
    dA_prev = np.dot(W.T, dZ)
    return dA_prev, dW, wrong * db


def dlai_linear_backward_broken_dx(dZ, cache):
    """``dA_prev`` averaged too (``1./m * W.T @ dZ``)."""
    dA_prev, dW, db = dlai_linear_backward(dZ, cache)
    return dA_prev / cache[0].shape[1], dW, db


def linear_activation_forward(A_prev, W, b, activation):
    """The pair over an activation named by a string, ``relu`` or ``tanh``; the cache is
    ``(linear_cache, activation_cache)``."""
    Z, linear_cache = dlai_linear_forward(A_prev, W, b)
    A = np.maximum(0, Z) if activation == "relu" else np.tanh(Z)
    return A, (linear_cache, Z)


def linear_activation_backward(dA, cache, activation, wrong=1.0):
    """Takes ``activation`` again by name, as the course's model code calls it."""
    linear_cache, Z = cache
    dZ = relu_backward(dA, Z) if activation == "relu" else dA * (1 - np.tanh(Z) ** 2)
    return dlai_linear_backward(dZ, linear_cache, wrong)


def linear_activation_backward_broken(dA, cache, activation):
    return linear_activation_backward(dA, cache, activation, wrong=2.0)


def _dlai_inputs(*extra):
    A, W, b = _xs((3, 4), (2, 3), (2, 1))
    return (A, W, b) + extra


FUNCTION_CASES["dlai-relu"] = (relu, relu_backward, (relu, relu_backward_broken),
                               lambda: _xs((3, 4)), "Z", ["Z"])
FUNCTION_CASES["dlai-linear"] = (
    dlai_linear_forward, dlai_linear_backward,
    (dlai_linear_forward, lambda dZ, cache: dlai_linear_backward(dZ, cache, 2.0)),
    _dlai_inputs, "b", ["A", "W", "b"])
FUNCTION_CASES["dlai-activation-by-name"] = (
    linear_activation_forward, linear_activation_backward,
    (linear_activation_forward, linear_activation_backward_broken),
    lambda: _dlai_inputs("tanh"), "b", ["A_prev", "W", "b"])


# -- hipsternet's bn_forward: an input named cache, the cache not last ---------------------------
def hip_bn_forward(X, gamma, beta, cache, momentum=.9, train=True):
    """wiseodd/hipsternet ``layer.py``: the 4th input, named ``cache``, holds the running
    statistics; returns ``(out, cache, running_mean, running_var)``: the cache second."""
    running_mean, running_var = cache
    mu, var = np.mean(X, axis=0), np.var(X, axis=0)
    X_norm = (X - mu) / np.sqrt(var + 1e-8)
    out = gamma * X_norm + beta
    cache = (X, X_norm, mu, var, gamma, beta)
    running_mean = momentum * running_mean + (1. - momentum) * mu
    running_var = momentum * running_var + (1. - momentum) * var
    return out, cache, running_mean, running_var


def hip_bn_backward(dout, cache):
    X, X_norm, mu, var, gamma, beta = cache
    N, D = X.shape
    X_mu = X - mu
    std_inv = 1. / np.sqrt(var + 1e-8)
    dX_norm = dout * gamma
    dvar = np.sum(dX_norm * X_mu, axis=0) * -.5 * std_inv**3
    dmu = np.sum(dX_norm * -std_inv, axis=0) + dvar * np.mean(-2. * X_mu, axis=0)
    dX = (dX_norm * std_inv) + (dvar * 2 * X_mu / N) + (dmu / N)
    return dX, np.sum(dout * X_norm, axis=0), np.sum(dout, axis=0)


def hip_bn_backward_broken(dout, cache):
    dX, dgamma, dbeta = hip_bn_backward(dout, cache)
    return dX, dgamma, 1.01 * dbeta


FUNCTION_CASES["hipsternet-bn-cache-named-and-second"] = (
    hip_bn_forward, hip_bn_backward, (hip_bn_forward, hip_bn_backward_broken),
    lambda: _xs((6, 5), (5,), (5,)) + ((np.zeros(5), np.ones(5)),), "beta",
    ["X", "gamma", "beta"])


# -- an embedding with its gradient under grad_W -----------------------------------------------
class EmbeddingGradName:
    """``forward(idx) -> W[idx]``; backward makes ``self.grad_W`` anew (``np.add.at``)."""

    def __init__(self, V=5, D=2):
        self.W = _w(V, D)

    def forward(self, idx):
        self.idx = idx
        return self.W[idx]

    def backward(self, dout):
        self.grad_W = np.zeros_like(self.W)
        self.scatter(self.grad_W, dout)

    def scatter(self, grad, dout):
        np.add.at(grad, self.idx, dout)


class EmbeddingGradNameBroken(EmbeddingGradName):
    """``grad[idx] = dout``: a repeated index keeps one row's gradient."""

    def scatter(self, grad, dout):
        grad[self.idx] = dout


CALL_CASES["embedding-grad-name"] = (EmbeddingGradName, EmbeddingGradNameBroken,
                                     lambda: INDICES, "W", ["W"])


class Torch7Tanh:
    def updateOutput(self, input):
        self.output = np.tanh(input)
        return self.output

    def updateGradInput(self, input, gradOutput):
        self.gradInput = gradOutput * (1 - self.output ** 2)
        return self.gradInput


class Torch7Sequential:
    """``nn.Sequential``: each module's ``updateGradInput``/``accGradParameters`` called with
    the output of the one before it, last to first; the sub-modules' ``gradWeight`` found
    and zeroed as the container's own."""

    def __init__(self, *modules):
        self.modules = list(modules)

    def updateOutput(self, input):
        for module in self.modules:
            input = module.updateOutput(input)
        self.output = input
        return input

    def _inputs(self, input):
        return [input] + [m.output for m in self.modules[:-1]]

    def updateGradInput(self, input, gradOutput):
        for module, inp in reversed(list(zip(self.modules, self._inputs(input)))):
            gradOutput = module.updateGradInput(inp, gradOutput)
        self.gradInput = gradOutput
        return gradOutput

    def accGradParameters(self, input, gradOutput, scale=1):
        for module, inp in reversed(list(zip(self.modules, self._inputs(input)))):
            if hasattr(module, "accGradParameters"):
                module.accGradParameters(inp, gradOutput, scale)
            gradOutput = module.gradInput


# -- several outputs, their upstream gradients as one tuple -----------------------------------
class TupleDoutCell:
    """``forward(x) -> (tanh(x), x**2)``, ``backward(self, grads)`` unpacking ``dh, dc =
    grads`` (code written for a framework passing a tuple). On 2 rows the unpack also
    "works" on one array: dh's rows would be taken for dh and dc."""

    factor = 1.0

    def forward(self, x):
        self.x = x
        return np.tanh(x), x ** 2

    def backward(self, grads):
        dh, dc = grads
        return dh * (1 - np.tanh(self.x) ** 2) + dc * 2 * self.x * self.factor


class TupleDoutCellBroken(TupleDoutCell):
    factor = 0.5


class IndexedDoutCell(TupleDoutCell):
    """The tuple read by index, ``grads[0]``, ``grads[1]``."""

    def backward(self, grads):
        return grads[0] * (1 - np.tanh(self.x) ** 2) + grads[1] * 2 * self.x * self.factor


class IndexedDoutCellBroken(IndexedDoutCell):
    factor = 0.5


CALL_CASES["tuple-dout-one-parameter"] = (TupleDoutCell, TupleDoutCellBroken,
                                          lambda: _xs((2, 3)), "x", ["x"])
CALL_CASES["indexed-dout-one-parameter"] = (IndexedDoutCell, IndexedDoutCellBroken,
                                            lambda: _xs((2, 3)), "x", ["x"])


# -- sub-layers and parameters under keys that are no identifiers -----------------------------
class KeyedBlocks:
    """Sub-layers in a dict under ``keys`` (ints, PyTorch-style dotted module paths, tuples):
    each walked like a string-keyed one, its path naming the key so that it resolves back
    (``blocks[0].W``, ``blocks['encoder.fc'].W``)."""

    keys = (0, 1)

    def __init__(self, broken=False):
        k1, k2 = self.keys
        self.blocks = {k1: Dense(3, 3), k2: Dense(3, 2, -1.0 if broken else 1.0)}

    def forward(self, x):
        for k in self.keys:
            x = self.blocks[k].forward(x)
        return x

    def backward(self, dout):
        for k in reversed(self.keys):
            dout = self.blocks[k].backward(dout)
        return dout


class DottedBlocks(KeyedBlocks):
    keys = ("encoder.fc", "decoder.fc")


class TupleKeyedBlocks(KeyedBlocks):
    keys = ((0, "a"), (1, "b"))


class KeyedParams:
    """``params``/``grads`` dicts under tuple keys and keys with escapes and separators."""

    keys = (("W", 0), "b+\n@c")

    def __init__(self):
        self.params = {self.keys[0]: _w(3, 2), self.keys[1]: _w(2)}

    def forward(self, x):
        self.x = x
        return x @ self.params[self.keys[0]] + self.params[self.keys[1]]

    def backward(self, dout):
        self.grads = {self.keys[0]: self.x.T @ dout, self.keys[1]: self.wrong(dout.sum(axis=0))}
        return dout @ self.params[self.keys[0]].T

    def wrong(self, g):
        return g


class KeyedParamsBroken(KeyedParams):
    def wrong(self, g):
        return 2.0 * g


def _keyed(cls):
    return lambda: cls(broken=True)


CASES["int-keyed-sub-layers"] = (KeyedBlocks, _keyed(KeyedBlocks), "blocks[1].b",
                                 ["x", "blocks[0].W", "blocks[0].b", "blocks[1].W",
                                  "blocks[1].b"])
CASES["dotted-keyed-sub-layers"] = (DottedBlocks, _keyed(DottedBlocks), "blocks['decoder.fc'].b",
                                    ["x", "blocks['encoder.fc'].W", "blocks['encoder.fc'].b",
                                     "blocks['decoder.fc'].W", "blocks['decoder.fc'].b"])
CASES["tuple-keyed-sub-layers"] = (TupleKeyedBlocks, _keyed(TupleKeyedBlocks),
                                   "blocks[(1, 'b')].b",
                                   ["x", "blocks[(0, 'a')].W", "blocks[(0, 'a')].b",
                                    "blocks[(1, 'b')].W", "blocks[(1, 'b')].b"])
CASES["odd-keyed-params"] = (KeyedParams, KeyedParamsBroken, "params['b+\\n@c']",
                             ["x", "params[('W', 0)]", "params['b+\\n@c']"])


# -- parameters as views of one flat buffer (flat-vector optimizers, L-BFGS) ------------------
class FlatBuffer:
    """``theta`` (8,) with ``dtheta``; ``W = theta[:6].reshape(3, 2)``, ``b = theta[6:]``,
    ``dW``/``db`` the same views of ``dtheta``, refreshed with ``[...] =``: one gradient
    reported twice, checked once, as ``theta``."""

    factor = 1.0

    def __init__(self):
        self.theta = _w(8)
        self.W, self.b = self.theta[:6].reshape(3, 2), self.theta[6:]
        self.dtheta = np.zeros(8)
        self.dW, self.db = self.dtheta[:6].reshape(3, 2), self.dtheta[6:]

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW[...] = self.x.T @ dout
        self.db[...] = dout.sum(axis=0) * self.factor
        return dout @ self.W.T


class FlatBufferBroken(FlatBuffer):
    factor = 0.5


class FlatBufferCopies(FlatBuffer):
    """The gradients as copies: ``dW``, ``db`` computed, ``dtheta`` concatenated from them."""

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0) * self.factor
        self.dtheta = np.concatenate([self.dW.ravel(), self.db])
        return dout @ self.W.T


class FlatBufferCopiesBroken(FlatBufferCopies):
    factor = 0.5


CASES["flat-buffer-views"] = (FlatBuffer, FlatBufferBroken, "theta", ["x", "theta"])
CASES["flat-buffer-copies"] = (FlatBufferCopies, FlatBufferCopiesBroken, "theta",
                               ["x", "theta"])


class FlatBufferUnpaired(FlatBuffer):
    """The buffers under names that are no pair (``flat``, ``grad``): ``W``, ``b`` are the
    targets, the buffers listed as what they hold, no "no gradient" warning."""

    def __init__(self):
        super().__init__()
        self.flat, self.grad = self.__dict__.pop("theta"), self.__dict__.pop("dtheta")


class FlatBufferUnpairedBroken(FlatBufferUnpaired):
    factor = 0.5


CASES["flat-buffer-unpaired"] = (FlatBufferUnpaired, FlatBufferUnpairedBroken, "b",
                                 ["x", "W", "b"])


# -- a generator at module level (the numpy-recommended replacement of np.random.*) -----------
DROPOUT_RNG = np.random.default_rng(21)


class ModuleRngDropoutDense:
    """``tanh((x * mask) @ W)``, the dropout mask drawn from :data:`DROPOUT_RNG`, a generator
    of this module's that the layer does not hold."""

    def __init__(self):
        self.W = np.random.default_rng(4).normal(size=(6, 6)) * 0.5

    def forward(self, x):
        self.x, self.mask = x, (DROPOUT_RNG.random(x.shape) > 0.5) * 2.0
        self.out = np.tanh((x * self.mask) @ self.W)
        return self.out

    def backward(self, dout):
        g = dout * (1 - self.out ** 2)
        self.dW = (self.x * self.mask).T @ g
        return (g @ self.W.T) * self.mask


class DottedAttributeBlocks(KeyedBlocks):
    """Sub-layers set as attributes under names holding a dot (``setattr(self, 'enc.fc',
    Dense())``, a module path as the attribute name): ``['enc.fc'].W``."""

    keys = ("enc.fc", "dec.fc")

    def __init__(self, broken=False):
        setattr(self, "enc.fc", Dense(3, 3))
        setattr(self, "dec.fc", Dense(3, 2, -1.0 if broken else 1.0))

    def forward(self, x):
        for k in self.keys:
            x = getattr(self, k).forward(x)
        return x

    def backward(self, dout):
        for k in reversed(self.keys):
            dout = getattr(self, k).backward(dout)
        return dout


CASES["dotted-attribute-sub-layers"] = (DottedAttributeBlocks, _keyed(DottedAttributeBlocks),
                                        "['dec.fc'].b",
                                        ["x", "['enc.fc'].W", "['enc.fc'].b", "['dec.fc'].W",
                                         "['dec.fc'].b"])


class FlatBufferInModel(FlatBuffer):
    """``theta``, ``dtheta`` themselves slices of a model's flat vectors (every layer's
    parameters one vector): the views still merge into ``theta``, not refused as
    overlapping."""

    def __init__(self):
        super().__init__()
        self.model_theta, self.model_grad = np.concatenate([_w(3), self.theta, _w(2)]), \
            np.zeros(13)
        self.theta, self.dtheta = self.model_theta[3:11], self.model_grad[3:11]
        self.W, self.b = self.theta[:6].reshape(3, 2), self.theta[6:]
        self.dW, self.db = self.dtheta[:6].reshape(3, 2), self.dtheta[6:]


class FlatBufferInModelBroken(FlatBufferInModel):
    factor = 0.5


CASES["flat-buffer-in-a-model-buffer"] = (FlatBufferInModel, FlatBufferInModelBroken, "theta",
                                          ["x", "theta"])


# -- Keras/sklearn argument order: the labels first ---------------------------------------------
class KerasMSE:
    """Keras's ``MeanSquaredError`` order: ``forward(y_true, y_pred)`` (the labels first, a
    float array), ``backward()`` returns the one gradient, that of ``y_pred``."""

    scale = 2.0

    def forward(self, y_true, y_pred):
        self.y_true, self.y_pred = y_true, y_pred
        return np.mean((y_pred - y_true) ** 2)

    def backward(self):
        return self.scale * (self.y_pred - self.y_true) / self.y_pred.size


class KerasMSEBroken(KerasMSE):
    scale = 1.0  # forgot the 2 of the square


CALL_CASES["keras-order-loss"] = (KerasMSE, KerasMSEBroken, lambda: _xs((4, 3), (4, 3)),
                                  "y_pred", ["y_pred"])
CALL_CASES["keras-order-loss-dict"] = (
    KerasMSE, KerasMSEBroken, lambda: dict(zip(("y_true", "y_pred"), _xs((4, 3), (4, 3)))),
    "y_pred", ["y_pred"])


# -- forward/backward behind a decorator without functools.wraps ---------------------------------
def _logged(fn):
    """A logging/timing decorator that forgot :func:`functools.wraps`: the signature is
    ``(*args, **kwargs)`` and there is no ``__wrapped__``."""
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def _opaque(fn):
    """A decorator without :func:`functools.wraps` whose wrapper closes over two functions
    (a logger and ``fn``): which one it passes its arguments on to is not known."""
    def log(*args):
        return None

    def wrapper(*args, **kwargs):
        log(*args)
        return fn(*args, **kwargs)
    return wrapper


class DecoratedDense:
    """``forward(self, x)`` (no train/eval switch) behind :func:`_logged`."""

    def __init__(self):
        self.W = np.random.default_rng(5).normal(size=(3, 2))

    @_logged
    def forward(self, x):
        self.x = x
        return x @ self.W

    @_logged
    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


class DecoratedDenseBroken(DecoratedDense):
    @_logged
    def backward(self, dout):
        self.dW = 0.5 * self.x.T @ dout
        return dout @ self.W.T


CASES["decorated-without-wraps"] = (DecoratedDense, DecoratedDenseBroken, "W", ["x", "W"])


# -- backward taking forward's input and output again ---------------------------------------------
class YanyanMaxPooling:
    """yanyan0207/DL_STUDY_PYTHON ``layer/pooling.py`` (NHWC): ``forward(x, train)``,
    ``backward(out, input, output)``: the upstream gradient, then the layer's input and
    output again, as its training loop passes them."""

    factor = 1.0

    def __init__(self, shape=(2, 2)):
        self.shape = shape

    def forward(self, x, train):
        row, col = self.shape
        out = x.copy().reshape(x.shape[0], x.shape[1] // row, row, x.shape[2] // col, col,
                               x.shape[3])
        out = out.transpose(0, 1, 3, 5, 2, 4).reshape(-1, row * col)
        maxpos = np.argmax(out, axis=1)
        out = out[np.arange(maxpos.size), maxpos]
        out = out.reshape(x.shape[0], x.shape[1] // row, x.shape[2] // col, x.shape[3])
        if train:
            self.maxpos = maxpos
        return out

    def backward(self, out, input, output):
        row, col = self.shape
        grad = np.zeros((out.size, row * col))
        grad[np.arange(self.maxpos.size), self.maxpos] = out.reshape(-1) * self.factor
        grad = grad.reshape(out.shape[0], out.shape[1], out.shape[2], out.shape[3], row, col)
        return grad.transpose(0, 1, 4, 2, 5, 3).reshape(input.shape)


class YanyanMaxPoolingBroken(YanyanMaxPooling):
    factor = 0.5


class TanhFromOutput:
    """``backward(dout, output)``: the derivative from the output forward returned."""

    def forward(self, x):
        return np.tanh(x)

    def backward(self, dout, output):
        return dout * (1 - output ** 2)


class TanhFromOutputBroken(TanhFromOutput):
    def backward(self, dout, output):
        return dout * (1 - output)


CALL_CASES["backward-takes-input-output"] = (
    YanyanMaxPooling, YanyanMaxPoolingBroken,
    lambda: np.random.default_rng(0).permutation(2 * 4 * 4 * 3).reshape(2, 4, 4, 3) * 0.1,
    "x", ["x"])
CALL_CASES["backward-takes-output"] = (TanhFromOutput, TanhFromOutputBroken,
                                       lambda: _xs((3, 4))[0], "x", ["x"])


# -- a dict output, a (loss, cache) tuple ---------------------------------------------------------
class DictOutputCell:
    """``forward(x) -> {"h": tanh(x), "c": x ** 2}``; ``backward(grads)`` takes the dict of
    upstream gradients, one per key."""

    factor = 2.0

    def forward(self, x):
        self.x = x
        return {"h": np.tanh(x), "c": x ** 2}

    def backward(self, grads):
        return grads["h"] * (1 - np.tanh(self.x) ** 2) + grads["c"] * self.factor * self.x


class DictOutputCellBroken(DictOutputCell):
    factor = 1.0


class LossWithCache:
    """``forward(x, y) -> (loss, {"probs": p})`` (a cache dict beside the loss),
    ``backward(dout=1.0) -> dx``."""

    factor = 1.0

    def forward(self, x, y):
        e = np.exp(x - x.max(1, keepdims=True))
        self.p, self.y = e / e.sum(1, keepdims=True), y
        return -np.log(self.p[np.arange(len(y)), y]).mean(), {"probs": self.p}

    def backward(self, dout=1.0):
        g = self.p.copy()
        g[np.arange(len(self.y)), self.y] -= self.factor
        return dout * g / len(self.y)


class LossWithCacheBroken(LossWithCache):
    factor = 0.5


class LossWithProbs(LossWithCache):
    """``forward(x, y) -> (loss, probs)``: the probabilities an output backward takes no
    gradient for (``backward(dout=1.0)``: one upstream gradient)."""

    def forward(self, x, y):
        loss, cache = super().forward(x, y)
        return loss, cache["probs"]


class LossWithProbsBroken(LossWithProbs, LossWithCacheBroken):
    pass


CALL_CASES["dict-output"] = (DictOutputCell, DictOutputCellBroken, lambda: _xs((3, 4)), "x",
                             ["x"])
CALL_CASES["loss-and-cache"] = (LossWithCache, LossWithCacheBroken,
                                lambda: (_xs((3, 3))[0], LABELS), "x", ["x"])
CALL_CASES["loss-and-probs-default-dout"] = (LossWithProbs, LossWithProbsBroken,
                                             lambda: (_xs((3, 3))[0], LABELS), "x", ["x"])


# -- a parameter read through a property over a private attribute --------------------------------
class PropertyDense:
    """``self._W`` held, ``@property W`` (with a setter) read by forward, ``self.dW``
    written by backward: the parameter is ``W``."""

    factor = 1.0

    def __init__(self):
        self._W = np.random.default_rng(6).normal(size=(3, 2))

    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._W = value

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.W)

    def backward(self, dout):
        g = dout * (1 - np.tanh(self.x @ self.W) ** 2)
        self.dW = self.factor * self.x.T @ g
        return g @ self.W.T


class PropertyDenseBroken(PropertyDense):
    factor = 0.5


class ReadOnlyPropertyDense(PropertyDense):
    """The same with a read-only ``@property W`` over ``self._weights``."""

    def __init__(self):
        self._weights = np.random.default_rng(6).normal(size=(3, 2))

    W = property(lambda self: self._weights)


class ReadOnlyPropertyDenseBroken(ReadOnlyPropertyDense):
    factor = 0.5


CASES["property-parameter"] = (PropertyDense, PropertyDenseBroken, "W", ["x", "W"])
CASES["read-only-property-parameter"] = (ReadOnlyPropertyDense, ReadOnlyPropertyDenseBroken,
                                         "W", ["x", "W"])


# -- integer x alone that forward indexes with (not named as indices) -----------------------------
class CharEncoder:
    """``forward(x) -> self.E[x]``: integer ids under the name ``x``, in a class not named
    an embedding; ``backward`` scatters into ``dE`` and returns ``None``."""

    factor = 1.0

    def __init__(self):
        self.E = np.random.default_rng(8).normal(size=(6, 3))

    def forward(self, x):
        self.x = x
        return self.E[x]

    def backward(self, dout):
        self.dE = np.zeros_like(self.E)
        np.add.at(self.dE, self.x, dout * self.factor)


class CharEncoderBroken(CharEncoder):
    factor = 0.5


CALL_CASES["integer-x-used-as-indices"] = (CharEncoder, CharEncoderBroken,
                                           lambda: np.array([0, 3, 5, 3]), "E", ["E"])


class ListOutputCell(DictOutputCell):
    """``forward(x) -> [tanh(x), x ** 2]`` (a list), ``backward(grads)`` unpacking the list
    of upstream gradients (``dh, dc = grads``)."""

    def forward(self, x):
        self.x = x
        return [np.tanh(x), x ** 2]

    def backward(self, grads):
        dh, dc = grads
        return super().backward({"h": dh, "c": dc})


class ListOutputCellBroken(ListOutputCell):
    factor = 1.0


class TwoOutputsOneGradientList(TwoOutputsOneGradient):
    """numpy-ml's ``LSTMCell`` returning a list ``[A, Z]``: ``backward(dLdA)`` takes the
    first output's gradient alone (it does not unpack it), as for a tuple."""

    def forward(self, X):
        return list(super().forward(X))


class TwoOutputsOneGradientListBroken(TwoOutputsOneGradientList, TwoOutputsOneGradientBroken):
    pass


CALL_CASES["list-output"] = (ListOutputCell, ListOutputCellBroken, lambda: _xs((3, 4)), "x",
                             ["x"])
CALL_CASES["list-output-one-gradient"] = (
    TwoOutputsOneGradientList, TwoOutputsOneGradientListBroken, lambda: _xs((3, 3)), "W",
    ["X", "W"])


# -- EpyNN: p/g dicts, gradients from compute_gradients() after backward ---------------------------
#: Names of the EpyNN-style methods called, in order (the tests read it: which the check calls).
EPYNN_CALLS = []


def _sigmoid(x, deriv=False):
    s = 1 / (1 + np.exp(-x))
    return s * (1 - s) if deriv else s


class EpyNNLayer:
    """EpyNN's ``Layer`` (Synthaze/EpyNN ``epynn/commons/models.py``): dicts of dimensions,
    shapes, parameters ``p``, forward cache ``fc``, gradients ``g``, backward cache ``bc``."""

    def __init__(self):
        self.d, self.fs, self.p, self.fc, self.bs, self.g, self.bc = {}, {}, {}, {}, {}, {}, {}
        self.o = {}

    def update_shapes(self, cache, shapes):
        shapes.update({k: v.shape for k, v in cache.items()})


class EpyNNDense(EpyNNLayer):
    """EpyNN's ``Dense`` (``epynn/dense/models.py``, ``forward.py``, ``backward.py``,
    ``parameters.py``): ``backward(dX)`` fills only ``self.bc``; ``compute_gradients()``
    (no argument) fills ``self.g = {'dW': ..., 'db': ...}`` from the caches, and
    ``update_parameters()`` steps ``self.p`` -- the training loop calls the three in turn.
    ``update_parameters`` here also poisons the layer, so a check calling it fails."""

    factor = 1.0

    def __init__(self, units=2, x_shape=(3, 3)):
        super().__init__()
        self.d['u'] = units
        self.activate = _sigmoid
        self.trainable = True
        self.fs['X'] = x_shape
        self.d['m'], self.d['n'] = x_shape
        self.fs['W'], self.fs['b'] = (self.d['n'], units), (1, units)
        self.p['W'], self.p['b'] = _w(*self.fs['W']), _w(*self.fs['b'])

    def forward(self, A):
        X = self.fc['X'] = A
        Z = self.fc['Z'] = np.dot(X, self.p['W']) + self.p['b']
        A = self.fc['A'] = self.activate(Z)
        self.update_shapes(self.fc, self.fs)
        return A

    def backward(self, dX):
        dA = self.bc['dA'] = dX
        dZ = self.bc['dZ'] = dA * self.activate(self.fc['Z'], deriv=True)
        dX = self.bc['dX'] = np.dot(dZ, self.p['W'].T)
        self.update_shapes(self.bc, self.bs)
        return dX

    def compute_gradients(self):
        EPYNN_CALLS.append("compute_gradients")
        X, dZ = self.fc['X'], self.bc['dZ']
        self.g['dW'] = np.dot(X.T, dZ) * self.factor
        self.g['db'] = np.sum(dZ, axis=0)

    def update_parameters(self):
        EPYNN_CALLS.append("update_parameters")
        for gradient in self.g.keys():
            self.p[gradient[1:]] -= 0.1 * self.g[gradient]
        self.p['W'] *= np.nan  # never called by the check: it would poison every pass


class EpyNNDenseBroken(EpyNNDense):
    factor = 1.01


class EpyNNDenseNoVerb(EpyNNDense):
    """The gradients computed by methods whose names do not say "compute gradients", or
    say update/step/apply/zero/reset as well: none is ever called (no gradient found)."""

    compute_gradients = None

    def apply_gradients(self):
        EPYNN_CALLS.append("apply_gradients")
        EpyNNDense.compute_gradients(self)

    def compute_gradients_and_step(self):
        EPYNN_CALLS.append("compute_gradients_and_step")
        EpyNNDense.compute_gradients(self)
        self.update_parameters()

    def zero_grads(self):
        EPYNN_CALLS.append("zero_grads")
        self.g.clear()

    def get_gradients(self):
        EPYNN_CALLS.append("get_gradients")
        EpyNNDense.compute_gradients(self)


CASES["epynn-gradient-method"] = (EpyNNDense, EpyNNDenseBroken, "p['W']",
                                  ["x", "p['W']", "p['b']"])


# -- a method pair with a returned cache: out, cache = forward(x); backward(dout, cache) ---------
class CacheTanhAffine:
    """CS231n's functions as a class: ``forward(x) -> (out, cache)``, ``backward(dout,
    cache)`` reading forward's output from the cache it is given (each forward's own)."""

    factor = 1.0

    def __init__(self, D=3, H=2):
        self.W, self.b = _w(D, H), _w(H)

    def forward(self, x):
        y = np.tanh(x @ self.W + self.b)
        return y, (x, y)

    def backward(self, dout, cache):
        x, y = cache
        g = dout * (1 - y ** 2)
        self.dW, self.db = x.T @ g * self.factor, g.sum(axis=0)
        return g @ self.W.T


class CacheTanhAffineBroken(CacheTanhAffine):
    factor = 1.5


CALL_CASES["method-pair-cache"] = (CacheTanhAffine, CacheTanhAffineBroken,
                                   lambda: _xs((4, 3))[0], "W", ["x", "W", "b"])


# -- torch.autograd.Function style, in numpy: static forward(ctx, ...), backward(ctx, dout) ------
class CtxLinear:
    """``forward(ctx, x, w)`` saves its inputs with ``ctx.save_for_backward``,
    ``backward(ctx, grad_output)`` reads ``ctx.saved_tensors``: a fresh context per call."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return np.tanh(x @ w)

    @staticmethod
    def backward(ctx, grad_output):
        x, w = ctx.saved_tensors
        g = grad_output * (1 - np.tanh(x @ w) ** 2)
        return g @ w.T, x.T @ g


class CtxLinearBroken(CtxLinear):
    @staticmethod
    def backward(ctx, grad_output):
        x, w = ctx.saved_tensors
        g = grad_output * (1 - np.tanh(x @ w) ** 2)
        return g @ w.T, x.T @ grad_output


FUNCTION_CASES["autograd-function-ctx"] = (
    CtxLinear.forward, CtxLinear.backward, (CtxLinear.forward, CtxLinearBroken.backward),
    lambda: _xs((4, 3), (3, 2)), "w", ["x", "w"])


# -- a model's first layer: backward computes the parameter gradients and returns no dx ----------
class FirstLayerDense:
    """npdl's ``first_layer=True``: ``backward`` fills ``dW``/``db`` and returns ``None``
    (no layer below needs dx); checked with ``wrt=["W", "b"]``."""

    factor = 1.0

    def __init__(self, D=3, H=2):
        self.W, self.b = _w(D, H), _w(H)

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.W + self.b)

    def backward(self, dout):
        g = dout * (1 - np.tanh(self.x @ self.W + self.b) ** 2)
        self.dW, self.db = self.x.T @ g * self.factor, g.sum(axis=0)


class FirstLayerDenseBroken(FirstLayerDense):
    factor = 0.5


# -- output and input-gradient buffers written in place (np.tanh(..., out=self.out)) -------------
class BufferTanhDense:
    """Preallocated ``self.out`` / ``self.dx`` written in place by forward / backward (a
    speed idiom): listed as written by them, not warned about as possible parameters."""

    factor = 1.0

    def __init__(self, N=3, D=3, H=2):
        self.W, self.dW = _w(D, H), np.zeros((D, H))
        self.out, self.dx = np.zeros((N, H)), np.zeros((N, D))

    def forward(self, x):
        self.x = x
        np.tanh(x @ self.W, out=self.out)
        return self.out

    def backward(self, dout):
        g = dout * (1 - self.out ** 2)
        self.dW[...] = self.x.T @ g * self.factor
        np.matmul(g, self.W.T, out=self.dx)
        return self.dx


class BufferTanhDenseBroken(BufferTanhDense):
    factor = 1.5


CASES["in-place-buffers"] = (BufferTanhDense, BufferTanhDenseBroken, "W", ["x", "W"])


# -- numpy-ml's LayerBase: forward appends its input to self.X ------------------------------------
class AppendsInput:
    """numpy-ml's ``self.X.append(X)`` in forward, ``backward`` reading ``self.X[-1]``: the
    entries are inputs (the earlier ones of earlier calls), never parameters."""

    factor = 1.0

    def __init__(self, D=3, H=2):
        self.X, self.W, self.dW = [], _w(D, H), np.zeros((D, H))

    def forward(self, X):
        self.X.append(X)
        return X @ self.W

    def backward(self, dLdy):
        self.dW = self.X[-1].T @ dLdy * self.factor
        return dLdy @ self.W.T


class AppendsInputBroken(AppendsInput):
    factor = 0.5


CASES["appended-input-list"] = (AppendsInput, AppendsInputBroken, "W", ["x", "W"])


# -- Yandex Practical_DL: backward(input, grad_output) steps with self.learning_rate -------------
class PracticalDLDense:
    """Practical_DL's week-1 ``Dense``: the learning rate held as an attribute,
    ``backward(input, grad_output)`` computes ``grad_weights``/``grad_biases`` as locals
    and rebinds ``self.weights = self.weights - self.learning_rate * grad_weights``."""

    wscale = 1.0

    def __init__(self, input_units=3, output_units=2, learning_rate=0.1):
        self.learning_rate = learning_rate
        self.weights = _w(input_units, output_units)
        self.biases = _w(output_units)

    def forward(self, input):
        return np.dot(input, self.weights) + self.biases

    def backward(self, input, grad_output):
        grad_input = np.dot(grad_output, self.weights.T)
        grad_weights = np.dot(input.T, grad_output) * self.wscale
        grad_biases = grad_output.mean(axis=0) * input.shape[0]
        self.weights = self.weights - self.learning_rate * grad_weights
        self.biases = self.biases - self.learning_rate * grad_biases
        return grad_input


class PracticalDLDenseBroken(PracticalDLDense):
    wscale = 1.5


class PracticalDLDenseInPlace(PracticalDLDense):
    """The same step in place (``self.weights -= self.learning_rate * grad_weights``)."""

    def backward(self, input, grad_output):
        grad_input = np.dot(grad_output, self.weights.T)
        grad_weights = np.dot(input.T, grad_output) * self.wscale
        self.weights -= self.learning_rate * grad_weights
        self.biases -= self.learning_rate * grad_output.sum(axis=0)
        return grad_input


class PracticalDLDenseInPlaceBroken(PracticalDLDenseInPlace):
    wscale = 1.5


class LeakyReLUHoldingAlpha:
    """A leaky ReLU whose slope is ``self.alpha``: a learning-rate name that steps nothing,
    left as it is."""

    def __init__(self, alpha=0.2):
        self.alpha = alpha

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.alpha * x)

    def backward(self, dout):
        return dout * np.where(self.x > 0, 1.0, self.alpha)


class LeakyReLUHoldingAlphaBroken(LeakyReLUHoldingAlpha):
    def backward(self, dout):
        return dout * np.where(self.x > 0, 1.0, 2 * self.alpha)


# -- gradients under other spellings (W_gradient, gW, nabla_W, dL_dW, ...) -----------------------
class SpelledDense:
    """``x @ <pname>`` with its gradient stored under ``gname`` by backward."""

    factor = 1.0

    def __init__(self, pname="W", gname="W_gradient"):
        self.names = (pname, gname)
        setattr(self, pname, _w(3, 2))

    def forward(self, x):
        self.x = x
        return x @ getattr(self, self.names[0])

    def backward(self, dout):
        setattr(self, self.names[1], self.factor * self.x.T @ dout)
        return dout @ getattr(self, self.names[0]).T


class SpelledDenseBroken(SpelledDense):
    factor = 1.5


class ShapeOnlyDense:
    """Gradients under names no rule pairs (``W_d``, ``b_d``): each the only floating array
    backward writes of its parameter's shape, so taken by shape."""

    factor = 1.0

    def __init__(self):
        self.W, self.b = _w(3, 2), _w(2)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.W_d = self.factor * self.x.T @ dout
        self.b_d = dout.sum(axis=0)
        return dout @ self.W.T


class ShapeOnlyDenseBroken(ShapeOnlyDense):
    factor = 1.5


class FixedProjectionKeepsDx:
    """A fixed (non-trainable) square projection ``P``; backward keeps its ``dx`` and the
    ``dout`` it was given: at a square input both have ``P``'s shape, and neither is
    ``P``'s gradient."""

    def __init__(self):
        self.P = _w(3, 3)

    def forward(self, x):
        self.x = x
        return x @ self.P

    def backward(self, dout):
        self.upstream = dout.copy()
        self.grad_input = dout @ self.P.T
        return self.grad_input


class TwoSquareShapeOnly:
    """``Wx`` and ``Wh`` of one shape, their gradients under names no rule pairs
    (``Wx_d``, ``Wh_d``): each told by the parameter's name in it."""

    factor = 1.0

    def __init__(self):
        self.Wx, self.Wh = _w(3, 3), _w(3, 3)

    def forward(self, x):
        self.x = x
        return x @ self.Wx + np.tanh(x) @ self.Wh

    def backward(self, dout):
        self.Wx_d = self.x.T @ dout
        self.Wh_d = self.factor * np.tanh(self.x).T @ dout
        return dout @ self.Wx.T + (dout @ self.Wh.T) * (1 - np.tanh(self.x) ** 2)


# -- a learning rate under other names and forms: learningRate, lr0, base_lr, a 0-d array, ------
# -- config['learning_rate'] (the names normalised before they are matched) -------------------
class _RateFormDense:
    """A ``Dense`` whose backward applies its own SGD step with the rate :meth:`rate` reads
    (held under a name or in a form each subclass sets): the step read as the gradient."""

    wscale = 1.0

    def __init__(self):
        self.W, self.b = _w(3, 2), _w(2)

    def rate(self):
        raise NotImplementedError

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        dx = dout @ self.W.T
        self.W = self.W - self.rate() * (self.x.T @ dout) * self.wscale
        self.b = self.b - self.rate() * dout.sum(axis=0)
        return dx


class CamelRateDense(_RateFormDense):
    """``self.learningRate`` (a Java-style port)."""

    def __init__(self):
        super().__init__()
        self.learningRate = 0.1

    def rate(self):
        return self.learningRate


class DigitRateDense(_RateFormDense):
    """``self.lr0``."""

    def __init__(self):
        super().__init__()
        self.lr0 = 0.1

    def rate(self):
        return self.lr0


class BaseRateDense(_RateFormDense):
    """``self.base_lr`` (a schedule's base rate, used as it is)."""

    def __init__(self):
        super().__init__()
        self.base_lr = 0.1

    def rate(self):
        return self.base_lr


class ArrayRateDense(_RateFormDense):
    """``self.lr = np.array(0.1)``: a 0-d floating array, set and put back as one."""

    def __init__(self):
        super().__init__()
        self.lr = np.array(0.1)

    def rate(self):
        return self.lr


class ConfigRateDense(_RateFormDense):
    """``self.config = {"learning_rate": 0.1}``: the rate inside a dict attribute, the
    weights stepped in place."""

    def __init__(self):
        super().__init__()
        self.config = {"learning_rate": 0.1, "momentum": 0.0}

    def rate(self):
        return self.config["learning_rate"]


RATE_FORMS = (CamelRateDense, DigitRateDense, BaseRateDense, ArrayRateDense, ConfigRateDense)
for _cls in RATE_FORMS:
    _broken = type(_cls.__name__ + "Broken", (_cls,), {"wscale": 1.5})
    globals()[_broken.__name__] = _broken
    CASES[f"rate-form-{_cls.__name__}"] = (_cls, _broken, "W", ["x", "W", "b"])


class UnknownRateDense(_RateFormDense):
    """The rate under a name the check does not know (``self.mu``): W and b are stepped by
    backward with no rate to read the step with -- a failing ``backward-steps`` finding,
    never "caches"."""

    def __init__(self):
        super().__init__()
        self.mu = 0.1

    def rate(self):
        return self.mu


class UnknownRateDenseBroken(UnknownRateDense):
    wscale = 1.5


class LeakyReLUCountingSlope:
    """A leaky ReLU whose backward also updates a statistic with its ``alpha``
    (``self.stats -= alpha * count``): ``alpha`` scales that change, but forward reads it,
    so it is no learning rate and is never set."""

    factor = 1.0

    def __init__(self, alpha=0.1):
        self.alpha, self.stats = alpha, np.zeros(1)

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.alpha * x)

    def backward(self, dout):
        self.stats -= self.alpha * np.array([float((self.x < 0).sum())])
        return dout * np.where(self.x > 0, 1.0, self.alpha * self.factor)


class LeakyReLUCountingSlopeBroken(LeakyReLUCountingSlope):
    factor = 2.0




# -- gradient methods: a finite-difference helper, one needing arguments, one that steps -------
class EpyNNNumericalHelper(EpyNNDense):
    """No analytic gradient method, but a finite-difference helper
    (``compute_numerical_gradients``) that fills ``self.g`` right: never called (the
    parameters are not checked), whatever its result."""

    compute_gradients = None

    def compute_numerical_gradients(self):
        EPYNN_CALLS.append("compute_numerical_gradients")
        EpyNNDense.compute_gradients(self)


class EpyNNGradientsNeedScale(EpyNNDense):
    """``compute_gradients(self, scale)``: needs an argument, so never called; the report
    says why and what to do."""

    def compute_gradients(self, scale):
        EPYNN_CALLS.append("compute_gradients")
        EpyNNDense.compute_gradients(self)


class EpyNNGradientsAndStep(EpyNNDense):
    """``compute_gradients()`` that also steps ``p['W']`` (an update inside it): the step
    put back after every call, the gradients checked."""

    def compute_gradients(self):
        EpyNNDense.compute_gradients(self)
        self.p['W'] -= 0.1 * self.g['dW']


class EpyNNGradientsAndStepBroken(EpyNNGradientsAndStep):
    factor = 1.01


CASES["epynn-gradient-method-steps"] = (EpyNNGradientsAndStep, EpyNNGradientsAndStepBroken,
                                        "p['W']", ["x", "p['W']", "p['b']"])


# -- an autograd-style Function: backward returns None for a float input not differentiated ----
class MaskedMulFunction:
    """``torch.autograd.Function`` style: ``backward`` returns ``(grad_x, None)``; the
    float ``mask`` is not differentiated (not a target)."""

    factor = 1.0

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @classmethod
    def backward(cls, ctx, g):
        mask, = ctx.saved_tensors
        return g * mask * cls.factor, None


class MaskedMulFunctionBroken(MaskedMulFunction):
    factor = 1.5


class ScheduledRateDense(_RateFormDense):
    """``lr = self.base_lr / (1 + self.decay * self.t); self.t += 1``: a decay schedule;
    the second call of the sequence check steps with another rate (a warning, not a
    history failure)."""

    def __init__(self):
        super().__init__()
        self.base_lr, self.decay, self.t = 0.1, 0.01, 0

    def rate(self):
        return self.base_lr / (1 + self.decay * self.t)

    def backward(self, dout):
        dx = super().backward(dout)
        self.t += 1
        return dx


class ScheduledRateDenseBroken(ScheduledRateDense):
    wscale = 1.5


class TwoSquareShapeOnlyBroken(TwoSquareShapeOnly):
    factor = 1.5


class TraskLayer:
    """josefK128/synthgradients ``trask_SG_code/layer_class.py`` (Trask's synthetic
    gradients post), sigmoid as there: backward keeps ``weight_output_delta`` (N, out), the
    delta at the weights' output; ``update(alpha)`` steps the weights (in, out) from it
    later. At N == in it has the weights' shape, and is not their gradient."""

    def __init__(self, input_dim, output_dim, seed=0):
        rng = np.random.default_rng(seed)
        self.weights = (rng.normal(size=(input_dim, output_dim)) * 0.2) - 0.1

    @staticmethod
    def nonlin(x):
        return 1 / (1 + np.exp(-x))

    @staticmethod
    def nonlin_deriv(out):
        return out * (1 - out)

    def forward(self, input):
        self.input = input
        self.output = self.nonlin(self.input.dot(self.weights))
        return self.output

    def backward(self, output_delta):
        self.weight_output_delta = output_delta * self.nonlin_deriv(self.output)
        return self.weight_output_delta.dot(self.weights.T)

    def update(self, alpha=0.1):
        self.weights -= self.input.T.dot(self.weight_output_delta) * alpha


class TraskLayerBroken(TraskLayer):
    """The sigmoid's derivative left out of the input's gradient."""

    def backward(self, output_delta):
        self.weight_output_delta = output_delta * self.nonlin_deriv(self.output)
        return output_delta.dot(self.weights.T)


class PrivateLayerNorm:
    """A LayerNorm keeping its gradients under a leading underscore (``_dgamma``,
    ``_dbeta``), stepped by ``update(lr)`` (a third-party ``layer_norm.py``)."""

    factor = 1.0

    def __init__(self, d_model=6, eps=1e-6, seed=0):
        rng = np.random.default_rng(seed)
        self.eps = eps
        self.gamma, self.beta = rng.uniform(0.5, 1.5, d_model), rng.normal(size=d_model)
        self._dgamma, self._dbeta = np.zeros(d_model), np.zeros(d_model)

    def forward(self, x):
        self._mu = x.mean(axis=-1, keepdims=True)
        self._var = x.var(axis=-1, keepdims=True)
        self._x_norm = (x - self._mu) / np.sqrt(self._var + self.eps)
        return self.gamma * self._x_norm + self.beta

    def backward(self, dout):
        n = dout.shape[-1]
        axes = tuple(range(dout.ndim - 1))
        self._dgamma = self.factor * (dout * self._x_norm).sum(axis=axes)
        self._dbeta = dout.sum(axis=axes)
        dx_norm = dout * self.gamma
        return (1.0 / n) / np.sqrt(self._var + self.eps) * (
            n * dx_norm - dx_norm.sum(axis=-1, keepdims=True)
            - self._x_norm * (dx_norm * self._x_norm).sum(axis=-1, keepdims=True))

    def update(self, lr):
        self.gamma -= lr * self._dgamma
        self.beta -= lr * self._dbeta


class PrivateLayerNormBroken(PrivateLayerNorm):
    factor = 1.3


class FixedSquareProjection:
    """A fixed (non-trainable) square projection ``P`` then tanh; backward keeps one cache
    ``dz`` of the pre-activation's gradient: at a square input it has ``P``'s shape."""

    def __init__(self):
        self.P = _w(3, 3)

    def forward(self, x):
        self.x = x
        self.y = np.tanh(x @ self.P)
        return self.y

    def backward(self, dout):
        self.dz = dout * (1 - self.y ** 2)
        return self.dz @ self.P.T


class SquareTanhDense(FixedSquareProjection):
    """``P`` trainable, its gradient ``P_d`` (a name no rule pairs), beside the ``dz``
    cache and the output ``y`` recomputed, of its shape: ``P_d`` alone names it."""

    factor = 1.0

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.P)

    def backward(self, dout):
        self.y = np.tanh(self.x @ self.P)
        self.dz = dout * (1 - self.y ** 2)
        self.P_d = self.factor * self.x.T @ self.dz
        return self.dz @ self.P.T


class SquareTanhDenseBroken(SquareTanhDense):
    factor = 1.5


class MaskedDenseTwoNamed:
    """``W`` masked by a fixed ``mask``; backward writes two arrays of W's shape named
    like it, ``W_masked`` (a cache) and ``W_d`` (its gradient): which one is it? (no
    twin: it never PASSes)."""

    def __init__(self):
        self.W = _w(3, 2)
        self.mask = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])

    def forward(self, x):
        self.x = x
        return x @ (self.W * self.mask)

    def backward(self, dout):
        self.W_masked = self.W * self.mask
        self.W_d = (self.x.T @ dout) * self.mask
        return dout @ self.W_masked.T


class GenericGradDense:
    """``W``'s gradient kept as ``self.grad`` (a name of gradient words alone), stepped
    later by ``update()``: the only parameter of its shape without a gradient."""

    factor = 1.0

    def __init__(self):
        self.lr, self.W = 0.1, _w(3, 2)

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.grad = self.factor * self.x.T @ dout
        return dout @ self.W.T

    def update(self):
        self.W -= self.lr * self.grad


class GenericGradDenseBroken(GenericGradDense):
    factor = 1.2


class LossAndProbs:
    """Anhuynh2404/Feature_Detection_and_Description ``ResNet/loss.py``: ``forward(logits,
    labels) -> (loss, probs)``, ``backward(probs, labels)`` the gradient of the mean loss
    from the probabilities forward returned."""

    scale = 1.0

    def forward(self, logits, labels):
        m = logits.shape[0]
        exps = np.exp(logits - np.max(logits, axis=1, keepdims=True))
        probs = exps / np.sum(exps, axis=1, keepdims=True)
        return np.sum(-np.log(probs[range(m), labels])) / m, probs

    def backward(self, probs, labels):
        m = probs.shape[0]
        grad = probs.copy()
        grad[range(m), labels] -= 1
        return grad / m * self.scale


class LossAndProbsBroken(LossAndProbs):
    """The mean's ``1 / m`` left out."""

    scale = 5.0


class RecomputedCache:
    """Backward recomputes ``self.z`` beside its gradient ``self.dz`` (a cache, neither a
    parameter nor read by forward): before and after a training step left one."""

    factor = 1.0

    def __init__(self):
        self.W = _w(3, 2)

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.W)

    def backward(self, dout):
        self.z = self.x @ self.W
        self.dz = dout * (1 - np.tanh(self.z) ** 2)
        self.dW = self.factor * self.x.T @ self.dz
        return self.dz @ self.W.T


class RecomputedCacheBroken(RecomputedCache):
    factor = 1.5


class CopiedZeroBias:
    """Backward rebinds ``self.b = self.b.copy()`` (a defensive copy) beside ``db``, the
    bias all zeros: forward reads it, so it is a parameter (moved by a factor it would
    not move, and was dropped as a cache)."""

    factor = 1.0

    def __init__(self):
        self.W, self.b = _w(3, 2), np.zeros(2)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = self.factor * dout.sum(axis=0)
        self.b = self.b.copy()
        return dout @ self.W.T


class CopiedZeroBiasBroken(CopiedZeroBias):
    factor = 3.0
