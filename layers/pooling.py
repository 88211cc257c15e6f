"""2D max and average pooling through im2col."""

import numpy as np

from ._im2col import col2im, im2col, output_size

__all__ = ["Pooling"]

_MODES = ("max", "avg")


class Pooling:
    """2D pooling over ``pool_h x pool_w`` windows, per channel.

    Parameters
    ----------
    pool_h, pool_w : int
        Window size.
    stride : int, default 1
        Step between windows. (The book's ``Pooling`` also defaults to 1;
        PyTorch's default is the window size.)
    pad : int, default 0
        Padding on each side of both spatial axes, at most half the window
        (``pad <= pool_h // 2`` and ``pad <= pool_w // 2``, as in PyTorch).
        Max pooling pads with ``-inf`` (padding is never the maximum), average
        pooling with zeros that count in the mean.
    mode : {"max", "avg"}, default "max"

    Attributes
    ----------
    arg_max : ndarray of int of shape (N*OH*OW*C,) or None
        Position of the maximum in each window (``mode="max"``).

    Notes
    -----
    For ``x`` of shape ``(N, C, H, W)`` padded by ``P`` to :math:`\\tilde x`,
    with stride ``S``, window :math:`R_{ij} = \\{(Si+u, Sj+v) : 0 \\le u <
    \\text{pool\\_h}, 0 \\le v < \\text{pool\\_w}\\}` and output size
    :math:`OH = \\lfloor (H + 2P - \\text{pool\\_h}) / S \\rfloor + 1`
    (likewise ``OW``):

    .. math::

        y^{\\max}_{ncij} = \\max_{(p,q) \\in R_{ij}} \\tilde x_{ncpq},
        \\qquad
        y^{\\text{avg}}_{ncij} = \\frac{1}{\\text{pool\\_h}\\,\\text{pool\\_w}}
            \\sum_{(p,q) \\in R_{ij}} \\tilde x_{ncpq}

    Max pooling routes each window's gradient to its arg-max, the *first* one
    (in row-major window order) on ties; it is not differentiable where two
    elements of a window tie, so checks should use distinct values. Average
    pooling matches PyTorch's ``avg_pool2d(..., count_include_pad=True)``.
    Gradients of overlapping windows add up. The layer behaves the same in
    train and eval mode.

    Examples
    --------
    >>> import numpy as np
    >>> pool = Pooling(2, 2, stride=2)
    >>> x = np.array([[[[1.0, 2.0], [4.0, 3.0]]]])
    >>> pool.forward(x)
    array([[[[4.]]]])
    >>> pool.backward(np.array([[[[5.0]]]]))
    array([[[[0., 0.],
             [5., 0.]]]])
    >>> Pooling(2, 2, stride=2, mode="avg").forward(x)
    array([[[[2.5]]]])
    """

    def __init__(self, pool_h, pool_w, stride=1, pad=0, mode="max"):
        if mode not in _MODES:
            raise ValueError(f"Pooling: mode must be one of {_MODES}, got {mode!r}")
        for name, value, low in (("pool_h", pool_h, 1), ("pool_w", pool_w, 1),
                                 ("stride", stride, 1), ("pad", pad, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"Pooling: {name} must be an int >= {low}, got {value!r}")
        if pad > pool_h // 2 or pad > pool_w // 2:
            raise ValueError(
                f"Pooling: pad must be at most half the window ({pool_h}x{pool_w}), got {pad}"
            )
        self.pool_h = int(pool_h)
        self.pool_w = int(pool_w)
        self.stride = int(stride)
        self.pad = int(pad)
        self.mode = mode
        self.x_shape = None
        self.arg_max = None

    def forward(self, x):
        """Pool ``x``.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)

        Returns
        -------
        out : ndarray of shape (N, C, OH, OW)
        """
        if x.ndim != 4:
            raise ValueError(f"Pooling: x must have shape (N, C, H, W), got {x.shape}")
        N, C, H, W = x.shape
        out_h = output_size(H, self.pool_h, self.stride, self.pad)
        out_w = output_size(W, self.pool_w, self.stride, self.pad)
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"Pooling: a {self.pool_h}x{self.pool_w} window does not fit the input {x.shape}"
            )
        fill = -np.inf if self.mode == "max" else 0.0
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad, fill=fill)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        self.x_shape = x.shape
        if self.mode == "max":
            self.arg_max = np.argmax(col, axis=1)
            out = col[np.arange(col.shape[0]), self.arg_max]
        else:
            self.arg_max = None
            out = np.mean(col, axis=1)
        return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``.

        Parameters
        ----------
        dout : ndarray of shape (N, C, OH, OW)

        Returns
        -------
        dx : ndarray of shape (N, C, H, W)
        """
        size = self.pool_h * self.pool_w
        flat = dout.transpose(0, 2, 3, 1).reshape(-1)
        if self.mode == "max":
            dcol = np.zeros((flat.size, size), dtype=dout.dtype)
            dcol[np.arange(flat.size), self.arg_max] = flat
        else:
            dcol = np.repeat(flat[:, None] / size, size, axis=1)
        dcol = dcol.reshape(dout.shape[0] * dout.shape[2] * dout.shape[3], -1)
        return col2im(dcol, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)
