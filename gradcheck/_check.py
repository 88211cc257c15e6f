"""``check_layer``: the analytic backward pass against finite differences."""

import platform

import numpy as np

from gradcheck import _numdiff
from gradcheck._adapter import LayerAdapter, check_params_mapping, discover_params, layer_name
from gradcheck._state import StateSnapshot, _bitwise_equal
from gradcheck._steps import base_step, element_steps, machine_eps
from gradcheck._tolerances import MARGINAL, derive
from gradcheck._validate import check_array, check_options
from gradcheck.errors import GradCheckInputError, LayerCallError, LayerProtocolError
from gradcheck.report import Finding, GradCheckReport, TargetResult

#: At most this many failing elements per target are recomputed by
#: Richardson extrapolation before a FAIL is reported.
MAX_REFINED = 512

#: Failing elements whose error exceeds the tolerance by more than this
#: factor are not recomputed: no truncation error is that large.
REFINE_RATIO = 1e6

#: Weight of a method's own per-element truncation-error estimate in the
#: allowed difference (methods that extrapolate: central4, richardson).
ESTIMATE_WEIGHT = 3.0


def check_layer(layer, x, *, train_flg=True, wrt=None, params=None, dout=None,
                method="central", strategy="elementwise", eps=None, atol=None, rtol=None,
                seed=0):
    """Check a layer's analytic ``backward`` against finite differences.

    The scalar checked is ``L = sum(forward(x) * dout)``: ``backward(dout)``
    must return ``dL/dx`` and store ``dL/dp`` in ``d`` + ``p`` for every
    trainable parameter ``p``. Each element of each target is perturbed in
    place, one forward call per perturbed point; the layer's state (running
    statistics, caches, random generators) is put back before every call and
    everything is restored exactly afterwards.

    Parameters
    ----------
    layer : object
        Has ``forward(x[, train_flg]) -> out`` and ``backward(dout) -> dx``.
    x : ndarray of shape (N, ...)
        Input; floating (integer input is converted to float64 and the report
        says so). Never modified.
    train_flg : bool, default True
        Passed to ``forward`` when it accepts it (``False`` = eval mode).
    wrt : list of str or None
        Targets to check (``"x"``, ``"gamma"``, ...); ``None`` = ``x`` and
        every parameter.
    params : dict of str to str or None
        ``{"gamma": "dgamma", ...}``; ``None`` discovers every ndarray
        attribute ``p`` that has an ndarray ``d`` + ``p`` after ``backward``.
    dout : ndarray of the output's shape or None
        Upstream gradient; ``None`` = standard normal from ``seed`` (never
        all ones: with ``dout = 1`` the true ``dx`` of train-mode batch
        normalisation is zero and any check passes vacuously). Never modified.
    method : {"central", "forward", "central4", "richardson"}
        Finite-difference formula (see :mod:`gradcheck._steps` for steps).
    strategy : {"elementwise"}
        Every element of every target (a vector-Jacobian product).
    eps : float or None
        Absolute step for every element; ``None`` = from the dtype and the
        element's magnitude, ``eps_machine**(1/3) * max(1, |x_i|)`` for central
        differences.
    atol, rtol : float or None
        An element passes when ``|numerical - analytic| <= atol + rtol *
        |numerical|``. ``None`` = derived from the dtype, method and step
        (:mod:`gradcheck._tolerances`); the report says which and why.
    seed : int, default 0
        Seed of the random ``dout``.

    Returns
    -------
    GradCheckReport
        ``passed``, per-target ``results``, ``warnings``, ``str()`` table,
        ``to_dict()``, ``raise_if_failed()``.

    Raises
    ------
    GradCheckInputError
        Invalid option, bad ``x``/``dout``/parameter (NaN, inf, empty,
        boolean, complex), a layer that breaks the protocol
        (:class:`~gradcheck.errors.LayerProtocolError`) or raises
        (:class:`~gradcheck.errors.LayerCallError`).

    Notes
    -----
    Failing elements of a ``forward``/``central`` check are recomputed by
    Richardson extrapolation (central differences at ``h, h/2, h/4``) before
    a FAIL is reported, so truncation error at a badly scaled point (a
    constant feature in batch normalisation) never fails a correct layer.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import check_layer
    >>> from layers import BatchNormalization
    >>> bn = BatchNormalization(np.ones(4), np.zeros(4))
    >>> x = np.random.default_rng(0).normal(size=(5, 4))
    >>> report = check_layer(bn, x)
    >>> report.passed, [r.name for r in report.results]
    (True, ['x', 'gamma', 'beta'])
    """
    name = layer_name(layer)
    wrt = check_options(name, method=method, strategy=strategy, eps=eps, atol=atol, rtol=rtol,
                        seed=seed, wrt=wrt, train_flg=train_flg)
    adapter = LayerAdapter(layer, train_flg)
    findings = []
    x_arr, converted = check_array(x, layer=name, target="x", what="x")
    if converted:
        findings.append(Finding("integer-input", False,
                                f"x has integer dtype {np.asarray(x).dtype}; checked as float64",
                                "x"))
    if params is not None:
        params = check_params_mapping(layer, params)
    if wrt is not None:
        for w in wrt:
            ok = w == "x" or (w in params if params is not None
                              else isinstance(getattr(layer, w, None), np.ndarray))
            if not ok:
                raise GradCheckInputError(
                    f"wrt names {w!r}, which is neither 'x' nor an ndarray parameter of the layer",
                    layer=name, target=w)
    if dout is not None:
        dout_arr, _ = check_array(dout, layer=name, target="x", what="dout")
        dout_w = np.array(dout_arr, copy=True)
    else:
        dout_w = None
    xw = np.array(x_arr, copy=True, order="C")
    snapshot = StateSnapshot(layer)
    try:
        run = _Run(adapter, xw, x_arr, dout_w, params, wrt, method, eps, atol, rtol, seed,
                   snapshot, findings)
        return run.report(strategy)
    finally:
        snapshot.restore_all()


class _Run:
    """One check: the analytic passes, then the numerical engine per target."""

    def __init__(self, adapter, xw, x_ref, dout, params, wrt, method, eps, atol, rtol, seed,
                 snapshot, findings):
        self.adapter, self.layer, self.name = adapter, adapter.layer, adapter.name
        self.xw, self.x_ref = xw, x_ref
        self.method, self.eps, self.atol, self.rtol, self.seed = method, eps, atol, rtol, seed
        self.snapshot, self.findings = snapshot, findings
        self.fresh_x = False
        self._analytic(dout, params, wrt)

    # -- the analytic side ---------------------------------------------------
    def _forward_base(self):
        out = self.adapter.forward(self.xw)
        out = np.array(out, copy=True)  # the layer may return a view of x or of a reused buffer
        if not _bitwise_equal(self.xw, self.x_ref):
            self.fresh_x = True
            np.copyto(self.xw, self.x_ref)
        return out

    def _analytic(self, dout, params, wrt):
        name, layer = self.name, self.layer
        out0 = self._forward_base()
        if not np.all(np.isfinite(out0)):
            culprits = [k for k, v in vars(layer).items() if isinstance(v, np.ndarray)
                        and v.dtype.kind == "f" and not np.all(np.isfinite(v))]
            if culprits:
                raise GradCheckInputError(
                    f"parameter or state {culprits[0]!r} contains NaN or inf, and forward() "
                    "produced NaN or inf", layer=name, target=culprits[0])
            raise LayerCallError("forward() produced NaN or inf on the unperturbed input",
                                 layer=name)
        if dout is None:
            dout = np.random.default_rng(self.seed).standard_normal(out0.shape)
            dout = dout.astype(out0.dtype, copy=False)
        elif dout.shape != out0.shape:
            raise GradCheckInputError(
                f"dout has shape {dout.shape}, but forward() returned shape {out0.shape}",
                layer=name)
        self.out0, self.dout = out0, dout
        dx1, mod1 = self.adapter.backward(dout, self.xw.shape, self.xw.dtype)
        dx1 = np.array(dx1, dtype=np.float64)
        # which parameters, and do their gradients appear?
        if params is None:
            params = discover_params(layer, exclude={"x"})
            params = {p: g for p, g in params.items() if getattr(layer, p) is not self.xw}
        for p, g in params.items():
            value, grad = getattr(layer, p), getattr(layer, g, None)
            check_array(value, layer=name, target=p, what=f"parameter {p!r}")
            self._check_grad(p, g, value, grad, "after backward()")
        grads1 = {p: np.array(getattr(layer, g), dtype=np.float64) for p, g in params.items()}
        self.params = params
        targets = ["x"] + list(params)
        if wrt is not None:
            missing = [w for w in wrt if w not in targets]
            if missing:
                raise LayerProtocolError(
                    f"wrt names {missing}, but backward() stores no gradient for "
                    f"{'it' if len(missing) == 1 else 'them'}; targets: {targets}",
                    layer=name, target=missing[0])
            targets = [t for t in targets if t in wrt]
        self.targets = targets

        # second pass: same input, gradients poisoned with NaN to catch stale ones
        self.snapshot.restore_all()
        out = self._forward_base()
        if not _bitwise_equal(out, out0):
            self.findings.append(Finding(
                "forward-nondeterministic", True,
                f"forward() gave different outputs for identical input and state (max "
                f"difference {np.max(np.abs(out - out0)):.3g}); randomness the check cannot "
                "replay (an unseeded generator?)"))
        self.dirty = [s for s in self.snapshot.changed()]
        poison = {}
        for p, g in params.items():
            value = getattr(layer, p)
            poison[p] = np.full(value.shape, np.nan, dtype=value.dtype)
            setattr(layer, g, poison[p])
        dx2, mod2 = self.adapter.backward(dout, self.xw.shape, self.xw.dtype)
        self.analytic = {"x": np.array(dx2, dtype=np.float64)}
        for p, g in params.items():
            grad = getattr(layer, g, None)
            if grad is poison[p] and np.isnan(grad).all():
                raise LayerProtocolError(
                    f"backward() did not refresh {g}: it still holds the value from before "
                    "this call (stale from an earlier call, or accumulated into with +=)",
                    layer=name, target=p)
            self._check_grad(p, g, getattr(layer, p), grad, "after the second backward()")
            if np.isnan(grad).any() and not np.isnan(grads1[p]).any():
                raise LayerProtocolError(
                    f"backward() did not refresh every element of {g} (it accumulates into "
                    "or partly keeps the array from an earlier call)", layer=name, target=p)
            self.analytic[p] = np.array(grad, dtype=np.float64)
        if mod1 or mod2:
            self.findings.append(Finding(
                "backward-modifies-dout", False,
                "backward() modifies dout in place (the check passed it a copy); a layer "
                "before it in a network would see the changed array", "x"))
        if self.fresh_x:
            self.findings.append(Finding(
                "forward-modifies-input", True,
                "forward() modifies its input x in place; the caller's array would change "
                "(the check gave it a fresh copy per call)", "x"))
        for t, first in [("x", dx1)] + list(grads1.items()):
            if not _bitwise_equal(first, self.analytic[t]):
                self.findings.append(Finding(
                    "backward-nondeterministic", True,
                    f"two identical forward/backward passes gave different gradients for "
                    f"{t!r} (max difference {np.max(np.abs(first - self.analytic[t])):.3g})", t))
        for s in self.dirty:
            if s.kind == "array" and any(s.obj is getattr(layer, p) for p in params):
                self.findings.append(Finding(
                    "forward-modifies-parameter", True,
                    "forward() modifies a parameter array in place"))
        self.snapshot.restore_all()

    def _check_grad(self, p, g, value, grad, when):
        if grad is None:
            raise LayerProtocolError(f"gradient attribute {g!r} does not exist {when}",
                                     layer=self.name, target=p)
        if not isinstance(grad, np.ndarray):
            raise LayerProtocolError(f"{g} is {type(grad).__name__} {when}, expected an ndarray",
                                     layer=self.name, target=p)
        if grad.shape != value.shape:
            raise LayerProtocolError(
                f"{g} has shape {grad.shape} {when}, but {p} has shape {value.shape}",
                layer=self.name, target=p)

    # -- the numerical side --------------------------------------------------
    def _evaluator(self, target, arr):
        adapter, xw, fresh = self.adapter, self.xw, self.fresh_x
        fwd = adapter.raw_forward
        restores = [s.restore for s in self.dirty if not (s.kind == "array" and s.obj is arr)]
        shape = arr.shape

        def evaluate(i):
            for r in restores:
                r()
            try:
                out = fwd(xw.copy() if fresh else xw)
            except Exception as exc:
                raise LayerCallError(f"forward() raised {type(exc).__name__}: {exc}",
                                     layer=adapter.name, target=target,
                                     index=tuple(int(j) for j in np.unravel_index(i, shape))
                                     ) from exc
            if type(out) is not np.ndarray:
                out = adapter.validate_output(out, target)
            return out

        return evaluate

    def numerical(self, target, arr, steps, idx, method):
        """Numerical derivative, truncation estimate and smallest denominator per element."""
        ev = self._evaluator(target, arr)
        if method == "forward":
            D, den = _numdiff.forward_differences(ev, arr, self.dout, idx, steps, self.out0)
            value, trunc = D[:, 0], np.full(len(idx), np.nan)
        elif method == "central":
            D, den = _numdiff.central_differences(ev, arr, self.dout, idx, steps, (1.0,))
            value, trunc = D[:, 0], np.full(len(idx), np.nan)
        elif method == "central4":
            D, den = _numdiff.central_differences(ev, arr, self.dout, idx, steps, (2.0, 1.0))
            value, trunc = _numdiff.richardson(D)
        else:  # richardson: steps h, h/2, h/4
            D, den = _numdiff.central_differences(ev, arr, self.dout, idx, steps,
                                                  (1.0, 0.5, 0.25))
            value, trunc = _numdiff.richardson(D)
        bad = ~np.isfinite(D).all(axis=1)
        if bad.any():
            i = int(idx[np.argmax(bad)])
            raise LayerCallError("forward() produced NaN or inf", layer=self.name,
                                 target=target,
                                 index=tuple(int(j) for j in np.unravel_index(i, arr.shape)))
        skipped = (den == 0.0).any(axis=1)
        return value, trunc, np.min(np.abs(den), axis=1), skipped

    def target_array(self, target):
        return self.xw if target == "x" else getattr(self.layer, target)

    def compare(self, target):
        arr = self.target_array(target)
        ana = self.analytic[target].reshape(-1)
        out_dtype = self.out0.dtype
        ueps = machine_eps(out_dtype)
        steps = element_steps(arr, self.method, self.eps)
        idx = np.arange(arr.size)
        num, trunc, den, skipped = self.numerical(target, arr, steps, idx, self.method)
        noise = ueps * float(np.linalg.norm((self.out0 * self.dout).reshape(-1)))
        with np.errstate(divide="ignore"):
            rounding = np.where(den > 0, 2.0 * noise / den, 0.0)
        atol, rtol, reason = derive(self.method, out_dtype, num[~skipped] if (~skipped).any()
                                    else num, float(np.max(rounding)), self.atol, self.rtol)
        est = np.nan_to_num(trunc, nan=0.0)
        allowed = atol + rtol * np.abs(num) + ESTIMATE_WEIGHT * est
        diff = np.abs(num - ana)
        failing = (diff > allowed) & ~skipped
        n_refined = 0
        if failing.any() and self.method in ("forward", "central"):
            num, est, allowed, diff, failing, n_refined = self._refine(
                target, arr, ana, num, est, allowed, failing, atol, rtol)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(allowed > 0, diff / allowed, np.where(diff > 0, np.inf, 0.0))
        ratio[skipped] = 0.0
        worst = int(np.argmax(ratio)) if ratio.max() > 0 else int(np.argmax(diff))
        margin = float(ratio[worst])
        scale = max(float(np.max(np.abs(num))), float(np.max(np.abs(ana))))
        passed = not failing.any()
        vacuous = bool(skipped.all()) or bool(
            passed and np.max(np.abs(ana)) <= atol and np.max(np.abs(num)) <= atol)
        if skipped.any():
            self.findings.append(Finding(
                "step-underflow", False,
                f"{int(skipped.sum())} of {arr.size} elements of {target!r} were not checked: "
                f"x + h == x in {arr.dtype} (pass a larger eps)", target))
        if vacuous:
            self.findings.append(Finding(
                "vacuous", False,
                f"the check of {target!r} is vacuous: the gradient is identically zero for this "
                f"dout and input (max|numerical| = {np.max(np.abs(num)):.2g}, max|analytic| = "
                f"{np.max(np.abs(ana)):.2g}, atol = {atol:.2g}); it cannot tell a right "
                "backward from a wrong one -- use a random dout or another input", target))
        if n_refined:
            reason += (f"; {n_refined} element(s) outside the first tolerance recomputed by "
                       "Richardson extrapolation (steps h, h/2, h/4), allowing 3x its error "
                       "estimate")
        return TargetResult(
            name=target, shape=tuple(arr.shape), dtype=str(arr.dtype), passed=passed,
            max_abs_error=float(diff.max()),
            max_rel_error=float(diff.max() / scale) if scale > 0 else float(diff.max()),
            worst_index=tuple(int(j) for j in np.unravel_index(worst, arr.shape)),
            worst_numerical=float(num[worst]), worst_analytic=float(ana[worst]),
            atol=atol, rtol=rtol, tolerance_reason=reason,
            numerical=num.reshape(arr.shape), analytic=ana.reshape(arr.shape),
            step=float(np.min(steps)), error_estimate=float(np.max(rounding + est)),
            margin=margin, marginal=MARGINAL < margin < 1.0 / MARGINAL, vacuous=vacuous,
            n_checked=int((~skipped).sum()), n_skipped=int(skipped.sum()), n_refined=n_refined)

    def _refine(self, target, arr, ana, num, est, allowed, failing, atol, rtol):
        """Recompute failing elements by Richardson extrapolation from the central step."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(num - ana) / allowed
        bad = np.flatnonzero(failing & (ratio < REFINE_RATIO))
        if len(bad) > MAX_REFINED:
            bad = bad[np.argsort(-ratio[bad])[:MAX_REFINED]]
        if not len(bad):
            return num, est, allowed, np.abs(num - ana), failing, 0
        steps = element_steps(arr, "central", self.eps)
        value, trunc = self.numerical(target, arr, steps, bad, "richardson")[:2]
        num, est, allowed = num.copy(), est.copy(), allowed.copy()
        num[bad], est[bad] = value, trunc
        allowed[bad] = atol + rtol * np.abs(value) + ESTIMATE_WEIGHT * trunc
        diff = np.abs(num - ana)
        failing = failing.copy()
        failing[bad] = diff[bad] > allowed[bad]
        return num, est, allowed, diff, failing, len(bad)

    def report(self, strategy):
        results = tuple(self.compare(t) for t in self.targets)
        self.snapshot.restore_all()
        return GradCheckReport(
            layer=self.name, input_shape=tuple(self.xw.shape), dtype=str(self.xw.dtype),
            train_flg=self.adapter.train_flg, method=self.method, strategy=strategy,
            seed=self.seed, results=results, findings=tuple(self.findings),
            forward_calls=self.adapter.forward_calls,
            backward_calls=self.adapter.backward_calls, versions=_versions())


def _versions():
    from gradcheck import __version__
    return {"gradcheck": __version__, "numpy": np.__version__,
            "python": platform.python_version()}
