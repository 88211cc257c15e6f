"""The noise level of a layer's forward at the working point, measured.

A finite difference of ``L = sum(out * dout)`` divides the *noise* of ``L``
(rounding in every operation of the forward, in whatever precision the layer
really computes: a float32 cast inside a float64 layer shows up here) by the
step. The dtype of the output says little about it, so the engine measures
it: ``forward`` is evaluated at ``m + 1`` equally spaced points
``x + t delta w`` (``t = 0..m``) along a random direction ``w`` of the
target, and the noise is read off the difference table of the values by the
ECnoise estimator of Moré and Wild [1]_: the ``k``-th differences of a smooth
function vanish as ``delta**k`` while those of noise of standard deviation
``sigma`` have ``E[(Delta^k f)^2] = binom(2k, k) sigma**2``, so

    sigma_k = sqrt(gamma_k * mean((Delta^k f)^2)),   gamma_k = (k!)^2 / (2k)!

estimates ``sigma`` at the first level ``k`` where three consecutive
``sigma_k`` agree within a factor of 4 and the differences change sign. When
the values are too close together (more than half of the differences are
zero: ``delta`` too small) or the differences do not settle (``delta`` too
large for the smooth part to vanish), ``delta`` is changed by a factor of
100 and the table is measured again.

The values are output differences ``(out(x + t delta w) - out(x)) . dout``,
subtracted before the reduction exactly as the engine's differences are, so
the measured noise is that of what the engine computes. The same table, per
output element, gives each output's noise variance (:attr:`NoiseEstimate.
weights`): the noise of a perturbation that changes only some outputs (one
element of a batch-independent layer changes one row) is the sum over
those, not over the whole output.

References
----------
.. [1] J. J. Moré and S. M. Wild, "Estimating computational noise", SIAM J.
   Sci. Comput. 33(3), 1292-1314 (2011).
"""

import dataclasses
import functools
import math
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from gradcheck.engine.perturb import Columns, DirectionMoves, differences
from gradcheck.engine.steps import element_scale
from gradcheck.errors import LayerCallError

__all__ = ["NoiseEstimate", "ecnoise", "measure_noise"]

#: Points of one difference table beyond the unperturbed one (Moré and Wild
#: recommend at least 7 values in all).
POINTS = 7

#: First spacing, relative to each element's scale (:func:`gradcheck.engine.steps.
#: element_scale`; at least 16 ulps of the target's dtype): small, so that few elements
#: cross a kink within the table.
FIRST_SPACING = 1e-9

#: Tables measured at most (the spacing changes by 100 between them).
TRIES = 4

#: The spacing's jump after a table whose outputs mostly stayed put (quantised).
QUANTISED_JUMP = 1e4

#: The smallest believable relative noise, in units of the output dtype's
#: epsilon: rounding each output to nearest alone has a standard deviation
#: of about ``eps / 7`` relative.
RELATIVE_FLOOR = 1.0 / 8.0


def ecnoise(fval):
    """The ECnoise estimator [1]_ on values at equally spaced points.

    Parameters
    ----------
    fval : ndarray of float64, shape (nf,), nf >= 4

    Returns
    -------
    noise : float
        Estimated standard deviation of the noise (0.0 unless ``inform == 1``).
    level : int
        The order ``k`` of the differences the estimate comes from.
    inform : int
        1 noise detected; 2 the spacing is too small (half the differences
        are zero); 3 the spacing is too large (the differences do not settle).

    References
    ----------
    .. [1] J. J. Moré and S. M. Wild, "Estimating computational noise", SIAM
       J. Sci. Comput. 33(3) (2011), algorithm ECnoise.
    """
    f = np.array(fval, dtype=np.float64)
    nf = len(f)
    levels, signs = np.zeros(nf - 1), np.zeros(nf - 1, dtype=bool)
    gamma = 1.0
    for j in range(1, nf):
        f = np.diff(f)
        if j == 1 and np.count_nonzero(f == 0) >= nf / 2:
            return 0.0, 0, 2
        gamma *= 0.5 * j / (2.0 * j - 1.0)
        levels[j - 1] = np.sqrt(gamma * np.mean(f ** 2))
        signs[j - 1] = f.min() * f.max() < 0
    for k in range(nf - 3):
        window = levels[k:k + 3]
        if window.max() <= 4.0 * window.min() and signs[k]:
            return float(levels[k]), k + 1, 1
    return 0.0, 0, 3


#: An output whose noise variance exceeds the median output's by this factor (its size by
#: about 1e3) may hide a change below half its ulp (:meth:`NoiseEstimate.of_support`).
ANOMALOUS = 1e6


@dataclass(frozen=True)
class NoiseEstimate:
    """The measured noise of ``L = sum(out * dout)`` for perturbations of one target.

    Attributes
    ----------
    level : float
        Standard deviation of the noise of one evaluation of ``L``
        (absolute), for a perturbation of the whole target.
    weights : ndarray of float64, shape (n_out,)
        Per output element ``j``: its share of the noise variance of ``L``
        (they sum to 1): the noise of a perturbation that changes only the
        outputs ``S`` is ``level * sqrt(weights[S].sum())``.
    variance_std : ndarray of float64, shape (n_out,)
        Per output element: the standard deviation of its own noise (for
        Jacobian entries).
    relative : float
        ``level / ||out * dout||_2`` over the outputs the target moves: the
        relative precision the forward really computes in (about ``1e-16``
        for float64 arithmetic, ``1e-7`` when it rounds through float32).
    measured : bool
        False when no table showed noise; ``level`` is then the output dtype's
        rounding of ``L`` and ``note`` says so.
    calls : int
        Forward calls made.
    note : str
        How the level was obtained.
    local : bool
        The target's own scale holds (:func:`gradcheck.engine.steps.element_scale`):
        the table and the steps are taken relative to it.
    """

    level: float
    weights: np.ndarray
    variance_std: np.ndarray
    relative: float
    measured: bool
    calls: int
    note: str
    moved: Optional[np.ndarray] = None
    local: bool = True

    def of_support(self, share):
        """Noise of ``L`` for perturbations that changed outputs holding ``share`` of it.

        ``share`` is ``sqrt(weights[S].sum())`` per item (from
        :class:`~gradcheck.engine.perturb.Reduce`). A perturbation that
        changed no output at all was below the output's rounding: its
        derivative is known only to the noise of every output it might have
        moved, so it gets the whole level. The outputs far noisier than the
        typical one (:attr:`hidden_share`) always count: a change below half
        their ulp rounds away, so "unchanged" does not tell they do not
        depend on the element.
        """
        share = np.asarray(share, dtype=np.float64)
        return self.level * np.where(share > 0, np.sqrt(share ** 2 + self.hidden_share), 1.0)

    @functools.cached_property
    def hidden_share(self):
        """The noise weights of the outputs that did not move in the noise table although
        they are more than :data:`ANOMALOUS` times noisier (in variance) than the median
        output: an output 1e3 times the typical size whose change rounds away (``1e10 +
        1e-3 x``), at the table's spacing and so perhaps at an element's step. 0 for
        outputs of like magnitudes, and for large outputs that move (``exp`` of a wide
        range: each changes with its own element, and is in that element's support)."""
        w = np.asarray(self.weights, dtype=np.float64)
        live = w[w > 0]
        if live.size < 2 or self.moved is None:
            return 0.0
        big = (w > ANOMALOUS * float(np.median(live))) & ~np.asarray(self.moved, bool)
        return float(np.sum(w[big]))


def scaled_norm(a):
    """``||a||_2`` without overflow or underflow (scaled by the largest entry first)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    s = float(np.abs(a).max()) if a.size else 0.0
    if s == 0.0 or not math.isfinite(s):
        return s
    w = a / s
    return s * math.sqrt(float(np.add.reduce(w * w)))  # bitwise np.sum(np.square(w))


def _table_level(U, k):
    """Per row of ``U`` (values at t = 1..m, t = 0 being 0): ``sqrt(gamma_k mean(Delta^k)^2)``."""
    table = np.diff(np.concatenate([np.zeros((U.shape[0], 1)), U], axis=1), n=k, axis=1)
    gamma = 1.0
    for j in range(1, k + 1):
        gamma *= 0.5 * j / (2.0 * j - 1.0)
    s = np.max(np.abs(table), axis=1, keepdims=True)
    s[s == 0] = 1.0
    return s[:, 0] * np.sqrt(gamma * np.mean(np.square(table / s), axis=1))


def _one_table(evaluate, arr, out0, d, w, delta):
    """Output differences at ``x + t delta w``, t = 1..POINTS: shape (n_out, POINTS)."""
    sink = Columns(out0.size, 1, POINTS)
    differences(evaluate, DirectionMoves(arr, (delta * w)[None]),
                [(float(t), 0.0) for t in range(1, POINTS + 1)], sink, out0)
    return sink.C[:, 0, :]


def _scalar_values(U):
    """``sum_j U[j, t]`` per point, with ``f(0) = 0`` first, summed without overflow."""
    s = float(np.max(np.abs(U), initial=0.0))
    if s == 0.0:
        return np.zeros(U.shape[1] + 1), 1.0
    return np.concatenate([[0.0], (U / s).sum(axis=0)]), s


def measure_noise(evaluate, arr, out0, dout, *, seed, name, out_eps):
    """Measure the noise of ``L`` for perturbations of one target (see the module notes).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(index) -> flat out`` for the target (restores per-call state).
    arr : ndarray
        The target, perturbed in place and restored exactly.
    out0, dout : ndarray, shape (n_out,)
        Unperturbed output and upstream gradient (flat).
    seed : int
    name : str
        The target's name (seeds its direction).
    out_eps : float
        Machine epsilon of the output dtype: the floor of the relative noise,
        and the fallback when no table shows noise.

    Returns
    -------
    NoiseEstimate
    """
    rng = np.random.default_rng([seed, 5, zlib.crc32(name.encode())])
    sign = rng.choice([-1.0, 1.0], size=arr.shape)
    delta = max(FIRST_SPACING, 16.0 * float(np.finfo(arr.dtype).eps))
    local = _own_scale_holds(evaluate, arr, out0, sign, delta)
    est = _tables(evaluate, arr, out0, dout, sign * element_scale(arr, local is not False),
                  delta, out_eps)
    return dataclasses.replace(est, local=local is not False, calls=est.calls + (0 if local is None else 2),
                               note=est.note + ("" if local is not False else (
                                   "; on the unit scale max(1, |x|): at the target's own "
                                   "scale most outputs did not move")))


def _own_scale_holds(evaluate, arr, out0, sign, delta):
    """Whether the target's own scale (below 1) moves as many outputs as the unit scale.

    ``None`` (no calls) where the two scales are the same (a target of magnitude above
    :data:`gradcheck.engine.steps.OWN_SCALE`); else one forward call at each:
    fewer than half the outputs moving at the own scale (a bias of ``1e-35`` beside
    outputs of 1) is False; a unit-scale point outside forward's domain is True.
    """
    own, unit = element_scale(arr), element_scale(arr, local=False)
    if np.array_equal(own, unit):
        return None
    moved = []
    for scale in (own, unit):
        sink = Columns(out0.size, 1, 1)
        try:
            differences(evaluate, DirectionMoves(arr, (delta * sign * scale)[None]),
                        [(1.0, 0.0)], sink, out0)
        except LayerCallError:
            return True
        moved.append(np.count_nonzero(sink.C[:, 0, 0]))
    return bool(2 * moved[0] >= moved[1])


def _tables(evaluate, arr, out0, dout, w, delta, out_eps):
    """The difference tables of :func:`measure_noise` along ``w`` from the spacing ``delta``."""
    d = np.asarray(dout, dtype=np.float64)
    terms = out0.astype(np.float64) * d
    calls, tried, best, moved = 0, [], None, np.zeros(out0.size, bool)
    for _ in range(TRIES):
        tried.append(delta)
        calls += POINTS
        try:
            V = _one_table(evaluate, arr, out0, d, w, delta)
        except LayerCallError as exc:  # the table left forward's domain: spacing too large
            if exc.intermittent:  # not the spacing's fault: never retried past
                raise
            if best is not None:
                return best
            delta /= 100.0
            continue
        est, inform, moved = _try_table(V, d, terms, out0, out_eps, delta, calls)
        if inform == 1:
            if not _quantized(V):
                return est
            # most outputs did not move from point to point (a float32 cast inside the
            # layer): a spacing of some hundred of those steps sees their rounding, and
            # sees it independent from point to point (a spacing near one step leaves
            # neighbouring roundings correlated, and the table underestimates them)
            best = est
            delta *= QUANTISED_JUMP
            continue
        if best is not None:
            return best
        delta = delta / 100.0 if inform == 3 else delta * 100.0
    return best or _fallback(terms, out0, d, out_eps, calls, tried, moved)


def _try_table(V, d, terms, out0, out_eps, delta, calls):
    """``(estimate or None, inform, moved)`` of one difference table ``V`` (n_out, POINTS)."""
    U = V * d[:, None]
    moved = np.any(V != 0, axis=1)
    scale_L = scaled_norm(terms[moved]) if moved.any() else 0.0
    f, s = _scalar_values(U)
    size_L = float(np.sum(np.abs(terms[moved]))) if moved.any() else 0.0
    if size_L > 0 and s * float(np.max(np.abs(f))) > 0.1 * size_L:
        return None, 3, moved  # L changes by more than 10 %: spacing too large
    # (outputs that are all 0 at x, by cancellation: no 10 % to go by; ECnoise's own test
    # of the differences settling decides, or the noise of the terms that cancel is lost)
    sigma, k, inform = ecnoise(f)
    note = (f"measured (ECnoise, {POINTS + 1} points at spacing {delta:.0e} x the "
            f"element's scale, level {k})")
    # second differences at least: the first differences of a smooth output are its slope
    jumped = _jumped(U, max(k, 2), moved, terms) if inform == 1 else np.zeros(len(U), bool)
    if jumped.any():  # a kink inside the table: those outputs do not measure rounding
        f, s = _scalar_values(U[~jumped])
        sigma, k, inform = ecnoise(f)
        note = (f"measured (ECnoise, {POINTS + 1} points at spacing {delta:.0e} x the "
                f"element's scale, level {k}; {int(jumped.sum())} output(s) left out: their "
                "differences jumped inside the table, a kink)")
    if inform != 1:
        return None, inform, moved
    U = np.where(jumped[:, None], 0.0, U)
    return _estimate(sigma * s, np.where(jumped[:, None], 0.0, V), U, k, moved, scale_L,
                     out_eps, calls, note, out0, d), 1, moved


#: An output whose table level exceeds the median relative level by this factor jumped.
JUMP = 1e3


def _sizes(terms, U):
    """Each output's size over the table: ``|out0 dout| + max |U|`` (an output that is 0 at
    ``x``, as one at a ReLU's kink, but moves is not "all noise": its size is that of the
    values it takes)."""
    return np.abs(terms) + np.max(np.abs(U), axis=1)


def _typical(level, size, live):
    """The median relative level ``level / size`` of the ``live`` outputs."""
    return float(np.median(level[live] / size[live]))


def _jumped(U, k, moved, terms):
    """Outputs whose ``k``-th differences are far above the others' (relative to their size):
    a kink crossed inside the table, not rounding."""
    level = _table_level(U, k)
    size = _sizes(terms, U)
    live = moved & (size > 0)
    if np.count_nonzero(live) < 3:
        return np.zeros(len(U), bool)
    return live & (level > JUMP * max(_typical(level, size, live), np.finfo(float).tiny) * size)


def _quantized(V):
    """Whether most outputs that moved at all stayed put between most consecutive points
    (their rounding is coarser than the spacing: a float32 cast inside the layer)."""
    moved = np.any(V != 0, axis=1)
    if not moved.any():
        return False
    steps = np.diff(np.concatenate([np.zeros((V.shape[0], 1)), V], axis=1), axis=1)[moved]
    still = np.count_nonzero(steps == 0, axis=1) >= steps.shape[1] / 2
    return bool(np.count_nonzero(still) > len(steps) / 2)


def _half_ulp(out0):
    """Half an ulp of each output: the least rounding a changed output carries."""
    return 0.5 * np.spacing(np.abs(out0)).astype(np.float64)  # in the output's own dtype


def _estimate(level, V, U, k, moved, scale_L, out_eps, calls, note, out0, d):
    half = _half_ulp(out0)
    per_output = np.maximum(_table_level(U, k), half * np.abs(d))
    # one output's estimate rests on a few values and can be low by chance (by 3x and more
    # from 7 values; near zero for a quantised output moving in even steps): none gets
    # less than the median relative noise of the outputs that moved (:func:`_sizes`)
    sizes = _sizes(out0.astype(np.float64) * d, U)
    live = moved & (sizes > 0)
    if live.any():
        per_output = np.maximum(per_output, _typical(per_output, sizes, live) * sizes)
    total = scaled_norm(per_output)
    level = max(level, total)  # correlated rounding: the scalar may exceed the sum
    weights = np.square(per_output / total) if total > 0 else np.zeros(U.shape[0])
    relative = level / scale_L if scale_L > 0 else 0.0
    if relative < RELATIVE_FLOOR * out_eps:  # below the rounding of storing the output
        relative = RELATIVE_FLOOR * out_eps
        if scale_L > 0:  # outputs all 0 at x: the measured level is all there is
            level = relative * scale_L
            note += f"; raised to the rounding of the output dtype ({relative:.1e} relative)"
    std = np.maximum(_table_level(V, k), half)
    if live.any():
        mag = _sizes(out0.astype(np.float64), V)  # live: every mag > 0
        std = np.maximum(std, _typical(std, mag, live) * mag)
    return NoiseEstimate(level=float(level), weights=weights, variance_std=std,
                         relative=float(relative), measured=True, calls=calls, note=note,
                         moved=moved)


def _fallback(terms, out0, d, out_eps, calls, tried, moved):
    if not moved.any():
        note = ("not measurable: no output changed when the target moved (spacings "
                f"{tried[0]:.0e} to {tried[-1]:.0e}); assumed one rounding of the output dtype")
    else:
        note = (f"not detected in {len(tried)} tables (spacings {tried[0]:.0e} to "
                f"{tried[-1]:.0e}): assumed one rounding of the output dtype per element")
    std = np.maximum(out_eps * np.abs(out0.astype(np.float64)), _half_ulp(out0))
    per = std * np.abs(d)
    level = scaled_norm(per)
    weights = np.square(per / level) if level > 0 else np.full(per.size, 1.0 / per.size)
    return NoiseEstimate(level=float(level), weights=weights, variance_std=std,
                         relative=float(out_eps), measured=False, calls=calls, note=note)
