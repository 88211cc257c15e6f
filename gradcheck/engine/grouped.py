"""The ``grouped`` and ``auto`` strategies: exact elementwise verdicts in few forward calls.

With ``L = sum(out * dout)`` and a group of elements whose output supports
are disjoint, one pair of forward calls gives ``dL/dx_j`` for every member
``j``: the output difference is reduced over each member's own support
(Curtis, Powell and Reid [1]_, Coleman and Moré [2]_). The supports come from
the target's block structure, learned by a few exact probes
(:mod:`gradcheck.engine.structure`); the groups are its coloring. Cost per
target: ``method.calls`` per group instead of per element -- 2 calls for an
activation, ``2 N`` for train-mode batch normalisation w.r.t. ``x``, ``2 n /
N`` for a batch-independent layer.

Everything else is the elementwise check's (:mod:`gradcheck.engine.
elementwise`): the measured noise (per member, of the outputs of its own
support that changed), the tuned steps (tuned on one whole group), the
tolerances, the verdict and its refinement -- which recomputes an element
*black-box*, one element per forward call, whenever its grouped value fails.

The guarantee. A grouped PASS is reported only when all of these hold:

1. the probes found the structure (no output outside a perturbed block moved);
2. every grouped evaluation left the outputs outside the group's predicted
   supports in place (checked for free on every call);
3. every element refined black-box agreed with its grouped value, both taken
   at the element's own step (to within its tolerance): the perturbations are
   the same, so a disagreement means the structure is wrong;
4. every grouped value, or its black-box refinement, is within tolerance;
5. ``k`` random projections of the whole target (:mod:`gradcheck.engine.
   projection`, each entry a random sign times a random magnitude in [1/2, 1];
   ``k`` = :data:`SINGLE_GROUP_PROJECTIONS` for a target checked
   in one group, else from :data:`MIN_PROJECTIONS` to
   :data:`MAX_PROJECTIONS`) agree with the analytic gradient, black-box
   along the direction (no structure assumed): they PASS (INCONCLUSIVE, too
   coarse to tell, is no backing: the target goes black-box). Their resolution
   is the target's stated one when coarser than its elements' (said in its
   reason): a misattributed contribution is caught by them alone.

A failure of 1-3, or projections that FAIL or are inconclusive for another
reason (kinks the grouped check did not see, a vanishing numerical value),
send the target to the black-box elementwise check, and a finding says why. So a backward error is
missed only if the structure assumption is wrong in a way 1-3 do not see
*and* the misattribution it causes mimics the backward error element by
element *and* the projections miss it (a single wrong element above the
projections' resolution is caught by every projection; several wrong
elements are missed with probability at most ``2**-k``). A wrong structure
misattributes a contribution between two elements of a group (``+e`` at one,
``-e`` at the other); with ±1 entries alone a projection cancels that whenever
the two signs agree (1/2), with random magnitudes only when the magnitudes
nearly agree too (about ``2 * resolution / |e|``). A grouped FAIL is
the black-box refinement's: the elements reported wrong were recomputed one
at a time.

References
----------
.. [1] A. R. Curtis, M. J. D. Powell and J. K. Reid, "On the estimation of
   sparse Jacobian matrices", J. Inst. Maths Applics 13 (1974) 117-119.
.. [2] T. F. Coleman and J. J. Moré, "Estimation of sparse Jacobian matrices
   and graph coloring problems", SIAM J. Numer. Anal. 20(1) (1983) 187-209.
"""

import zlib
from dataclasses import replace

import numpy as np

from gradcheck.engine.elementwise import _tune_elements, compare, prepare
from gradcheck.engine.perturb import (ElementMoves, GroupMoves, GroupReduce, Reduce,
                                      StructureViolated, differences)
from gradcheck.engine.steps import SAMPLE, tune
from gradcheck.engine.structure import detect
from gradcheck.engine.verdict import decide
from gradcheck.report import Finding

__all__ = ["check_target", "AUTO_MIN", "SINGLE_GROUP_PROJECTIONS", "MIN_PROJECTIONS",
           "MAX_PROJECTIONS"]

#: ``strategy="auto"`` checks targets of fewer elements black-box: the probes and the
#: projections cost about what grouping would save.
AUTO_MIN = 32

#: Random projections backing a grouped PASS: one for a target checked in a single group
#: (an activation: 2 calls more, where the whole check is under 20), else from
#: ``MIN_PROJECTIONS`` to ``MAX_PROJECTIONS`` (more when the grouped pass is long).
SINGLE_GROUP_PROJECTIONS = 1
MIN_PROJECTIONS = 2
MAX_PROJECTIONS = 4


class _GroupProbe:
    """The step tuning's probe on one whole group (the sample's values at ``h`` and ``h/2``).

    Keeps the group's differences at the method's own pairs, so the main pass
    reuses them when the tuning keeps those steps.
    """

    def __init__(self, structure, tol, group):
        self.st, self.tol, self.group = structure, tol, group
        self.cache = None

    def __call__(self, evaluate, arr, sample, steps, method, noise, dout, out0):
        st, group = self.st, self.group
        pairs = list(method.pairs) + [(a / 2.0, b / 2.0) for a, b in method.pairs]
        moves = GroupMoves(arr, [group], steps, pairs)
        sink = GroupReduce(dout, [group], st, len(pairs), noise_w=noise.weights,
                           tol=self.tol)
        differences(evaluate, moves, pairs, sink, out0)
        span, R = moves.spans[group], sink.R[group]
        k = len(method.pairs)
        self.cache = (steps.copy(), group, R[:, :k], span[:, :k], sink.noise[group])
        span, R = moves.spans[sample], sink.R[sample]
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.where(span != 0, R / span, 0.0)
        return (method.combine(D[:, :k])[0], method.combine(D[:, k:])[0],
                noise.of_support(sink.noise[sample]))


def _tuner(s, steps):
    """Detect the structure, then tune the steps on one group (the elementwise
    tuning when no structure was found)."""
    opts, problem, name = s.opts, s.problem, s.target.name
    s.structure = detect(s.evaluate, s.arr, problem.out0, problem.out_shape, seed=opts.seed,
                         name=name, tol=opts.nondet_tol, local=s.noise.local)
    s.violation, s.group_cache = None, None
    if not s.structure.found:
        return _tune_elements(s, steps)
    rng = np.random.default_rng([opts.seed, 12, zlib.crc32(name.encode())])
    groups = s.structure.groups
    group = groups[int(rng.integers(len(groups)))]
    # as many elements as the elementwise tuning measures, from one group: the same
    # statistics (the tolerances rest on them), one forward-call pair per step
    sample = np.sort(rng.choice(group, size=min(SAMPLE, len(group)), replace=False))
    probe = _GroupProbe(s.structure, opts.nondet_tol, group)
    try:
        tuned = tune(s.evaluate, s.arr, steps, s.method, s.noise, problem.dout, problem.out0,
                     seed=opts.seed, name=name, adjust=opts.eps is None, sample=sample,
                     probe=probe)
    except StructureViolated as exc:
        s.violation = exc
        return _tune_elements(s, steps)
    s.group_cache = probe.cache
    return tuned


def _grouped_differences(problem, s, idx):
    """``(R, span, support)`` of the elements ``idx``, a group per forward-call pair."""
    st, pairs, n = s.structure, s.method.pairs, s.arr.size
    R, span, support = np.zeros((n, len(pairs))), np.zeros((n, len(pairs))), np.zeros(n)
    groups = list(st.groups)
    cache = s.group_cache
    if cache is not None and np.array_equal(cache[0], s.steps):
        _, members, R[members], span[members], support[members] = cache
        groups = [g for g in groups if not np.array_equal(g, members)]
    if len(groups) > 1 and s.opts.parallel:
        from gradcheck.engine.parallel import parallel_groups, worth_it

        if worth_it(problem, s, len(groups), "grouped forward calls"):
            done, R[done], span[done], support[done] = parallel_groups(problem, s, groups)
            return R[idx], span[idx], support[idx]
    if groups:
        moves = GroupMoves(s.arr, groups, s.steps, pairs)
        sink = GroupReduce(problem.dout, groups, st, len(pairs), noise_w=s.noise.weights,
                           tol=s.opts.nondet_tol)
        differences(s.evaluate, moves, pairs, sink, problem.out0)
        done = np.concatenate(groups)
        R[done], span[done], support[done] = sink.R[done], moves.spans[done], sink.noise[done]
    return R[idx], span[idx], support[idx]


class _Witness:
    """The refiner of a grouped comparison, also witness of the structure.

    Every element it refines is first differentiated black-box at its own step
    (the method's stencil, one element at a time): the perturbations are those
    of its grouped value, so the two agree to rounding when the structure is
    right. :attr:`disagree` lists the rows where they differ by more than the
    element's tolerance (the structure was wrong there); then the refinement
    goes on as in the elementwise check.
    """

    def __init__(self, comp, setup, problem):
        self.comp, self.refiner, self.s, self.problem = comp, comp.refiner, setup, problem
        self.disagree = []

    def refine(self, rows, analytic):
        rows = np.asarray(rows)
        self._witness(rows)
        return self.refiner.refine(rows, analytic)

    def _witness(self, rows):
        # the grouped comparison covers every element in order: a row is an element index
        c, s, pairs = self.comp, self.s, self.s.method.pairs
        sink = Reduce(self.problem.dout, len(rows), len(pairs))
        span = differences(s.evaluate, ElementMoves(s.arr, rows, s.steps), pairs, sink,
                           self.problem.out0)
        with np.errstate(divide="ignore", invalid="ignore"):
            D = np.where(span != 0, sink.R.real / span, 0.0)
        black, _ = s.method.combine(D)
        _, allowed = c.rule.apply(c.numerical[rows], c.rounding[rows], c.estimate[rows])
        off = np.abs(black - c.numerical[rows]) > allowed
        self.disagree.extend(int(i) for i in rows[off])


def _black_box(problem, target, opts, policy, setup, why=None):
    """The black-box elementwise check of ``target``; ``why`` becomes a finding."""
    if why:
        problem.findings.append(Finding("grouped-fallback", False, why, target.name))
    return decide(compare(problem, target, opts, None, "elementwise", setup=setup), policy,
                  problem.findings)


def check_target(problem, target, opts, strategy, policy):
    """One target through the grouped strategy (``"grouped"``) or ``"auto"``.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    target : gradcheck.protocol.problem.Target
    opts : gradcheck.check.Options
    strategy : {"grouped", "auto"}
        ``"auto"`` checks targets under :data:`AUTO_MIN` elements black-box
        without probing them.
    policy : gradcheck.engine.verdict.Policy

    Returns
    -------
    gradcheck.report.TargetResult
        ``strategy`` is ``"grouped"`` when the grouped result stood, else
        ``"elementwise"`` (the report's findings say why).
    """
    before = problem.adapter.forward_calls
    if strategy == "auto" and target.array.size < AUTO_MIN:
        return _black_box(problem, target, opts, policy, prepare(problem, target, opts))
    s = prepare(problem, target, opts, tuner=_tuner)
    st, name = s.structure, target.name
    if st is None or not st.found:
        result = _black_box(problem, target, opts, policy, s)
        if st is None:
            return result
        return replace(result, tolerance_reason=result.tolerance_reason + "; " + st.describe(
            name).split(": ", 1)[1] + ", so checked one element at a time")
    if s.violation is not None:
        return _black_box(problem, target, opts, policy, s, _violated(st, name, s.violation))
    try:
        comp = compare(problem, target, opts, None, "grouped", setup=s,
                       diffs=_grouped_differences)
    except StructureViolated as exc:
        return _black_box(problem, target, opts, policy, s, _violated(st, name, exc))
    witness = _Witness(comp, s, problem)
    comp.refiner = witness
    notes = []
    result = decide(comp, policy, notes)
    if witness.disagree:
        where = comp.index(witness.disagree[0])
        return _black_box(problem, target, opts, policy, s, (
            f"{name!r}: the structure found ({st.kind}) is wrong: the black-box difference of "
            f"{len(witness.disagree)} element(s) (first {where}) disagreed with its grouped "
            "value; checked one element at a time"))
    if result.verdict == "PASS":
        bad, backing = _second_line(problem, target, opts, policy, s)
        if bad:
            return _black_box(problem, target, opts, policy, s, (
                f"{name!r}: the grouped check passed but {bad}; checked one element at a "
                "time"))
        result = _backed(result, backing)
    problem.findings.extend(notes)
    result = replace(result, tolerance_reason=result.tolerance_reason + "; " + _saved(
        problem, s, before))
    return result


def _backed(result, backing):
    """A grouped PASS with what its projections rule out: a contribution credited to the
    wrong one of two elements of a group (a structure the probes did not see) is caught
    only above the projections' resolution, which becomes the target's when coarser."""
    k, res = backing
    resolution = max(result.resolution, res.resolution)
    scale = result.resolution / result.relative_resolution if result.relative_resolution \
        else 0.0
    return replace(result, resolution=resolution,
                   relative_resolution=resolution / scale if scale > 0 else float("inf"),
                   tolerance_reason=result.tolerance_reason + (
                       f"; backed by {k} random projection(s) of the whole target, resolution "
                       f"{res.resolution:.2g}: a contribution credited to the wrong one of two "
                       "elements of a group (a coupling the probes did not see) is not ruled "
                       f"out below it, and above it is missed with probability about (2 x "
                       f"{res.resolution:.2g} / |error|)^{k}" + (
                           " (the resolution stated)" if res.resolution > result.resolution
                           else "")))


def _violated(st, name, exc):
    return (f"{name!r}: the structure found ({st.kind}) is wrong: perturbing a group moved "
            f"output element {exc.output} (by {exc.change:.3g}), outside the group's predicted "
            "supports; checked one element at a time")


def _second_line(problem, target, opts, policy, s):
    """``(what the random projections of the whole target found against the grouped PASS,
    (their count, their result))``: ``("", ...)`` when they pass."""
    from gradcheck.engine.projection import directional

    groups = len(s.structure.groups)
    k = SINGLE_GROUP_PROJECTIONS if groups == 1 else int(np.clip(
        groups // 16, MIN_PROJECTIONS, MAX_PROJECTIONS))
    comp = directional(problem, target, opts, problem.dout, problem.analytic, s, count=k,
                       spread=True)
    res = decide(comp, policy, [])
    if res.verdict == "PASS":
        return "", (k, res)
    if res.verdict == "FAIL":
        return (f"{k} random projections of the whole target disagreed with the analytic "
                f"gradient (worst {res.worst_numerical:.6g} numerically against "
                f"{res.worst_analytic:.6g})"), None
    # too coarse to tell is no backing either: a misattributed contribution of any size
    # below that resolution would pass (one output a 1e8 times the rest)
    return (f"{k} random projections of the whole target were inconclusive where the grouped "
            f"check was not ({res.inconclusive.split(':')[0]})"), None


def _saved(problem, s, before):
    """The sentence of the target's reason that says which structure was used and how many
    calls it saved."""
    st, name, n = s.structure, s.target.name, s.arr.size
    used = problem.adapter.forward_calls - before
    black = s.noise.calls + 2 * s.method.calls * min(SAMPLE, n) + s.method.calls * n
    saved = (f"{black - used} saved" if used <= black else
             f"{used - black} more than that: the refinement at kinks and ties")
    return (f"grouped: {st.describe(name).split(': ', 1)[1]}; checked in {used} forward calls "
            f"in all, about {black} one element at a time ({saved}; "
            f"{st.calls} probe(s), {s.method.calls * len(st.groups)} grouped, the rest noise, "
            "step tuning, refinement and random projections)")
