"""Refinement of items that failed their first tolerance: a step search, and kinks.

An item (an element, or a direction of the ``projection`` strategy) whose
first numerical value lies outside its tolerance is recomputed before any
verdict, the way numdifftools chooses a step [1]_: central differences
``D_k`` at the steps ``2h, h, h/2, h/8, h/32, ...`` (:func:`level_factor`),
extrapolated to ``h = 0`` over each three consecutive steps into ``T_k`` with
the estimate ``|T_k - T2_k|``, and the level with the smallest total error (that estimate plus the
rounding error measured at that step) gives the refined value. The search
stops when the estimate has stayed below the rounding error for two levels
(converged, or noise-dominated), or after :data:`LEVELS` levels.

The same evaluations give the one-sided differences ``D+_k`` and ``D-_k``
for free (the unperturbed output is known). At a smooth point their gap is
``|f''| h`` and halves with the step; across a kink (ReLU at 0, a max-pool
tie, ``abs``) it stays the jump in slope. An item still failing whose gap did
not halve over its last two levels, by more than the noise, sits at a kink.
There the analytic value must lie between the one-sided derivatives (plus
its tolerance) -- or, when several pieces meet at once (a value tied in two
overlapping max-pool windows), between the derivatives of the pieces found
at a few random points nearby [2]_.

References
----------
.. [1] P. A. Brodtkorb, numdifftools, ``Derivative`` with ``step='adaptive'``.
.. [2] F. H. Clarke, "Optimization and Nonsmooth Analysis", Wiley (1983),
   theorem 2.5.1: the generalized gradient is the convex hull of the limits
   of gradients at nearby differentiable points.
"""

from dataclasses import dataclass, field

import numpy as np

from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.engine.tolerances import ESTIMATE_WEIGHT, ROUNDING_SAFETY, one_sided_allowance

__all__ = ["Refined", "StepSearch", "search", "widen_nearby", "level_factor", "LEVELS",
           "RATIO", "FIRST_TRIPLE_GAIN", "REFINED_GAIN", "gap_seen", "at_kink"]

#: Ratio between the steps of consecutive levels.
RATIO = 4.0

#: Step levels tried at most (:func:`level_factor`: down to ``h / 1e6``).
LEVELS = 12

#: A gap that shrinks by less than this factor per level (``1/RATIO`` at a smooth point)
#: is a kink.
KINK_RATIO = 0.75

#: Nearby points sampled when the analytic value lies outside the one-sided hull.
NEARBY = 8

def level_factor(k):
    """The step of level ``k`` over the element's step ``h``: ``2, 1, 1/2``, then by
    ``RATIO`` (``1/8, 1/32, ...``). The first triple, around ``h``, amplifies rounding
    little (its extrapolation removes the truncation that made the element fail); the
    later ones reach small scales fast (a kink, a steep layer)."""
    return 2.0 ** (1 - k) if k <= 2 else 0.5 * RATIO ** -(k - 2)


def _weights(factors):
    """Weights of the extrapolation to ``h = 0`` of central differences at steps
    ``h * factors`` (error in even powers of ``h``): Lagrange in ``h**2`` (Neville)."""
    s = np.square(np.asarray(factors, dtype=np.float64))
    return np.array([np.prod([s[j] / (s[j] - s[i]) for j in range(len(s)) if j != i])
                     for i in range(len(s))])


def extrapolate(Ds, factors):
    """``(T, estimate)`` from the central differences ``Ds`` (3 arrays) at steps ``h *
    factors``: the value extrapolated through all three, and its distance to the one
    through the two smallest steps (the error estimate, as numdifftools takes it)."""
    D = np.stack(Ds, axis=1)
    T3 = D @ _weights(factors)
    T2 = D[:, 1:] @ _weights(factors[1:])
    return T3, np.abs(T3 - T2)


def triple_gain(factors):
    """Rounding gain of :func:`extrapolate` over ``factors``, per ``sigma / h`` of the first."""
    w = _weights(factors)
    return float(np.sqrt(np.sum(w ** 2 / (2.0 * np.square(factors)))))


#: The rounding a refinement's first triple carries, per ``sigma / h``: the least a refined
#: element can resolve (:class:`gradcheck.engine.verdict.Comparison` ``refined_rounding``).
FIRST_TRIPLE_GAIN = triple_gain([level_factor(k) for k in range(3)])

#: What a refined item is judged with at least, per ``sigma / h`` in units of rounding (the
#: rule multiplies it by ``ROUNDING_SAFETY``): its first triple's rounding, plus the spread to
#: the next triple that rounding alone makes (about that triple's rounding; the spread is
#: part of the estimate, weighted by ``ESTIMATE_WEIGHT``, :class:`_Best`). The resolution
#: promises this for every item not refined.
REFINED_GAIN = FIRST_TRIPLE_GAIN + ESTIMATE_WEIGHT * triple_gain(
    [level_factor(k) for k in range(1, 4)]) / (ROUNDING_SAFETY * level_factor(1))


@dataclass
class Refined:
    """Refined values of some items (arrays aligned with the rows asked for).

    Attributes
    ----------
    value, rounding, estimate : ndarray of float64, shape (r,)
        The refined derivative, one standard deviation of its rounding
        error, and its truncation estimate.
    step : ndarray of float64, shape (r,)
        The largest step of the Richardson triple chosen.
    kink : ndarray of bool, shape (r,)
        The one-sided gap did not shrink with the step.
    minus, plus : ndarray of float64, shape (r,)
        One-sided derivatives at the smallest step that the noise allows.
    lower, upper : ndarray of float64, shape (r,)
        The hull the analytic value must lie in at a kink (NaN elsewhere).
    calls : int
    elements : list or None
        Per row, the element-level kinks found while localising it
        (``(index, minus, plus, ok)``), when the items are not elements.
    located : list
        Wrong elements ``(index, numerical, analytic)`` found while localising.
    analytic : ndarray of float64, shape (r,) or None
        The items' analytic values when refining redefined the items (a
        projection with the kinks it crossed taken out of its direction).
    hull_noise : ndarray of float64, shape (r,) or None
        Bound on the rounding error of ``minus`` and ``plus`` (the hull's own
        uncertainty, added to the tolerance of the hull test).
    """

    value: np.ndarray
    rounding: np.ndarray
    estimate: np.ndarray
    step: np.ndarray
    kink: np.ndarray
    minus: np.ndarray
    plus: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    calls: int = 0
    elements: object = None
    located: list = field(default_factory=list)
    analytic: object = None
    hull_noise: object = None


def widen_nearby(arr, steps, seed, which, lower, upper, derivative):
    """The hull ``[lower, upper]`` of the rows ``which`` widened by derivatives at nearby points.

    ``arr`` is moved as a whole by ``NEARBY`` shifts of ``steps`` (ties broken by index,
    first wins as argmax does, then last wins; then at random) and put back exactly;
    ``derivative() -> (len(which),)`` gives the rows' derivatives there.

    Parameters
    ----------
    arr : ndarray
    steps : ndarray of float64, shape (arr.size,)
    seed : int
    which : ndarray of int
        The rows of ``lower`` and ``upper`` to widen.
    lower, upper : ndarray of float64
    derivative : callable

    Returns
    -------
    lower, upper : ndarray of float64 (copies)
    """
    rng = np.random.default_rng([seed, 7])
    lower, upper = lower.copy(), upper.copy()
    saved = arr.copy()
    ramp = np.arange(arr.size) / max(1, arr.size)
    try:
        for k in range(NEARBY):
            unit = -ramp if k == 0 else ramp if k == 1 else rng.uniform(-1, 1, ramp.size)
            np.copyto(arr, (saved.astype(np.float64).reshape(-1) + unit * steps)
                      .reshape(arr.shape).astype(arr.dtype))
            D = derivative()
            lower[which] = np.minimum(lower[which], D)
            upper[which] = np.maximum(upper[which], D)
    finally:
        np.copyto(arr, saved)
    return lower, upper


class StepSearch:
    """The refiner of the elementwise strategies (see the module notes).

    Parameters
    ----------
    evaluate : callable
        ``evaluate(index) -> flat out`` for the target.
    arr : ndarray
        The target (perturbed in place, restored exactly).
    idx : ndarray of int, shape (m,)
        Flat element index of each item.
    steps : ndarray of float64, shape (arr.size,)
        The first step of each element.
    dout, out0 : ndarray, shape (n_out,)
    noise : gradcheck.engine.noise.NoiseEstimate
    seed : int
    supports : dict or None
        Where to keep the kinks' supports (shared by several searches; ``None``: a new one).

    Attributes
    ----------
    supports : dict
        Flat element -> its output support (:attr:`~gradcheck.engine.perturb.Reduce.
        supports`, at the first level's steps), for every element found at a kink.
    smooth : set of int
        Flat elements refined and not found at a kink (their one-sided differences agree).
    """

    def __init__(self, evaluate, arr, idx, steps, dout, out0, noise, seed=0, supports=None):
        self.evaluate, self.arr, self.idx, self.steps = evaluate, arr, np.asarray(idx), steps
        self.dout, self.out0, self.noise, self.seed = dout, out0, noise, seed
        self.calls = 0
        self.supports, self._first = ({} if supports is None else supports), []
        self.smooth = set()

    def _level(self, elements, k):
        """Central and one-sided differences of ``elements`` at the steps ``h level_factor(k)``."""
        steps = self.steps * level_factor(k)
        sink = Reduce(self.dout, len(elements), 1, out0=self.out0, one_sided=True,
                      noise_w=self.noise.weights, supports=k == 0)
        span = differences(self.evaluate, ElementMoves(self.arr, elements, steps),
                           [(1.0, -1.0)], sink, self.out0)[:, 0]
        self.calls += 2 * len(elements)
        if k == 0:
            self._first = sink.supports
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.where(span > 0, sink.R[:, 0].real / span, 0.0)
            half = span / 2.0
            Dp = np.where(half > 0, sink.P[:, 0] / half, 0.0)
            Dm = np.where(half > 0, sink.M[:, 0] / half, 0.0)
        sigma = self.noise.of_support(sink.noise)
        return D, Dp, Dm, sigma, steps[elements]

    def refine(self, rows, analytic):
        """Refine the items ``rows``; ``analytic`` holds their analytic values."""
        elements = self.idx[rows]
        r = search(lambda k: self._level(elements, k), analytic,
                   lambda outside, lo, hi: self._nearby(rows, outside, lo, hi),
                   lambda: self.calls)
        for e, support, kink in zip(elements.tolist(), self._first, r.kink):
            if kink:
                self.supports[e] = support
            else:
                self.smooth.add(e)
        self._first = []
        return r

    def _nearby(self, rows, outside, lower, upper):
        """Widen the hull of ``outside`` rows by derivatives at random nearby points."""
        which = np.flatnonzero(outside)
        elements = self.idx[rows][which]
        return widen_nearby(self.arr, self.steps, self.seed, which, lower, upper,
                            lambda: self._level(elements, 4)[0])


def search(level, analytic, nearby=None, calls=lambda: 0, element=None):
    """The step search and kink test shared by every refiner (see the module notes).

    Parameters
    ----------
    level : callable
        ``level(k) -> (D, Dp, Dm, sigma, h)``: central and one-sided
        differences of the items at the steps ``h level_factor(k)``, the noise of ``L``
        for each item's perturbation and the steps (arrays of shape (r,)).
    analytic : ndarray of float64, shape (r,)
    nearby : callable or None
        ``nearby(outside, lower, upper) -> (lower, upper)``: the hull widened
        by derivatives at random nearby points, for kink items outside it.
    calls : callable
        Forward calls made so far (for the result).
    element : ndarray of int, shape (r,), or None
        The element each item moves, when several items move the same one (Jacobian
        entries of one column): an element at a kink puts every one of its items there,
        also those whose own output shows no jump along it (the middle output of a sort
        at a three-way tie: constant along each tied element's axis, its analytic entry 1
        is one of the Clarke Jacobian's).

    Returns
    -------
    Refined
    """
    Ds, gaps, side_noises, last = [], [], [], None
    best = _Best(len(analytic))
    for k in range(LEVELS):
        D, Dp, Dm, sigma, h = level(k)
        Ds.append(D)
        gaps.append(np.abs(Dp - Dm))
        side_noise = one_sided_allowance(sigma, h)
        side_noises.append(side_noise)
        last = _keep_one_sided(last, Dp, Dm, side_noise, gap_seen(gaps[-1], side_noise))
        if k >= 2:
            factors = np.array([level_factor(j) for j in range(k - 2, k + 1)])
            T, est = extrapolate(Ds[-3:], factors)
            first = h / factors[-1] * factors[0]  # the triple's largest step
            best.offer(T, est, triple_gain(factors / factors[0]) * sigma / first, first, k,
                       _crossing(gaps[-3:], side_noises[-3:]))
            if best.done(k):
                break
    kink = at_kink(gaps, side_noises)
    if element is not None:
        _, at = np.unique(element, return_inverse=True)
        kink = kink | np.bincount(at.reshape(-1), weights=kink)[at.reshape(-1)].astype(bool)
    lower = np.minimum(last["minus"], last["plus"])
    upper = np.maximum(last["minus"], last["plus"])
    outside = kink & ((analytic < lower) | (analytic > upper))
    # nearby points widen the hull only of a kink the smallest steps still see: one that
    # only the coarse steps crossed lies beside the point, whose own slope the last level is
    outside &= ~_vanished(gaps, side_noises)
    if outside.any() and nearby is not None:
        lower, upper = nearby(outside, lower, upper)
    return Refined(best.value, best.rounding, best.estimate, best.step, kink, last["minus"],
                   last["plus"], np.where(kink, lower, np.nan), np.where(kink, upper, np.nan),
                   calls(), hull_noise=last["noise"])


#: A one-sided gap is seen (above the rounding) when it exceeds this many times its noise.
SEEN = 2.0


def gap_seen(gap, noise):
    """Where a one-sided gap ``|D+ - D-|`` stands above its noise (the one rule for kinks).

    Parameters
    ----------
    gap : ndarray of float64
    noise : ndarray of float64
        The gap's allowance from rounding (:func:`~gradcheck.engine.tolerances.
        one_sided_allowance`).

    Returns
    -------
    ndarray of bool
    """
    return gap > SEEN * noise


#: A kink has vanished when the last level's one-sided gap is this fraction of its largest.
VANISHED = 0.25


def _vanished(gaps, noises):
    """Rows whose one-sided gap, above the noise at some level, fell to a quarter of it at
    the last: the coarse steps crossed a kink that is not at the point."""
    G, N = np.stack(gaps, axis=1), np.stack(noises, axis=1)
    jump = np.max(np.where(gap_seen(G, N), G, 0.0), axis=1)
    return (jump > 0) & (G[:, -1] <= VANISHED * jump)


class _Best:
    """The level with the smallest total error so far, per row.

    Its estimate is the larger of the level's own Richardson estimate and the
    distance to the extrapolations of the neighbouring levels (the one before,
    and the one after once it is computed): a level whose estimate is small by
    chance does not hide noise that its neighbours show.
    """

    def __init__(self, r):
        self.value = np.zeros(r)
        self.rounding = np.full(r, np.inf)
        self.own = np.full(r, np.inf)
        self.spread = np.zeros(r)
        self.step = np.zeros(r)
        self.total = np.full(r, np.inf)
        self.just_chosen = np.zeros(r, dtype=bool)
        self.previous = None
        self.converged = np.zeros(r, dtype=int)

    @property
    def estimate(self):
        return np.maximum(self.own, self.spread)

    def offer(self, T, est, rounding, step, k, penalty=0.0):
        # the level after the one chosen last: how far its extrapolation lies from it (the
        # rounding actually there, when the measured noise underestimates it)
        after = self.just_chosen
        self.spread[after] = np.maximum(self.spread[after], np.abs(T - self.value)[after])
        total = est + ROUNDING_SAFETY * rounding + penalty
        better = total < self.total
        for name, v in (("value", T), ("rounding", rounding), ("own", est),
                        ("step", step), ("total", total)):
            getattr(self, name)[better] = v[better]
        before = np.abs(T - self.previous) if self.previous is not None else np.zeros_like(T)
        self.spread[better] = before[better]
        self.just_chosen = better
        self.previous, self.previous_rounding = T, rounding
        self.converged = np.where(est <= ROUNDING_SAFETY * rounding, self.converged + 1, 0)

    def done(self, k):
        return bool(np.all(self.converged >= 2) and not self.just_chosen.any())


def _keep_one_sided(last, Dp, Dm, side_noise, usable):
    """One-sided values at the smallest step whose gap is still above the noise, and the
    bound on their rounding error there."""
    if last is None:
        return {"minus": Dm.copy(), "plus": Dp.copy(), "noise": np.array(side_noise,
                                                                           dtype=float)}
    for name, v in (("minus", Dm), ("plus", Dp), ("noise", side_noise)):
        last[name] = np.where(usable, v, last[name])
    return last


def _crossing(gaps, noises):
    """Half the largest one-sided gap of a triple whose steps cross a kink, else 0.

    A triple crosses one when a gap above the noise does not shrink from one
    level to the next (at a smooth point it shrinks by ``RATIO``): its central
    differences are off by up to half the jump in slope, so levels that do not
    cross the kink (one farther than their step) win the choice.
    """
    G = np.stack(gaps, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        steady = (G[:, 1:] / G[:, :-1] > KINK_RATIO) & gap_seen(G[:, 1:], np.stack(
            noises, axis=1)[:, 1:])
    return np.where(steady.any(axis=1), np.max(G, axis=1) / 2.0, 0.0)


def at_kink(gaps, noises):
    """A kink: a one-sided gap above the noise that did not shrink from one level to the next,
    anywhere in the search (a kink closer than the smallest step shows it at every level; one
    a little farther shows it until the step gets below its distance).

    ``gaps``, ``noises``: per level, arrays of shape (r,); returns bool of shape (r,).

    Parameters
    ----------
    gaps, noises : sequence of ndarray of float64, shape (r,)
        Per level of the search.

    Returns
    -------
    ndarray of bool, shape (r,)
    """
    G = np.stack(gaps, axis=1)
    if G.shape[1] < 2:
        return np.zeros(G.shape[0], dtype=bool)
    N = np.stack(noises, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        steady = (G[:, 1:] / G[:, :-1] > KINK_RATIO) & gap_seen(G[:, 1:], N[:, 1:]) \
            & gap_seen(G[:, :-1], N[:, :-1])
    return steady.any(axis=1)
