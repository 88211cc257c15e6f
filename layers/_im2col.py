"""im2col / col2im: unfold image patches into rows and fold them back.

Private helpers of :mod:`layers.conv` and :mod:`layers.pooling`, after
"Deep Learning from Scratch", ``common/util.py``, keeping the input's dtype
(so complex or float32 inputs stay complex or float32) and a padding value.
"""

import numpy as np


def output_size(size, filter_size, stride, pad):
    """Spatial output size ``(size + 2*pad - filter_size) // stride + 1``."""
    return (size + 2 * pad - filter_size) // stride + 1


def im2col(x, filter_h, filter_w, stride=1, pad=0, fill=0.0):
    """Unfold the patches of ``x`` into rows.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    filter_h, filter_w : int
        Patch size.
    stride, pad : int
        Step between patches; zero-padding (value ``fill``) on each side.
    fill : float, default 0.0
        Value of the padding (``-inf`` for max pooling).

    Returns
    -------
    col : ndarray of shape (N*out_h*out_w, C*filter_h*filter_w)
        Rows ordered by ``(n, i, j)`` (``i``, ``j`` output positions), columns
        by ``(c, u, v)`` (``u``, ``v`` offsets in the patch).
    """
    N, C, H, W = x.shape
    out_h = output_size(H, filter_h, stride, pad)
    out_w = output_size(W, filter_w, stride, pad)
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant", constant_values=fill)
    col = np.empty((N, C, filter_h, filter_w, out_h, out_w), dtype=img.dtype)
    for u in range(filter_h):
        u_max = u + stride * out_h
        for v in range(filter_w):
            v_max = v + stride * out_w
            col[:, :, u, v, :, :] = img[:, :, u:u_max:stride, v:v_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Fold rows back into an image, summing overlapping contributions.

    The adjoint of :func:`im2col`: ``sum(im2col(x) * col) == sum(x * col2im(col))``.

    Parameters
    ----------
    col : ndarray of shape (N*out_h*out_w, C*filter_h*filter_w)
    input_shape : tuple of int
        ``(N, C, H, W)`` of the image.
    filter_h, filter_w, stride, pad : int
        As for :func:`im2col`.

    Returns
    -------
    img : ndarray of shape (N, C, H, W)
        Contributions to the padding are dropped.
    """
    N, C, H, W = input_shape
    out_h = output_size(H, filter_h, stride, pad)
    out_w = output_size(W, filter_w, stride, pad)
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for u in range(filter_h):
        u_max = u + stride * out_h
        for v in range(filter_w):
            v_max = v + stride * out_w
            img[:, :, u:u_max:stride, v:v_max:stride] += col[:, :, u, v, :, :]
    return img[:, :, pad:H + pad, pad:W + pad]
