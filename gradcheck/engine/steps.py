"""Step sizes from the dtype and each element's magnitude.

For a formula whose truncation error is ``O(h**p)`` and whose rounding error
is ``O(eps / h)``, the total error is smallest near ``h = eps**(1/(p+1))``
times the scale on which the function varies [1]_. Without knowing that scale
we take the classic choice ``max(1, |x_i|)``, as SciPy's ``approx_derivative``
does [2]_:

=============  ===  =======================  ===============
method         p    base step                float64
=============  ===  =======================  ===============
forward        1    eps**(1/2)               1.5e-8
central        2    eps**(1/3)               6.1e-6
central4       4    eps**(1/5)               7.4e-4
richardson     6    eps**(1/7)               5.8e-3
=============  ===  =======================  ===============

References
----------
.. [1] W. H. Press et al., "Numerical Recipes", 3rd ed., section 5.7.
.. [2] scipy.optimize._numdiff._compute_absolute_step.
"""

import numpy as np

#: Order of the truncation error of each method (``O(h**p)``).
ORDER = {"forward": 1, "central": 2, "central4": 4, "richardson": 6}


def machine_eps(dtype):
    """Machine epsilon of a floating ``dtype`` (float16, float32, float64)."""
    return float(np.finfo(dtype).eps)


#: Complex step: no subtractive cancellation, so the step can be tiny [3]_.
COMPLEX_STEP = 1e-20


def base_step(method, dtype):
    """Relative step ``eps**(1/(p+1))`` for ``method`` in ``dtype`` (see module notes).

    For ``method="complex"``: :data:`COMPLEX_STEP`, whatever the dtype [3]_.

    References
    ----------
    .. [3] J. R. R. A. Martins, P. Sturdza, J. J. Alonso, "The complex-step
       derivative approximation", ACM TOMS 29 (2003).
    """
    if method == "complex":
        return COMPLEX_STEP
    return machine_eps(dtype) ** (1.0 / (ORDER[method] + 1))


def element_steps(values, method, eps=None):
    """Absolute step per element.

    Parameters
    ----------
    values : ndarray
        The target (any shape, floating dtype).
    method : str
        A key of :data:`ORDER`.
    eps : float or None
        ``None``: ``base_step(method, dtype) * max(1, |x_i|)``; a float: that
        absolute step for every element.

    Returns
    -------
    ndarray of float64, shape ``(values.size,)``
    """
    flat = np.abs(values.reshape(-1)).astype(np.float64)
    if eps is not None:
        return np.full(flat.shape, float(eps))
    return base_step(method, values.dtype) * np.maximum(1.0, flat)
