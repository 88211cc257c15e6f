"""Softmax followed by the mean cross-entropy loss."""

import numpy as np

__all__ = ["SoftmaxWithLoss", "softmax"]


def softmax(x):
    """Row-wise softmax of ``x`` of shape (N, C), shifted by the row maximum."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


class SoftmaxWithLoss:
    """Softmax and mean cross-entropy against fixed labels ``t``.

    Parameters
    ----------
    t : ndarray of shape (N,) of int, or of shape (N, C), or None
        Labels: class indices in ``[0, C)``, or one-hot rows (more generally,
        non-negative target weights per class, e.g. probabilities). May be set
        later through the attribute ``t``; it must be set before
        :meth:`forward`.

    Attributes
    ----------
    t : ndarray
        The labels (not a trainable parameter: there is no ``dt``).
    y : ndarray of shape (N, C) or None
        Softmax probabilities of the last :meth:`forward`.
    loss : ndarray of shape () or None
        The last loss.

    Notes
    -----
    For logits ``x`` of shape ``(N, C)`` and target rows :math:`t_n` (one-hot
    rows for index labels), with the log-sum-exp evaluated stably as
    :math:`\\operatorname{lse}(x_n) = m_n + \\log \\sum_c e^{x_{nc} - m_n}`,
    :math:`m_n = \\max_c x_{nc}`:

    .. math::

        L = -\\frac1N \\sum_n \\sum_c t_{nc}\\,\\bigl(x_{nc} - \\operatorname{lse}(x_n)\\bigr),
        \\qquad
        \\frac{\\partial L}{\\partial x_{nc}}
            = \\frac{g}{N}\\Bigl(y_{nc} \\sum_k t_{nk} - t_{nc}\\Bigr)

    with :math:`y = \\operatorname{softmax}(x)` and the upstream gradient
    :math:`g` (``dout``, a scalar). For one-hot rows :math:`\\sum_k t_{nk} = 1`
    and this is the book's ``(y - t) / N``. The loss is a scalar, returned as
    an ndarray of shape ``()``; ``dout`` is a scalar or an array of shape ``()``.
    The layer behaves the same in train and eval mode. PyTorch's
    ``torch.nn.functional.cross_entropy(x, t)`` (mean reduction) computes the
    same loss.

    Examples
    --------
    >>> import numpy as np
    >>> layer = SoftmaxWithLoss(np.array([0, 1]))
    >>> loss = layer.forward(np.zeros((2, 2)))
    >>> loss.shape, round(float(loss), 6)
    ((), 0.693147)
    >>> layer.backward()
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    """

    def __init__(self, t=None):
        self.t = t
        self.y = None
        self.loss = None
        self._onehot = None

    def _targets(self, x):
        """The labels as rows of target weights, shape (N, C)."""
        if self.t is None:
            raise ValueError("SoftmaxWithLoss: labels t are not set; pass t= or set layer.t")
        t = np.asarray(self.t)
        N, C = x.shape
        if t.ndim == 1:
            if t.shape[0] != N or not np.issubdtype(t.dtype, np.integer):
                raise ValueError(
                    f"SoftmaxWithLoss: index labels must be integers of shape ({N},), "
                    f"got dtype {t.dtype} and shape {t.shape}"
                )
            if t.size and (t.min() < 0 or t.max() >= C):
                raise ValueError(f"SoftmaxWithLoss: labels must lie in [0, {C}), got {t}")
            onehot = np.zeros((N, C), dtype=x.dtype)
            onehot[np.arange(N), t] = 1
            return onehot
        if t.shape != x.shape:
            raise ValueError(
                f"SoftmaxWithLoss: one-hot labels must have the shape of x {x.shape}, got {t.shape}"
            )
        return t

    def forward(self, x):
        """Mean cross-entropy of ``softmax(x)`` against ``t``.

        Parameters
        ----------
        x : ndarray of shape (N, C)
            Logits.

        Returns
        -------
        loss : ndarray of shape ()
        """
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss: x must have shape (N, C), got {x.shape}")
        t = self._targets(x)
        m = np.max(x, axis=1, keepdims=True)
        e = np.exp(x - m)
        s = np.sum(e, axis=1, keepdims=True)
        log_y = x - m - np.log(s)
        self.y = e / s
        self._onehot = t
        self.loss = np.asarray(-np.sum(t * log_y) / x.shape[0])
        return self.loss

    def backward(self, dout=1.0):
        """Gradient of ``dout * loss`` with respect to the logits.

        Parameters
        ----------
        dout : float or ndarray of shape (), default 1.0

        Returns
        -------
        dx : ndarray of shape (N, C)
        """
        t = self._onehot
        N = t.shape[0]
        return dout * (self.y * np.sum(t, axis=1, keepdims=True) - t) / N
