"""Element-wise activations: ReLU, logistic sigmoid, hyperbolic tangent.

All three behave the same in train and eval mode, so their ``forward`` takes
no ``train_flg``; none has parameters; none modifies ``x`` or ``dout``.
"""

import numpy as np

__all__ = ["Relu", "Sigmoid", "Tanh"]


class Relu:
    """Rectified linear unit ``out = max(x, 0)``.

    Attributes
    ----------
    mask : ndarray of bool, of the shape of ``x``, or None
        ``x <= 0`` from the last :meth:`forward`.

    Notes
    -----
    .. math::

        y = \\max(x, 0), \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\,[x > 0]

    At the kink ``x = 0`` the layer uses the subgradient 0 (as PyTorch does).
    Finite differences are meaningless within a step of the kink, so checks
    should sample ``|x|`` away from 0. Unlike the book's ``Relu``,
    :meth:`backward` returns a new array instead of zeroing ``dout`` in place.

    Examples
    --------
    >>> import numpy as np
    >>> relu = Relu()
    >>> relu.forward(np.array([-1.0, 0.5, 2.0]))
    array([0. , 0.5, 2. ])
    >>> relu.backward(np.array([10.0, 10.0, 10.0]))
    array([ 0., 10., 10.])
    """

    def __init__(self):
        self.mask = None

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : ndarray of any shape

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        self.mask = x <= 0
        return np.where(self.mask, 0.0, x).astype(x.dtype, copy=False)

    def backward(self, dout):
        """Gradient ``dout * (x > 0)``, a new array of the shape of ``dout``."""
        return np.where(self.mask, 0.0, dout).astype(dout.dtype, copy=False)


class Sigmoid:
    """Logistic sigmoid ``out = 1 / (1 + exp(-x))``.

    Attributes
    ----------
    out : ndarray of the shape of ``x``, or None
        Output of the last :meth:`forward`.

    Notes
    -----
    .. math::

        y = \\sigma(x) = \\frac{1}{1 + e^{-x}}, \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\, y (1 - y)

    Evaluated without overflow as :math:`1/(1 + e^{-|x|})` for
    :math:`x \\ge 0` and :math:`e^{-|x|}/(1 + e^{-|x|})` for :math:`x < 0`.

    Examples
    --------
    >>> import numpy as np
    >>> s = Sigmoid()
    >>> s.forward(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    >>> s.backward(np.ones(3))
    array([0.  , 0.25, 0.  ])
    """

    def __init__(self):
        self.out = None

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : ndarray of any shape

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        z = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))
        return self.out

    def backward(self, dout):
        """Gradient ``dout * out * (1 - out)``, of the shape of ``dout``."""
        return dout * (1.0 - self.out) * self.out


class Tanh:
    """Hyperbolic tangent ``out = tanh(x)``.

    Attributes
    ----------
    out : ndarray of the shape of ``x``, or None
        Output of the last :meth:`forward`.

    Notes
    -----
    .. math::

        y = \\tanh x, \\qquad
        \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\,(1 - y^2)

    Examples
    --------
    >>> import numpy as np
    >>> t = Tanh()
    >>> t.forward(np.array([0.0]))
    array([0.])
    >>> t.backward(np.array([2.0]))
    array([2.])
    """

    def __init__(self):
        self.out = None

    def forward(self, x):
        """Apply the layer.

        Parameters
        ----------
        x : ndarray of any shape

        Returns
        -------
        out : ndarray of the shape of ``x``
        """
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        """Gradient ``dout * (1 - out**2)``, of the shape of ``dout``."""
        return dout * (1.0 - self.out**2)
