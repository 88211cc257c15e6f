"""Tie groups: elements at a shared kink, checked along the direction that moves them together.

At a tie of a max (a max-pool window whose largest inputs are equal, a row
max, equal values in a sort) the layer is not differentiable along any tied
element alone: its one-sided derivatives differ, and the verdict
(:mod:`gradcheck.engine.verdict`) can only check that each element's analytic
value lies between them. That leaves the *sum* over the tied elements free: a
backward that gives every tied element the whole upstream gradient (CS231n's
reshape max-pool without its ``/= np.sum(mask)``) passes element by element.
Along ``e_S``, the direction that moves the whole group ``S`` together, the
function is differentiable (``max(a + t, b + t) = max(a, b) + t``). For a
function that is Clarke regular at the point (a maximum of smooth pieces, or
the negative of one: max pooling, a row max, a sort), the directional
derivative along ``v`` is the largest ``<g, v>`` over the generalized gradient
[1]_, so where it is two-sided (``f'(x; v) = -f'(x; -v)``) every element ``g`` of
the generalized gradient has the same projection ``<g, e_S> = f'(x; e_S)``:
every valid subgradient (all to the first argmax, split evenly) gives the
group the same sum, and the sum of the group's analytic gradients is checked
against the directional derivative.

Groups. The elements found at kinks (inside their one-sided hull) whose output
supports -- the outputs their refinement's first perturbation changed
(:attr:`gradcheck.engine.refine.StepSearch.supports`) -- share an output belong
together (union-find over the outputs). A group of one (a ReLU exactly at 0)
has no smooth direction: it is not checked, and costs no forward call to check.

Partners not found at a kink. A tied element whose analytic value equals its own
central difference (``dout/2`` at a two-way tie: the midpoint of its one-sided
derivatives ``0`` and ``dout``) passes its first tolerance, is never refined and
never found at a kink; its group would miss it (a group of one, not checked:
``(dout, dout/2)`` sums to ``1.5 dout`` unseen). So, before grouping, one
``backward`` of ``dout`` restricted to the kink elements' output supports (one
forward and one backward call per target with kinks) names the elements that
backward says feed those outputs; those not yet refined (at most
:data:`MAX_JOINED`, sampled beyond) get their one-sided differences at their
refinement step (two forward calls each), and one joins the kinks when its
output support overlaps theirs, its one-sided gap stands above the noise
(:func:`gradcheck.engine.refine.gap_seen`) and its analytic value lies within its
one-sided hull (plus its tolerance). Limitations: an element the backward gives
no gradient for at those outputs is not looked for (it is either not tied, or
its ``0`` lies outside the hull of a tied element and it was flagged); a kink
whose support is dense (every output, or more than
:attr:`gradcheck.engine.perturb.Reduce.SUPPORT_MAX`) puts every kink in one
group already and is not looked around; a tie none of whose elements is found at a
kink, alone or along a pair (below), is not seen: ``dout/2`` to each of three tied
elements of a max (``1.5 dout`` in all) passes element by element.

Ties no single element shows. At a tie of an order statistic inside the tied block (a
median of ``[-1, a, a, a, 1]``) moving one tied element alone does not move the output on
either side (``median(a + t, a, a) = a`` for both signs of ``t``): its one-sided
differences are both ``0``, no kink is seen, and a valid subgradient (``dout`` to the
element ``argsort`` picks, or ``dout/3`` to each) FAILs against ``0``. The median is not
Clarke regular there: along a pair the derivative is not the sum of its elements' own
(``median(a + t, a + t, a) = a + t``: ``dout`` where each alone gives ``0``), and a smooth
pair's derivative need not equal the pair's analytic sum for every subgradient (``2/3
dout`` for the even split). A sort's middle tied element is the other case: moving it
alone takes it to the bottom or the top slot, so its one-sided derivatives are those slots'
``dout`` and the middle slot's (what the stable ``argsort`` backward gives it) may lie
outside them, though it is a valid subgradient. So, for an element failing with no kink
seen, or at a kink outside its own one-sided derivatives (elementwise, sampled or grouped
items, :meth:`TieCheck.unseen`), the elements of *exactly* its value are paired with it
(the nearest :data:`MAX_PARTNERS` by flat index, at most :data:`MAX_PAIRS` pairs a target,
every element's nearest first), and each element and each pair is moved by its
refinement steps: a pair is at a tie when its central derivative's excess over the sum of
its elements' own stands above their noise and does not shrink at a quarter of the step
(:func:`gradcheck.engine.refine.at_kink` on the excess: curvature makes a smooth pair's
excess fall as the step squared). Such a pair gives the element the hull of its own
one-sided derivatives and of the pair's less its partner's (``[0, dout]`` at the median);
an element within the hull of every such pair of its own (plus the pair's tolerance, as
the group check derives it, and the partner's) is at a kink, inside, and joins one tie
group with those partners (their output support: the outputs the pair's move changed),
which the group check verifies along the whole group's direction (the median moves by
``t`` on both sides: the group's sum must be ``dout``; ``dout`` to each of three tied
elements fails there, ``2 dout`` and ``-dout`` outside the hull). Cost: two forward calls
per element and per pair probed, twice that when some pair's excess is seen; none when no
failing element has an element of exactly its value (every check of a layer without
failures or without such ties makes the calls it made before). Limits: a tie of values
only nearly equal is not paired; the hull is the pair's, not the generalized gradient's
(a wrong split whose values lie each in ``[0, dout]`` and whose sum is right passes, as at
a max); the projection and Jacobian strategies do not pair (their items are not single
elements), nor does the grouped strategy's projection screen, which falls back to the
elementwise check at such a tie.

Check. Along ``w = sum_{i in S} h_i e_i`` (the group's refinement steps) at ``t =
+-1``, two forward calls give the central difference and both one-sided ones;
values are taken over the mean step (the plain sum of the group's gradients:
tied values have equal steps). The group is smooth along ``w`` unless its
one-sided gap stands above the noise and does not shrink at a quarter of the
step (:func:`gradcheck.engine.refine.at_kink`, the one rule for kinks; two more
calls when the first gap is seen). A smooth group is judged by the target's
rule, with its analytic floor along the direction
(:func:`gradcheck.engine.tolerances.direction_floor`), the rounding of the
analytic values as stored (a third of ``dout`` three times is not ``dout``
exactly) and the one-sided noise added: a slope jump hidden in the noise leaves
the central difference within that of any subgradient. A group whose gap did not shrink stays at a kink, as
its elements are. At most :data:`MAX_GROUPS` groups are checked (a random sample
beyond, said in the note). The members of the groups that pass count as checked
for the verdict's kink fraction (:attr:`Ties.verified`); lone kinks and groups not
smooth along their direction still count at kinks.

References
----------
.. [1] F. H. Clarke, "Optimization and Nonsmooth Analysis", Wiley (1983),
   proposition 2.1.2 (the generalized directional derivative is ``max <g, v>``
   over the generalized gradient) and definition 2.3.4 (regularity: it equals
   the directional derivative).
"""

from dataclasses import dataclass, replace

import numpy as np

from gradcheck.engine import methods
from gradcheck.engine.perturb import DirectionMoves, ElementMoves, Reduce, differences
from gradcheck.engine.refine import RATIO, at_kink, gap_seen
from gradcheck.engine.tolerances import (ROUNDING_SAFETY, direction_floor, in_hull,
                                         one_sided_allowance, rounding_error)

__all__ = ["Tie", "Ties", "TieCheck", "tie_groups", "MAX_GROUPS", "MAX_JOINED", "MAX_PARTNERS",
           "MAX_PAIRS"]

#: Tie groups checked at most per target (a random sample beyond).
MAX_GROUPS = 64

#: Elements measured at most per target for partners of the kinks not found at one (module
#: notes; a random sample beyond).
MAX_JOINED = 64

#: Partners probed at most per failing element for a tie it does not show alone (module
#: notes, "Ties no single element shows"): the elements of exactly its value nearest to it
#: by flat index.
MAX_PARTNERS = 4

#: Pair directions probed at most per target for those ties (two forward calls each, four
#: where the pair's gap is seen), taken round-robin (every failing element's nearest
#: partner first, then the second nearest, ...); the pairs beyond are not probed (said in
#: the note).
MAX_PAIRS = 256


@dataclass(frozen=True)
class Tie:
    """One tie group, differentiated along the direction that moves it together.

    Attributes
    ----------
    members : tuple of tuple of int
        The group's elements.
    numerical : float
        The directional derivative along the group over its mean step: how far the
        function moves along the tied group.
    analytic : float
        The analytic gradient projected likewise: the sum of the group's gradients.
    allowed : float
        The tolerance of ``|numerical - analytic|``.
    smooth : bool
        The one-sided derivatives along the group agree (else it is not judged).
    """

    members: tuple
    numerical: float
    analytic: float
    allowed: float
    smooth: bool

    @property
    def margin(self):
        """``|numerical - analytic| / allowed`` (inf for an error at a zero tolerance)."""
        error = abs(self.numerical - self.analytic)
        if self.allowed > 0:
            return error / self.allowed
        return 0.0 if error == 0 else float("inf")

    @property
    def failed(self):
        return self.smooth and not self.margin <= 1.0

    def message(self, name):
        """Why this group fails, for the report."""
        shown = ", ".join(map(str, self.members[:4])) + (" ..." if len(self.members) > 4
                                                          else "")
        n, x, y = len(self.members), self.analytic, self.numerical
        ratio = x / y if y else np.inf
        times = round(ratio) if np.isfinite(ratio) else 0
        why = (f"{ratio:.3g} times as much: a gradient counted once per tied element?"
               if 2 <= times <= n and abs(ratio - times) < 0.05 * times else
               "a gradient split or duplicated wrongly between the tied elements?")
        return (f"{name!r}: at a tie of {n} elements ({shown}), the gradient sums to {x:.6g} "
                f"where the function moves by {y:.6g} along the tied group (tolerance "
                f"{self.allowed:.2g}): {why}")


@dataclass(frozen=True)
class Ties:
    """The tie groups of one target's kinks.

    Attributes
    ----------
    groups : tuple of Tie
        The groups checked.
    skipped : int
        Groups beyond :data:`MAX_GROUPS`, not checked.
    joined : int
        Elements not found at a kink that joined a group (partners; module notes).
    unmeasured : int
        Elements sharing an output with a kink beyond :data:`MAX_JOINED`, not measured.
    paired : int
        Elements of a tie no single element shows, found along pairs of equal elements
        (:meth:`TieCheck.unseen`), in the groups.
    unprobed : int
        Pairs of equal elements beyond :data:`MAX_PAIRS`, not probed.
    """

    groups: tuple
    skipped: int = 0
    joined: int = 0
    unmeasured: int = 0
    paired: int = 0
    unprobed: int = 0

    @property
    def failed(self):
        return [t for t in self.groups if t.failed]

    @property
    def verified(self):
        """The members of the groups smooth along their direction whose sum passed: each
        within its one-sided hull and the group's projection checked. At a tie of a max the
        generalized gradient restricted to the group is exactly that set (the simplex
        scaled by the upstream gradient: each between its one-sided derivatives, the sum
        fixed [1]_), so they count as checked for the verdict's kink fraction. (At a tie
        of four or more values in a sort the permutohedron also bounds sums of pairs,
        which is not checked.)"""
        return {m for t in self.groups if t.smooth and not t.failed for m in t.members}

    def note(self):
        """What the groups ruled out, for the kinks' finding ("" without groups)."""
        smooth = [t for t in self.groups if t.smooth]
        parts = []
        if smooth:
            parts.append(
                f"{len(smooth)} tie group(s) of {sum(len(t.members) for t in smooth)} "
                "elements checked along their common direction (the sum of each group's "
                "gradient against the derivative along it; how it is split between the "
                "tied elements is free)" + (f", {len(self.failed)} of them failing"
                                            if self.failed else "")
                + (f"; the {len(self.verified)} element(s) of the passing groups count as "
                   "checked, not as kinks (each within its one-sided hull and its group's sum "
                   "verified: at a tie of a max, all a generalized gradient satisfies)"
                   if self.verified else ""))
        if len(smooth) < len(self.groups):
            parts.append(f"{len(self.groups) - len(smooth)} group(s) of elements sharing a "
                         "kink not smooth along their common direction either, not checked")
        if self.joined:
            parts.append(f"{self.joined} element(s) whose central difference lies mid-hull "
                         "(never found at a kink) joined their tie's group")
        if self.paired:
            parts.append(f"{self.paired} element(s) at a tie no single element shows (moving "
                         "one alone leaves the output unchanged on both sides, as at a tie of "
                         "a median) found along pairs of exactly equal elements (the pair's "
                         "derivative is not the sum of its elements', at two steps), each "
                         "within the hull its pairs give it, joined their tie's group")
        if self.unprobed:
            parts.append(f"{self.unprobed} pair(s) of exactly equal elements not probed (at "
                         f"most {MAX_PAIRS} a target)")
        if self.skipped:
            parts.append(f"{self.skipped} more group(s) not checked (at most {MAX_GROUPS}, "
                         "sampled)")
        if self.unmeasured:
            parts.append(f"{self.unmeasured} element(s) sharing an output with a kink not "
                         f"looked at as tied partners (at most {MAX_JOINED}, sampled)")
        return "; ".join(parts)


@dataclass(frozen=True)
class _Level:
    """One level of differences along some directions, per direction, over its scale:
    central ``D``, analytic ``A``, one-sided ``plus`` and ``minus``, their noise allowance
    ``side``, the noise ``sigma``, the ``scale`` and the outputs changed (``supports``)."""

    D: np.ndarray
    A: np.ndarray
    plus: np.ndarray
    minus: np.ndarray
    side: np.ndarray
    sigma: np.ndarray
    scale: np.ndarray
    supports: list

    @property
    def gap(self):
        return np.abs(self.plus - self.minus)

    def row(self, r):
        """The level of direction ``r`` alone (scalars)."""
        return _Row(float(self.D[r]), float(self.A[r]), float(self.plus[r]),
                    float(self.minus[r]), float(self.gap[r]), float(self.side[r]),
                    float(self.sigma[r]), float(self.scale[r]), self.supports[r])


@dataclass(frozen=True)
class _Row:
    """:class:`_Level` of one direction."""

    D: float
    A: float
    plus: float
    minus: float
    gap: float
    side: float
    sigma: float
    scale: float
    support: object


@dataclass(frozen=True)
class _Along:
    """A group's differences along its direction, judged: central ``D`` and analytic ``A``
    over its mean step, the hull ``[lower, upper]`` of its one-sided derivatives, the
    tolerance ``tol`` of ``|D - A|`` (and of ``A`` about the hull), whether it is smooth
    there and the outputs its first move changed."""

    D: float
    A: float
    lower: float
    upper: float
    tol: float
    smooth: bool
    support: object


def tie_groups(elements, supports):
    """The elements sharing an output, as groups of at least two (union-find).

    Parameters
    ----------
    elements : sequence of int
        Flat indices of the elements at kinks.
    supports : dict
        Element -> flat outputs it changed (``None``: dense, taken to share an output with
        every element that changed one).

    Returns
    -------
    list of ndarray of int
        Sorted groups, ordered by their first element.
    """
    parent = list(range(len(elements)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = {}
    dense = any(supports.get(e, ()) is None for e in elements)
    for i, e in enumerate(elements):
        support = supports.get(e, ())
        outputs = [] if support is None else np.asarray(support).tolist()
        if dense and (support is None or outputs):
            outputs.append(-1)  # the dense elements' every output
        for o in outputs:
            parent[find(i)] = find(owner.setdefault(o, i))
    groups = {}
    for i, e in enumerate(elements):
        groups.setdefault(find(i), []).append(e)
    found = [np.array(sorted(g)) for g in groups.values() if len(g) >= 2]
    return sorted(found, key=lambda g: int(g[0]))


def _union(a, b):
    """The union of two output supports (``None``: dense)."""
    if a is None or b is None:
        return None
    return np.union1d(np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp))


class TieCheck:
    """Checks the tie groups of a target's kinks (see the module notes).

    Parameters
    ----------
    setup : gradcheck.engine.elementwise.Setup
        The target's evaluator, noise and refinement steps.
    dout, out0 : ndarray, shape (n_out,)
    analytic : ndarray of float64, the target's shape
    rule : gradcheck.engine.tolerances.Rule
        The target's rule, in the gradient's units.
    supports : dict
        The refiner's output supports of the kink elements (filled as it refines).
    seed : int
    smooth : set of int
        Flat elements refined and not found at a kink (not looked at as partners).
    vjp : callable or None
        ``vjp(u) -> gradient of sum(out * u)`` in the target's shape (``None``: the
        problem's, for this target); finds the partners not found at a kink.
    """

    def __init__(self, setup, dout, out0, analytic, rule, supports, seed=0, smooth=(),
                 vjp=None):
        self.s, self.dout, self.out0, self.analytic = setup, dout, out0, analytic
        self.rule, self.supports, self.seed, self.smooth = rule, supports, seed, smooth
        self.vjp = vjp or (lambda u: setup.problem.vjp(u)[setup.target.name])
        self.paired, self.unprobed = {}, 0  # filled by unseen

    def __call__(self, kinks):
        """The :class:`Ties` of ``kinks`` (``(index, minus, plus, ok)``: the ``ok`` ones)."""
        shape = self.s.arr.shape
        known = {**self.supports, **self.paired}  # elements paired at an unseen tie: theirs
        flat = sorted({int(np.ravel_multi_index(i, shape)) for i, *_, ok in kinks
                       if ok and int(np.ravel_multi_index(i, shape)) in known}
                      | set(self.paired))
        joined, unmeasured = self._partners(flat, known) if flat else ({}, 0)
        supports = {**known, **joined}
        flat += sorted(joined)
        groups = tie_groups(flat, supports)
        skipped = max(0, len(groups) - MAX_GROUPS)
        if skipped:
            rng = np.random.default_rng([self.seed, 17])
            keep = np.sort(rng.choice(len(groups), size=MAX_GROUPS, replace=False))
            groups = [groups[k] for k in keep]
        grouped = {int(e) for g in groups for e in g}
        return Ties(tuple(self._check(g) for g in groups), skipped,
                    len(grouped & set(joined)), unmeasured,
                    len(grouped & set(self.paired)), self.unprobed)

    def _partners(self, flat, supports):
        """``({element: support}, unmeasured)``: the kinks' tied partners not found at a
        kink (module notes); ``supports``: those of ``flat``."""
        n_out = self.out0.size
        covered = [supports[e] for e in flat]
        if any(c is None or len(c) >= n_out for c in covered):
            return {}, 0  # dense: every kink shares an output already
        union = np.unique(np.concatenate(covered))
        u = np.zeros(n_out, dtype=self.out0.dtype)
        u[union] = np.asarray(self.dout).reshape(-1)[union]
        fed = np.flatnonzero(np.asarray(self.vjp(u)).reshape(-1))
        known = set(flat) | set(self.smooth)
        candidates = np.array([e for e in fed.tolist() if e not in known], dtype=np.intp)
        unmeasured = max(0, len(candidates) - MAX_JOINED)
        if unmeasured:
            rng = np.random.default_rng([self.seed, 19])
            candidates = np.sort(rng.choice(candidates, size=MAX_JOINED, replace=False))
        if not len(candidates):
            return {}, unmeasured
        tied, found = self._one_sided(candidates)
        return {int(e): sup for e, sup, t in zip(candidates, found, tied)
                if t and sup is not None and np.intersect1d(sup, union).size}, unmeasured

    def _one_sided(self, elements):
        """``(tied, supports)``: where the one-sided differences of ``elements`` at their
        refinement steps disagree beyond the noise with the analytic value inside their
        hull, and the outputs each changed (two forward calls per element)."""
        s = self.s
        sink = Reduce(self.dout, len(elements), 1, out0=self.out0, one_sided=True,
                      noise_w=s.noise.weights, supports=True)
        span = differences(s.evaluate, ElementMoves(s.arr, elements, s.refine_steps),
                           [(1.0, -1.0)], sink, self.out0)[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            plus = np.where(span > 0, 2.0 * sink.P[:, 0] / span, 0.0)
            minus = np.where(span > 0, 2.0 * sink.M[:, 0] / span, 0.0)
        h = s.refine_steps[elements]
        sigma = s.noise.of_support(sink.noise)
        side = one_sided_allowance(sigma, h)
        central = (plus + minus) / 2.0
        _, allowed = self.rule.apply(central, rounding_error(
            sigma, h, methods.get("central").gain))
        g = self.analytic.reshape(-1)[elements].astype(np.float64)
        tol = allowed + side
        inside = in_hull(g, np.minimum(plus, minus), np.maximum(plus, minus), tol)
        return gap_seen(np.abs(plus - minus), side) & inside & (span > 0), sink.supports

    def unseen(self, elements):
        """The failing ``elements`` at a tie none of them shows alone, found along pairs.

        Each element (flat, failing with no kink seen) is paired with the elements of
        exactly its value nearest to it (at most :data:`MAX_PARTNERS`; at most
        :data:`MAX_PAIRS` pairs a target). Along a pair of a smooth function the derivative
        is the sum of its elements' own; at a tie of an order statistic it is not (module
        notes, "Ties no single element shows"). An element with a pair whose excess over
        that sum stands above the noise and does not shrink at a quarter of the step
        (:func:`gradcheck.engine.refine.at_kink` on the excess), and whose analytic value lies
        within the hull each such pair gives it, is at a kink, inside; it and those partners
        join one tie group, checked along its direction as any.

        Parameters
        ----------
        elements : sequence of int
            Flat indices of the failing elements not found at a kink.

        Returns
        -------
        dict
            ``{element: (lower, upper)}``: the hull of its first such pair, for the elements
            found (no forward call when none has an element of exactly its value).
        """
        elements = sorted({int(e) for e in elements})
        pairs = self._pairs(elements)
        if not pairs:
            return {}
        singles = sorted({m for p in pairs for m in p})
        rows = [np.array([m]) for m in singles] + [np.array(p) for p in pairs]
        at = {m: k for k, m in enumerate(singles)}
        levels = self._probe(rows, at, pairs)
        excess = [self._excess(lv, at, pairs) for lv in levels]
        steady = at_kink([g for g, _ in excess], [n for _, n in excess])
        g = self.analytic.reshape(-1).astype(np.float64)
        found = {}
        for e in elements:
            hulls = [(p, self._hull(levels, rows, at, p, e)) for k, p in enumerate(pairs)
                     if steady[k] and e in p]
            if hulls and all(in_hull(g[e], lo, hi, tol) for _, (lo, hi, tol, _) in hulls):
                found[e] = hulls[0][1][:2]
                for p, (*_, support) in hulls:
                    for m in p:
                        self.paired[m] = _union(self.paired.get(m, ()), support)
        return found

    def _probe(self, rows, at, pairs):
        """The levels along ``rows`` (the single elements ``at``, then the ``pairs``; over
        their mean steps): one, and a second at a quarter of the step when the first sees a
        pair's excess (two forward calls a row each)."""
        W, means, _ = self._directions(rows)
        first = self._levels(W, means)
        gap, noise = self._excess(first, at, pairs)
        if not gap_seen(gap, noise).any():
            return [first]
        return [first, self._levels(W / RATIO, means / RATIO)]

    def _excess(self, level, at, pairs):
        """``(gap, noise)`` per pair: how far its central derivative stands from the sum of
        its elements' own (over the pair's mean step), and the noise allowance of that."""
        off = len(at)
        gap, noise = np.zeros(len(pairs)), np.zeros(len(pairs))
        for k, (a, b) in enumerate(pairs):
            i, j, r = at[a], at[b], off + k
            pair = level.D[r] * level.scale[r]
            gap[k] = abs(pair - level.D[i] * level.scale[i] - level.D[j] * level.scale[j]) \
                / level.scale[r]
            noise[k] = level.side[r] + level.side[i] + level.side[j]
        return gap, noise

    def _hull(self, levels, rows, at, pair, e):
        """``(lower, upper, tol, support)``: the hull ``pair`` gives element ``e``'s value --
        its own one-sided derivatives and those of the pair less its partner's (the
        partner's share of the pair's move), at the last level -- the tolerance (the pair's
        and the partner's, as the group check derives them) and the pair's outputs."""
        (j,) = [m for m in pair if m != e]
        r = len(at) + [tuple(int(m) for m in x) for x in rows[len(at):]].index(pair)
        a, own, other = (self._along(rows[k], self.s.refine_steps[rows[k]],
                                     [lv.row(k) for lv in levels])
                         for k in (r, at[e], at[j]))
        last = levels[-1]
        he, hj, hp = last.scale[at[e]], last.scale[at[j]], last.scale[r]
        sides = [last.plus, last.minus]
        values = [v[at[e]] for v in sides] + [
            (v[r] * hp - v[at[j]] * hj) / he for v in sides]
        return (float(min(values)), float(max(values)), a.tol * hp / he + other.tol * hj / he
                + own.tol, a.support)

    def _pairs(self, elements):
        """The pairs (sorted flat index pairs) of ``elements`` with the elements of exactly
        their value nearest by flat index; those beyond the budget counted in
        :attr:`unprobed`."""
        if self.s.arr.dtype.kind not in "f":
            return []
        values = self.s.arr.reshape(-1)
        near = {}
        for e in elements:
            equal = np.flatnonzero(values == values[e])
            equal = equal[equal != e]
            near[e] = equal[np.argsort(np.abs(equal - e), kind="stable")][:MAX_PARTNERS]
        pairs, beyond = [], set()
        for rank in range(MAX_PARTNERS):  # round-robin: every element's nearest first
            for e in elements:
                if rank >= len(near[e]):
                    continue
                j = int(near[e][rank])
                pair = (min(e, j), max(e, j))
                if pair in pairs or pair in beyond:
                    continue
                if len(pairs) < MAX_PAIRS:
                    pairs.append(pair)
                else:
                    beyond.add(pair)
        self.unprobed = len(beyond)
        return pairs

    def _levels(self, W, scales):
        """One level of the differences along the rows of ``W`` (two forward calls each), in
        units of ``scales``: a :class:`_Level` of arrays, one entry per row."""
        s = self.s
        m = len(W)
        analytic = np.broadcast_to(np.asarray(self.analytic), W.shape)
        moves = DirectionMoves(s.arr, W, analytic=analytic)
        sink = Reduce(self.dout, m, 1, out0=self.out0, one_sided=True,
                      noise_w=s.noise.weights, supports=True)
        differences(s.evaluate, moves, [(1.0, -1.0)], sink, self.out0)
        share = sink.noise if sink.noise is not None else np.zeros(m)
        sigma = s.noise.of_support(share)
        projected = np.array([moves.A[r, (1.0, -1.0)] / 2.0 for r in range(m)])
        return _Level(sink.R[:, 0].real / 2.0 / scales, projected / scales,
                      sink.P[:, 0] / scales, sink.M[:, 0] / scales,
                      one_sided_allowance(sigma, scales), sigma, scales, sink.supports)

    def _directions(self, rows):
        """``(W, means, hs)``: per row (flat elements), the direction ``sum h_i e_i`` of the
        elements' refinement steps, shaped as the target, its mean step and the steps."""
        s = self.s
        hs = [s.refine_steps[r] for r in rows]
        W = np.zeros((len(rows), s.arr.size))
        for k, (r, h) in enumerate(zip(rows, hs)):
            W[k, r] = h
        means = np.array([float(np.mean(h)) for h in hs])
        return W.reshape((len(rows),) + s.arr.shape), means, hs

    def _measure(self, groups):
        """The :class:`_Along` of each group (flat elements) along ``w = sum h_i e_i``, over
        its mean step: two forward calls a group, two more where its one-sided gap is seen
        (the level at a quarter of the step, for :func:`gradcheck.engine.refine.at_kink`)."""
        W, means, hs = self._directions(groups)
        first = self._levels(W, means)
        seen = np.flatnonzero(gap_seen(first.gap, first.side))
        second = self._levels(W[seen] / RATIO, means[seen] / RATIO) if len(seen) else None
        where = {int(r): k for k, r in enumerate(seen)}
        return [self._along(group, hs[r], [first.row(r)] + (
            [second.row(where[r])] if r in where else [])) for r, group in enumerate(groups)]

    def _along(self, group, h, levels):
        """The :class:`_Along` of one group from its levels (the last one judges)."""
        smooth = not bool(at_kink([np.array([lv.gap]) for lv in levels],
                                  [np.array([lv.side]) for lv in levels])[0])
        last, mean = levels[-1], float(np.mean(h))
        estimate = abs(levels[0].D - last.D) / (RATIO ** 2 - 1) if len(levels) > 1 else 0.0
        rule = replace(self.rule, floor=direction_floor(self.rule.floor, h) / mean)
        rounding = rounding_error(last.sigma, last.scale, methods.get("central").gain)
        _, allowed = rule.apply(np.array([last.D]), np.array([rounding]), np.array([estimate]))
        tol = float(allowed[0]) + float(last.side) + self._stored(group, h, mean)
        return _Along(float(last.D), float(last.A), float(min(last.plus, last.minus)),
                      float(max(last.plus, last.minus)), tol, smooth, levels[0].support)

    def _check(self, group):
        """The :class:`Tie` of one group (two forward calls, four when the gap is seen)."""
        a = self._measure([group])[0]
        members = tuple(tuple(int(j) for j in np.unravel_index(int(e), self.s.arr.shape))
                        for e in group)
        return Tie(members, a.D, a.A, a.tol, a.smooth)

    def _stored(self, group, h, mean):
        """``ROUNDING_SAFETY`` times the rounding of the group's analytic values as stored
        (half an ulp each, independent: a third of dout three times does not sum to dout
        exactly)."""
        g = self.analytic.reshape(-1)[group]
        dtype = g.dtype if g.dtype.kind == "f" else np.dtype(np.float64)
        terms = np.abs(g.astype(np.float64)) * h / mean
        return ROUNDING_SAFETY * 0.5 * float(np.finfo(dtype).eps) * float(
            np.sqrt(np.sum(terms ** 2)))
