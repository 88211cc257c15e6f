"""Batch normalisation in the style of "Deep Learning from Scratch".

The seed's convention: 2D input ``(N, D)`` normalises each of the ``D``
features over the batch; 4D input ``(N, C, H, W)`` is flattened to
``(N, C*H*W)`` first, so every (channel, row, column) position is a feature of
its own.
"""

import numpy as np

__all__ = ["BatchNormalization"]

#: The variance floor of the seed (``10e-7``), in the forward and backward pass.
BN_EPS = 1e-6


class BatchNormalization:
    """Batch normalisation over axis 0, the seed's flattened convention.

    Parameters
    ----------
    gamma : ndarray of shape (D,)
        Scale. For 4D input ``(N, C, H, W)``, ``D = C*H*W``.
    beta : ndarray of shape (D,)
        Shift.
    momentum : float, default 0.9
        Weight of the *old* running statistic in the update
        ``running = momentum * running + (1 - momentum) * batch``.
        PyTorch's ``momentum`` is the weight of the *new* batch statistic, so
        the seed's ``0.9`` is PyTorch's ``0.1``.
    running_mean, running_var : ndarray of shape (D,) or None
        Running statistics used in eval mode. ``None`` creates zeros of length
        ``D`` (in the input's dtype) on the first ``forward`` call.

    Attributes
    ----------
    dgamma, dbeta : ndarray of shape (D,) or None
        Parameter gradients, stored by :meth:`backward`.

    Notes
    -----
    Train mode (``train_flg=True``), for ``x`` of shape ``(N, D)``:

    .. math::

        \\mu = \\frac1N \\sum_n x_n, \\quad
        \\sigma^2 = \\frac1N \\sum_n (x_n - \\mu)^2, \\quad
        \\hat x = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}, \\quad
        y = \\gamma \\hat x + \\beta

    with :math:`\\epsilon = 10^{-6}`; the running statistics are updated with
    the *biased* batch variance :math:`\\sigma^2`, as the seed does. PyTorch's
    ``BatchNorm1d`` updates ``running_var`` with the unbiased variance
    :math:`\\frac{N}{N-1}\\sigma^2` instead.

    Eval mode (``train_flg=False``) normalises with the running statistics,
    :math:`\\hat x = (x - m) / \\sqrt{v + \\epsilon}`, an affine function of
    ``x``; its backward is the true gradient of that function:
    ``dx = gamma * dout / sqrt(v + eps)``, ``dgamma = sum(xhat * dout)``,
    ``dbeta = sum(dout)``. (The seed's class reuses the intermediates of the
    last train-mode forward here, which is wrong.)

    References
    ----------
    .. [1] S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep
       Network Training by Reducing Internal Covariate Shift", ICML 2015.
    .. [2] K. Saito, "Deep Learning from Scratch", O'Reilly Japan, 2016,
       ``common/layers.py``.

    Examples
    --------
    >>> import numpy as np
    >>> bn = BatchNormalization(np.ones(3), np.zeros(3))
    >>> out = bn.forward(np.arange(6.0).reshape(2, 3))
    >>> np.round(out, 3)
    array([[-1., -1., -1.],
           [ 1.,  1.,  1.]])
    """

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        # intermediates kept by forward for backward
        self.train_flg = None
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x, train_flg=True):
        """Normalise ``x``.

        Parameters
        ----------
        x : ndarray of shape (N, D) or (N, C, H, W)
        train_flg : bool, default True
            ``True`` normalises with the batch statistics and updates the
            running statistics; ``False`` normalises with the running ones.

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        self.input_shape = x.shape
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        out = self._forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def _forward(self, x, train_flg):
        if self.running_mean is None:
            D = x.shape[1]
            self.running_mean = np.zeros(D, dtype=x.dtype)
            self.running_var = np.zeros(D, dtype=x.dtype)

        self.train_flg = bool(train_flg)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + BN_EPS)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            std = np.sqrt(self.running_var + BN_EPS)
            xn = xc / std
            self.batch_size = x.shape[0]
        self.xc = xc
        self.xn = xn
        self.std = std
        return self.gamma * xn + self.beta

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``.

        Parameters
        ----------
        dout : ndarray of the shape of the last ``forward`` output

        Returns
        -------
        dx : ndarray of the shape of the last ``forward`` input
            Also stores ``self.dgamma`` and ``self.dbeta`` (shape ``(D,)``).
        """
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        dx = self._backward(dout)
        return dx.reshape(*self.input_shape)

    def _backward(self, dout):
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        if not self.train_flg:
            return dxn / self.std
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        return dxc - dmu / self.batch_size
