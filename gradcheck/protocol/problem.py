"""One check's working state: the analytic passes and the perturbed forward calls.

:class:`Run` does the two analytic forward/backward passes (discovering the
parameters, catching stale gradients, nondeterminism and in-place mutation),
then serves the numerical side: an evaluator per target that restores the
layer's per-call state and calls ``forward`` on the perturbed input, and
``vjp(u)`` for other upstream gradients (the ``jacobian`` and ``projection``
strategies).
"""

import numpy as np

from gradcheck.engine import perturb as _numdiff
from gradcheck.protocol.adapter import discover_params, get_attr, set_attr
from gradcheck.protocol.state import _bitwise_equal
from gradcheck.validate import check_array
from gradcheck.errors import GradCheckInputError, LayerCallError, LayerProtocolError
from gradcheck.report import Finding


def _close(a, b, tol):
    """Bitwise equal (``tol == 0``) or within ``tol`` elementwise."""
    if tol == 0:
        return _bitwise_equal(a, b)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))


def make_evaluator(adapter, xw, fresh_x, dirty, target, arr, shape0):
    """``evaluate(i) -> out``: one forward call on the layer's per-call state.

    Puts back the ``dirty`` state slots (except the perturbed ``arr``), calls
    ``forward`` on ``xw`` (a fresh copy when the layer modifies its input),
    and turns the layer's own exception or a changed output shape into an
    error naming the target and the perturbed element ``i``. Used by the
    serial engine and by every parallel worker.
    """
    fwd = adapter.raw_forward
    restores = [s.restore for s in dirty if not (s.kind == "array" and s.obj is arr)]
    shape = arr.shape

    def evaluate(i):
        for r in restores:
            r()
        try:
            out = fwd(xw.copy() if fresh_x else xw)
        except (Exception, SystemExit) as exc:
            raise LayerCallError(f"forward() raised {type(exc).__name__}: {exc}",
                                 layer=adapter.name, target=target,
                                 index=tuple(int(j) for j in np.unravel_index(i, shape))
                                 ) from exc
        if type(out) is not np.ndarray:
            out = adapter.validate_output(out, target)
        if out.shape != shape0:
            raise LayerProtocolError(
                f"forward() returned shape {out.shape} while perturbing element "
                f"{tuple(int(j) for j in np.unravel_index(i, shape))}, but {shape0} on the "
                "unperturbed input", layer=adapter.name, target=target)
        return out

    return evaluate


class Run:
    """One check: the analytic passes, then the numerical side per target."""

    def __init__(self, adapter, xw, dout, params, wrt, opts, snapshot, findings):
        self.adapter, self.layer, self.name = adapter, adapter.layer, adapter.name
        self.xw, self.x_ref = xw, xw.copy()
        self.opts = opts
        self.method, self.eps, self.atol, self.rtol, self.seed = (
            opts.method, opts.eps, opts.atol, opts.rtol, opts.seed)
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
            params = {p: g for p, g in params.items() if get_attr(layer, p) is not self.xw}
        for p, g in params.items():
            value, grad = get_attr(layer, p), get_attr(layer, g)
            if isinstance(value, np.ndarray) and value.dtype.kind != "f":
                raise GradCheckInputError(
                    f"parameter {p!r} has dtype {value.dtype}; trainable parameters must be "
                    "floating point (convert it with astype(float))", layer=name, target=p)
            check_array(value, layer=name, target=p, what=f"parameter {p!r}")
            self._check_grad(p, g, value, grad, "after backward()")
        grads1 = {p: np.array(get_attr(layer, g), dtype=np.float64) for p, g in params.items()}
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
        if not _close(out, out0, self.opts.nondet_tol):
            self.findings.append(Finding(
                "forward-nondeterministic", True,
                f"forward() gave different outputs for identical input and state (max "
                f"difference {np.max(np.abs(out - out0)):.3g} > nondet_tol = "
                f"{self.opts.nondet_tol:g}); randomness the check cannot replay (an unseeded "
                "generator?)"))
        self.dirty = [s for s in self.snapshot.changed()]
        poison = {}
        for p, g in params.items():
            value = get_attr(layer, p)
            poison[p] = np.full(value.shape, np.nan, dtype=value.dtype)
            set_attr(layer, g, poison[p])
        dx2, mod2 = self.adapter.backward(dout, self.xw.shape, self.xw.dtype)
        self.analytic = {"x": np.array(dx2, dtype=np.float64)}
        for p, g in params.items():
            grad = get_attr(layer, g)
            if grad is poison[p] and np.isnan(grad).all():
                raise LayerProtocolError(
                    f"backward() did not refresh {g}: it still holds the value from before "
                    "this call (stale from an earlier call, or accumulated into with +=)",
                    layer=name, target=p)
            self._check_grad(p, g, get_attr(layer, p), grad, "after the second backward()")
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
            if not _close(first, self.analytic[t], self.opts.nondet_tol):
                self.findings.append(Finding(
                    "backward-nondeterministic", True,
                    f"two identical forward/backward passes gave different gradients for "
                    f"{t!r} (max difference {np.max(np.abs(first - self.analytic[t])):.3g} > "
                    f"nondet_tol = {self.opts.nondet_tol:g})", t))
        for s in self.dirty:
            if s.kind == "array" and any(s.obj is get_attr(layer, p) for p in params):
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
        if grad.dtype.kind != "f":
            raise LayerProtocolError(
                f"{g} has dtype {grad.dtype} {when}; a gradient must be floating point like "
                f"{p} ({value.dtype})", layer=self.name, target=p)
        if grad.shape != value.shape:
            raise LayerProtocolError(
                f"{g} has shape {grad.shape} {when}, but {p} has shape {value.shape}",
                layer=self.name, target=p)

    # -- the numerical side --------------------------------------------------
    def _evaluator(self, target, arr):
        xw = arr if target == "x" else self.xw
        return make_evaluator(self.adapter, xw, self.fresh_x, self.dirty, target, arr,
                              self.out0.shape)

    def numerical(self, target, arr, steps, idx, method, u=None):
        """Finite differences of ``sum(forward * u)`` for the elements ``idx`` of ``arr``.

        Returns
        -------
        value, trunc : ndarray of float64, shape (len(idx),)
            The derivative and its truncation-error estimate (NaN where the
            method has none).
        den : ndarray, shape (len(idx),)
            The smallest step denominator used (``2h`` or ``h``).
        skipped : ndarray of bool
            ``x + h == x`` in the target's dtype.
        """
        u = self.dout if u is None else u
        if method == "complex":
            ev = self._evaluator(target, arr)
            D, den, S = _numdiff.complex_step(ev, arr, u, idx, steps)
            self._check_finite(target, arr, idx, D)
            eps = float(np.finfo(self.out0.dtype).eps)
            # the error estimate of the complex step: the rounding of the summed terms
            return D[:, 0].copy(), 4.0 * eps * S, den[:, 0].copy(), den[:, 0] == 0.0
        elif method == "forward":
            ev = self._evaluator(target, arr)
            D, den = _numdiff.forward_differences(ev, arr, u, idx, steps, self.out0)
        elif self.opts.parallel and len(idx) >= self.opts.parallel_min:
            from gradcheck.engine.parallel import parallel_differences
            D, den = parallel_differences(self, target, u, idx, steps,
                                          _numdiff.MULTIPLIERS[method])
        else:
            ev = self._evaluator(target, arr)
            D, den = _numdiff.central_differences(ev, arr, u, idx, steps,
                                                  _numdiff.MULTIPLIERS[method])
        self._check_finite(target, arr, idx, D)
        value, trunc = _numdiff.combine(method, D)
        skipped = (den == 0.0).any(axis=1)
        return value, trunc, np.min(np.abs(den), axis=1), skipped

    def one_sided(self, target, arr, steps, idx, u=None):
        """Forward and backward one-sided differences ``D+``, ``D-`` (kink detection)."""
        ev = self._evaluator(target, arr)
        u = self.dout if u is None else u
        Dp, Dm = _numdiff.one_sided_differences(ev, arr, u, idx, steps, self.out0)
        self._check_finite(target, arr, idx, np.stack([Dp, Dm], axis=1))
        return Dp, Dm

    def _check_finite(self, target, arr, idx, D):
        bad = ~np.isfinite(D).all(axis=1)
        if bad.any():
            i = int(idx[np.argmax(bad)])
            raise LayerCallError("forward() produced NaN or inf", layer=self.name,
                                 target=target,
                                 index=tuple(int(j) for j in np.unravel_index(i, arr.shape)))

    def target_array(self, target):
        """The array perturbed for ``target`` (a working copy for ``x``)."""
        override = getattr(self, "override", None)
        if override and target in override:
            return override[target]
        return self.xw if target == "x" else get_attr(self.layer, target)

    def vjp(self, u):
        """Analytic gradients of ``sum(forward(x) * u)`` for every target, ``{name: float64}``."""
        self.snapshot.restore_all()
        self.adapter.forward(self.xw.copy() if self.fresh_x else self.xw)
        dx, _ = self.adapter.backward(u, self.xw.shape, self.xw.dtype)
        grads = {"x": np.array(dx, dtype=np.float64)}
        for p, g in self.params.items():
            grads[p] = np.array(get_attr(self.layer, g), dtype=np.float64)
        self.snapshot.restore_all()
        return grads

    @property
    def gradient_scale(self):
        """The largest analytic gradient over every target of this check."""
        return max(float(np.max(np.abs(g), initial=0.0)) for g in self.analytic.values())

    def rounding_noise(self, u=None):
        """``eps * ||out * u||_2``: the rounding error of one reduced output difference."""
        u = self.dout if u is None else u
        eps = float(np.finfo(self.out0.dtype).eps)
        return eps * float(np.linalg.norm((self.out0 * u).reshape(-1)))
