"""The ``projection`` strategy: random projections, then bisection to localise.

For ``k`` random pairs ``(u, v)`` (``u`` of the output's shape, ``v`` of the
target's), the directional finite difference

    s_num = (out(x + h v) - out(x - h v)) . u / (2h)  ~  u . (J v)

is compared with ``s_ana = (J^T u) . v`` from one ``backward(u)``: cost
``2k`` forward calls per target and ``k - 1`` backward calls in all,
independent of the size of the target (PyTorch's ``fast_mode``, Chainer's
directional ``check_backward``).

Detection argument: let ``e = g_ana(u) - g_true(u)`` be the error of the
backward for the upstream ``u``; ``e`` is linear in ``u``, so a wrong backward
gives ``e != 0`` for almost every random ``u``. Then ``e . v`` with
``v ~ N(0, I)`` is ``N(0, |e|^2)``, and a probe misses the bug only when
``|e . v| <= tol``, with probability ``<= 0.8 tol / |e|``; ``k`` independent
probes miss with probability ``<= (0.8 tol / |e|)^k``.

When a probe fails, the wrong elements are found by bisection: the
coordinates are split in halves, the same directional check is made along
``v`` restricted to each half, and only failing halves are split further --
about ``2 log2(n)`` checks per wrong element. Single coordinates are checked
elementwise (with the kink test of :mod:`gradcheck.engine.elementwise`) and
reported like the ``jacobian`` strategy reports entries.
"""

import zlib

import numpy as np

from gradcheck.engine import perturb as _numdiff
from gradcheck.engine.steps import base_step
from gradcheck.engine.tolerances import ESTIMATE_WEIGHT, MARGINAL, SAFETY, derive, nominal_accuracy
from gradcheck.report import Finding, TargetResult

#: Bisection stops after locating this many wrong elements per target.
MAX_LOCATED = 16


class _Directional:
    """Directional differences of one target along (masked) directions."""

    def __init__(self, run, target):
        self.run, self.target = run, target
        self.arr = run.target_array(target)
        self.ev = run._evaluator(target, self.arr)
        self.x0 = self.arr.astype(np.float64)
        rms = float(np.sqrt(np.mean(self.x0 ** 2)))
        self.central_method = run.method if run.method in ("central4", "richardson") \
            else "central"
        self.scale = max(1.0, rms)

    def diff(self, v, u, g, method, step_method=None):
        """``(value, analytic, trunc, rounding, S)`` for direction ``v`` and upstream ``u``."""
        arr, tp = self.arr, self.arr.dtype
        h = base_step(step_method or method, tp) * self.scale
        mults = _numdiff.MULTIPLIERS[method]
        D, A = np.zeros((1, len(mults))), np.zeros((1, len(mults)))
        S = 0.0
        saved = arr.copy()
        buf = None
        try:
            for col, c in enumerate(mults):
                xp = (self.x0 + c * h * v).astype(tp)
                xm = (self.x0 - c * h * v).astype(tp)
                delta = xp.astype(np.float64) - xm.astype(np.float64)
                np.copyto(arr, xp)
                out = self.ev(0)
                if buf is None:
                    buf = np.empty(out.shape, dtype=np.float64)
                np.copyto(buf, out)
                np.copyto(arr, xm)
                buf -= self.ev(0)
                den = 2.0 * c * h
                D[0, col] = float(np.einsum("i,i->", buf.reshape(-1),
                                            u.reshape(-1).astype(np.float64))) / den
                A[0, col] = float(np.sum(g * delta)) / den
                S = max(S, float(np.sum(np.abs(g * delta))) / den)
        finally:
            np.copyto(arr, saved)
        value, trunc = _numdiff.combine(method, D)
        ana, _ = _numdiff.combine(method, A)
        rounding = 2.0 * self.run.rounding_noise(u) / (2.0 * h * min(mults))
        if not np.isfinite(D).all():
            from gradcheck.errors import LayerCallError
            raise LayerCallError("forward() produced NaN or inf along a random direction",
                                 layer=self.run.name, target=self.target)
        return float(value[0]), float(ana[0]), float(np.nan_to_num(trunc[0])), rounding, S

    def judge(self, v, u, g, method, step_method=None, tol_method=None):
        """Compare along ``v``; ``step_method``/``tol_method`` pick the base step and the
        tolerance (a refinement extrapolates from the small central step and is
        judged with the central tolerance)."""
        value, ana, trunc, rounding, S = self.diff(v, u, g, method, step_method)
        run = self.run
        rtol = run.rtol if run.rtol is not None else SAFETY * nominal_accuracy(
            tol_method or method, run.out0.dtype)
        atol = run.atol if run.atol is not None else rtol * S + SAFETY * rounding
        allowed = atol + rtol * abs(value) + ESTIMATE_WEIGHT * trunc
        return value, ana, allowed, atol, rtol, rounding + trunc


def _probes(run):
    """``[(u, grads)]``: ``dout`` with the analytic gradients, then ``probes - 1`` fresh ones."""
    rng = np.random.default_rng([run.seed, 2])
    probes = [(run.dout, run.analytic)]
    for _ in range(run.opts.probes - 1):
        u = rng.standard_normal(run.out0.shape).astype(run.out0.dtype)
        probes.append((u, run.vjp(u)))
    return probes


def compare_projection(run, target, probes=None):
    """Compare ``k`` random projections of ``target``'s gradient; locate wrong elements."""
    if getattr(run, "_probe_cache", None) is None:
        run._probe_cache = _probes(run)
    probes = run._probe_cache
    d = _Directional(run, target)
    rng = np.random.default_rng([run.seed, 3, zlib.crc32(target.encode())])
    k = len(probes)
    num, ana, allowed = np.zeros(k), np.zeros(k), np.zeros(k)
    est = np.zeros(k)
    atol = rtol = 0.0
    failing = np.zeros(k, dtype=bool)
    dirs = []
    for p, (u, grads) in enumerate(probes):
        v = rng.standard_normal(d.arr.shape)
        v /= np.linalg.norm(v)  # unit length: the step moves all n elements by ~h / sqrt(n)
        dirs.append(v)
        g = grads[target]
        num[p], ana[p], allowed[p], atol, rtol, est[p] = d.judge(v, u, g, d.central_method)
        if abs(num[p] - ana[p]) > allowed[p]:  # extrapolate from the small central step
            num[p], ana[p], allowed[p], _, _, est[p] = d.judge(v, u, g, "richardson",
                                                               "central", "central")
        failing[p] = abs(num[p] - ana[p]) > allowed[p]
    located, excluded = [], []
    for p in np.flatnonzero(failing):
        u, grads = probes[p]
        wrong, kinks = _bisect(run, d, dirs[p], u, grads[target])
        located.extend(wrong)
        excluded.extend(i for i in kinks if i not in excluded)
        if not wrong and kinks:
            failing[p] = False  # explained by kinks the direction crossed
        if located:
            break  # localised once: the other failing probes see the same backward
    diff = np.abs(num - ana)
    ratio = diff / np.maximum(allowed, np.finfo(float).tiny)
    worst = int(np.argmax(ratio))
    scale = max(float(np.max(np.abs(num))), float(np.max(np.abs(ana))))
    passed = not failing.any()
    if not passed and not located:
        run.findings.append(Finding(
            "projection-not-localised", False,
            f"{target!r}: a projection failed but bisection found no single wrong element "
            "(the error is spread thinly over many elements)", target))
    if excluded:
        run.findings.append(Finding(
            "nondifferentiable", False,
            f"{len(excluded)} element(s) of {target!r} excluded at non-differentiable points: "
            f"{excluded[:10]}{' ...' if len(excluded) > 10 else ''}", target))
    reason = (f"per probe: rtol = {rtol:.2g}; atol = rtol x sum|(J^T u)_i v_i| + {SAFETY:g} x "
              f"rounding estimate; {k} probes, miss probability <= (0.8 tol/|e|)^{k}")
    if run.atol is not None or run.rtol is not None:
        reason = "tolerances given by the caller; " + reason
    margin = float(ratio[worst])
    return TargetResult(
        name=target, shape=tuple(d.arr.shape), dtype=str(d.arr.dtype), passed=passed,
        max_abs_error=float(diff.max()),
        max_rel_error=float(diff.max() / scale) if scale > 0 else float(diff.max()),
        worst_index=(worst,), worst_numerical=float(num[worst]),
        worst_analytic=float(ana[worst]), atol=float(atol), rtol=float(rtol),
        tolerance_reason=reason, numerical=num, analytic=ana,
        step=base_step(d.central_method, d.arr.dtype) * d.scale,
        error_estimate=float(est.max()), margin=margin,
        marginal=MARGINAL < margin < 1.0 / MARGINAL, n_checked=k,
        strategy="projection", located=tuple(located), excluded=tuple(excluded))


def _bisect(run, d, v, u, g):
    """Wrong elements ``[(index, numerical, analytic)]`` and kink indices along ``v``."""
    from gradcheck.engine.steps import element_steps
    from gradcheck.engine.elementwise import _kinks

    arr = d.arr
    method = "richardson"  # extrapolated from the central step, judged as central
    stack = [np.arange(arr.size)]
    wrong, kinks = [], []
    g_flat = g.reshape(-1)
    while stack and len(wrong) < MAX_LOCATED:
        block = stack.pop()
        if len(block) == 1:
            steps = element_steps(arr, "central", run.eps)
            value, trunc, den, _ = run.numerical(d.target, arr, steps, block, method, u=u)
            value, trunc = float(value[0]), float(np.nan_to_num(trunc[0]))
            ana = float(g_flat[block[0]])
            rounding = 2.0 * run.rounding_noise(u) / float(den[0])
            atol, rtol, _ = derive("central", run.out0.dtype, g_flat, rounding, run.atol,
                                   run.rtol, scale=run.gradient_scale)
            allowed = atol + rtol * abs(value) + ESTIMATE_WEIGHT * trunc
            index = tuple(int(j) for j in np.unravel_index(int(block[0]), arr.shape))
            if abs(value - ana) > allowed:
                is_kink = _kinks(run, d.target, arr, block, np.array([ana]),
                                 np.array([allowed]), np.array([True]), u)[0]
                if is_kink:
                    kinks.append(index)
                else:
                    wrong.append((index, value, ana))
            continue
        for half in (block[: len(block) // 2], block[len(block) // 2:]):
            mask = np.zeros(arr.size)
            mask[half] = 1.0
            vm = v * mask.reshape(arr.shape)
            value, ana, allowed, *_ = d.judge(vm, u, g, method, "central", "central")
            if abs(value - ana) > allowed:
                stack.append(half)
    return wrong, kinks
