"""Wrong backwards made from correct layers: what a check must catch, for measuring it.

The detection table of ``benchmarks/bench_detection.py`` and the tests of the
stated resolutions (``tests/test_verdicts.py``) inject one error of known size
into a correct layer's ``dx`` and ask whether the check FAILs.
"""

import copy
import functools

import numpy as np

__all__ = ["wrong_element"]


def wrong_element(layer, k, delta, dout0):
    """A copy of ``layer`` whose ``dx`` is off by ``delta`` in flat element ``k`` at ``dout0``.

    The error is linear in ``dout`` (``delta * <dout, dout0> / <dout0, dout0>``), as a
    wrong backward's is: a rank-one error in the Jacobian, the same at every ``dout``
    a strategy calls ``backward`` with (a probe along another upstream gradient sees it
    scaled).

    Parameters
    ----------
    layer : object
        A book-style layer (``forward(x, ...)``, ``backward(dout) -> dx``); not modified.
    k : int
        Flat index of the wrong element of ``dx``.
    delta : float
        Its error at ``dout = dout0``.
    dout0 : ndarray, shape of the layer's output
        The check's upstream gradient.

    Returns
    -------
    object
        A shallow copy of ``layer`` (its arrays shared) of a subclass overriding
        ``backward``.
    """
    base = type(layer)
    u = np.asarray(dout0, np.float64) / float(np.sum(np.square(dout0)))

    @functools.wraps(base.backward)
    def backward(self, dout=1.0):
        dx = np.array(base.backward(self, dout), dtype=np.float64)
        dx.flat[k] += delta * float(np.sum(np.asarray(dout, np.float64) * u))
        return dx

    bad = copy.copy(layer)
    bad.__class__ = type(f"Wrong{base.__name__}", (base,), {"backward": backward})
    return bad
