"""Step sizes: from the measured noise, tuned by a measured curvature.

For a formula whose truncation error is ``O(h**p)`` and whose rounding error
is ``O(eps / h)``, the total error is smallest near ``h = eps**(1/(p+1))``
times the scale on which the function varies [1]_. Here ``eps`` is the
*measured* relative noise of the forward (:mod:`gradcheck.engine.noise`;
about ``1e-16`` for a layer that computes in float64, ``3e-8`` for one that
rounds through float32), and the scale starts as ``max(1, |x_i|)``, SciPy's
choice [2]_:

=============  ===  =====================  ========================
method         p    base step              float64 (eps = 1.1e-16)
=============  ===  =====================  ========================
forward        1    eps**(1/2)             1.1e-8
central        2    eps**(1/3)             4.8e-6
central4       4    eps**(1/5)             6.7e-4
richardson     6    eps**(1/7)             5.2e-3
=============  ===  =====================  ========================

The scale is then *measured* (:func:`tune`): on a few random elements the
method is applied at the steps ``h`` and ``h/2``; their difference estimates
the truncation error ``c h**p``, and when it exceeds the noise the steps
shrink to the optimum ``h* = (gain sigma / (p c))**(1/(p+1))`` of Moré and
Wild [3]_ (a layer that varies on a scale of ``1e-6``, or an input of
magnitude ``1e-8`` under ``x**3``, gets steps far below ``max(1, |x|)``). The
truncation error measured at the final step is the truncation allowance of
the tolerances.

References
----------
.. [1] W. H. Press et al., "Numerical Recipes", 3rd ed., section 5.7.
.. [2] scipy.optimize._numdiff._compute_absolute_step.
.. [3] J. J. Moré and S. M. Wild, "Estimating derivatives of noisy
   simulations", ACM Trans. Math. Softw. 38(3) (2012).
"""

import zlib
from dataclasses import dataclass

import numpy as np

from gradcheck.engine.perturb import ElementMoves, Reduce, differences

__all__ = ["relative_step", "element_steps", "tune", "Tuning", "COMPLEX_STEP"]

#: Complex step: no subtractive cancellation, so the step can be tiny [4]_.
COMPLEX_STEP = 1e-20

#: Probes of :func:`tune` at most (each shrinks the steps to the measured optimum).
MAX_PROBES = 6

#: A truncation difference counts as measured above this many noise deviations.
DETECTION = 4.0


def relative_step(method, relative_noise):
    """Relative step ``eps**(1/(p+1))`` of ``method`` for the relative noise ``eps``.

    For ``method.name == "complex"``: :data:`COMPLEX_STEP` [4]_.

    References
    ----------
    .. [4] J. R. R. A. Martins, P. Sturdza, J. J. Alonso, "The complex-step
       derivative approximation", ACM TOMS 29 (2003).
    """
    if method is None:
        return COMPLEX_STEP
    return float(relative_noise) ** (1.0 / (method.order + 1))


def element_steps(values, method, relative_noise, eps=None):
    """Absolute step per element.

    Parameters
    ----------
    values : ndarray
        The target (any shape, floating dtype).
    method : gradcheck.engine.methods.Method or None
        ``None``: the complex step.
    relative_noise : float
        The measured relative noise of the forward.
    eps : float or None
        A float: that absolute step for every element (the caller's ``eps=``).

    Returns
    -------
    ndarray of float64, shape ``(values.size,)``
    """
    flat = np.abs(values.reshape(-1)).astype(np.float64)
    if eps is not None:
        return np.full(flat.shape, float(eps))
    return relative_step(method, relative_noise) * np.maximum(1.0, flat)


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune` measured for one target.

    Attributes
    ----------
    factor : float
        The steps were multiplied by this (1.0: the base steps were kept).
    relative : float
        Truncation error of the method at the final steps, relative to the
        gradient's scale on the sample (median over the sample; an upper
        bound where it was below the noise).
    measured : bool
        The median sampled element showed a truncation error above the noise.
    calls : int
    note : str
    """

    factor: float
    relative: float
    measured: bool
    calls: int
    note: str


#: Elements of a target whose truncation error is measured by :func:`tune`.
SAMPLE = 3


def _probe(evaluate, arr, sample, steps, method, noise, dout, out0):
    """The method at ``h`` and ``h/2`` on the sample: ``(v1, v2, sigma)`` per element."""
    pairs = list(method.pairs) + [(a / 2.0, b / 2.0) for a, b in method.pairs]
    sink = Reduce(dout, len(sample), len(pairs), noise_w=noise.weights)
    span = differences(evaluate, ElementMoves(arr, sample, steps), pairs, sink, out0)
    with np.errstate(divide="ignore", invalid="ignore"):
        D = np.where(span != 0, sink.R.real / span, 0.0)
    k = len(method.pairs)
    return (method.combine(D[:, :k])[0], method.combine(D[:, k:])[0],
            noise.of_support(sink.noise))


def tune(evaluate, arr, steps, method, noise, dout, out0, *, seed, name, adjust=True):
    """Shrink ``steps`` until the method's truncation error is no larger than its rounding.

    The truncation error ``c h**p`` is measured on a few random elements from
    the method's values at ``h`` and ``h/2``; when the median element shows
    it above the noise, every step shrinks by the median of the elements'
    optimal factors ``(gain sigma / (p c h))**(1/(p+1))`` (Moré and Wild)
    and the sample is measured again. A few elements at a kink or badly
    scaled (a constant feature) do not move the median: they are refined on
    their own (:mod:`gradcheck.engine.refine`).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(index) -> flat out`` for the target.
    arr : ndarray
        The target (perturbed in place, restored exactly).
    steps : ndarray of float64, shape (arr.size,)
        Base steps (:func:`element_steps`).
    method : gradcheck.engine.methods.Method
    noise : gradcheck.engine.noise.NoiseEstimate
    dout, out0 : ndarray, shape (n_out,)
    seed : int
    name : str
    adjust : bool
        False (the caller fixed the step): only measure the truncation.

    Returns
    -------
    steps : ndarray of float64, shape (arr.size,)
    tuning : Tuning
    """
    rng = np.random.default_rng([seed, 6, zlib.crc32(name.encode())])
    sample = np.sort(rng.choice(arr.size, size=min(SAMPLE, arr.size), replace=False))
    p, gain = method.order, method.gain
    factor, calls, note = 1.0, 0, "base steps kept"
    for _ in range(MAX_PROBES):
        h = steps[sample] * factor
        v1, v2, sigma = _probe(evaluate, arr, sample, steps * factor, method, noise, dout,
                               out0)
        calls += 2 * method.calls * len(sample)
        trunc = np.abs(v1 - v2) / (1.0 - 2.0 ** -p)
        floor = DETECTION * gain * sigma * np.sqrt(5.0) / h / (1.0 - 2.0 ** -p)
        seen = np.isfinite(trunc) & (trunc > floor)
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.where(seen, (gain * sigma / (p * trunc * h)) ** (1.0 / (p + 1)), 1.0)
        shrink = float(np.median(best))
        if shrink >= 0.7 or not adjust:
            break
        factor *= max(shrink, 1e-4)
        note = (f"steps x {factor:.2g}: the truncation error measured on {len(sample)} "
                "random elements exceeded their rounding error at the base steps")
    value = np.where(seen, trunc, floor)
    scale = float(np.sqrt(np.mean(np.square(v1)))) if np.any(v1) else 0.0
    relative = float(np.median(value)) / scale if scale > 0 else 0.0
    return steps * factor, Tuning(factor, relative, bool(np.median(seen)), calls, note)
