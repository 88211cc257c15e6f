"""The verdict: judge, refine, kinks -> PASS / FAIL / INCONCLUSIVE. The only place it is decided.

Every strategy hands over a :class:`Comparison` -- for each compared item
(an element, a Jacobian entry, a random projection) its numerical and
analytic value, its rounding error and the method's own truncation estimate,
the target's tolerance :class:`~gradcheck.engine.tolerances.Rule` and a
refiner -- and :func:`decide` turns it into one
:class:`~gradcheck.report.TargetResult`:

1. **judge**: item ``i`` fails when ``|numerical_i - analytic_i| > allowed_i``
   (``allowed_i = atol_i + rtol |numerical_i|``, the rule applied to the
   item's own error estimates; a NaN analytic value always fails);
2. **refine**: failing items are recomputed by the strategy's refiner (a step
   search, :mod:`gradcheck.engine.refine`) and judged again by the same rule
   with their refined error estimates; so are the items a screen found at kinks
   the method cannot see (``suspects``: a one-sided method's), passing or not;
3. **kinks**: an item still failing at a kink is *judged*: its analytic value
   must lie in the hull of the one-sided derivatives, plus its tolerance; if
   it does, the item is excluded from the verdict and listed with both
   one-sided values; elements at a kink they share (a tie) are then checked
   together, along the direction that moves them all, where the function is
   differentiable (:mod:`gradcheck.engine.ties`): a group whose gradient does
   not sum to the derivative along it fails the target; an element still failing with
   no kink seen, whose moving alone leaves the output unchanged at a tie (a median's),
   is looked at along pairs with the elements of exactly its value first
   (:meth:`gradcheck.engine.ties.TieCheck.unseen`: elementwise items only);
4. **verdict**: ``FAIL`` if any item fails; else ``INCONCLUSIVE`` when the
   check could not have caught an error of practical size -- nothing could
   be checked, the numerical gradient is indistinguishable from zero, more
   than ``max_kink_fraction`` of the items sit at kinks (not counting the members
   of tie groups verified along their direction, :attr:`gradcheck.engine.ties.
   Ties.verified`: each within its one-sided hull and the group's sum checked,
   all a generalized gradient must satisfy there), or the resolution
   (the largest tolerance, as a single-element error) is coarser than
   ``min_resolution`` times the gradient's scale, or (last) only a sample of
   the elements was checked (:func:`sampled_only`); else ``PASS``.

A target the caller declares structurally zero (``expect_zero``) passes when
its numerical and analytic gradients are both zero to within the resolution,
which is then stated in absolute units; either one not zero FAILs it, with an
``expect-zero-violated`` finding naming the largest elements.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from gradcheck.engine.tolerances import MARGINAL, in_hull
from gradcheck.report import Finding, TargetResult

__all__ = ["Policy", "Comparison", "decide", "verdict_of", "MAX_REFINED", "FIRST_REFINED",
           "ZERO_GRADIENT"]

#: At most this many failing items per target are refined, unless most of the first ones
#: were rescued by refining (then all are).
MAX_REFINED = 256

#: Refined first; when none of them is rescued the failure is real and the rest is not refined.
FIRST_REFINED = 8


#: How an INCONCLUSIVE verdict for a vanishing gradient begins (the check's zero-state note
#: looks for it).
ZERO_GRADIENT = "the numerical gradient is indistinguishable from zero"


@dataclass(frozen=True)
class Policy:
    """What the caller counts as a conclusive check.

    Attributes
    ----------
    min_resolution : float
        A target whose resolution is coarser than this fraction of its
        gradient's scale is INCONCLUSIVE.
    max_kink_fraction : float
        A target with more than this fraction of its items at kinks is
        INCONCLUSIVE (members of verified tie groups count as checked).
    expect_zero : bool
        The caller says this target's gradient is zero for every input (a
        bias before a train-mode batch normalisation).
    accepts_inconclusive : bool
        The caller counts INCONCLUSIVE as passing (``inconclusive="pass"``): a reason
        does not suggest it.
    """

    min_resolution: float = 1e-3
    max_kink_fraction: float = 0.2
    expect_zero: bool = False
    accepts_inconclusive: bool = False


@dataclass
class Comparison:
    """What a strategy produced for one target, before the verdict.

    Items are whatever the strategy compares (elements, Jacobian entries,
    projections); the arrays have one entry per item. ``resolution_factor``
    turns an item's tolerance into a single-element error of the gradient
    and ``gradient_scale`` is the gradient's scale in those units (``None``:
    ``max |numerical|``; the items are elements). ``refined_rounding`` is the
    rounding an item would carry if it were refined (the resolution promises that).
    ``shared_items``: every item sees every element (random projections), so a single
    wrong element moves all of them and the *best* item's bound is the resolution;
    otherwise (elements, Jacobian entries) the worst item's is. ``resolving``: the shared
    items that see the reported gradient itself (the projections along its ``dout``;
    ``None``: all) -- an item along another upstream gradient sees the error of
    *that* gradient, which a wrong backward need not make as large (an error linear in
    ``dout`` shrinks by ``|<u, dout>| / |dout|**2``), so its bound states nothing about
    the reported one. ``checked_fraction``:
    the share of the target's elements the items see (below 1: a random sample, blind
    to an error in the others). ``ties``: ``ties(kinks) -> Ties``, the tie groups of the
    kinks found, checked along their common directions (:mod:`gradcheck.engine.ties`;
    ``None``: not checked). ``suspects``: items refined whether they fail or not -- the
    elements a screen found at kinks the method cannot see (a one-sided method, whose
    value there may equal the analytic one: :func:`gradcheck.engine.projection.
    left_screen`); their refinement judges them as any item failing first.
    """

    name: str
    shape: tuple
    dtype: str
    strategy: str
    method: str
    numerical: np.ndarray
    analytic: np.ndarray
    rounding: np.ndarray
    estimate: np.ndarray
    rule: object
    skipped: np.ndarray
    steps: np.ndarray
    index: Callable
    noise: object
    refiner: Optional[object] = None
    resolution_factor: float = 1.0
    gradient_scale: Optional[float] = None
    refined_rounding: Optional[np.ndarray] = None
    shared_items: bool = False
    resolving: Optional[np.ndarray] = None
    checked_fraction: float = 1.0
    full: Optional[Callable] = None
    reason: str = ""
    ties: Optional[Callable] = None

    def scale(self, numerical, mask):
        """The gradient's scale, in its own units: ``gradient_scale``, else the largest
        ``|numerical|`` of the items in ``mask`` (items that are elements)."""
        if self.gradient_scale is not None:
            return self.gradient_scale
        return float(np.max(np.abs(numerical[mask]), initial=0.0))
    extra: dict = field(default_factory=dict)
    own_rule: Optional[object] = None
    suspects: Optional[np.ndarray] = None


@dataclass
class _State:
    """The judgement in progress (mutable; one per :func:`decide`)."""

    num: np.ndarray
    rounding: np.ndarray
    estimate: np.ndarray
    allowed: np.ndarray
    failing: np.ndarray
    refined: np.ndarray
    kink_ok: np.ndarray
    kinks: list
    ana: np.ndarray = None
    atol: np.ndarray = None
    bound: np.ndarray = None
    unresolved: np.ndarray = None
    located: list = field(default_factory=list)
    ties: object = None


def _judge(comp):
    num = np.array(comp.numerical, dtype=np.float64)
    rounding = np.array(comp.rounding, dtype=np.float64)
    estimate = np.array(comp.estimate, dtype=np.float64)
    atol_i, allowed = comp.rule.apply(num, rounding, estimate)
    m = len(num)
    st = _State(num, rounding, estimate, allowed, np.zeros(m, bool), np.zeros(m, bool),
                np.zeros(m, bool), [], np.array(comp.analytic, dtype=np.float64),
                atol=np.array(atol_i, dtype=np.float64))
    st.bound = _bound(comp, st.num, st.rounding, st.estimate)
    st.failing = (_diff(st.num, st.ana) > st.allowed) & ~comp.skipped
    return st


def _bound(comp, num, rounding, estimate):
    """The engine's own bound on each item's numerical error: its rule's tolerance,
    whatever tolerances the caller gave (``TargetResult.error_estimates``)."""
    return (comp.own_rule or comp.rule).apply(num, rounding, estimate)[1]


def _diff(num, ana):
    d = np.abs(num - ana)
    d[np.isnan(d)] = np.inf  # a NaN gradient is never within tolerance
    return d


def _refine(comp, st):
    """Refine failing items, worst first; stop early when the failure is clearly real."""
    if comp.refiner is None or not st.failing.any() or not np.isfinite(st.ana).all():
        return
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _diff(st.num, st.ana) / st.allowed
    rows = np.flatnonzero(st.failing)
    rows = rows[np.argsort(-ratio[rows], kind="stable")]
    first, rest = rows[:FIRST_REFINED], rows[FIRST_REFINED:]
    _refine_rows(comp, st, first)
    rescued = np.count_nonzero(~st.failing[first]) / len(first)
    if len(rest) and rescued > 0:
        # past MAX_REFINED only when the failures are mostly numerical (3 of 4 rescued):
        # then every one is refined, since leaving them failing would be a false FAIL
        _refine_rows(comp, st, rest if rescued >= 0.75 else rest[:MAX_REFINED])


#: Per-item arrays of the judgement in progress.
_ITEM_FIELDS = ("num", "rounding", "estimate", "allowed", "failing", "refined", "kink_ok",
                "ana", "atol", "bound")

#: Items whose tolerance is looser than this fraction of ``min_resolution`` (times the
#: gradient's scale) are refined too: near a kink a wide stencil passes with a large
#: estimate of its own error, and would leave the target inconclusive.
LOOSE = 0.1


def _refine_suspects(comp, st):
    """Refine the :attr:`Comparison.suspects` not refined yet, passing or not: every one
    (no :data:`MAX_REFINED` cap: a suspect left unrefined would count as checked, and a
    tie among those past the cap was never grouped)."""
    if comp.refiner is None or comp.suspects is None or not np.isfinite(st.ana).all():
        return
    rows = np.asarray(comp.suspects, dtype=int)
    rows = rows[~st.refined[rows]]
    if len(rows):
        _refine_rows(comp, st, rows)


def _refine_loose(comp, st, policy):
    if comp.refiner is None or not np.isfinite(st.ana).all():
        return
    scale = comp.scale(st.num, ~comp.skipped) / comp.resolution_factor  # in item units
    loose = ~st.refined & ~st.failing & ~comp.skipped & (
        st.allowed > LOOSE * policy.min_resolution * scale)
    rows = np.flatnonzero(loose)[:MAX_REFINED]
    if not len(rows) or scale <= 0:
        return
    before = {k: getattr(st, k)[rows].copy() for k in _ITEM_FIELDS}
    _refine_rows(comp, st, rows)
    worse = st.allowed[rows] >= before["allowed"]  # a refinement is kept only if it helps
    for k, v in before.items():
        getattr(st, k)[rows[worse]] = v[worse]


def _refine_rows(comp, st, rows):
    r = comp.refiner.refine(rows, st.ana[rows])
    if r.analytic is not None:  # the item was redefined (a projection without its kinks)
        st.ana[rows] = r.analytic
    ana = st.ana[rows]
    st.num[rows], st.rounding[rows], st.estimate[rows] = r.value, r.rounding, r.estimate
    st.atol[rows], st.allowed[rows] = comp.rule.apply(r.value, r.rounding, r.estimate)
    st.bound[rows] = _bound(comp, r.value, r.rounding, r.estimate)
    st.refined[rows] = True
    st.failing[rows] = _diff(st.num[rows], ana) > st.allowed[rows]
    at_kink = r.kink & st.failing[rows]
    tol = st.allowed[rows] + (0.0 if r.hull_noise is None else r.hull_noise)
    inside = at_kink & in_hull(ana, r.lower, r.upper, tol)
    st.kink_ok[rows[inside]] = True
    st.failing[rows[inside]] = False
    if r.elements is not None:  # kinks of elements found inside the items
        seen = {k[0] for k in st.kinks}
        for found in r.elements:
            for kink in found:
                if kink[0] not in seen:
                    seen.add(kink[0])
                    st.kinks.append(kink)
    else:
        for j in np.flatnonzero(at_kink):
            st.kinks.append((comp.index(int(rows[j])), float(r.minus[j]), float(r.plus[j]),
                             bool(inside[j])))
    st.located.extend(r.located)


#: The strategies whose items are the target's elements (a failing item is one element).
ELEMENT_STRATEGIES = ("elementwise", "sampled", "grouped")


def _unseen_ties(comp, st):
    """Failing elements at a tie they do not show alone: with no kink seen (a median's),
    or at a kink outside their own one-sided derivatives (a sort's middle slot, which
    moving one tied element alone never reaches): those the tie check finds at a kink
    along pairs of equal elements, inside the pairs' hulls
    (:meth:`gradcheck.engine.ties.TieCheck.unseen`), are at a kink, inside; their groups
    are then checked as any tie's. No forward call when no failing element has an
    element of exactly its value."""
    unseen = getattr(comp.ties, "unseen", None)
    if unseen is None or comp.strategy not in ELEMENT_STRATEGIES or not st.failing.any() \
            or not np.isfinite(st.ana).all():
        return
    inside = {k[0] for k in st.kinks if k[3]}
    rows = [int(r) for r in np.flatnonzero(st.failing) if comp.index(int(r)) not in inside]
    flat = {int(np.ravel_multi_index(comp.index(r), comp.shape)): r for r in rows}
    if not flat:
        return
    for e, (lower, upper) in unseen(sorted(flat)).items():
        r = flat[e]
        st.failing[r], st.kink_ok[r] = False, True
        st.kinks[:] = [k for k in st.kinks if k[0] != comp.index(r)]
        st.kinks.append((comp.index(r), float(lower), float(upper), True))


def decide(comp, policy, findings):
    """Judge, refine, look at kinks and decide one target (see the module notes).

    Parameters
    ----------
    comp : Comparison
    policy : Policy
    findings : list of Finding
        Notes on kinks, skipped items and inconclusive checks are appended.

    Returns
    -------
    TargetResult
    """
    return _result(comp, *_judged(comp, policy, findings))


def verdict_of(comp, policy):
    """The verdict :func:`decide` gives ``comp`` (``"PASS"``, ``"FAIL"`` or
    ``"INCONCLUSIVE"``), without the result it writes (a screen that only asks whether a
    target passes: the sequence check's second call).

    Parameters
    ----------
    comp : Comparison
    policy : Policy

    Returns
    -------
    str
    """
    return _judged(comp, policy, [])[7]


def _judged(comp, policy, findings):
    """:func:`decide`'s judgement: ``(state, checked, diff, worst, margin, scale,
    resolution, verdict, why)``, the notes appended to ``findings``."""
    st = _judge(comp)
    _refine(comp, st)
    _refine_suspects(comp, st)
    _refine_loose(comp, st, policy)
    _unseen_ties(comp, st)
    if comp.ties is not None and any(ok for *_, ok in st.kinks):
        st.ties = comp.ties(st.kinks)
    checked = ~comp.skipped & ~st.kink_ok
    diff = _diff(st.num, st.ana)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(st.allowed > 0, diff / st.allowed, np.where(diff > 0, np.inf, 0.0))
    ratio[~checked & ~st.failing] = 0.0
    worst = int(np.argmax(ratio)) if ratio.max() > 0 else int(np.argmax(np.where(checked, diff,
                                                                                  -1.0)))
    scale = comp.scale(st.num, checked)
    if st.ties is not None and comp.gradient_scale is None:  # the tie groups' moves count
        scale = max([scale] + [abs(t.numerical) for t in st.ties.groups
                               if t.smooth and not t.failed])
    st.unresolved = _unresolved(comp, st, checked, scale, policy)
    resolution = _resolution(comp, st, checked & ~st.unresolved)
    verdict, why = _verdict(comp, st, checked, scale, resolution, policy)
    broken = _not_zero(comp, st, checked) if policy.expect_zero else ""
    if broken:
        verdict, why = "FAIL", ""
        findings.append(Finding("expect-zero-violated", True, broken, comp.name))
    _notes(comp, st, checked, verdict, why, scale, findings)
    return st, checked, diff, worst, float(ratio[worst]), scale, resolution, verdict, why


def _not_zero(comp, st, checked):
    """Why a target declared ``expect_zero`` is not zero ("" when both gradients are zero to
    within each element's tolerance): the largest analytic and numerical elements."""
    ana, num = np.where(checked, np.abs(st.ana), 0.0), np.where(checked, np.abs(st.num), 0.0)
    if not (np.any(ana > st.allowed) or np.any(num > st.allowed)):
        return ""
    i, j = int(np.argmax(ana)), int(np.argmax(num))
    at = (lambda k: f"random projection {k}") if comp.shared_items else comp.index
    return (f"{comp.name!r} was declared expect_zero, but its gradient is not zero: "
            f"max|analytic| = {ana[i]:.6g} at {at(i)} (tolerance "
            f"{st.allowed[i]:.2g}), " + (
                f"max|numerical| = {num[j]:.6g} at {at(j)}: the forward depends on it"
                if num[j] > st.allowed[j] else
                f"max|numerical| = {num[j]:.2g}: backward returns a gradient the forward does "
                "not have"))


def _unresolved(comp, st, checked, scale, policy):
    """Elements judged only at a tolerance coarser than ``min_resolution`` (near a kink or a
    steep feature, refinement ends with a large error estimate). A few are listed and left
    out of the stated resolution; more than ``max_kink_fraction`` of them leave it as is (the
    target is then INCONCLUSIVE for its resolution)."""
    none = np.zeros(len(st.num), bool)
    if comp.shared_items or scale <= 0 or not checked.any():
        return none
    coarse = checked & ~st.failing & (st.allowed > policy.min_resolution * scale)
    if not coarse.any() or coarse.sum() > policy.max_kink_fraction * len(st.num):
        return none
    return coarse


def _resolution(comp, st, checked):
    """The smallest single-element error the check would catch, in the gradient's units.

    An element outside its first tolerance is refined before it can fail, and judged on
    the refined tolerance: so the promise covers, for every element not refined here, the
    tolerance a refinement would give it (its first triple's rounding,
    ``refined_rounding``), besides the tolerances applied.
    """
    if not checked.any():
        return float("inf")
    allowed = st.allowed.copy()
    if comp.refined_rounding is not None and comp.refiner is not None:
        pending = checked & ~st.refined
        _, would = comp.rule.apply(st.num[pending], comp.refined_rounding[pending])
        allowed[pending] = np.maximum(allowed[pending], would)
    if comp.shared_items:  # caught by any item it moves past its tolerance and its own error,
        # among those that see the reported gradient
        seen = checked if comp.resolving is None else checked & comp.resolving
        if not seen.any():
            return float("inf")
        bound = allowed[seen] + _diff(st.num, st.ana)[seen]
        return float(np.min(bound)) * comp.resolution_factor
    return float(np.max(allowed[checked])) * comp.resolution_factor


def _verdict(comp, st, checked, scale, resolution, policy):
    """``(verdict, why)``: why is the INCONCLUSIVE reason, or empty."""
    if st.failing.any() or not np.isfinite(st.ana).all() or _tie_failures(st):
        return "FAIL", ""
    n = len(st.num)
    if not checked.any():
        return "INCONCLUSIVE", ("no element could be checked (every step underflowed or "
                                "every element sits at a kink): use another input")
    zero = bool(np.all(np.abs(st.num[checked]) <= st.allowed[checked])) and not any(
        t.smooth and not t.failed and abs(t.numerical) > t.allowed
        for t in (st.ties.groups if st.ties is not None else ()))  # a tie group that moves
    if zero and policy.expect_zero:
        return "PASS", ""
    if zero:
        return "INCONCLUSIVE", (
            f"{ZERO_GRADIENT} (max|numerical| = "
            f"{scale:.2g} <= its tolerance): a wrong backward of this size would pass. Use "
            "another input or dout (a batch of N >= 2 for batch statistics), or declare it "
            "with expect_zero if the gradient is zero by the layer's structure")
    verified = set() if st.ties is None else st.ties.verified
    at_kinks = len({i for i, *_, ok in st.kinks if ok} - verified)
    # in elements: a Jacobian's items are its entries, every element has a column of them
    size = {"projection": max(n, int(np.prod(comp.shape))),
            "jacobian": int(np.prod(comp.shape))}.get(comp.strategy, n)
    coarse = len({comp.index(int(r)) for r in np.flatnonzero(st.unresolved)})
    if at_kinks + coarse > policy.max_kink_fraction * size:
        return "INCONCLUSIVE", (
            f"{at_kinks + coarse} of {size} elements sit at kinks or could only be resolved "
            "coarsely there, where only the hull of the one-sided derivatives (or a loose "
            "tolerance) was checked" + (f" ({len(verified)} more in tie groups verified along "
                                        "their direction count as checked)" if verified
                                        else "")
            + ": use an input away from kinks (ReLU at 0, ties in max pooling)")
    relative = resolution / scale if scale > 0 else np.inf
    if relative > policy.min_resolution:
        return "INCONCLUSIVE", (
            f"resolution {resolution:.2g} is {relative:.2g} of the gradient's scale, coarser "
            f"than min_resolution = {policy.min_resolution:g}: only errors above that are "
            f"caught. Try {_better(comp.method)}a float64 layer, or an input where the "
            "forward is better conditioned")
    if comp.checked_fraction < 1.0:
        return "INCONCLUSIVE", _sampled_reason(comp, n, resolution,
                                               policy.accepts_inconclusive)
    return "PASS", ""


def sampled_remedy(accepted=False):
    """The remedy for a target INCONCLUSIVE only because ``strategy="sampled"`` left
    elements unchecked: ends its ``inconclusive`` reason, and is the report's hint then.
    ``accepted``: the caller already counts it as passing (``inconclusive="pass"``)."""
    return ("strategy='auto' or 'elementwise' checks every element, as does samples= at "
            "least the target's size; " + ("accepted as passing here (inconclusive='pass')"
                                           if accepted else
                                           "inconclusive='pass' accepts a sampled check"))


def _sampled_reason(comp, n, resolution, accepted):
    """Why a check of a random sample of the elements proves nothing about the others."""
    total = int(np.prod(comp.shape))
    f = comp.checked_fraction
    return (f"only {n} of {total} elements were checked (sampled, {f:.0%}): an error in any "
            f"of the other {total - n} is not caught (a single wrong element escapes with "
            f"probability {1.0 - f:.2f}); the resolution {resolution:.2g} holds for the "
            f"checked elements only. {sampled_remedy(accepted)}")


def vanished(results):
    """The targets of ``results`` INCONCLUSIVE only because their numerical gradient was
    indistinguishable from zero at the check's point (:data:`ZERO_GRADIENT`).

    Parameters
    ----------
    results : iterable of TargetResult

    Returns
    -------
    list of str
    """
    return [r.name for r in results if r.verdict == "INCONCLUSIVE"
            and (r.inconclusive or "").startswith(ZERO_GRADIENT)]


def sampled_only(result):
    """Whether a target is INCONCLUSIVE only because a sample of its elements was checked.

    Parameters
    ----------
    result : gradcheck.report.TargetResult

    Returns
    -------
    bool
        True when the verdict is ``"INCONCLUSIVE"``, not every element was checked and the
        reason is the sampled one (the last of :func:`decide`'s: no other applied); its
        remedy is :func:`sampled_remedy`'s, not another input or dout.
    """
    return (result.verdict == "INCONCLUSIVE" and result.checked_fraction < 1.0
            and result.inconclusive.endswith((sampled_remedy(False), sampled_remedy(True))))


def _tie_failures(st):
    """The tie groups that failed (:class:`gradcheck.engine.ties.Tie`), worst first."""
    if st.ties is None:
        return []
    return sorted(st.ties.failed, key=lambda t: -t.margin)


def _better(method):
    """The methods worth trying instead of ``method`` for a finer resolution, as advice."""
    others = [m for m in ("central", "richardson") if m != method]
    return "".join(f"method={m!r}, " for m in others)


def _notes(comp, st, checked, verdict, why, scale, findings):
    name = comp.name
    if comp.skipped.any():
        findings.append(Finding(
            "step-underflow", False,
            f"{int(comp.skipped.sum())} of {len(st.num)} elements of {name!r} were not "
            f"checked: x + h == x in {comp.dtype} (pass a larger eps)", name))
    if st.kinks:
        grouped = set() if st.ties is None else st.ties.verified
        ana = _analytic_at(comp, st, [k[0] for k in st.kinks[:10]])
        shown = [f"{i}: one-sided {lo:.6g} / {hi:.6g}" + (
            " (outside)" if not ok else
            f" (analytic {ana[i][0]:.6g} outside them: its tie group's sum verified)"
            if i in grouped and i in ana and not min(lo, hi) - ana[i][1] <= ana[i][0]
            <= max(lo, hi) + ana[i][1]
            else "") for i, lo, hi, ok in st.kinks[:10]]
        inside = sum(ok for *_, ok in st.kinks)
        outside = len(st.kinks) - inside
        findings.append(Finding(
            "nondifferentiable", False,
            f"{len(st.kinks)} element(s) of {name!r} judged at non-differentiable points "
            f"({inside} inside the one-sided derivatives, excluded; {outside} outside, "
            f"failing): {'; '.join(shown)}{' ...' if len(st.kinks) > 10 else ''}. "
            + _ties_note(st), name))
    for tie in _tie_failures(st):
        findings.append(Finding("tie-gradient", True, tie.message(name), name))
    if st.unresolved.any():
        rows = np.flatnonzero(st.unresolved)
        shown = [f"{comp.index(int(r))}: tolerance {st.allowed[r]:.2g}" for r in rows[:10]]
        findings.append(Finding(
            "unresolved", False,
            f"{len(rows)} element(s) of {name!r} could only be judged at a tolerance coarser "
            f"than min_resolution x the gradient's scale ({scale:.2g}), near a kink or a steep "
            f"feature; the stated resolution leaves them out: {'; '.join(shown)}"
            f"{' ...' if len(rows) > 10 else ''}", name))
    if verdict == "INCONCLUSIVE":
        findings.append(Finding("inconclusive", False, f"{name!r} is inconclusive: {why}", name))
    if not np.isfinite(comp.analytic).all():
        first = int(np.argmax(~np.isfinite(comp.analytic)))
        findings.append(Finding(
            "nonfinite-gradient", True,
            f"backward() returned NaN or inf in the gradient of {name!r} (first at "
            f"{comp.index(first)})", name))


def _analytic_at(comp, st, indices):
    """``{index: (analytic value, its tolerance)}`` of the items at the given indices."""
    wanted = set(indices)
    return {i: (float(st.ana[r]), float(st.allowed[r])) for r in range(len(st.ana))
            for i in [comp.index(r)] if i in wanted}


def _ties_note(st):
    """What the kinks' finding says was and was not ruled out at the ties."""
    note = "" if st.ties is None else st.ties.note()
    grouped = set() if st.ties is None else {m for t in st.ties.groups if t.smooth
                                             for m in t.members}
    rest = len({i for i, *_, ok in st.kinks if ok} - grouped)  # partners joined are no kinks
    if not note:
        return ("A gradient split wrongly between tied elements (a max-pool tie) lies "
                "inside each element's hull and is not caught here")
    return note + ("" if rest <= 0 else f"; for the other {rest} element(s), a gradient "
                   "split wrongly between tied elements lies inside each element's hull "
                   "and is not caught here")


def _result(comp, st, checked, diff, worst, margin, scale, resolution, verdict, why):
    maxdiff = float(np.max(np.where(checked | st.failing, diff, 0.0), initial=0.0))
    maxdiff = max([maxdiff] + [abs(t.numerical - t.analytic) for t in _tie_failures(st)])
    big = max(scale, float(np.max(np.abs(st.ana[checked]), initial=0.0)))
    n_refined = int(st.refined.sum())
    reason = comp.rule.reason + comp.reason
    if n_refined:
        reason += (f"; {n_refined} element(s) outside the first tolerance refined by a step "
                   "search (central differences at h 2^-k, Richardson-extrapolated), judged "
                   "by the same rule with their own error estimates")
    full = comp.full(st) if comp.full is not None else {}
    tie = (_tie_failures(st) or [None])[0]
    worst_num, worst_ana, worst_at = float(st.num[worst]), float(st.ana[worst]), \
        comp.index(worst)
    if tie is not None and tie.margin > margin:
        # the worst item is the tie group: its sum along the group against its derivative
        worst_num, worst_ana, worst_at = tie.numerical, tie.analytic, tie.members[0]
        margin = tie.margin
    return TargetResult(
        name=comp.name, shape=tuple(comp.shape), dtype=comp.dtype, verdict=verdict,
        max_abs_error=maxdiff, max_rel_error=maxdiff / big if big > 0 else maxdiff,
        worst_index=worst_at, worst_numerical=worst_num, worst_analytic=worst_ana,
        atol=float(np.max(st.atol[checked], initial=0.0)),
        rtol=comp.rule.rtol, tolerance_reason=reason,
        numerical=full.get("numerical", st.num), analytic=full.get("analytic", st.ana),
        step=float(np.min(comp.steps)), max_step=float(np.max(comp.steps)),
        error_estimate=float(np.max(st.bound[checked], initial=0.0)),
        margin=margin, marginal=MARGINAL < margin < 1.0 / MARGINAL,
        vacuous=bool(verdict == "INCONCLUSIVE" and "indistinguishable" in why),
        n_checked=int(checked.sum()), n_skipped=int(comp.skipped.sum()), n_refined=n_refined,
        excluded=tuple(i for i, *_, ok in st.kinks if ok), strategy=comp.strategy,
        worst_output_index=comp.extra.get("worst_output_index", lambda w: None)(worst),
        located=tuple(st.located),
        error_estimates=full.get("estimates"), resolution=resolution,
        noise=float(comp.noise.level) if comp.noise is not None else float("nan"),
        inconclusive=why, tolerances=full.get("tolerances"),
        kinks=tuple((i, lo, hi) for i, lo, hi, _ in st.kinks), method=comp.method,
        unresolved=tuple(comp.index(int(r)) for r in np.flatnonzero(st.unresolved)),
        relative_resolution=resolution / scale if scale > 0 else float("inf"),
        checked_fraction=comp.checked_fraction)
