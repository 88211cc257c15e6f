"""Dispatch: each target through its strategy, then through the one verdict.

Strategies only produce numbers (a :class:`~gradcheck.engine.verdict.
Comparison`); :func:`gradcheck.engine.verdict.decide` turns every one of them
into a result.
"""

import numpy as np

from gradcheck.engine.verdict import Policy, decide
from gradcheck.errors import GradCheckInputError, LayerCallError

__all__ = ["run", "expected_calls"]


def expected_calls(method, sizes):
    """Forward calls an elementwise check with ``method`` makes on targets of ``sizes``, roughly.

    Per target: the noise table (:data:`gradcheck.engine.noise.POINTS`), the step
    tuning on a few elements (:data:`gradcheck.engine.steps.SAMPLE`, at two
    steps) and the method's calls per element; plus the two analytic passes.
    Refinement, retried tables and the sequence check come on top.
    """
    from gradcheck.engine import methods
    from gradcheck.engine.noise import POINTS
    from gradcheck.engine.steps import SAMPLE

    m = methods.get(method)
    per = m.calls if m is not None else 1
    return sum(POINTS + 2 * per * min(SAMPLE, n) + per * n for n in sizes) + 2


def policy_for(opts, target):
    """The verdict :class:`Policy` of ``target`` under ``opts``."""
    return Policy(min_resolution=opts.min_resolution,
                  expect_zero=target.name in opts.expect_zero,
                  accepts_inconclusive=opts.inconclusive == "pass")


def run(problem, strategy, opts):
    """One :class:`~gradcheck.report.TargetResult` per target of ``problem``.

    When forward leaves its domain at a perturbed point of a target (an edge at ``x = 1``,
    which no element's magnitude shows, so only the elements near 0 were screened), every
    element of that target is screened (:meth:`gradcheck.engine.elementwise.Setup.
    keep_in_domain`) and the check runs again, its findings so far dropped; an error that
    no shrinking avoids is raised, naming the element.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    strategy : {"auto", "grouped", "elementwise", "sampled", "jacobian", "projection"}
    opts : gradcheck.check.Options

    Returns
    -------
    tuple of TargetResult
    """
    while True:
        mark = len(problem.findings)
        try:
            return _run(problem, strategy, opts)
        except LayerCallError as exc:
            if not _screened_again(problem, opts, exc):
                raise
            del problem.findings[mark:]


def _screened_again(problem, opts, exc):
    """Whether every element of the target ``exc`` (forward left its domain) was screened
    now, for the first time, and some step shrunk: then a new run may pass where it did."""
    setup = getattr(problem, "setups", {}).get((exc.target, opts.method))
    if exc.intermittent or setup is None or setup.screened_all:
        return False
    return setup.keep_in_domain(every=True)


def _run(problem, strategy, opts):
    """:func:`run`, once."""
    if opts.parallel and (opts.method == "complex" or strategy in ("jacobian", "projection")):
        _serial_note(problem, strategy, opts)
    if opts.method == "complex":
        if strategy not in ("elementwise", "auto"):
            raise GradCheckInputError(
                "method='complex' supports strategy='elementwise' only (and 'auto', which "
                "means it there)", layer=problem.name)
        from gradcheck.engine.complex import comparisons
    elif strategy in ("auto", "grouped"):
        from gradcheck.engine.grouped import check_target

        results = tuple(check_target(problem, t, opts, strategy, policy_for(opts, t))
                        for t in problem.targets)
        _analytic_precision(problem)
        return results
    elif strategy == "jacobian":
        from gradcheck.engine.jacobian import comparisons
    elif strategy == "projection":
        from gradcheck.engine.projection import comparisons
    else:
        comparisons = _elementwise
    results = []
    for target, comp in comparisons(problem, opts, strategy):
        results.append(decide(comp, policy_for(opts, target), problem.findings))
    _analytic_precision(problem, opts.expect_zero)
    return tuple(results)


def _serial_note(problem, strategy, opts):
    """The note that ``n_jobs``/``executor=`` were not used by this strategy or method."""
    from gradcheck.report import Finding

    which = "method='complex'" if opts.method == "complex" else f"strategy={strategy!r}"
    problem.findings.append(Finding(
        "parallel-serial", False,
        f"n_jobs/executor: {which} ran serially; only the elementwise, sampled and grouped "
        "strategies (and auto) split their forward calls over workers"))


#: An analytic gradient rounded this many times above its target's epsilon gets a note.
COARSE_ANALYTIC = 1e4

#: An analytic gradient rounded this much relative is zero to rounding, not coarse.
ZERO_TO_ROUNDING = 0.1


def _analytic_precision(problem, expect_zero=()):
    """Note targets whose analytic gradient is computed in a lower precision than they are.

    Not for a gradient that is zero by structure (``expect_zero``) or no larger than its
    own rounding (``relative >= ZERO_TO_ROUNDING``): that is a zero, not a float32 cast.
    """
    from gradcheck.engine.tolerances import analytic_floor, rms
    from gradcheck.report import Finding

    noise = getattr(problem, "_analytic_noise", None) or {}
    for target in problem.targets:
        size = rms(problem.analytic[target.name])
        level, linear = noise.get(target.name, (0.0, True))  # level: an upper bound
        level = getattr(problem, "analytic_rms", {}).get(target.name, level)  # the estimate
        floor = analytic_floor((level, linear), problem.analytic[target.name], 0.0)
        relative = floor / size if size > 0 else 0.0
        eps = float(np.finfo(target.array.dtype).eps)
        if target.name in expect_zero or relative >= ZERO_TO_ROUNDING:
            continue
        if relative > COARSE_ANALYTIC * eps:
            problem.findings.append(Finding(
                "analytic-precision", False,
                f"the analytic gradient of {target.name!r} is rounded at {relative:.1g} "
                f"relative, far above {target.array.dtype}'s {eps:.1g}: backward computes in "
                "a lower precision (a float32 cast?); the tolerances allow for it, and the "
                "resolution says what is still caught", target.name))


def _elementwise(problem, opts, strategy):
    from gradcheck.engine.elementwise import compare

    rng = np.random.default_rng([opts.seed, 1])
    for target in problem.targets:
        idx = None
        if strategy == "sampled":
            n = target.array.size
            idx = np.sort(rng.choice(n, size=min(opts.samples, n), replace=False))
        comp = compare(problem, target, opts, idx, strategy)
        if strategy == "sampled" and len(comp.numerical) < target.array.size:
            _sampled_note(problem, target, len(comp.numerical))
        yield target, comp


def _sampled_note(problem, target, m):
    from gradcheck.report import Finding

    n = target.array.size
    problem.findings.append(Finding(
        "sampled", False,
        f"{target.name!r}: {m} of {n} elements checked (sampled); a backward wrong in a single "
        f"element is caught with probability {m / n:.2f}", target.name))
