"""The ``jacobian`` strategy: the whole Jacobian, numerically and analytically.

Numerically, one column per input element (two forward calls each, nothing
reduced); analytically, one row per output element: a ``backward`` with the
unit upstream gradient ``e_i`` (one forward and one backward call each), as
PyTorch's ``gradcheck`` does. Every entry is compared and the worst one is
reported as ``(output index, input index)`` with both values. Meant for small
layers: it costs ``out.size`` backward calls and ``out.size x n`` memory.
"""

import numpy as np

from gradcheck.engine import perturb as _numdiff
from gradcheck.engine.steps import element_steps
from gradcheck.engine.tolerances import ESTIMATE_WEIGHT, MARGINAL, derive
from gradcheck.errors import GradCheckInputError
from gradcheck.report import Finding, TargetResult

#: The strategy refuses above this many Jacobian entries (memory and hours of calls).
MAX_ENTRIES = 4_000_000


def compare_jacobian(run):
    """One :class:`TargetResult` per target with the Jacobian blocks compared."""
    out0 = run.out0
    m = out0.size
    sizes = {t: run.target_array(t).size for t in run.targets}
    if m * sum(sizes.values()) > MAX_ENTRIES:
        raise GradCheckInputError(
            f"strategy='jacobian' needs a {m} x {sum(sizes.values())} Jacobian and {m} backward "
            "calls; that would take hours -- use strategy='elementwise' or 'projection'",
            layer=run.name)
    rows = {t: np.zeros((m, n)) for t, n in sizes.items()}
    # e_i scaled by a random c_i (then divided out): with c_i = 1, a backward that
    # ignores dout would look right whenever the output is a scalar loss
    scales = np.random.default_rng([run.seed, 4]).uniform(0.5, 2.0, m)
    for i in range(m):
        u = np.zeros(out0.shape, dtype=out0.dtype)
        u.flat[i] = scales[i]
        grads = run.vjp(u)
        for t in rows:
            rows[t][i] = grads[t].reshape(-1) / scales[i]
    return tuple(_compare_target(run, t, rows[t]) for t in run.targets)


def _compare_target(run, target, Ja):
    arr = run.target_array(target)
    method = "central" if run.method == "forward" else run.method
    steps = element_steps(arr, method, run.eps)
    idx = np.arange(arr.size)
    ev = run._evaluator(target, arr)
    C, den = _numdiff.jacobian_columns(ev, arr, idx, steps, _numdiff.MULTIPLIERS[method])
    m, n, k = C.shape
    value, trunc = _numdiff.combine(method, C.reshape(m * n, k))
    Jn, est = value.reshape(m, n), np.nan_to_num(trunc).reshape(m, n)
    eps = float(np.finfo(run.out0.dtype).eps)
    rounding = 2.0 * eps * float(np.max(np.abs(run.out0))) / float(np.min(np.abs(den[den != 0]),
                                                                          initial=1.0))
    atol, rtol, reason = derive(method, run.out0.dtype, Jn, rounding, run.atol, run.rtol)
    allowed = atol + rtol * np.abs(Jn) + ESTIMATE_WEIGHT * est
    failing = np.abs(Jn - Ja) > allowed
    n_refined = 0
    if failing.any():  # extrapolate from the small central step
        cols = np.flatnonzero(failing.any(axis=0))
        steps = element_steps(arr, "central", run.eps)
        Cr, _ = _numdiff.jacobian_columns(ev, arr, cols, steps, _numdiff.MULTIPLIERS["richardson"])
        v, t = _numdiff.combine("richardson", Cr.reshape(-1, 3))
        Jn[:, cols], est[:, cols] = v.reshape(m, len(cols)), t.reshape(m, len(cols))
        if method != "central" and run.rtol is None:  # judged as central differences
            c_atol, rtol, _ = derive("central", run.out0.dtype, Jn, rounding)
            atol = max(atol, c_atol) if run.atol is None else atol
        allowed = atol + rtol * np.abs(Jn) + ESTIMATE_WEIGHT * est
        failing = np.abs(Jn - Ja) > allowed
        n_refined = len(cols)
        reason += f"; {n_refined} column(s) recomputed by Richardson extrapolation"
    excluded = ()
    if failing.any():
        kink_cols = _kink_columns(ev, arr, steps, np.flatnonzero(failing.any(axis=0)), allowed)
        if len(kink_cols):
            failing[:, kink_cols] = False
            excluded = tuple(tuple(int(k) for k in np.unravel_index(int(j), arr.shape))
                             for j in kink_cols)
            run.findings.append(Finding(
                "nondifferentiable", False,
                f"{len(excluded)} column(s) of the Jacobian of {target!r} excluded at "
                f"non-differentiable points: {list(excluded)[:10]}", target))
    diff = np.abs(Jn - Ja)
    diff[:, [np.ravel_multi_index(e, arr.shape) for e in excluded]] = 0.0
    ratio = diff / np.maximum(allowed, np.finfo(float).tiny)
    wi, wj = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    scale = max(float(np.max(np.abs(Jn))), float(np.max(np.abs(Ja))))
    margin = float(ratio[wi, wj])
    passed = not failing.any()
    vacuous = passed and scale <= atol
    return TargetResult(
        name=target, shape=tuple(arr.shape), dtype=str(arr.dtype), passed=passed,
        max_abs_error=float(diff.max()),
        max_rel_error=float(diff.max() / scale) if scale > 0 else float(diff.max()),
        worst_index=tuple(int(j) for j in np.unravel_index(int(wj), arr.shape)),
        worst_output_index=tuple(int(j) for j in np.unravel_index(int(wi), run.out0.shape)),
        worst_numerical=float(Jn[wi, wj]), worst_analytic=float(Ja[wi, wj]),
        atol=atol, rtol=rtol, tolerance_reason=reason, numerical=Jn, analytic=Ja,
        step=float(np.min(steps)), error_estimate=float(est.max()), margin=margin,
        marginal=MARGINAL < margin < 1.0 / MARGINAL, vacuous=bool(vacuous),
        n_checked=int(Jn.size), n_refined=n_refined, strategy="jacobian", excluded=excluded)


def _kink_columns(ev, arr, steps, cols, allowed):
    """Input elements whose one-sided output differences jump (see ``_elementwise._kinks``)."""
    from gradcheck.engine.elementwise import KINK_FACTOR, halves_twice

    flat = _numdiff._flat_view(arr)
    tp = arr.dtype.type
    kinks = []
    for j in cols:
        saved = flat[j]
        gaps = []
        try:
            flat[j] = saved
            out0 = np.array(ev(j), dtype=np.float64)
            for s in (1.0, 0.5, 0.25):
                h = s * steps[j]
                flat[j] = tp(float(saved) + h)
                up = (np.array(ev(j), dtype=np.float64) - out0) / h
                flat[j] = tp(float(saved) - h)
                down = (out0 - np.array(ev(j), dtype=np.float64)) / h
                flat[j] = saved
                gaps.append(float(np.max(np.abs(up - down))))
        finally:
            flat[j] = saved
        g, g2, g4 = gaps
        if g > KINK_FACTOR * float(np.max(allowed[:, j])) and not halves_twice(g, g2, g4):
            kinks.append(j)
    return np.array(kinks, dtype=int)
