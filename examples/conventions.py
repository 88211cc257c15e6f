"""One small layer per convention ``check_layer`` supports directly (no adapter class).

Each ``make_*`` factory returns what the ``gradcheck`` command takes: ``(layer,
inputs)`` or ``(forward, backward, inputs)``::

    gradcheck examples/conventions.py:make_rnn_cell
    gradcheck examples/conventions.py:make_affine_pair
    python examples/conventions.py          # checks them all in-process

``make_broken_rnn_cell`` is the same cell with a wrong ``dh_prev``: it fails on
that target.
"""

import numpy as np

RNG = np.random.default_rng(0)


class MatMul:
    """Lists written in place (the second "Deep Learning from Scratch" book)."""

    def __init__(self, W):
        self.params, self.grads = [W], [np.zeros_like(W)]

    def forward(self, x):
        self.x = x
        return x @ self.params[0]

    def backward(self, dout):
        self.grads[0][...] = self.x.T @ dout
        return dout @ self.params[0].T


class AccumulatingDense:
    """numpy-ml: ``parameters``/``gradients`` dicts, ``backward`` accumulates with ``+=``."""

    def __init__(self, W, b):
        self.parameters = {"W": W, "b": b}
        self.gradients = {"W": np.zeros_like(W), "b": np.zeros_like(b)}

    def forward(self, X):
        self.X = X
        return X @ self.parameters["W"] + self.parameters["b"]

    def backward(self, dLdy):
        self.gradients["W"] += self.X.T @ dLdy
        self.gradients["b"] += dLdy.sum(axis=0)
        return dLdy @ self.parameters["W"].T

    def flush_gradients(self):
        for k, v in self.gradients.items():
            self.gradients[k] = np.zeros_like(v)


class DenseNNFS:
    """"Neural Networks from Scratch": forward keeps ``self.output``, backward keeps
    ``self.dinputs`` (both return nothing); ``weights``/``dweights``."""

    def __init__(self, n_in, n_out):
        self.weights = 0.5 * RNG.normal(size=(n_in, n_out))
        self.biases = np.zeros((1, n_out))

    def forward(self, inputs, training):
        self.inputs = inputs
        self.output = inputs @ self.weights + self.biases

    def backward(self, dvalues):
        self.dweights = self.inputs.T @ dvalues
        self.dbiases = dvalues.sum(axis=0, keepdims=True)
        self.dinputs = dvalues @ self.weights.T


class Swish:
    """A learnable scalar: ``beta`` is a Python float, ``dbeta`` too."""

    def __init__(self, beta=1.0):
        self.beta, self.dbeta = beta, 0.0

    def forward(self, x):
        self.x, self.s = x, 1 / (1 + np.exp(-self.beta * x))
        return x * self.s

    def backward(self, dout):
        ds = self.s * (1 - self.s)
        self.dbeta = float(np.sum(dout * self.x ** 2 * ds))
        return dout * (self.s + self.beta * self.x * ds)


class TwoLayer:
    """Sub-layers in a list: the targets are ``layers.0.params[0]``, ``layers.2.params[0]``."""

    def __init__(self):
        self.layers = [MatMul(RNG.normal(size=(4, 3))), Tanh(), MatMul(RNG.normal(size=(3, 2)))]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


class Tanh:
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out ** 2)


class RNNCell:
    """Several inputs: ``forward(x, h_prev) -> h_next``, ``backward(dh_next) -> (dx,
    dh_prev)``; it keeps its last hidden state ``h`` (state, never a parameter)."""

    def __init__(self, D=3, H=2, broken=False):
        self.Wx, self.Wh, self.b = RNG.normal(size=(D, H)), RNG.normal(size=(H, H)), np.zeros(H)
        self.broken = broken

    def forward(self, x, h_prev):
        self.x, self.h_prev = x, h_prev
        self.h = np.tanh(x @ self.Wx + h_prev @ self.Wh + self.b)
        return self.h

    def backward(self, dh_next):
        dt = dh_next * (1 - self.h ** 2)
        self.dWx, self.dWh, self.db = self.x.T @ dt, self.h_prev.T @ dt, dt.sum(axis=0)
        dh_prev = dt @ (self.Wh if self.broken else self.Wh.T)
        return dt @ self.Wx.T, dh_prev


class SoftmaxWithLoss:
    """A loss with labels: ``forward(x, t) -> loss``, ``backward(dout=1)``."""

    def forward(self, x, t):
        self.t = t
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.y = e / e.sum(axis=1, keepdims=True)
        return -np.mean(np.log(self.y[np.arange(len(t)), t]))

    def backward(self, dout=1):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dout * dx / len(self.t)


class Embedding:
    """Integer indices are not cast: ``forward(idx)``; only ``W`` is a target."""

    def __init__(self, V=6, D=3):
        self.params, self.grads = [RNG.normal(size=(V, D))], [np.zeros((V, D))]

    def forward(self, idx):
        self.idx = idx
        return self.params[0][idx]

    def backward(self, dout):
        self.grads[0][...] = 0
        np.add.at(self.grads[0], self.idx, dout)


class SGDDense:
    """"The Independent Code": ``backward(output_gradient, learning_rate)`` steps the
    weights itself and keeps no gradient; column inputs ``(in, 1)``."""

    def __init__(self, input_size=3, output_size=2):
        self.weights = RNG.normal(size=(output_size, input_size))
        self.bias = RNG.normal(size=(output_size, 1))

    def forward(self, input):
        self.input = input
        return np.dot(self.weights, self.input) + self.bias

    def backward(self, output_gradient, learning_rate):
        weights_gradient = np.dot(output_gradient, self.input.T)
        input_gradient = np.dot(self.weights.T, output_gradient)
        self.weights -= learning_rate * weights_gradient
        self.bias -= learning_rate * output_gradient
        return input_gradient


class SGD:
    """An ML-From-Scratch optimizer object: ``update(w, grad_wrt_w)`` returns the new ``w``."""

    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate

    def update(self, w, grad_wrt_w):
        return w - self.learning_rate * grad_wrt_w


class PracticalDLDense:
    """Yandex Practical_DL: the learning rate held as ``self.learning_rate``;
    ``backward(input, grad_output)`` steps the weights with it and keeps no gradient."""

    def __init__(self, input_units=4, output_units=3, learning_rate=0.1):
        self.learning_rate = learning_rate
        self.weights = RNG.normal(scale=np.sqrt(2 / (input_units + output_units)),
                                  size=(input_units, output_units))
        self.biases = np.zeros(output_units)

    def forward(self, input):
        return np.dot(input, self.weights) + self.biases

    def backward(self, input, grad_output):
        grad_input = np.dot(grad_output, self.weights.T)
        grad_weights = np.dot(input.T, grad_output)
        grad_biases = grad_output.mean(axis=0) * input.shape[0]
        self.weights = self.weights - self.learning_rate * grad_weights
        self.biases = self.biases - self.learning_rate * grad_biases
        return grad_input


class OptimizerDense:
    """ML-From-Scratch: ``forward_pass(X, training)`` / ``backward_pass(accum_grad)``; the
    weights are stepped inside backward through an optimizer object per parameter
    (``self.W = self.W_opt.update(self.W, grad_w)``)."""

    def __init__(self, n_in=3, n_units=2, optimizer=SGD()):
        import copy

        self.W, self.w0 = RNG.normal(size=(n_in, n_units)), np.zeros((1, n_units))
        self.W_opt, self.w0_opt = copy.copy(optimizer), copy.copy(optimizer)

    def forward_pass(self, X, training=True):
        self.layer_input = X
        return X.dot(self.W) + self.w0

    def backward_pass(self, accum_grad):
        W = self.W
        self.W = self.W_opt.update(self.W, self.layer_input.T.dot(accum_grad))
        self.w0 = self.w0_opt.update(self.w0, accum_grad.sum(axis=0, keepdims=True))
        return accum_grad.dot(W.T)


class Torch7Linear:
    """Torch7 / lua-nn: ``updateOutput(input)``, ``updateGradInput(input, gradOutput)`` and
    ``accGradParameters(input, gradOutput, scale)`` adding into ``gradWeight``/``gradBias``
    (a Python port's ``backward(input, gradOutput)`` is checked the same way)."""

    def __init__(self, n_in=3, n_out=2):
        self.weight, self.bias = RNG.normal(size=(n_out, n_in)), np.zeros(n_out)
        self.gradWeight, self.gradBias = np.zeros((n_out, n_in)), np.zeros(n_out)

    def updateOutput(self, input):
        self.output = input @ self.weight.T + self.bias
        return self.output

    def updateGradInput(self, input, gradOutput):
        self.gradInput = gradOutput @ self.weight
        return self.gradInput

    def accGradParameters(self, input, gradOutput, scale=1):
        self.gradWeight += scale * gradOutput.T @ input
        self.gradBias += scale * gradOutput.sum(axis=0)


class ReturnsGradients:
    """``backward(dout) -> (dx, dW, db)``: the parameter gradients read from the return
    value, matched to ``W``, ``b`` by shape and order."""

    def __init__(self, n_in=3, n_out=2):
        self.W, self.b = RNG.normal(size=(n_in, n_out)), np.zeros(n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        return dout @ self.W.T, self.x.T @ dout, dout.sum(axis=0)


class CallKeepsInput:
    """``__call__`` keeps the input and calls ``forward``: checked through ``__call__``."""

    def __init__(self, n_in=3, n_out=2):
        self.W = RNG.normal(size=(n_in, n_out))

    def __call__(self, x):
        self.x = x
        return self.forward(x)

    def forward(self, x):
        return x @ self.W

    def backward(self, dout):
        self.dW = self.x.T @ dout
        return dout @ self.W.T


class ParamsByGetattr:
    """``__getattr__`` reads ``self.params[name]`` (a KeyError for any other name)."""

    def __init__(self, n_in=3, n_out=2):
        self.params, self.grads = {"W": RNG.normal(size=(n_in, n_out))}, {}

    def __getattr__(self, name):
        return self.params[name]

    def forward(self, x):
        self.x = x
        return x @ self.W

    def backward(self, dout):
        self.grads["W"] = self.x.T @ dout
        return dout @ self.W.T


class EmbeddingGradW:
    """``forward(idx)`` with ``self.grad_W`` made by backward: only ``W`` is a target."""

    def __init__(self, V=6, D=3):
        self.W = RNG.normal(size=(V, D))

    def forward(self, idx):
        self.idx = idx
        return self.W[idx]

    def backward(self, dout):
        self.grad_W = np.zeros_like(self.W)
        np.add.at(self.grad_W, self.idx, dout)


def linear_activation_forward(A_prev, W, b, activation):
    """deeplearning.ai: ``-> (A, (linear_cache, activation_cache))``, examples in columns."""
    Z = W @ A_prev + b
    A = np.maximum(0, Z) if activation == "relu" else 1 / (1 + np.exp(-Z))
    return A, ((A_prev, W, b), Z)


def linear_activation_backward(dA, cache, activation):
    """deeplearning.ai: takes ``activation`` again by name; ``-> (dA_prev, dW, db)``, ``dW``
    and ``db`` of the batch mean (``1./m``), as the course writes them: checked as ``m``
    times them, with a note."""
    (A_prev, W, b), Z = cache
    m = A_prev.shape[1]
    s = 1 / (1 + np.exp(-Z))
    dZ = dA * (Z > 0) if activation == "relu" else dA * s * (1 - s)
    return W.T @ dZ, 1. / m * dZ @ A_prev.T, 1. / m * dZ.sum(axis=1, keepdims=True)


def affine_forward(x, w, b):
    """CS231n: ``forward(*inputs) -> (out, cache)``."""
    return x @ w + b, (x, w)


def affine_backward(dout, cache):
    """CS231n: ``backward(dout, cache) -> (dx, dw, db)``."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def softmax_loss(x, y):
    """CS231n: one function returning ``(loss, dx)``; checked with ``backward=None``."""
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    N = len(y)
    dx = p.copy()
    dx[np.arange(N), y] -= 1
    return -np.mean(np.log(p[np.arange(N), y])), dx / N


def _x(*shape):
    return RNG.normal(size=shape)


def make_matmul():
    return MatMul(_x(3, 2)), _x(4, 3)


def make_accumulating():
    return AccumulatingDense(_x(3, 2), _x(2)), _x(4, 3)


def make_nnfs_dense():
    return DenseNNFS(3, 2), _x(4, 3)


def make_swish():
    return Swish(1.3), _x(4, 3)


def make_two_layer():
    return TwoLayer(), _x(5, 4)


def make_rnn_cell():
    return RNNCell(), (_x(4, 3), _x(4, 2))


def make_broken_rnn_cell():
    return RNNCell(broken=True), (_x(4, 3), _x(4, 2))


def make_loss():
    return SoftmaxWithLoss(), (_x(4, 3), np.array([0, 2, 1, 2]))


def make_embedding():
    return Embedding(), np.array([0, 4, 4, 1])


def make_sgd_dense():
    return SGDDense(), _x(3, 1)


def make_optimizer_dense():
    return OptimizerDense(), _x(4, 3)


def make_practical_dl_dense():
    return PracticalDLDense(), _x(5, 4)


def make_affine_pair():
    return affine_forward, affine_backward, (_x(4, 3), _x(3, 2), _x(2))


def make_softmax_loss():
    return softmax_loss, None, (_x(4, 3), np.array([0, 2, 1, 2]))


def make_torch7_linear():
    return Torch7Linear(), _x(4, 3)


def make_returns_gradients():
    return ReturnsGradients(), _x(4, 3)


def make_call_keeps_input():
    return CallKeepsInput(), _x(4, 3)


def make_params_by_getattr():
    return ParamsByGetattr(), _x(4, 3)


def make_embedding_grad_w():
    return EmbeddingGradW(), np.array([0, 4, 4, 1])


def make_dlai_pair():
    return (linear_activation_forward, linear_activation_backward,
            (_x(3, 4), _x(2, 3), _x(2, 1), "sigmoid"))


FACTORIES = [make_matmul, make_accumulating, make_nnfs_dense, make_swish, make_two_layer,
             make_rnn_cell, make_loss, make_embedding, make_sgd_dense, make_optimizer_dense,
             make_practical_dl_dense, make_affine_pair,
             make_softmax_loss, make_torch7_linear, make_returns_gradients,
             make_call_keeps_input, make_params_by_getattr, make_embedding_grad_w,
             make_dlai_pair]


if __name__ == "__main__":
    from gradcheck import check_function, check_layer

    for factory in FACTORIES:
        made = factory()
        report = (check_function(*made[:2], *made[2]) if len(made) == 3
                  else check_layer(*made))
        print(f"{factory.__name__:<20} {'PASS' if report.passed else 'FAIL'}  "
              f"checked: {', '.join(r.name for r in report.results)}")
