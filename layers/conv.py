"""2D convolution (cross-correlation) through im2col."""

import numpy as np

from ._im2col import col2im, im2col, output_size

__all__ = ["Convolution"]


class Convolution:
    """2D convolution layer, PyTorch's ``conv2d`` (a cross-correlation).

    Parameters
    ----------
    W : ndarray of shape (F, C, FH, FW)
        Filters: ``F`` output channels, ``C`` input channels, ``FH x FW`` kernel.
    b : ndarray of shape (F,)
        Bias per output channel.
    stride : int, default 1
        Step between filter positions, in both directions.
    pad : int, default 0
        Zero-padding on each side of both spatial axes.

    Attributes
    ----------
    dW : ndarray of shape (F, C, FH, FW) or None
        Gradient of ``W``, stored by :meth:`backward`.
    db : ndarray of shape (F,) or None
        Gradient of ``b``, stored by :meth:`backward`.

    Notes
    -----
    For ``x`` of shape ``(N, C, H, W)`` zero-padded by ``P`` to :math:`\\tilde x`,
    with stride ``S``:

    .. math::

        y_{nfij} = b_f + \\sum_{c,u,v} W_{fcuv}\\,\\tilde x_{n,c,Si+u,Sj+v},
        \\quad
        OH = \\left\\lfloor \\frac{H + 2P - FH}{S} \\right\\rfloor + 1,
        \\quad
        OW = \\left\\lfloor \\frac{W + 2P - FW}{S} \\right\\rfloor + 1

    Computed as one matrix product of the im2col matrix (patches as rows)
    with the flattened filters; ``dx`` is the col2im fold of
    ``dout @ W_col.T``, which sums the gradient of overlapping patches.
    Positions that no filter reaches (when ``S`` does not divide
    ``H + 2P - FH``) get zero gradient, as in PyTorch. The layer behaves the
    same in train and eval mode.

    Examples
    --------
    >>> import numpy as np
    >>> conv = Convolution(np.ones((1, 1, 2, 2)), np.zeros(1))
    >>> conv.forward(np.arange(9.0).reshape(1, 1, 3, 3))
    array([[[[ 8., 12.],
             [20., 24.]]]])
    >>> conv.backward(np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """

    def __init__(self, W, b, stride=1, pad=0):
        if int(stride) != stride or stride < 1:
            raise ValueError(f"Convolution: stride must be a positive int, got {stride!r}")
        if int(pad) != pad or pad < 0:
            raise ValueError(f"Convolution: pad must be a non-negative int, got {pad!r}")
        self.W = W
        self.b = b
        self.stride = int(stride)
        self.pad = int(pad)
        self.x_shape = None
        self.col = None
        self.col_W = None
        self.dW = None
        self.db = None

    def forward(self, x):
        """Convolve ``x`` with the filters.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)

        Returns
        -------
        out : ndarray of shape (N, F, OH, OW)
        """
        F, C, FH, FW = self.W.shape
        if x.ndim != 4 or x.shape[1] != C:
            raise ValueError(
                f"Convolution: x must have shape (N, {C}, H, W) for W of shape "
                f"{self.W.shape}, got {x.shape}"
            )
        N, _, H, W = x.shape
        out_h = output_size(H, FH, self.stride, self.pad)
        out_w = output_size(W, FW, self.stride, self.pad)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"Convolution: a {FH}x{FW} filter with pad={self.pad} does not fit "
                f"the input of shape {x.shape}"
            )
        self.x_shape = x.shape
        self.col = im2col(x, FH, FW, self.stride, self.pad)
        self.col_W = self.W.reshape(F, -1).T
        out = self.col @ self.col_W + self.b
        return out.reshape(N, out_h, out_w, F).transpose(0, 3, 1, 2)

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``.

        Parameters
        ----------
        dout : ndarray of shape (N, F, OH, OW)

        Returns
        -------
        dx : ndarray of shape (N, C, H, W)
            Also stores ``self.dW`` and ``self.db``.
        """
        F, C, FH, FW = self.W.shape
        dout2 = dout.transpose(0, 2, 3, 1).reshape(-1, F)
        self.db = np.sum(dout2, axis=0)
        self.dW = (self.col.T @ dout2).T.reshape(F, C, FH, FW)
        dcol = dout2 @ self.col_W.T
        return col2im(dcol, self.x_shape, FH, FW, self.stride, self.pad)
