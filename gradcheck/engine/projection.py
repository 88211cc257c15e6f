"""The ``projection`` strategy: random ±1 projections, then bisection to localise.

For ``k`` probes ``(u, v)`` -- ``u`` an upstream gradient (the first is
``dout``), ``v`` a random ±1 vector of the target's shape -- the directional
finite difference along ``w = v * h`` (``h`` the target's element steps)

    s_num = d/dt sum(forward(x + t w) * u) at t = 0   ~  u . (J w)

is compared with ``s_ana = (J^T u) . w`` from one ``backward(u)``: cost ``2k``
forward calls per target (``probes=``) and ``k - 1`` backward calls in all,
independent of the size of the target.

Detection bound. With ±1 entries, a single wrong element ``j`` with error
``e_j`` shifts ``s_ana`` of *every* probe by exactly ``e_j h_j``: it is caught
once ``|e_j| h_j`` exceeds the tolerance plus the own error of any one probe
(the one refinement would judge it by, if larger) -- the resolution stated is
the best bound, over the smallest step, of the probes along ``dout`` (a probe
along another ``u`` sees the error of ``J^T u``, not of the gradient reported:
an error linear in the upstream gradient is smaller there by ``|<u, dout>| /
|dout|**2``), and it does not shrink with the target's size (unit-length
Gaussian directions would shrink it by ``sqrt(n)``). A wrong element the
probes catch is confirmed on its own, refined and judged in the gradient's
units (:func:`_element_rule`). A probe whose refinement had to go to tiny steps
(it crosses a kink) only weakens itself. Several wrong elements can cancel, but
for any fixed error vector ``e`` and element ``j``, ``|e . w|`` lies below
``|e_j| h_j`` for at most one of the two signs of ``v_j``, so one probe misses
with probability at most 1/2 and ``k`` independent probes with at most ``2**-k``.

The noise is the target's measured noise (the probes perturb the whole target,
as the noise measurement does), scaled to each probe's upstream gradient.
When a probe fails, the wrong elements are found by bisection: the directional
check is repeated on ``w`` restricted to each half of the elements, failing
halves are split further, and single elements are refined as in the
elementwise strategy (about ``2 log2(n)`` checks per wrong element).
"""

import zlib
from dataclasses import replace

import numpy as np

from gradcheck.engine import methods
from gradcheck.engine.elementwise import prepare
from gradcheck.engine.noise import scaled_norm
from gradcheck.engine.perturb import DirectionMoves, Reduce, along, differences
from gradcheck.engine.refine import (REFINED_GAIN, level_factor, Refined, StepSearch, at_kink,
                                     gap_seen, search)
from gradcheck.engine.ties import TieCheck
from gradcheck.engine.tolerances import (analytic_floor, direction_floor, in_hull,
                                         one_sided_allowance, rms, rules)
from gradcheck.engine.verdict import Comparison

__all__ = ["comparisons", "directional", "left_screen", "MAX_LOCATED", "LEFT_PROBES"]

#: Bisection stops after locating this many wrong elements per target.
MAX_LOCATED = 16

#: Probes of the left-hand screen of a one-sided method (:func:`left_screen`): one forward
#: call each at a smooth point.
LEFT_PROBES = 2

#: Rounds of localisation of a failing probe (each leaves out what the last explained).
LOCALISE_ROUNDS = 3


def _probes(problem, opts):
    """``[(u, grads)]``: ``dout`` with the analytic gradients, then ``probes - 1`` fresh ones
    (a scalar output checked with ``dout = 1``, a loss, keeps it: only the directions differ)."""
    rng = np.random.default_rng([opts.seed, 2])
    probes = [(problem.dout, problem.analytic)]
    if getattr(problem, "scalar_dout", False):
        return probes * opts.probes
    for _ in range(opts.probes - 1):
        u = rng.standard_normal(problem.out0.shape).astype(problem.out0.dtype)
        probes.append((u, problem.vjp(u)))
    return probes


def comparisons(problem, opts, strategy):
    """``(target, Comparison)`` of every target; a failing one is localised by bisection."""
    probes = _probes(problem, opts)
    for target in problem.targets:
        yield target, _compare(problem, target, opts, probes)


def directional(problem, target, opts, u, grads, setup, count=1, spread=False, left=False):
    """The :class:`Comparison` of ``count`` probes along random ±1 directions, upstream ``u``.

    ``setup`` brings the target's measured noise and steps (of the main check), so
    each probe costs two forward calls until it fails (then it is refined and its
    wrong elements located, as any projection). The sequence check's second call
    is verified this way, and the grouped strategy backs a PASS with a few.

    With ``spread``, every entry of a direction also gets a random magnitude in
    ``[1/2, 1]`` (the grouped strategy's second line): errors that cancel along
    every ±1 direction with equal signs -- a contribution attributed to the wrong
    one of two elements (``+e`` at one, ``-e`` at the other), a term that depends
    only on the difference of two elements -- then cancel only when the two
    magnitudes nearly agree (probability about ``2 * resolution / |e|`` a probe,
    against 1/2 with ±1 entries), for a resolution at most twice as coarse (the
    smallest magnitude is in the stated one). With ``left``, every entry is negative:
    a one-sided method's steps then all go to ``x - h |v|`` (:func:`left_screen`).
    """
    return _compare(problem, target, opts, [(u, grads)] * count, setup=setup, spread=spread,
                    left=left)


def left_screen(problem, target, opts, setup, count=LEFT_PROBES):
    """The elements at kinks that a one-sided method cannot see, by projections on the left.

    A one-sided method (:attr:`gradcheck.engine.methods.Method.one_sided`) takes every
    element's derivative from the right: at a kink where the analytic value equals
    it -- ``relu'(0) = 1``, a max-pool backward that gives every tied element the whole
    ``dout`` (the right-hand derivative of each, alone) -- nothing fails, so nothing is
    refined and no kink (nor tie) is looked at. ``count`` projections along directions
    that move *every* element to the left, ``x - h v`` (``v`` random magnitudes in
    ``[1/2, 1]`` times the steps; :func:`directional` with ``left``), are compared with
    the analytic projection at the target's tolerance: one forward call each. A probe
    that disagrees is refined and bisected into elements by the projections' refiner
    (:class:`_ProbeRefiner`: a step search along it, then the halves that fail or cross
    a kink); the elements it finds, at kinks or wrong, are returned, for the main
    check to refine and judge like any element failing there (hull, tie groups, the
    kink fraction). All entries of a direction have one sign, so the errors of kinks
    of one kind (each left-hand derivative below the analytic value) add up and never
    cancel.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    target : gradcheck.protocol.problem.Target
    opts : gradcheck.check.Options
    setup : gradcheck.engine.elementwise.Setup
        The main check's (its noise and steps); the result is kept on it, per problem.
    count : int

    Returns
    -------
    ndarray of int
        Flat indices, sorted.
    """
    kept = getattr(setup, "left_screened", None)
    if kept is not None and kept[0] is problem:
        return kept[1]
    comp = directional(problem, target, opts, problem.dout, problem.analytic, setup,
                       count=count, spread=True, left=True)
    _, allowed = comp.rule.apply(comp.numerical, comp.rounding, comp.estimate)
    rows = np.flatnonzero(np.abs(comp.numerical - comp.analytic) > allowed)
    found = set()
    if len(rows):
        r = comp.refiner.refine(rows, comp.analytic[rows])
        found = {i for kinks in r.elements for i, *_ in kinks} | {i for i, *_ in r.located}
    flat = np.array(sorted(int(np.ravel_multi_index(i, setup.arr.shape)) for i in found),
                    dtype=int)
    setup.left_screened = (problem, flat, count)
    return flat


class _Directional:
    """Directional differences of one target, with their analytic counterparts."""

    def __init__(self, problem, setup, probes, seed, spread=False, left=False):
        self.problem, self.s, self.probes = problem, setup, probes
        arr = setup.arr
        rng = np.random.default_rng([seed, 3, zlib.crc32(setup.target.name.encode())])
        self.v = rng.choice([-1.0, 1.0], size=(len(probes),) + arr.shape)
        if spread:  # random magnitudes in [1/2, 1] (see :func:`directional`)
            self.v *= rng.uniform(0.5, 1.0, size=self.v.shape)
        if left:  # every element moved to the left (:func:`left_screen`)
            self.v = -np.abs(self.v)
        self.h = setup.steps.reshape(arr.shape)
        out0 = problem.out0.astype(np.float64)
        base = scaled_norm(out0 * problem.dout)
        # a probe along dout itself (the first, every one of directional()'s) has ratio 1
        self.level = [setup.noise.level * (
            1.0 if u is problem.dout and 0 < base < np.inf else
            scaled_norm(out0 * u) / base if base > 0 else 1.0) for u, _ in probes]

    def value(self, p, mask=None, pairs=None, scale=1.0):
        """``(numerical, analytic, estimate)`` along probe ``p``'s direction (within ``mask``)."""
        method = self.s.method
        pairs = pairs or method.pairs
        u, grads = self.probes[p]
        w = self.v[p] * self.h * scale
        if mask is not None:
            w = w * mask
        g = grads[self.s.target.name]
        moves = DirectionMoves(self.s.arr, w[None], analytic=g[None])
        sink = Reduce(u, 1, len(pairs))
        span = differences(self.s.evaluate, moves, pairs, sink, self.problem.out0)
        D = sink.R.real / span
        A = np.array([[moves.A[0, pair] for pair in map(tuple, pairs)]]) / span
        combine = methods.get("richardson").combine if len(pairs) == 3 else method.combine
        num, est = combine(D)
        ana, _ = combine(A)
        return float(num[0]), float(ana[0]), float(est[0])


class _ProbeRefiner:
    """Refine a failing probe: a step search along its direction, then bisection.

    The step search (:func:`gradcheck.engine.refine.search`) resolves a
    kink that lies within a step of the point; a probe that still fails is
    localised (:func:`_bisect`). A probe whose step search found it at a kink
    (its one-sided differences disagree beyond the noise) is not smooth along
    its direction: its central difference need not match any generalized
    gradient's projection (at a four-way max-pool tie moved by ``(+, +, +, -)``
    it is ``0`` where the even split gives ``h/2``), and halves that pass may
    still cross the kink, so the bisection also descends into every half that
    crosses one (:meth:`_crosses`). When the elements it finds are all kinks
    whose analytic value lies within their one-sided derivatives, the probe
    is explained by them (and listed as such), as is a probe at a kink where
    none is found; wrong elements are reported. The kink elements' output
    supports are kept in :attr:`supports`, for the tie groups
    (:class:`gradcheck.engine.ties.TieCheck`).
    """

    def __init__(self, problem, setup, d):
        self.problem, self.s, self.d = problem, setup, d
        self.known = ([], [])  # kinks and resolved elements found by earlier probes
        self.wrong_found = False
        self.supports = {}

    def _level(self, p, ana, mask=None):
        """The step-search levels of probe ``p`` (restricted to ``mask``), as differences
        from the analytic value ``ana``: at each level, the numerical derivative minus
        the analytic one *along the same representable displacement*, plus ``ana``
        (the rounding of ``x + t w`` moves both alike and must not count as an error)."""
        d, s = self.d, self.s
        u, grads = d.probes[p]
        w = d.v[p] * d.h if mask is None else d.v[p] * d.h * mask
        t0 = float(np.median(s.refine_steps / s.steps))  # from the central step downwards

        def at(k):
            h = t0 * level_factor(k)  # the derivative along w, from steps t = +-h
            central, plus, minus, projected, share = along(
                s.evaluate, s.arr, w * h, u, self.problem.out0, grads[s.target.name],
                s.noise.weights)
            # the whole direction moves every output that depends on the target, also one
            # whose change rounds away (an output of 1e10 with a slope of 1e-3): its rounding
            # counts, changed or not; a masked direction counts the outputs that changed
            share = 1.0 if mask is None or share <= 0 else share
            shift = ana - projected / h
            return (np.array([central / h + shift]), np.array([plus / h + shift]),
                    np.array([minus / h + shift]), np.array([d.level[p] * share]),
                    np.array([h]))
        return at

    def refine(self, rows, analytic):
        out = [self._one(int(p), float(a)) for p, a in zip(rows, analytic)]
        ana = np.array([o[6] for o in out])
        # a probe whose failure only kinks explain (ties that interact, even once the
        # elements found are taken out) is excluded like a kink: its hull is its own value
        explained = np.array([len(o) > 7 and o[7] for o in out], dtype=bool)
        hull = np.where(explained, ana, np.nan)
        return Refined(*(np.array([o[i] for o in out]) for i in range(4)), explained,
                       hull, hull, hull, hull, elements=[o[4] for o in out],
                       located=[e for o in out for e in o[5]], analytic=ana)

    def _one(self, p, ana):
        """``(value, rounding, estimate, step, kinks, wrong, analytic)`` of probe ``p``."""
        r = search(self._level(p, ana), np.array([ana]))
        crosses = (lambda mask: self._crosses(p, mask)) if r.kink[0] else None
        _, allowed = self.d.rule.apply(r.value, r.rounding, r.estimate)
        base = (float(r.value[0]), float(r.rounding[0]), float(r.estimate[0]),
                float(r.step[0]))
        if abs(base[0] - ana) <= allowed[0]:
            return base + ([], [], ana)
        if self.known[0] or self.known[1]:  # the elements earlier probes explained
            masked = self._masked(p, *self.known)
            _, allowed = self.d.rule.apply(np.array([masked[0]]), np.array([masked[1]]),
                                           np.array([masked[2]]))
            if abs(masked[0] - masked[6]) <= allowed[0]:
                return masked
        if self.wrong_found:  # localised once: the other probes see the same backward
            return base + ([], [], ana)
        kinks, resolved = list(self.known[0]), list(self.known[1])
        masked = None
        for _ in range(LOCALISE_ROUNDS):  # each round takes out what it explained, then
            wrong, more_kinks, more_resolved = _bisect(  # looks at the rest again
                self.problem, self.s, self.d, p, self._excluded(kinks, resolved), crosses,
                self.supports)
            if wrong or not (kinks or resolved or more_kinks or more_resolved):
                self.wrong_found = bool(wrong)  # at a kink and nothing found: not smooth
                return base + (kinks + more_kinks, wrong, ana) + ((crosses is not None
                                                                   and not wrong),)
            if not (more_kinks or more_resolved):  # nothing new: what is left is how the
                break  # kinks found interact along the direction (ties in one window)
            kinks, resolved = kinks + more_kinks, resolved + more_resolved
            self.known = (kinks, resolved)
            masked = self._masked(p, kinks, resolved)
            _, allowed = self.d.rule.apply(np.array([masked[0]]), np.array([masked[1]]),
                                           np.array([masked[2]]))
            if abs(masked[0] - masked[6]) <= allowed[0]:
                return masked
        if masked is None:
            masked = self._masked(p, kinks, resolved)
        return masked + (True,)  # no wrong element, only kinks: explained by them

    def _crosses(self, p, mask):
        """Whether probe ``p``'s direction within ``mask`` crosses a kink: its one-sided gap
        stands above the noise and does not shrink at an eighth of the step
        (:func:`gradcheck.engine.refine.at_kink`). Two forward calls, four when the gap is
        seen."""
        at = self._level(p, 0.0, mask)  # the gap does not depend on the analytic shift

        def gap_and_noise(level):
            _, plus, minus, sigma, h = level
            return np.abs(plus - minus), one_sided_allowance(sigma, h)
        levels = [gap_and_noise(at(1))]
        if not gap_seen(*levels[0])[0]:
            return False
        levels.append(gap_and_noise(at(3)))
        return bool(at_kink(*zip(*levels))[0])

    def _excluded(self, kinks, resolved):
        return [np.ravel_multi_index(i, self.s.arr.shape) for i, *_ in kinks] + list(resolved)

    def _masked(self, p, kinks, resolved):
        """Probe ``p`` without ``kinks`` and ``resolved`` elements in its direction: they were
        judged on their own (at a kink, or needing smaller steps)."""
        mask = np.ones(self.s.arr.size)
        mask[self._excluded(kinks, resolved)] = 0.0
        mask = mask.reshape(self.s.arr.shape)
        ana_masked = self.d.value(p, mask)[1]
        r = search(self._level(p, ana_masked, mask), np.array([ana_masked]))
        return (float(r.value[0]), float(r.rounding[0]), float(r.estimate[0]),
                float(r.step[0]), kinks, [], ana_masked)


def _compare(problem, target, opts, probes, setup=None, spread=False, left=False):
    s = setup or prepare(problem, target, opts)
    d = _Directional(problem, s, probes, opts.seed, spread, left)
    k = len(probes)
    num, ana, est = (np.array(v) for v in zip(*(d.value(p) for p in range(k))))
    rounding = np.array([s.method.gain * d.level[p] for p in range(k)])
    g = problem.analytic[target.name]
    tau = s.tuning.relative(g)
    # the analytic gradient's own rounding (a float32 cast in backward), along a direction
    # scaled by the steps: independent per element, so its norm times the steps' norm
    element_floor = analytic_floor(problem.analytic_noise()[target.name], g, g)
    step_rms = rms(s.steps)
    rule, own = rules(num, tau, opts.atol, opts.rtol, s.noise.relative, s.method.estimates,
                      floor=direction_floor(element_floor, s.steps))
    scale = rule.scale / (np.sqrt(num.size and s.steps.size) * step_rms)
    d.rule, d.element_rule = rule, _element_rule(rule, scale, element_floor)
    refiner = _ProbeRefiner(problem, s, d)
    comp = Comparison(
        name=target.name, shape=target.array.shape, dtype=str(target.array.dtype),
        strategy="projection", method=s.method.name, numerical=num, analytic=ana,
        rounding=rounding, estimate=est, rule=rule, own_rule=own, skipped=np.zeros(k, bool),
        steps=s.steps, index=lambda r: (int(r),), noise=s.noise,
        refiner=refiner, ties=TieCheck(s, probes[0][0], problem.out0, probes[0][1][target.name],
                                   d.element_rule, refiner.supports, seed=opts.seed),
        # a ±1 direction's smallest magnitude is 1 (random ones in [1/2, 1] when spread)
        resolution_factor=1.0 / (float(np.min(s.steps)) * (float(np.min(
            np.abs(d.v), initial=1.0)) if spread else 1.0)),
        # the probes along the first one's upstream gradient (dout; every probe of
        # :func:`directional`) see the error of the gradient the result reports
        shared_items=True, resolving=np.array([u is probes[0][0] for u, _ in probes]),
        refined_rounding=REFINED_GAIN * np.array([d.level[p] for p in range(k)]),
        gradient_scale=scale,
        reason=(s.reason() + f"; {k} probes along random ±1 directions "
                + ("with random magnitudes in [1/2, 1] " if spread else "")
                + "scaled by the element steps: a single wrong element above the resolution "
                f"is caught by every probe, several wrong elements are missed with "
                f"probability <= 2^-{k}"))
    return comp


def _element_rule(rule, scale, floor):
    """The projections' ``rule`` in the units of the gradient, for single elements.

    Its truncation term ``rtol * scale`` and analytic floor are along directions scaled
    by the steps (``sqrt(n) rms(h)`` times the gradient's: ``1e7`` at inputs of ``1e8``);
    an element refined alone (:func:`_bisect`) is judged in its own units, the
    gradient's scale ``scale`` and the analytic gradient's own rounding ``floor``, or
    an error far above the resolution the projections state passes as "resolved". The
    caller's ``atol`` is kept as given.
    """
    if rule.atol is not None:
        return rule
    return replace(rule, scale=float(scale), floor=float(floor))


def _bisect(problem, s, d, p, exclude=(), crosses=None, supports=None):
    """``(wrong, kinks, resolved)`` along probe ``p``.

    ``wrong``: ``[(index, numerical, analytic)]`` of the wrong elements;
    ``kinks``: ``[(index, minus, plus, ok)]``; ``resolved``: flat indices of
    elements whose directional check failed but whose own, refined derivative
    matches (they needed smaller steps). Elements in ``exclude`` (explained by an
    earlier round) are left out of the direction. ``crosses(mask) -> bool``
    (:meth:`_ProbeRefiner._crosses`): a half that passes is still split when it
    crosses a kink. ``supports``: where the kink elements' output supports are kept.
    """
    arr, rule, element_rule = s.arr, d.rule, d.element_rule
    u, grads = d.probes[p]
    g = grads[s.target.name].reshape(-1)
    stack = [np.setdiff1d(np.arange(arr.size), np.asarray(exclude, dtype=int))]
    wrong, kinks, resolved = [], [], []
    search = StepSearch(s.evaluate, arr, np.arange(arr.size), s.refine_steps, u, problem.out0,
                        s.noise, seed=s.opts.seed, supports=supports)
    while stack and len(wrong) < MAX_LOCATED:
        block = stack.pop()
        if len(block) == 1:
            r = search.refine(block, g[block])
            _, allowed = element_rule.apply(r.value, r.rounding, r.estimate)
            index = tuple(int(j) for j in np.unravel_index(int(block[0]), arr.shape))
            if abs(r.value[0] - g[block[0]]) <= allowed[0]:
                resolved.append(int(block[0]))
                continue
            if r.kink[0]:
                tol = allowed[0] + float(r.hull_noise[0])
                ok = bool(in_hull(g[block[0]], r.lower[0], r.upper[0], tol))
                kinks.append((index, float(r.minus[0]), float(r.plus[0]), ok))
                if ok:
                    continue
            wrong.append((index, float(r.value[0]), float(g[block[0]])))
            continue
        for half in (block[: len(block) // 2], block[len(block) // 2:]):
            mask = np.zeros(arr.size)
            mask[half] = 1.0
            mask = mask.reshape(arr.shape)
            num, ana, est = d.value(p, mask)
            _, allowed = rule.apply(np.array([num]), np.array([s.method.gain * d.level[p]]),
                                    np.array([est]))
            if abs(num - ana) > allowed[0] or (crosses is not None and crosses(mask)):
                stack.append(half)
    return wrong, kinks, resolved
