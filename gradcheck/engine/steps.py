"""Step sizes: from the measured noise, tuned by a measured curvature.

For a formula whose truncation error is ``O(h**p)`` and whose rounding error
is ``O(eps / h)``, the total error is smallest near ``h = eps**(1/(p+1))``
times the scale on which the function varies [1]_. Here ``eps`` is the
*measured* relative noise of the forward (:mod:`gradcheck.engine.noise`;
about ``1e-16`` for a layer that computes in float64, ``3e-8`` for one that
rounds through float32), and the scale starts as SciPy's ``max(1, |x_i|)``
[2]_, or for a target of magnitude far below 1 its own, ``max(|x_i|, rms(x))``
(:func:`element_scale`):

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

from gradcheck.engine.perturb import (Columns, DirectionMoves, ElementMoves, Reduce,
                                      differences)
from gradcheck.engine.tolerances import rms
from gradcheck.errors import LayerCallError

__all__ = ["relative_step", "element_scale", "element_steps", "tune", "Tuning",
           "keep_in_domain", "reach", "COMPLEX_STEP"]

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


def element_scale(values, local=True):
    """The scale each element's steps (and every probe of it) are taken relative to.

    ``max(|x_i|, rms(x))`` for a target of magnitude (RMS) below
    :data:`OWN_SCALE` (and ``local``), else SciPy's ``max(1, |x_i|)``. A
    target at ``1e-22`` is not on a unit scale: a step of ``1e-6`` there jumps
    far outside the region where ``log`` or ``1/x`` is what it is at ``x``,
    and moves ``x**2`` to outputs whose rounding dwarfs the noise measured at
    ``x``. Whether the target's own scale holds is
    measured (:func:`gradcheck.engine.noise.measure_noise`, ``local``): where
    most outputs do not even move at it (a bias of ``1e-35`` beside outputs of
    1), ``max(1, |x_i|)`` is used (``local=False``). An all-zero target has the
    unit scale.

    Parameters
    ----------
    values : ndarray
        The target (any shape, floating or complex dtype).
    local : bool
        False: ``max(1, |x_i|)``.

    Returns
    -------
    ndarray of float64, shape ``values.shape``
    """
    mag = np.abs(values).astype(np.float64)
    floor = rms(mag) if mag.size and local else 1.0
    return np.maximum(mag, floor if 0 < floor <= OWN_SCALE else 1.0)


#: A target is stepped on its own scale when its magnitude (RMS) is below this: far enough
#: below 1 that the unit scale can leave its local region (a factor the step tuning grows
#: or shrinks the steps by at once); between it and 1, ``max(1, |x_i|)`` as ever.
OWN_SCALE = 1.0 / 16.0


def element_steps(values, method, relative_noise, eps=None, local=True):
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
    local : bool
        :func:`element_scale`'s (the noise estimate's ``local``).

    Returns
    -------
    ndarray of float64, shape ``(values.size,)``
    """
    if eps is not None:
        return np.full(values.size, float(eps))
    return relative_step(method, relative_noise) * element_scale(values, local).reshape(-1)


@dataclass(frozen=True)
class Tuning:
    """What :func:`tune` measured for one target.

    Attributes
    ----------
    factor : float
        The steps were multiplied by this (1.0: the base steps were kept).
    absolute : float
        Truncation error of the method at the final steps, in the units of
        the gradient (median over the sample; an upper bound where it was
        below the noise).
    sample_scale : float
        RMS of the sampled elements' derivatives.
    measured : bool
        The median sampled element showed a truncation error above the noise.
    calls : int
    note : str
    """

    factor: float
    absolute: float
    sample_scale: float
    measured: bool
    calls: int
    note: str

    def relative(self, gradient):
        """The truncation error relative to the target's scale: ``max(rms(gradient),
        the sample's)`` (a sample of near-zero derivatives must not inflate it)."""
        from gradcheck.engine.tolerances import rms

        scale = max(rms(gradient), self.sample_scale)
        return self.absolute / scale if scale > 0 else 0.0


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


def tune(evaluate, arr, steps, method, noise, dout, out0, *, seed, name, adjust=True,
         sample=None, probe=None):
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
    sample : ndarray of int or None
        The elements measured (``None``: :data:`SAMPLE` random ones).
    probe : callable or None
        ``probe(evaluate, arr, sample, steps, method, noise, dout, out0) -> (v1, v2,
        sigma)``, the method's values at ``h`` and ``h/2`` on the sample and their noise;
        ``None``: one element at a time (the grouped strategy perturbs a whole group).

    Returns
    -------
    steps : ndarray of float64, shape (arr.size,)
    tuning : Tuning
    """
    rng = np.random.default_rng([seed, 6, zlib.crc32(name.encode())])
    if sample is None:
        sample = np.sort(rng.choice(arr.size, size=min(SAMPLE, arr.size), replace=False))
    unit = np.maximum(1.0, np.abs(arr.reshape(-1)[sample]).astype(np.float64))
    growth = MAX_RELATIVE_STEP * unit / steps[sample]
    least = float(np.max(MIN_ULPS * np.spacing(np.abs(arr.reshape(-1)[sample])).astype(
        np.float64) / steps[sample]))
    below_unit = float(np.min(unit / element_scale(arr, getattr(noise, "local", True))
                              .reshape(-1)[sample]))
    factor, calls, note, last, seen_before = 1.0, 0, "base steps kept", None, False
    for _ in range(MAX_PROBES):
        try:
            m = _measure(evaluate, arr, sample, steps * factor, method, noise, dout, out0,
                         probe or _probe)
        except LayerCallError as exc:
            if exc.intermittent:  # not the step's fault: never retried past
                raise
            if last is None:  # at the base steps already: keep them, the loop over the
                return steps, Tuning(1.0, 0.0, 0.0, False, calls,  # elements names it
                                     "base steps kept (forward failed on the sample)")
            break  # a changed step left forward's domain: keep the last one
        calls += 2 * method.calls * (1 if probe else len(sample))
        last = (factor, m)
        change = _next_factor(m, method, adjust, factor, float(np.min(growth)), seen_before,
                              (below_unit, method.gain * float(noise.relative) ** (
                                  method.order / (method.order + 1.0))), least)
        seen_before = seen_before or m["seen"]
        if change == 1.0:
            break
        factor *= change
        note = (f"steps x {factor:.2g}: " + (
            "the truncation error measured on a few random elements exceeded their rounding "
            "error at the base steps" if factor < 1 else
            "no truncation error was measurable on a few random elements, and the rounding "
            "error at the base steps was large"))
    factor, m = last
    return steps * factor, Tuning(factor, m["truncation"], m["scale"], m["seen"], calls, note)


#: Steps never grow beyond this times ``max(1, |x_i|)``.
MAX_RELATIVE_STEP = 1.0

#: The step tuning never shrinks a step below this many units in the last place of the
#: sampled elements (``np.spacing``; the domain screen and the refinement's own step
#: ladder may go further): where the noise measured at the point is far below the
#: rounding at the points a step reaches (batch statistics of a constant batch: outputs exactly 0
#: there), the rounding reads as truncation and the optimum seems ever smaller, until
#: ``x + h == x``.
MIN_ULPS = 1024.0

#: When no truncation error is measurable, the steps grow while the rounding error
#: (relative to the derivative) exceeds this: a rescue for a target whose resolution the
#: rounding alone would ruin (a bias added to outputs of 1e8), not a search for the optimum.
GROW_ABOVE = 1e-5


def _measure(evaluate, arr, sample, steps, method, noise, dout, out0, probe):
    """Truncation error, its detection floor and the rounding of the sample at ``steps``."""
    h = steps[sample]
    v1, v2, sigma = probe(evaluate, arr, sample, steps, method, noise, dout, out0)
    # a forward reading x_i rounds it once at least (x - mean: its cancellation): L moves
    # by about u |x_i dL/dx_i| whatever the noise measured at the point says (where the
    # outputs are exactly 0 there, a constant batch through batch norm, it says ~0)
    x = np.abs(arr.reshape(-1)[sample]).astype(np.float64)
    sigma = np.maximum(sigma, _unit_roundoff(arr) * x * np.abs(v1))
    p = method.order
    trunc = np.abs(v1 - v2) / (1.0 - 2.0 ** -p)
    floor = DETECTION * method.gain * sigma * np.sqrt(5.0) / h / (1.0 - 2.0 ** -p)
    seen = np.isfinite(trunc) & (trunc > floor)
    scale = rms(v1)
    return {"trunc": trunc, "seen_each": seen, "sigma": sigma, "h": h,
            "truncation": float(np.median(np.where(np.isfinite(trunc), trunc, floor))),
            "seen": bool(np.count_nonzero(seen) * 2 > len(seen)), "scale": scale,
            "rounding": float(np.median(method.gain * sigma / h)) / scale if scale > 0 else 0.0}


def _unit_roundoff(arr):
    kind = np.asarray(arr).dtype
    return float(np.finfo(kind if kind.kind in "fc" else np.float64).eps) / 2.0


def _next_factor(m, method, adjust, factor, max_growth, seen_before, local=(1.0, 0.0),
                 least=0.0):
    """The factor to change the steps by next (1.0: keep them).

    Measured truncation: towards the optimum, never below ``least`` (the factor that
    puts a sampled element's step at :data:`MIN_ULPS` of its spacing). None measurable:
    grow by 16 while the rounding error is large -- until a truncation error has been seen
    once (at the
    optimum the truncation is about half the rounding, below what can be measured).
    ``local = (below_unit, aim)``: below the unit scale (``factor < below_unit``: a
    target far smaller than 1, whose steps :func:`element_scale` took from its own
    magnitude), grow while the rounding exceeds ``aim`` (the base step's rounding on the
    unit scale: ``exp`` at ``1e-6`` varies on the scale of 1), at once as far as the
    rounding asks (it falls as ``1/h``), at most to the unit scale; there a sample whose
    outputs did not move at all (derivatives exactly 0: an affine layer with a bias of 1
    at ``x ~ 1e-22``) goes to the unit scale.
    """
    if not adjust:
        return 1.0
    p, gain = method.order, method.gain
    if m["seen"]:
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.where(m["seen_each"], (gain * m["sigma"] / (p * m["trunc"] * m["h"]))
                            ** (1.0 / (p + 1)), 1.0)
        change = float(np.median(best))
        if change * factor < least:  # below the floor: to the floor, and stop there
            return least / factor if least / factor < 0.7 or least / factor > 1.0 else 1.0
        if 0.7 <= change <= 1.4 or (factor > 1.0 and change > 1.0):
            return 1.0
        return float(np.clip(change, 1e-4, min(16.0, max_growth / factor)))
    below_unit, aim = local
    if factor < below_unit:
        rounding = m["rounding"] if m["scale"] > 0 else np.inf
        if seen_before or rounding <= aim:
            return 1.0
        return float(np.clip(rounding / max(aim, np.finfo(float).tiny), 16.0,
                             min(below_unit / factor, max_growth / factor)))
    if seen_before or m["rounding"] <= GROW_ABOVE or factor * 16.0 > max_growth:
        return 1.0
    return 16.0


#: Elements whose points ``x_i +- span h_i`` reach 0 (``span h_i`` at least this times
#: ``|x_i|``) are screened for forward's domain by :func:`keep_in_domain` before any check
#: (``log``, ``sqrt``, ``1/x`` end there); an edge elsewhere (``sqrt(x - 1)`` at ``x = 1 +
#: 1e-6``) is found when forward leaves its domain, and then every element is screened.
NEAR_EDGE = 1.0

#: Rounds of :func:`keep_in_domain`, each shrinking the offending steps by 16 at least: the
#: last reaches ``16**-8 ~ 2e-10`` of the step (an edge ``1e-12`` from ``x = 1`` under a
#: step of ``5e-3``), whatever the distance to the edge is.
SHRINKS = 8

#: Offending elements located one by one at most; beyond, every screened step shrinks.
LOCATED = 16


def reach(method):
    """How far, in steps, the check moves an element.

    Parameters
    ----------
    method : gradcheck.engine.methods.Method

    Returns
    -------
    float
        The method's widest point, at least the refinement's ``2h``.
    """
    return max(2.0, max(abs(a) for pair in method.pairs for a in pair))


def keep_in_domain(evaluate, arr, steps, out0, span, near=None):
    """Shrink the steps of elements whose points ``x_i +- span h_i`` leave forward's domain.

    ``log`` at ``x_i = 1e-9`` beside values of 1 gets a step of ``5e-6``: forward turns
    NaN there; ``sqrt(x - 1)`` at ``x_i = 1 + 1e-6`` too, an edge at an offset no
    magnitude shows. The elements ``near`` (by default those whose points come near 0,
    :data:`NEAR_EDGE`) are moved together by ``+- span h``; where that is not finite, the
    offending ones are located by bisection and their steps shrunk (by 16, and to
    ``|x_i| / (2 span)``), as measured, for :data:`SHRINKS` rounds. Steps that no
    shrinking keeps finite are left as they were (the check then names the element: a
    forward NaN at any step).

    Parameters
    ----------
    evaluate : callable
    arr : ndarray
        The target (moved in place, restored exactly).
    steps : ndarray of float64, shape (arr.size,)
    out0 : ndarray
    span : float
        :func:`reach` of the method.
    near : ndarray of int or None
        The elements screened (``None``: those whose points reach 0).

    Returns
    -------
    steps : ndarray of float64
    calls : int
    shrunk : int
        Elements whose steps were shrunk.
    """
    mag = np.abs(arr.reshape(-1)).astype(np.float64)
    if near is None:
        near = np.flatnonzero(span * steps > NEAR_EDGE * mag)
    if not near.size:
        return steps, 0, 0
    new, calls, bad = steps.copy(), 0, None
    for _ in range(SHRINKS):
        bad, c = _leaving(evaluate, arr, new, out0, span, near)
        calls += c
        if bad is None or not bad.size:
            break
        new[bad] = np.minimum(new[bad] / 16.0, mag[bad] / (2.0 * span))
    if bad is not None and bad.size:  # no shrinking helped: forward fails whatever the step
        new[bad] = steps[bad]
    shrunk = int(np.count_nonzero(new != steps))
    return new, calls, shrunk


def _leaving(evaluate, arr, steps, out0, span, near):
    """``(elements of near whose points leave the domain, calls)``; ``None``: not located."""
    calls = [0]

    def finite(which):
        w = np.zeros(arr.size)
        w[which] = span * steps[which]
        calls[0] += 2
        try:
            differences(evaluate, DirectionMoves(arr, w.reshape(arr.shape)[None]),
                        [(1.0, -1.0)], Columns(out0.size, 1, 1), out0)
        except LayerCallError:
            return False
        return True

    if finite(near):
        return np.zeros(0, int), calls[0]
    found, pending = [], [near]
    while pending:
        group = pending.pop()
        if len(group) == 1:
            found.append(int(group[0]))
            if len(found) > LOCATED:
                return near, calls[0]
            continue
        for half in (group[:len(group) // 2], group[len(group) // 2:]):
            if not finite(half):
                pending.append(half)
    return np.array(sorted(found), dtype=int), calls[0]
