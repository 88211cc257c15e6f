"""Per-channel batch normalisation, layer normalisation, group normalisation.

The seed's :class:`~layers.batchnorm.BatchNormalization` treats every
(channel, row, column) position of a 4D input as a feature of its own; the
layers here are the conventional ones of convolutional networks.
"""

import numpy as np

from .batchnorm import BatchNormalization

__all__ = ["SpatialBatchNormalization", "LayerNorm", "GroupNorm"]


class SpatialBatchNormalization(BatchNormalization):
    """Batch normalisation per channel, over the batch and spatial axes.

    Parameters
    ----------
    gamma : ndarray of shape (C,)
        Scale per channel.
    beta : ndarray of shape (C,)
        Shift per channel.
    momentum : float, default 0.9
        Weight of the *old* running statistic, as in the seed:
        ``running = momentum * running + (1 - momentum) * batch``. PyTorch's
        ``momentum`` is the weight of the new statistic: the seed's ``m`` is
        PyTorch's ``1 - m``.
    running_mean, running_var : ndarray of shape (C,) or None
        Running statistics used in eval mode; ``None`` creates zeros on the
        first ``forward`` call.

    Attributes
    ----------
    dgamma, dbeta : ndarray of shape (C,) or None
        Parameter gradients, stored by :meth:`backward`.

    Notes
    -----
    For ``x`` of shape ``(N, C, H, W)`` and each channel ``c``, with the
    :math:`M = NHW` values :math:`x_{n c h w}` of that channel:

    .. math::

        \\mu_c = \\frac1M \\sum_{n,h,w} x_{nchw}, \\quad
        \\sigma_c^2 = \\frac1M \\sum_{n,h,w} (x_{nchw} - \\mu_c)^2, \\quad
        y_{nchw} = \\gamma_c \\frac{x_{nchw} - \\mu_c}{\\sqrt{\\sigma_c^2 + \\epsilon}} + \\beta_c

    with :math:`\\epsilon = 10^{-6}` (the seed's). Train mode updates the
    running statistics with the *biased* variance :math:`\\sigma_c^2`, like the
    seed; PyTorch's ``BatchNorm2d`` uses the unbiased
    :math:`\\frac{M}{M-1}\\sigma_c^2`. Eval mode normalises with the running
    statistics, an affine map whose true gradient :meth:`backward` returns.
    2D input ``(N, C)`` is ordinary batch normalisation.

    Examples
    --------
    >>> import numpy as np
    >>> bn = SpatialBatchNormalization(np.ones(2), np.zeros(2))
    >>> x = np.arange(16.0).reshape(2, 2, 2, 2)
    >>> out = bn.forward(x)
    >>> np.round(out.mean(axis=(0, 2, 3)), 12) + 0.0
    array([0., 0.])
    >>> bn.backward(np.ones_like(x)).shape, bn.dgamma.shape
    ((2, 2, 2, 2), (2,))
    """

    def forward(self, x, train_flg=True):
        """Normalise ``x`` per channel.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W) or (N, C)
        train_flg : bool, default True
            ``True`` uses the batch statistics and updates the running ones;
            ``False`` uses the running statistics.

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        self.input_shape = x.shape
        x2 = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
        out = self._forward(x2, train_flg)
        return np.moveaxis(out.reshape(self._moved_shape()), -1, 1)

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``.

        Parameters
        ----------
        dout : ndarray of the shape of the last ``forward`` input

        Returns
        -------
        dx : ndarray of the shape of ``dout``
            Also stores ``self.dgamma`` and ``self.dbeta`` (shape ``(C,)``).
        """
        d2 = np.moveaxis(dout, 1, -1).reshape(-1, dout.shape[1])
        dx = self._backward(d2)
        return np.moveaxis(dx.reshape(self._moved_shape()), -1, 1)

    def _moved_shape(self):
        s = self.input_shape
        return (s[0],) + tuple(s[2:]) + (s[1],)


class LayerNorm:
    """Layer normalisation over all non-batch axes.

    Parameters
    ----------
    gamma : ndarray of shape (D_1, ..., D_k)
        Scale, the shape of one sample ``x.shape[1:]``.
    beta : ndarray of shape (D_1, ..., D_k)
        Shift.
    eps : float, default 1e-5
        Variance floor.

    Attributes
    ----------
    dgamma, dbeta : ndarray of shape (D_1, ..., D_k) or None
        Parameter gradients, stored by :meth:`backward`.

    Notes
    -----
    For each sample :math:`x_n` with :math:`D = D_1 \\cdots D_k` elements:

    .. math::

        \\mu_n = \\frac1D \\sum_i x_{ni}, \\quad
        \\sigma_n^2 = \\frac1D \\sum_i (x_{ni} - \\mu_n)^2, \\quad
        \\hat x_{ni} = \\frac{x_{ni} - \\mu_n}{\\sqrt{\\sigma_n^2 + \\epsilon}}, \\quad
        y_{ni} = \\gamma_i \\hat x_{ni} + \\beta_i

    and, with :math:`g = \\gamma \\odot \\partial L / \\partial y`,
    :math:`\\partial L / \\partial x_n = (g_n - \\overline{g_n} - \\hat x_n
    \\overline{g_n \\hat x_n}) / \\sqrt{\\sigma_n^2 + \\epsilon}` (bars are means
    over the sample). There are no running statistics: train and eval mode are
    the same. PyTorch's ``layer_norm(x, x.shape[1:], gamma, beta, eps)``
    computes the same.

    Examples
    --------
    >>> import numpy as np
    >>> ln = LayerNorm(np.ones(4), np.zeros(4))
    >>> out = ln.forward(np.array([[1.0, 2.0, 3.0, 4.0]]))
    >>> np.round(out, 4)
    array([[-1.3416, -0.4472,  0.4472,  1.3416]])
    """

    def __init__(self, gamma, beta, eps=1e-5):
        self.gamma = gamma
        self.beta = beta
        self.eps = eps
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x):
        """Normalise each sample of ``x``.

        Parameters
        ----------
        x : ndarray of shape (N, D_1, ..., D_k)

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        if x.shape[1:] != np.shape(self.gamma):
            raise ValueError(
                f"LayerNorm: gamma must have the shape of one sample {x.shape[1:]}, "
                f"got {np.shape(self.gamma)}"
            )
        axes = tuple(range(1, x.ndim))
        xc = x - np.mean(x, axis=axes, keepdims=True)
        self.std = np.sqrt(np.mean(xc**2, axis=axes, keepdims=True) + self.eps)
        self.xn = xc / self.std
        return self.gamma * self.xn + self.beta

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``; stores ``dgamma`` and ``dbeta``."""
        axes = tuple(range(1, dout.ndim))
        self.dbeta = np.sum(dout, axis=0)
        self.dgamma = np.sum(dout * self.xn, axis=0)
        g = dout * self.gamma
        return (g - np.mean(g, axis=axes, keepdims=True)
                - self.xn * np.mean(g * self.xn, axis=axes, keepdims=True)) / self.std


class GroupNorm:
    """Group normalisation: channels split into groups, normalised per sample.

    Parameters
    ----------
    num_groups : int
        Number of groups ``G``; must divide the number of channels ``C``.
    gamma : ndarray of shape (C,)
        Scale per channel.
    beta : ndarray of shape (C,)
        Shift per channel.
    eps : float, default 1e-5
        Variance floor.

    Attributes
    ----------
    dgamma, dbeta : ndarray of shape (C,) or None
        Parameter gradients, stored by :meth:`backward`.

    Notes
    -----
    For ``x`` of shape ``(N, C, H, W)`` (any number of trailing spatial axes,
    including none), each sample's channels are split into ``G`` consecutive
    groups of ``C/G`` channels. For group ``g`` of sample ``n`` with the
    :math:`M = (C/G) H W` values :math:`x_{ni}, i \\in g`:

    .. math::

        \\mu_{ng} = \\frac1M \\sum_{i \\in g} x_{ni}, \\quad
        \\sigma_{ng}^2 = \\frac1M \\sum_{i \\in g} (x_{ni} - \\mu_{ng})^2, \\quad
        y_{nchw} = \\gamma_c
            \\frac{x_{nchw} - \\mu_{ng}}{\\sqrt{\\sigma_{ng}^2 + \\epsilon}} + \\beta_c

    ``G = 1`` is layer normalisation with per-channel affine parameters,
    ``G = C`` is instance normalisation. Train and eval mode are the same.
    PyTorch's ``group_norm(x, G, gamma, beta, eps)`` computes the same.

    Examples
    --------
    >>> import numpy as np
    >>> gn = GroupNorm(2, np.ones(4), np.zeros(4))
    >>> out = gn.forward(np.arange(16.0).reshape(1, 4, 2, 2))
    >>> float(np.round(out[0, :2].mean(), 12)) + 0.0, out.shape
    (0.0, (1, 4, 2, 2))
    """

    def __init__(self, num_groups, gamma, beta, eps=1e-5):
        if int(num_groups) != num_groups or num_groups < 1:
            raise ValueError(f"GroupNorm: num_groups must be a positive int, got {num_groups!r}")
        self.num_groups = int(num_groups)
        self.gamma = gamma
        self.beta = beta
        self.eps = eps
        self.x_shape = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def _channel(self, a):
        """``a`` of shape (C,) broadcast against (N, C, *spatial)."""
        return np.reshape(a, (-1,) + (1,) * (len(self.x_shape) - 2))

    def forward(self, x):
        """Normalise each group of each sample of ``x``.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W) or (N, C, *spatial)

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        G = self.num_groups
        if x.ndim < 2 or x.shape[1] % G or np.shape(self.gamma) != (x.shape[1],):
            raise ValueError(
                f"GroupNorm: x must have shape (N, C, ...) with C divisible by "
                f"num_groups={G} and gamma of shape (C,); got x {x.shape}, "
                f"gamma {np.shape(self.gamma)}"
            )
        self.x_shape = x.shape
        xg = x.reshape(x.shape[0], G, -1)
        xc = xg - np.mean(xg, axis=2, keepdims=True)
        self.std = np.sqrt(np.mean(xc**2, axis=2, keepdims=True) + self.eps)
        self.xn = (xc / self.std).reshape(x.shape)
        return self._channel(self.gamma) * self.xn + self._channel(self.beta)

    def backward(self, dout):
        """Gradients of ``sum(out * dout)``; stores ``dgamma`` and ``dbeta``."""
        axes = (0,) + tuple(range(2, dout.ndim))
        self.dbeta = np.sum(dout, axis=axes)
        self.dgamma = np.sum(dout * self.xn, axis=axes)
        N = dout.shape[0]
        g = (dout * self._channel(self.gamma)).reshape(N, self.num_groups, -1)
        xn = self.xn.reshape(N, self.num_groups, -1)
        dx = (g - np.mean(g, axis=2, keepdims=True)
              - xn * np.mean(g * xn, axis=2, keepdims=True)) / self.std
        return dx.reshape(self.x_shape)
