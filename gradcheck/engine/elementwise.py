"""The ``elementwise`` and ``sampled`` strategies: every (or m random) element(s) of a target.

For each checked element ``i`` of a target, the numerical derivative of
``L = sum(forward * dout)`` is compared with the analytic one:
``|numerical_i - analytic_i| <= atol + rtol |numerical_i| + 3 trunc_i``
(``trunc_i``: the method's own truncation-error estimate, where it has one).

Elements that fail are looked at twice more before the verdict:

1. recomputed by Richardson extrapolation from the central-difference step
   (``h, h/2, h/4``), so truncation error at a badly scaled point -- or, for
   the wide stencils of ``central4``/``richardson``, a kink inside the
   stencil -- never fails a correct layer;
2. still failing: the one-sided differences ``D+``/``D-`` are compared at
   the steps ``h, h/2, h/4``; an element where they differ by more than
   ``KINK_FACTOR`` tolerances, by a gap that does not halve with the step as
   it would at a smooth point, sits at a non-differentiable point and is
   excluded from the verdict and listed in the report.
"""

import numpy as np

from gradcheck.engine.steps import element_steps
from gradcheck.engine.tolerances import ESTIMATE_WEIGHT, MARGINAL, derive
from gradcheck.report import Finding, TargetResult

#: At most this many failing elements per target are recomputed.
MAX_REFINED = 512

#: Failing elements whose error exceeds the tolerance by more than this
#: factor are not recomputed by extrapolation: no truncation error is that large.
REFINE_RATIO = 1e6

#: ``|D+ - D-|`` must exceed this many tolerances for a kink.
KINK_FACTOR = 10.0

#: ... and not halve with the step: ``|gap(h/2) / gap(h) - 1/2| > KINK_HALVING``.
KINK_HALVING = 0.25


def _index(i, shape):
    return tuple(int(j) for j in np.unravel_index(int(i), shape))


def compare(run, target, idx=None, strategy="elementwise"):
    """Compare the numerical and analytic gradient of ``target`` on elements ``idx``.

    Parameters
    ----------
    run : gradcheck.protocol.problem.Run
    target : str
    idx : ndarray of int or None
        Flat indices to check (``None``: all).
    strategy : str
        Recorded in the finding texts.

    Returns
    -------
    TargetResult
        ``numerical`` holds NaN at elements not checked.
    """
    arr = run.target_array(target)
    ana_full = run.analytic[target].reshape(-1)
    n = arr.size
    idx = np.arange(n) if idx is None else np.asarray(idx)
    ana = ana_full[idx]
    method = run.method
    steps = element_steps(arr, method, run.eps)
    num, trunc, den, skipped = run.numerical(target, arr, steps, idx, method)
    if skipped.all() and run.eps is not None:
        from gradcheck.errors import GradCheckInputError
        raise GradCheckInputError(
            f"eps={run.eps:g} underflows: x + h == x in {arr.dtype} for every checked element "
            f"(max|x| = {float(np.max(np.abs(arr))):.3g}); pass eps=None for steps chosen from "
            "the dtype and each element's magnitude", layer=run.name, target=target)
    with np.errstate(divide="ignore"):
        rounding = np.where(den > 0, 2.0 * run.rounding_noise() / den, 0.0)
    if method == "complex":  # no cancellation: the forward's own rounding, 4 eps x scale
        rounding = np.full(len(idx), 4.0 * np.finfo(run.out0.dtype).eps
                           * max(float(np.max(np.abs(num))), np.finfo(float).tiny))
    atol, rtol, reason = derive(method, run.out0.dtype, num[~skipped] if (~skipped).any()
                                else num, float(np.max(rounding)), run.atol, run.rtol,
                                scale=run.gradient_scale)
    est = np.nan_to_num(trunc, nan=0.0)
    allowed = atol + rtol * np.abs(num) + ESTIMATE_WEIGHT * est
    diff = np.abs(num - ana)
    diff[np.isnan(diff)] = np.inf  # a NaN gradient is never within tolerance
    failing = (diff > allowed) & ~skipped
    n_refined = 0
    if failing.any() and method != "complex" and np.isfinite(ana).all():  # a smaller stencil
        n_refined = _refine(run, target, arr, idx, ana, num, est, allowed, failing, atol, rtol,
                            float(np.max(rounding)))
        diff = np.abs(num - ana)
    kinks = np.zeros(len(idx), dtype=bool)
    if failing.any() and method != "complex" and np.isfinite(ana).all():
        # judged with the engine's own tolerance, never the caller's (atol=rtol=0
        # must not turn every element into a "kink")
        own_atol, own_rtol, _ = derive(method, run.out0.dtype, num, float(np.max(rounding)),
                                       scale=run.gradient_scale)
        own = own_atol + own_rtol * np.abs(num) + ESTIMATE_WEIGHT * est
        kinks = _kinks(run, target, arr, idx, ana, own, failing)
        failing &= ~kinks
    checked = ~skipped & ~kinks
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
    ratio[~checked] = 0.0
    worst = int(np.argmax(ratio)) if ratio.max() > 0 else int(np.argmax(np.where(checked, diff, 0)))
    margin = float(ratio[worst])
    scale = max(float(np.max(np.abs(num[checked]), initial=0.0)),
                float(np.max(np.abs(ana[checked]), initial=0.0)))
    maxdiff = float(np.max(diff[checked], initial=0.0))
    passed = not failing.any()
    vacuous = (not checked.any()) or bool(
        passed and np.max(np.abs(ana[checked])) <= atol and np.max(np.abs(num[checked])) <= atol)
    _findings(run, target, arr, idx, skipped, kinks, vacuous, num, ana, atol, strategy)
    if not np.isfinite(ana).all():
        run.findings.append(Finding(
            "nonfinite-gradient", True,
            f"backward() returned NaN or inf in the gradient of {target!r} (first at "
            f"{_index(idx[np.argmax(~np.isfinite(ana))], arr.shape)})", target))
    if n_refined:
        reason += (f"; {n_refined} element(s) outside the first tolerance recomputed by "
                   "Richardson extrapolation (steps h, h/2, h/4), allowing 3x its error estimate")
    numerical = np.full(n, np.nan)
    numerical[idx] = num
    estimates = np.full(n, np.nan)
    estimates[idx] = rounding + est
    return TargetResult(
        name=target, shape=tuple(arr.shape), dtype=str(arr.dtype), passed=passed,
        max_abs_error=maxdiff, max_rel_error=maxdiff / scale if scale > 0 else maxdiff,
        worst_index=_index(idx[worst], arr.shape),
        worst_numerical=float(num[worst]), worst_analytic=float(ana[worst]),
        atol=atol, rtol=rtol, tolerance_reason=reason,
        numerical=numerical.reshape(arr.shape), analytic=ana_full.reshape(arr.shape),
        step=float(np.min(steps[idx])), max_step=float(np.max(steps[idx])),
        error_estimate=float(np.max(rounding + est)),
        margin=margin, marginal=MARGINAL < margin < 1.0 / MARGINAL, vacuous=vacuous,
        n_checked=int(checked.sum()), n_skipped=int(skipped.sum()), n_refined=n_refined,
        excluded=tuple(_index(i, arr.shape) for i in idx[kinks]), strategy=strategy,
        error_estimates=estimates.reshape(arr.shape))


def _refine(run, target, arr, idx, ana, num, est, allowed, failing, atol, rtol, rounding_max):
    """Recompute failing elements by Richardson extrapolation, in place; return the count."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(num - ana) / allowed
    rows = np.flatnonzero(failing & (ratio < REFINE_RATIO))
    if len(rows) > MAX_REFINED:
        rows = rows[np.argsort(-ratio[rows])[:MAX_REFINED]]
    if not len(rows):
        return 0
    steps = element_steps(arr, "central", run.eps)
    value, trunc = run.numerical(target, arr, steps, idx[rows], "richardson")[:2]
    num[rows], est[rows] = value, trunc
    if run.method in ("central4", "richardson") and run.rtol is None:
        # extrapolated from the central step: at least as accurate as central
        # differences, and judged with their tolerance (rounding grows as h shrinks)
        c_atol, c_rtol, _ = derive("central", run.out0.dtype, num, rounding_max,
                                   scale=run.gradient_scale)
        atol, rtol = max(atol, c_atol) if run.atol is None else atol, c_rtol
    allowed[rows] = atol + rtol * np.abs(value) + ESTIMATE_WEIGHT * trunc
    failing[rows] = np.abs(value - ana[rows]) > allowed[rows]
    return len(rows)


def halves_twice(gap, gap2, gap4):
    """Whether one-sided gaps at steps ``h, h/2, h/4`` shrink as at a smooth point.

    Elementwise on arrays; 0/0 (no gap at all) counts as not halving.
    """
    gap, gap2, gap4 = (np.asarray(g, dtype=np.float64) for g in (gap, gap2, gap4))
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((np.abs(gap2 / gap - 0.5) <= KINK_HALVING)
                & (np.abs(gap4 / gap2 - 0.5) <= KINK_HALVING))


def _kinks(run, target, arr, idx, ana, allowed, failing, u=None):
    """Failing elements at non-differentiable points (see the module notes).

    A kink is a jump of the slope: the one-sided differences at step ``h``
    differ by more than ``KINK_FACTOR`` tolerances, and their gap does *not*
    halve twice as the step goes to ``h/2`` and ``h/4`` (at a smooth point it
    is ``~h |f''|`` and halves each time; a kink at distance ``d`` gives a gap
    ``~ (1 - d/s)`` for the step ``s``, which can mimic one halving, at
    ``d = h/3``, but not two). The analytic value is not judged there: any
    subgradient is valid (a value tied in several overlapping max-pool windows
    may receive the upstream gradient of any subset of them, which need not
    lie between the one-sided derivatives).
    """
    rows = np.flatnonzero(failing)[:MAX_REFINED]
    steps = element_steps(arr, "central", run.eps)
    Dp, Dm = run.one_sided(target, arr, steps, idx[rows], u)
    Dp2, Dm2 = run.one_sided(target, arr, steps / 2.0, idx[rows], u)
    Dp4, Dm4 = run.one_sided(target, arr, steps / 4.0, idx[rows], u)
    tol = allowed[rows]
    gap, gap2, gap4 = np.abs(Dp - Dm), np.abs(Dp2 - Dm2), np.abs(Dp4 - Dm4)
    kink_rows = (gap > KINK_FACTOR * tol) & ~halves_twice(gap, gap2, gap4)
    kinks = np.zeros(len(idx), dtype=bool)
    kinks[rows[kink_rows]] = True
    return kinks


def _findings(run, target, arr, idx, skipped, kinks, vacuous, num, ana, atol, strategy):
    if skipped.any():
        run.findings.append(Finding(
            "step-underflow", False,
            f"{int(skipped.sum())} of {len(idx)} elements of {target!r} were not checked: "
            f"x + h == x in {arr.dtype} (pass a larger eps)", target))
    if kinks.any():
        where = [_index(i, arr.shape) for i in idx[kinks]]
        run.findings.append(Finding(
            "nondifferentiable", False,
            f"{len(where)} element(s) of {target!r} excluded at non-differentiable points (the "
            f"one-sided differences disagree, by a gap that does not shrink with the step): "
            f"{where[:10]}{' ...' if len(where) > 10 else ''}", target))
    if vacuous:
        checked = ~skipped & ~kinks
        run.findings.append(Finding(
            "vacuous", False,
            f"the check of {target!r} is vacuous: the gradient is identically zero for this "
            f"dout and input (max|numerical| = {np.max(np.abs(num[checked]), initial=0):.2g}, "
            f"max|analytic| = {np.max(np.abs(ana[checked]), initial=0):.2g}, atol = {atol:.2g})"
            "; it cannot tell a right backward from a wrong one -- use a random dout or "
            "another input", target))
    if strategy == "sampled" and len(idx) < arr.size:
        run.findings.append(Finding(
            "sampled", False,
            f"{target!r}: {len(idx)} of {arr.size} elements checked (sampled); a backward "
            f"wrong in a single element is caught with probability {len(idx) / arr.size:.2f}",
            target))
