"""Tolerances derived from the dtype, the method and the step.

With the optimal step ``h = eps**(1/(p+1))`` (see :mod:`gradcheck.engine.steps`),
the truncation error ``O(h**p)`` and the rounding error ``O(eps/h)`` of a
finite difference are both about ``eps**(p/(p+1))`` relative to the
gradient's scale, so the *nominal accuracy* of a method is

    nominal = 2 * eps**(p / (p + 1))

(float64: forward 3.0e-8, central 7.3e-11, central4 5.8e-13, richardson
8.6e-14; float32: central 4.8e-5). The unknown higher derivatives of the layer
and the conditioning of its forward pass are covered by a stated safety
factor ``SAFETY = 100``:

    rtol = SAFETY * nominal
    atol = rtol * max|numerical| + SAFETY * max(rounding, nominal * G)

where ``rounding = eps * ||out * dout||_2 / min(h)`` estimates the rounding
error of the reduced difference of two outputs, and ``G`` is the largest
analytic gradient over all targets of the check (a target whose true gradient
is zero -- a bias before a train-mode batch normalisation -- still carries
the rounding of the computation it shares with the others). An element passes when
``|numerical - analytic| <= atol + rtol * |numerical|`` (``numerical`` is
the reference, as in PyTorch's ``gradcheck``): ``atol`` scales with the size
of the whole gradient, since the elementwise relative error of a gradient with
tiny true entries is meaningless.
"""

import numpy as np

from gradcheck.engine.steps import ORDER, machine_eps

#: Safety factor between the nominal accuracy of a method and the tolerance.
SAFETY = 100.0

#: Weight of a method's own per-element truncation-error estimate in the
#: allowed difference (methods that extrapolate: central4, richardson).
ESTIMATE_WEIGHT = 3.0

#: A comparison whose worst element uses more than this fraction of the
#: tolerance (or fails by less than its inverse) is flagged as marginal.
MARGINAL = 0.3


def nominal_accuracy(method, dtype):
    """Relative accuracy ``2 eps**(p/(p+1))`` of ``method`` at its optimal step.

    The complex step has no cancellation: its accuracy is the forward's own
    rounding, ``4 eps``.
    """
    if method == "complex":
        return 4.0 * machine_eps(dtype)
    p = ORDER[method]
    return 2.0 * machine_eps(dtype) ** (p / (p + 1.0))


def derive(method, dtype, numerical, rounding, atol=None, rtol=None, scale=0.0):
    """Tolerances for one target and the reason for each.

    Parameters
    ----------
    method : str
    dtype : numpy dtype
        The dtype the forward pass computes in (the output's).
    numerical : ndarray of float64
        The numerical gradient of the target.
    rounding : float
        Absolute rounding-error estimate of the numerical gradient.
    atol, rtol : float or None
        Given by the caller (used as they are) or ``None`` (derived).
    scale : float
        The largest analytic gradient of the whole check (every target): the
        rounding of a target whose own gradient is (near) zero is that of the
        computation it shares with the others, at least ``nominal * scale``.

    Returns
    -------
    atol, rtol : float
    reason : str
    """
    nominal = nominal_accuracy(method, dtype)
    global_scale = scale
    scale = float(np.max(np.abs(numerical))) if numerical.size else 0.0
    name = np.dtype(dtype).name
    parts = []
    if rtol is None:
        rtol = SAFETY * nominal
        formula = ("4 eps" if method == "complex"
                   else f"2 eps^({ORDER[method]}/{ORDER[method] + 1})")
        parts.append(f"rtol = {SAFETY:g} x nominal accuracy of {method} in {name} "
                     f"({formula} = {nominal:.2g})")
    else:
        rtol = float(rtol)
        parts.append("rtol given by the caller")
    if atol is None:
        rounding = max(rounding, nominal * global_scale)
        atol = rtol * scale + SAFETY * rounding
        parts.append(f"atol = rtol x max|numerical| ({scale:.3g}) + {SAFETY:g} x rounding "
                     f"estimate ({rounding:.2g})")
    else:
        atol = float(atol)
        parts.append("atol given by the caller")
    return float(atol), float(rtol), "; ".join(parts)
