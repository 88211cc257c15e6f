"""Dropout with its own random generator."""

import numpy as np

__all__ = ["Dropout"]


class Dropout:
    """Randomly zero activations in train mode.

    Parameters
    ----------
    dropout_ratio : float, default 0.5
        Probability ``p`` that an element is dropped, ``0 <= p < 1``.
    seed : int or None, default 0
        Seed of the layer's generator ``self.rng``.
    scale : bool, default True
        ``True``: inverted dropout (scale the kept elements by ``1/(1-p)`` in
        train mode, identity in eval mode), as PyTorch does. ``False``: the
        book's variant (no scaling in train mode, multiply by ``1-p`` in eval
        mode).

    Attributes
    ----------
    rng : numpy.random.Generator
        Draws one mask per train-mode :meth:`forward` call.
    mask : ndarray of bool, of the shape of ``x``, or None
        Kept elements (``True``) of the last train-mode forward.

    Notes
    -----
    With a mask :math:`m \\in \\{0, 1\\}` drawn as :math:`m = [u > p]`,
    :math:`u \\sim U[0, 1)`, once per train-mode forward:

    ============  ==========================  =====================
    ``scale``     train                       eval
    ============  ==========================  =====================
    ``True``      :math:`y = m x / (1 - p)`   :math:`y = x`
    ``False``     :math:`y = m x`             :math:`y = (1 - p) x`
    ============  ==========================  =====================

    Both variants have the same expected train output as eval output. Each
    forward is linear in ``x``, and :meth:`backward` multiplies ``dout`` by the
    same factor (the mask of the last forward in train mode). A gradient check
    must replay the generator so every evaluation sees the same mask.

    Examples
    --------
    >>> import numpy as np
    >>> layer = Dropout(0.5, seed=0)
    >>> x = np.ones(6)
    >>> out = layer.forward(x)
    >>> sorted(set(out.tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    >>> layer.forward(x, train_flg=False)
    array([1., 1., 1., 1., 1., 1.])
    >>> Dropout(0.5, scale=False).forward(x, train_flg=False)
    array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    """

    def __init__(self, dropout_ratio=0.5, seed=0, scale=True):
        if not 0 <= dropout_ratio < 1:
            raise ValueError(
                f"Dropout: dropout_ratio must satisfy 0 <= p < 1, got {dropout_ratio!r}")
        self.dropout_ratio = dropout_ratio
        self.scale = bool(scale)
        self.rng = np.random.default_rng(seed)
        self.mask = None
        self._factor = None

    def forward(self, x, train_flg=True):
        """Apply dropout.

        Parameters
        ----------
        x : ndarray of any shape
        train_flg : bool, default True
            ``True`` draws a fresh mask; ``False`` applies the eval-mode scaling.

        Returns
        -------
        out : ndarray of the shape of ``x`` (a new array, also in eval mode)
        """
        p = self.dropout_ratio
        if train_flg:
            self.mask = self.rng.random(x.shape) > p
            self._factor = self.mask * (1.0 / (1.0 - p) if self.scale else 1.0)
        else:
            self.mask = None
            self._factor = 1.0 if self.scale else 1.0 - p
        return (x * self._factor).astype(x.dtype, copy=False)

    def backward(self, dout):
        """Gradient ``dout * factor`` (the mask of the last forward in train mode)."""
        return (dout * self._factor).astype(dout.dtype, copy=False)
