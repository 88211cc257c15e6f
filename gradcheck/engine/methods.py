"""The finite-difference methods: one record each.

A method evaluates ``L = sum(out * dout)`` at pairs of points ``x + a h`` and
``x + b h`` around each element (or along a direction) and combines the
reduced differences ``D_k = (L(x + a_k h) - L(x + b_k h)) / ((a_k - b_k) h)``
into one derivative:

==============  =====  ================  =========================================
method          order  pairs (a, b)      value and error estimate
==============  =====  ================  =========================================
``forward``     1      (1, 0)            ``D``; no estimate
``central``     2      (1, -1)           ``D``; no estimate
``central4``    4      (1, -1), (2, -2)  ``(4 D(h) - D(2h)) / 3``; no estimate
``richardson``  6      (c, -c), c = 1,   Richardson extrapolation [1]_ over
                       1/2, 1/4          ``h, h/2, h/4``; estimate ``|T6 - T4|``
==============  =====  ================  =========================================

(The complex step, ``Im L(x + ih) / h``, is its own strategy:
:mod:`gradcheck.engine.complex`.)

Every value is a linear combination ``sum_k w_k D_k``, so the rounding error
it inherits from noise of standard deviation ``sigma`` in each evaluation of
``L`` is ``gain * sigma / h`` with ``gain = sqrt(sum_k w_k**2 * 2 / (a_k -
b_k)**2)`` (:attr:`Method.gain`): the tolerances use it with the measured
noise (:mod:`gradcheck.engine.noise`).

References
----------
.. [1] L. F. Richardson, "The deferred approach to the limit", Phil. Trans.
   R. Soc. A 226 (1927); numdifftools' ``Richardson`` class.
"""

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["Method", "METHODS", "richardson", "get"]


def richardson(D, ratio=2.0, order=2):
    """Richardson extrapolation of central differences at steps ``h, h/r, h/r**2, ...``.

    Parameters
    ----------
    D : ndarray, shape (m, k)
        Column ``j`` holds the central difference at step ``h / ratio**j``;
        its error expands in even powers ``h**2, h**4, ...``.
    ratio : float
        Step ratio between columns.
    order : int
        Order of the leading error term (2 for central differences).

    Returns
    -------
    value : ndarray, shape (m,)
        The most extrapolated estimate.
    error : ndarray, shape (m,)
        ``|value - previous|``: the difference between the most extrapolated
        estimate and the best one of the order below, a (pessimistic)
        estimate of the truncation error of ``value`` [1]_. NaN for ``k == 1``.
    """
    T = np.array(D, dtype=np.float64)
    if T.shape[1] == 1:
        return T[:, 0], np.full(T.shape[0], np.nan)
    p = order
    while T.shape[1] > 1:
        prev = T[:, -1]
        f = ratio ** p
        T = (f * T[:, 1:] - T[:, :-1]) / (f - 1.0)
        p += 2
    return T[:, 0], np.abs(T[:, 0] - prev)


@dataclass(frozen=True)
class Method:
    """One finite-difference formula.

    Attributes
    ----------
    name : str
    order : int
        ``p``: the truncation error is ``O(h**p)``; the base step is
        ``eps**(1/(p+1))`` relative (:mod:`gradcheck.engine.steps`).
    pairs : tuple of (float, float)
        Offsets ``(a, b)`` in units of the step; ``b = 0`` is the
        unperturbed point (no forward call).
    estimates : bool
        Whether :meth:`combine` returns a truncation-error estimate.
    """

    name: str
    order: int
    pairs: tuple
    estimates: bool = False

    @property
    def calls(self):
        """Forward calls per element (``b = 0`` reuses the unperturbed output)."""
        return sum(1 + (b != 0) for _, b in self.pairs)

    @property
    def one_sided(self):
        """Whether no pair looks at ``x - h`` (every offset ``>= 0``: ``forward``).

        Such a method sees only the right-hand derivative: at a kink where the analytic
        value equals it (ReLU with ``relu'(0) = 1``, a max-pool backward that gives every
        tied element the whole ``dout``) nothing fails, so the other side is screened
        (:func:`gradcheck.engine.projection.left_screen`).
        """
        return all(a >= 0 and b >= 0 for a, b in self.pairs)

    @property
    def spans(self):
        """``a - b`` of every pair: the denominator of ``D_k`` in units of ``h``."""
        return tuple(a - b for a, b in self.pairs)

    def combine(self, D):
        """The derivative and its truncation-error estimate from the differences ``D``.

        Parameters
        ----------
        D : ndarray, shape (m, len(pairs))

        Returns
        -------
        value, estimate : ndarray of float64, shape (m,)
            ``estimate`` is NaN where the method has none.
        """
        D = np.asarray(D, dtype=np.float64)
        if self.name == "central4":
            return (4.0 * D[:, 0] - D[:, 1]) / 3.0, np.full(D.shape[0], np.nan)
        if self.name == "richardson":
            return richardson(D)
        return D[:, 0].copy(), np.full(D.shape[0], np.nan)

    @functools.cached_property
    def gain(self):
        """Rounding-error gain: ``std(value) = gain * sigma / h`` (see the module notes);
        computed once per method (a dozen numpy calls, asked at every comparison)."""
        k = len(self.pairs)
        w = self.combine(np.eye(k))[0]  # the value is linear in the D_k
        return float(np.sqrt(np.sum(w ** 2 * 2.0 / np.square(self.spans))))


#: Every method by name.
METHODS = {
    "forward": Method("forward", 1, ((1.0, 0.0),)),
    "central": Method("central", 2, ((1.0, -1.0),)),
    "central4": Method("central4", 4, ((1.0, -1.0), (2.0, -2.0))),
    "richardson": Method("richardson", 6, ((1.0, -1.0), (0.5, -0.5), (0.25, -0.25)),
                         estimates=True),
}


def get(name) -> Optional[Method]:
    """The :class:`Method` called ``name`` (``None`` for ``"complex"``)."""
    return METHODS.get(name)
