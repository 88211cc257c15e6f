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
    accumulates (``+=``), ``forward`` appends its input to ``self.X``,
    ``flush_gradients()`` zeroes the gradients and clears ``X``."""

    def __init__(self, D=3, H=2):
        self.parameters = {"W": _w(D, H), "b": _w(1, H)}
        self.gradients = {"W": np.zeros((D, H)), "b": np.zeros((1, H))}
        self.X = []

    def forward(self, X, retain_derived=True):
        if retain_derived:
            self.X.append(X)
        return X @ self.parameters["W"] + self.parameters["b"]

    def backward(self, dLdy, retain_grads=True):
        X = self.X[-1]
        dX = dLdy @ self.parameters["W"].T
        if retain_grads:
            self.gradients["W"] += X.T @ dLdy
            self.gradients["b"] += self.bias_grad(dLdy)
        return dX

    def bias_grad(self, dLdy):
        return dLdy.sum(axis=0, keepdims=True)

    def flush_gradients(self):
        self.X = []
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)


class AccumulatingDenseBroken(AccumulatingDense):
    def bias_grad(self, dLdy):
        return 0.5 * dLdy.sum(axis=0, keepdims=True)


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


#: convention -> (correct, broken, failing target, all targets)
CASES = {
    "list-params": (ListAffine, ListAffineBroken, "params[1]", ["x", "params[0]", "params[1]"]),
    "tied-list": (TiedAutoencoder, TiedAutoencoderBroken, "params[0]",
                  ["x", "params[0]", "params[1]"]),
    "accumulating-dict": (AccumulatingDense, AccumulatingDenseBroken, "parameters['b']",
                          ["x", "parameters['W']", "parameters['b']"]),
    "accumulating-stale": (AccumulatingDense, AccumulatingDenseStale, "parameters['b']",
                           ["x", "parameters['W']", "parameters['b']"]),
    "nnfs-names": (NNFSDense, NNFSDenseBroken, "weights", ["x", "weights", "biases"]),
    "grad-suffix": (GradSuffix, GradSuffixBroken, "bias", ["x", "weight", "bias"]),
    "scalar-float": (Swish, SwishBroken, "beta", ["x", "beta"]),
    "scalar-0d": (Swish0d, Swish0dBroken, "beta", ["x", "beta"]),
    "sub-layers": (Blocks, BlocksBroken, "blocks.2.b",
                   ["x", "blocks.0.W", "blocks.0.b", "blocks.2.W", "blocks.2.b",
                    "heads.out.W", "heads.out.b", "final.W", "final.b"]),
    "state-beside-gradient": (RecurrentStep, RecurrentStepBroken, "b", ["x", "Wx", "b"]),
}
