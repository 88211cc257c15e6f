"""Fully connected (affine) layer in the style of "Deep Learning from Scratch"."""

import numpy as np

__all__ = ["Affine"]


class Affine:
    """Fully connected layer ``out = x @ W + b``.

    Parameters
    ----------
    W : ndarray of shape (D, M)
        Weights; ``D`` input features, ``M`` output features.
    b : ndarray of shape (M,)
        Bias.

    Attributes
    ----------
    dW : ndarray of shape (D, M) or None
        Gradient of ``W``, stored by :meth:`backward`.
    db : ndarray of shape (M,) or None
        Gradient of ``b``, stored by :meth:`backward`.

    Notes
    -----
    An input of shape ``(N, d_1, ..., d_k)`` (for example an image batch
    ``(N, C, H, W)``) is flattened to ``(N, D)`` with ``D = d_1 \\cdots d_k``:

    .. math::

        y = x W + b, \\quad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y} W^\\top, \\quad
        \\frac{\\partial L}{\\partial W} = x^\\top \\frac{\\partial L}{\\partial y}, \\quad
        \\frac{\\partial L}{\\partial b} = \\sum_n \\frac{\\partial L}{\\partial y_n}

    and ``dx`` is reshaped back to the input's shape. The layer behaves the
    same in train and eval mode, so :meth:`forward` takes no ``train_flg``.
    PyTorch's ``torch.nn.functional.linear(x, W.T, b)`` computes the same.

    Examples
    --------
    >>> import numpy as np
    >>> layer = Affine(np.ones((3, 2)), np.array([0.0, 1.0]))
    >>> layer.forward(np.arange(6.0).reshape(2, 3))
    array([[ 3.,  4.],
           [12., 13.]])
    >>> layer.backward(np.ones((2, 2))).shape
    (2, 3)
    >>> layer.dW
    array([[3., 3.],
           [5., 5.],
           [7., 7.]])
    """

    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : ndarray of shape (N, D) or (N, d_1, ..., d_k) with ``prod(d_i) == D``

        Returns
        -------
        out : ndarray of shape (N, M)
        """
        self.original_x_shape = x.shape
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != self.W.shape[0]:
            raise ValueError(
                f"Affine: input has {x2.shape[1]} features per sample (shape {x.shape}), "
                f"but W has shape {self.W.shape}; expected {self.W.shape[0]} features"
            )
        self.x = x2
        return x2 @ self.W + self.b

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``.

        Parameters
        ----------
        dout : ndarray of shape (N, M)

        Returns
        -------
        dx : ndarray of the shape of the last ``forward`` input
            Also stores ``self.dW`` (shape ``(D, M)``) and ``self.db``
            (shape ``(M,)``).
        """
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape)
