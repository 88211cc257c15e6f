"""Tolerances from the measured noise, the measured truncation and each target's own scale.

For item ``i`` of a target (an element, a Jacobian entry or a projection)
whose numerical derivative was taken with step ``h_i``, the allowed
difference between the numerical and the analytic value is

    allowed_i = atol_i + rtol * |numerical_i|

    atol_i = ROUNDING_SAFETY * gain * sigma_i / h_i          (rounding)
           + rtol * scale                                     (truncation)
           + ESTIMATE_WEIGHT * estimate_i                     (the method's own)
    rtol   = TRUNCATION_SAFETY * tau

* ``sigma_i`` is the measured noise of ``L`` over the outputs that item
  ``i``'s perturbation changed (:mod:`gradcheck.engine.noise`), ``gain`` the
  method's rounding gain (:mod:`gradcheck.engine.methods`): the first term is
  ``ROUNDING_SAFETY`` standard deviations of the rounding error.
* ``tau`` is the truncation error measured along a random direction of the
  target at the steps used, relative to the directional derivative's scale
  (:func:`gradcheck.engine.steps.tune`), never below the measured relative
  noise; ``scale`` is the RMS of the target's numerical gradient. Both are
  the target's own: a tolerance is never inflated by another target's size.
* ``estimate_i`` is the method's own truncation estimate, where it has one
  (``richardson``).

Items outside ``allowed_i`` are refined before any verdict
(:mod:`gradcheck.engine.verdict`), so these tolerances can be tight: a
correct element that fails them is recomputed, with an error estimate of its
own, at smaller steps. When the caller gives ``atol``/``rtol``, those are
used exactly: ``allowed_i = atol + rtol * |numerical_i|``.
"""

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Rule", "derive", "rules", "rms", "rounding_error", "analytic_floor", "direction_floor",
           "ROUNDING_SAFETY", "TRUNCATION_SAFETY", "ESTIMATE_WEIGHT", "MARGINAL"]

#: Standard deviations of the measured rounding error allowed.
ROUNDING_SAFETY = 6.0

#: Factor between the measured truncation error and its allowance.
TRUNCATION_SAFETY = 4.0

#: Weight of a method's own per-item truncation-error estimate.
ESTIMATE_WEIGHT = 3.0

#: A comparison whose worst item uses more than this fraction of the
#: tolerance (or fails by less than its inverse) is flagged as marginal.
MARGINAL = 0.3


@dataclass(frozen=True)
class Rule:
    """The tolerance rule of one target: the same for its first pass and its refinements.

    Attributes
    ----------
    rtol : float
    scale : float
        RMS of the target's numerical gradient (the truncation floor's scale).
    atol : float or None
        The caller's ``atol`` (used exactly), or ``None`` (derived per item).
    caller_rtol : bool
        ``rtol`` was given by the caller.
    reason : str
    floor : float
        The analytic gradient's own measured rounding (absolute, one standard
        deviation): ``ANALYTIC_SAFETY`` times it is added to every ``atol_i``.
    """

    rtol: float
    scale: float
    atol: object
    caller_rtol: bool
    reason: str
    floor: float = 0.0

    def apply(self, numerical, rounding, estimate=None):
        """``(atol_i, allowed_i)`` for items with these values and error estimates.

        Parameters
        ----------
        numerical : ndarray of float64, shape (m,)
        rounding : ndarray of float64, shape (m,)
            One standard deviation of each value's rounding error.
        estimate : ndarray of float64, shape (m,) or None
            The method's own truncation estimate (NaN: none).
        """
        numerical = np.asarray(numerical, dtype=np.float64)
        if self.atol is not None:
            atol_i = np.full(numerical.shape, float(self.atol))
        else:
            est = 0.0 if estimate is None else _nan_to_zero(estimate)
            atol_i = (ROUNDING_SAFETY * np.asarray(rounding) + self.rtol * self.scale
                      + ESTIMATE_WEIGHT * est + ROUNDING_SAFETY * self.floor)
        return atol_i, atol_i + self.rtol * np.abs(numerical)


def _nan_to_zero(values):
    """``np.nan_to_num(values, nan=0.0)``, without its work when every value is finite (the
    common case; a few microseconds at every judgement)."""
    values = np.asarray(values)
    finite = np.isfinite(values)
    if finite.all():
        return values
    if values.dtype.kind == "f" and not np.isinf(values).any():  # NaN only: no estimate
        return np.where(finite, values, values.dtype.type(0.0))
    return np.nan_to_num(values, nan=0.0)


def rms(values):
    """Root mean square of ``values``, overflow-safe.

    The ufuncs' reductions directly (bitwise ``np.mean(np.square(v / s))``), without the
    wrappers of ``np.max`` and ``np.mean``: a few microseconds, called a few times per
    target and verdict.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    s = float(np.abs(v).max()) if v.size else 0.0
    if s == 0.0 or not math.isfinite(s):
        return s
    w = v / s
    return s * math.sqrt(float(np.add.reduce(w * w)) / v.size)


def one_sided_allowance(sigma, h):
    """What a gap between two one-sided differences may be from rounding alone:
    ``ROUNDING_SAFETY * sqrt(2) * sigma / h`` (each side's rounding ``sigma / h``,
    independent). The one rule for telling a kink from noise (refinement, projections,
    tie groups).

    Parameters
    ----------
    sigma : float or ndarray
        Noise of the reduced output difference.
    h : float or ndarray
        The step (or the direction's scale).

    Returns
    -------
    float or ndarray
    """
    return ROUNDING_SAFETY * np.sqrt(2.0) * sigma / h


def in_hull(value, lower, upper, tol):
    """Where an analytic ``value`` at a kink lies within the hull of the one-sided
    derivatives ``[lower, upper]`` widened by ``tol`` on each side: the one test of a value
    at a kink (refinement, projection probes, tie-group partners).

    Parameters
    ----------
    value, lower, upper, tol : float or ndarray

    Returns
    -------
    bool or ndarray of bool
    """
    return (value >= lower - tol) & (value <= upper + tol)


def rounding_error(sigma, h, gain):
    """One standard deviation of a derivative's rounding error: ``gain * sigma / h``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(h) > 0, gain * np.asarray(sigma) / h, 0.0)


def derive(numerical, tau, atol=None, rtol=None, noise_relative=0.0, estimates=False,
           floor=0.0):
    """The :class:`Rule` of one target (see the module notes).

    Parameters
    ----------
    numerical : ndarray of float64, shape (m,)
        The target's numerical gradient (its RMS is the truncation scale).
    tau : float
        Measured relative truncation error at the steps used.
    atol, rtol : float or None
        Given by the caller (used exactly) or ``None`` (derived).
    noise_relative : float
        Measured relative noise of the forward: the floor of ``tau``.
    estimates : bool
        The method gives its own truncation estimate (said in the reason).
    floor : float
        The analytic gradient's measured rounding (:attr:`Rule.floor`).

    Returns
    -------
    Rule
    """
    tau = max(float(tau), float(noise_relative))
    scale = rms(numerical)
    parts = []
    caller_rtol = rtol is not None
    if rtol is None:
        rtol = TRUNCATION_SAFETY * tau
        parts.append(f"rtol = {TRUNCATION_SAFETY:g} x measured truncation ({tau:.2g} "
                     "relative)")
    else:
        parts.append("rtol given by the caller")
    if atol is None:
        parts.append(f"atol_i = {ROUNDING_SAFETY:g} x rounding_i (measured noise of the "
                     f"element's outputs x gain / step) + rtol x rms|numerical| ({scale:.3g})"
                     + (f" + {ESTIMATE_WEIGHT:g} x the method's own truncation estimate"
                        if estimates else ""))
    else:
        parts.append("atol given by the caller")
    if floor > 0 and atol is None:
        parts.append(f"+ {ROUNDING_SAFETY:g} x the analytic gradient's own rounding "
                     f"({floor:.2g}, measured: backward(c dout) / c - backward(dout))")
    return Rule(rtol=float(rtol), scale=scale, atol=None if atol is None else float(atol),
                caller_rtol=caller_rtol, reason="; ".join(parts), floor=float(floor))


def rules(numerical, tau, atol=None, rtol=None, noise_relative=0.0, estimates=False,
          floor=0.0):
    """``(applied, own)``: the rule the verdict applies (the caller's ``atol``/``rtol``
    where given) and the engine's own, the bound on the numerical error it reports."""
    own = derive(numerical, tau, None, None, noise_relative, estimates, floor)
    if atol is None and rtol is None:
        return own, own
    return derive(numerical, tau, atol, rtol, noise_relative, estimates, floor), own


#: ``backward(c dout) / c`` and ``backward(dout)`` differ by less than this (relative to the
#: gradient's scale) when backward is linear in dout and only rounding differs.
LINEAR_TO = 1e-3


def analytic_floor(measured, analytic, numerical):
    """The analytic gradient's rounding, from :meth:`Problem.analytic_noise`'s
    ``(level, linear)``, or 0 when the difference is no rounding but a backward that is
    not linear in dout (a terminal loss that ignores it, a clipped dout): then it must not
    loosen anything. Without a verdict on linearity (fewer than 4 elements), a level above
    ``LINEAR_TO`` of the gradient's scale (the larger RMS of analytic and numerical) is
    taken for non-linearity.
    """
    level, linear = measured
    if not np.isfinite(level) or linear is False:
        return 0.0
    if linear is None and level > LINEAR_TO * max(rms(analytic), rms(numerical)):
        return 0.0
    return float(level)


def direction_floor(floor, steps):
    """The analytic gradient's rounding along a direction that moves elements by ``steps``.

    Each element's analytic value rounds independently (``floor``, one standard
    deviation): along the direction, ``floor * ||steps||``, in the units of the
    directional derivative (a random projection, a tie group,
    :mod:`gradcheck.engine.ties`).

    Parameters
    ----------
    floor : float
    steps : ndarray of float64

    Returns
    -------
    float
    """
    steps = np.asarray(steps, dtype=np.float64)
    return float(floor) * rms(steps) * float(np.sqrt(steps.size))
