"""The layer as the engine sees it: named targets, a flat forward, a VJP.

:class:`Problem` runs the two analytic forward/backward passes (discovering
the parameters, catching stale gradients, nondeterminism and in-place
mutation) and then serves the numerical side of the check through three
things only, whatever convention the layer follows:

* ``targets``: the arrays to differentiate, each a :class:`Target` whose
  ``array`` the engine perturbs *in place* (a private working copy for an
  input, the layer's own array for a parameter);
* ``evaluator(target)``: ``evaluate(i) -> out``, one forward call on the
  layer's per-call state, the output as one flat 1-D array (the engine
  never sees the output's structure);
* ``vjp(u)``: the analytic gradients of ``sum(out * u)`` for every target.
"""

import re
from dataclasses import dataclass

import numpy as np

from gradcheck.engine.tolerances import rms
from gradcheck.protocol.adapter import (discover_params, get_attr, get_grad, keepdims_of,
                                        set_attr)
from gradcheck.protocol.state import _bitwise_equal
from gradcheck.report import Finding
from gradcheck.validate import check_array
from gradcheck.errors import (GradCheckInputError, LayerCallError, LayerProtocolError,
                              intermittent_error)


@dataclass
class Target:
    """One array the check differentiates.

    Attributes
    ----------
    name : str
        ``"x"`` for the input, else the parameter's name (``"gamma"``,
        ``"params['W1']"``).
    kind : {"input", "parameter"}
    array : ndarray
        The live array perturbed in place by the engine.
    """

    name: str
    kind: str
    array: np.ndarray


#: The random stream of the default upstream gradient, ``default_rng([seed, DOUT_STREAM])``.
DOUT_STREAM = 0xD0


def default_dout(seed, shape, dtype=np.float64):
    """The upstream gradient a check uses when none is given: standard normal.

    Drawn from its own stream of ``seed``, never ``default_rng(seed)`` itself: an
    input drawn as ``default_rng(0).normal(size=...)`` (the usual test input, and
    the gate's for a ``--shape``) would otherwise *be* ``dout``, and a
    normalisation layer's output is then proportional to ``dout``, whose gradient
    with respect to the input is zero (a check that can catch nothing).

    Parameters
    ----------
    seed : int
    shape : tuple of int
        The output's shape.
    dtype : numpy dtype

    Returns
    -------
    ndarray of ``shape`` and ``dtype``
    """
    rng = np.random.default_rng([int(seed), DOUT_STREAM])
    return rng.standard_normal(shape).astype(dtype, copy=False)


def _replayed(snapshot):
    """What the check replays of randomness, for the forward-nondeterministic message: a
    generator reached in another way (another module's, a container's at module level)
    is not among them."""
    names = [s.path or "the layer" for s in snapshot.generators()]
    entropy = [s.path or "the layer" for s in snapshot.slots if s.kind == "entropy"]
    return ("; replayed for every call: " + ", ".join(names[:8])
            + (", ..." if len(names) > 8 else "") + "; a generator reached otherwise is not"
            + (f"; {', '.join(entropy)}: random.SystemRandom, which has no state to replay"
               if entropy else ""))


def _close(a, b, tol):
    """Bitwise equal (``tol == 0``) or within ``tol`` elementwise."""
    if tol == 0:
        return _bitwise_equal(a, b)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))


def _index(i, shape):
    return None if i is None else tuple(int(j) for j in np.unravel_index(int(i), shape))


def _no_overlaps(layer, name, params):
    """Refuse two parameters that share memory without being one target (tied weights and
    views of another parameter are merged by the discovery): perturbing one would move the
    other, and both verdicts would be wrong.

    Raises
    ------
    GradCheckInputError
        Naming both parameters.
    """
    arrays = [(p, get_attr(layer, p)) for p in params]
    arrays = [(p, a) for p, a in arrays if isinstance(a, np.ndarray) and a.ndim]
    for i, (p, a) in enumerate(arrays):
        for q, b in arrays[i + 1:]:
            if a is not b and np.may_share_memory(a, b) and np.shares_memory(a, b):
                raise GradCheckInputError(
                    f"parameters {p!r} and {q!r} share memory (overlapping views of one "
                    "buffer) without one being the other or a view of it: perturbing one "
                    "moves the other, so neither can be checked on its own; hold them as "
                    "separate arrays (or disjoint slices of one)", layer=name, target=q)


def _upper_sigma(level, k):
    """A 99 % upper confidence bound of a standard deviation whose RMS estimate ``level``
    comes from ``k`` samples: ``level * sqrt(k / chi2_0.01(k))`` (Wilson-Hilferty's
    chi-square quantile). A few samples (a 4-element bias: 8) say little about the
    rounding's size: x 2.2 there, x 1.05 at 2,000 samples."""
    z = -2.3263478740408408  # the standard normal's 1 % quantile
    q = k * (1.0 - 2.0 / (9.0 * k) + z * np.sqrt(2.0 / (9.0 * k))) ** 3
    return level * float(np.sqrt(k / q)) if q > 0 else level * 10.0


def _uncorrelated(a, b, additive=None):
    """Whether two rescaled-backward differences look like independent rounding (``True``),
    like a backward that is not linear in dout (``False``: one far larger than the other,
    as when only one scale clips, the two proportional, or ``b = additive * a``: a term
    that does not scale with dout), or cannot tell (``None``: fewer than 4 elements)."""
    if a.size < 4:
        return None
    ma, mb = float(np.max(np.abs(a))), float(np.max(np.abs(b)))
    if ma == 0 or mb == 0:
        return bool(ma == mb == 0)  # exactly equal roundings: linear and exact
    # a term of backward that does not scale with dout (a constant added to dx) gives
    # e (1/c - 1) at each scale c: b = additive * a, to rounding, also where e is the same
    # in every element (then the correlation below is undefined)
    if additive is not None and np.count_nonzero(a) >= a.size / 2 \
            and rms(b - additive * a) <= 1e-6 * rms(b):  # (not a rounding of a few ulps)
        return False
    ra, rb = rms(a), rms(b)
    if max(ra, rb) > 8.0 * min(ra, rb):
        return False
    a, b = a / ma, b / mb  # scaled: no overflow of the products at 1e300
    sa, sb = float(np.std(a)), float(np.std(b))
    if sa == 0 or sb == 0:
        return True
    corr = abs(float(np.mean((a - a.mean()) * (b - b.mean())))) / (sa * sb)
    return bool(corr < (0.9 if a.size >= 16 else 0.99))


def make_evaluator(adapter, xw, fresh_x, dirty, target, arr, size0):
    """``evaluate(i) -> out``: one forward call on the layer's per-call state.

    Puts back the ``dirty`` state slots (except the perturbed ``arr``), calls
    ``forward`` on ``xw`` (a fresh copy when the layer modifies its input),
    and returns the output as a flat 1-D array (a view when it can be: the
    caller consumes it before the next call). The layer's own exception or a
    changed output size becomes an error naming the target and the perturbed
    element ``i`` (``None``: a perturbation of the whole target); forward is
    then called once more at the same point, and an error that does not repeat
    is ``intermittent`` (never taken for the edge of forward's domain). Used by
    the serial engine and by every parallel worker.
    """
    fwd = adapter.bound_forward()
    restores = [s.restore for s in dirty if not (s.kind == "array" and s.obj is arr)]
    shape = arr.shape

    def call():
        for r in restores:
            r()
        adapter.forward_calls += 1
        return fwd(xw.copy() if fresh_x else xw)

    def error(exc, i):
        index = _index(i, shape)
        where = ("while perturbing the target along a direction" if i is None
                 else f"while perturbing element {index}")
        return intermittent_error(exc, call, where, layer=adapter.name, target=target,
                                  index=index) or LayerCallError(
            f"forward() raised {type(exc).__name__}: {exc}", layer=adapter.name,
            target=target, index=index)

    def evaluate(i=None):
        try:
            out = call()
        except (Exception, SystemExit) as exc:
            raise error(exc, i) from exc
        if type(out) is not np.ndarray:
            out = adapter.validate_output(out, target)
        flat = out.reshape(-1)
        if flat.size != size0:
            where = ("while perturbing element " f"{_index(i, shape)}" if i is not None
                     else "while perturbing the target along a direction")
            raise LayerProtocolError(
                f"forward() returned shape {out.shape} {where}, but an output of {size0} "
                "elements on the unperturbed input", layer=adapter.name, target=target)
        return flat

    evaluate.layer, evaluate.target = adapter.name, target
    return evaluate


class Problem:
    """One check's layer, input and upstream gradient, after the analytic passes.

    Parameters
    ----------
    adapter : gradcheck.protocol.adapter.LayerAdapter
    xw : ndarray
        Working copy of the input (perturbed in place for the target ``"x"``).
    dout : ndarray of the output's shape or None
        Upstream gradient; ``None`` = standard normal from ``seed``.
    params : dict or None
        ``{param: grad}`` attribute names; ``None`` discovers them.
    wrt : list of str or None
        Targets to check; ``None`` = all.
    snapshot : gradcheck.protocol.state.StateSnapshot
        Snapshot of the layer in the state the check evaluates in.
    findings : list of Finding
        Self-check findings are appended.
    seed : int
    nondet_tol : float

    Attributes
    ----------
    targets : tuple of Target
        ``"x"`` first, then the parameters in discovery order.
    out0 : ndarray, shape (m,)
        The unperturbed output, flat (a private copy).
    dout : ndarray, shape (m,)
        The upstream gradient, flat, in the output's dtype.
    analytic : dict of str to ndarray of float64
        The analytic gradient of every target (of the target's shape).

    Raises
    ------
    GradCheckInputError, LayerProtocolError, LayerCallError
        Bad parameters or gradients, a layer that breaks the protocol or raises.
    """

    def __init__(self, adapter, xw, dout, params, wrt, snapshot, findings, *, seed=0,
                 nondet_tol=0.0):
        self.adapter, self.layer, self.name = adapter, adapter.layer, adapter.name
        self.xw, self.x_ref = xw, xw.copy()
        self.snapshot, self.findings = snapshot, findings
        self.seed, self.nondet_tol = int(seed), float(nondet_tol)
        self.fresh_x = self.backward_modifies_x = False
        self._analytic(dout, params, wrt)

    # -- the analytic side ---------------------------------------------------
    def _forward_base(self):
        x = self.xw.copy() if self.fresh_x else self.xw
        out = self.adapter.forward(x)
        out = np.array(out, copy=True)  # the layer may return a view of x or of a reused buffer
        if not self.fresh_x and not _bitwise_equal(self.xw, self.x_ref):
            # forward modified its input in place, and may keep it (self.x = x): put x back,
            # then call again from the state before, on a copy the layer may keep and modify
            self.fresh_x = True
            np.copyto(self.xw, self.x_ref)
            self.snapshot.restore_all()
            out = np.array(self.adapter.forward(self.xw.copy()), copy=True)
        return out

    def _first_pass(self, dout):
        out0 = self._forward_base()
        if not np.all(np.isfinite(out0)):
            layer = self.layer
            culprits = [k for k, v in vars(layer).items() if isinstance(v, np.ndarray)
                        and v.dtype.kind == "f" and not np.all(np.isfinite(v))]
            if culprits:
                raise GradCheckInputError(
                    f"parameter or state {culprits[0]!r} contains NaN or inf, and forward() "
                    "produced NaN or inf", layer=self.name, target=culprits[0])
            raise LayerCallError("forward() produced NaN or inf on the unperturbed input",
                                 layer=self.name)
        self.scalar_dout = dout is None and out0.size == 1
        if self.scalar_dout:  # a loss: the upstream gradient of a terminal loss
            dout = np.ones(out0.shape, dtype=out0.dtype)
        elif dout is None:
            dout = default_dout(self.seed, out0.shape, out0.dtype)
        elif dout.shape != out0.shape:
            raise GradCheckInputError(
                f"dout has shape {dout.shape}, but forward() returned shape {out0.shape}",
                layer=self.name)
        self.out_shape = out0.shape
        self.out0, self.dout = out0.reshape(-1), dout.reshape(-1)
        dx = self.adapter.backward(dout, self.xw.shape, self.xw.dtype)
        if not self.fresh_x and not _bitwise_equal(self.xw, self.x_ref):
            # backward modified the input forward kept (self.x *= ...): put it back, and give
            # forward a copy per call from here on (its backward may modify that one)
            self.backward_modifies_x = True
            self.fresh_x = True
            np.copyto(self.xw, self.x_ref)
        return dx

    def _discover(self, params, wrt):
        layer, name = self.layer, self.name
        if params is None:
            params = discover_params(layer, exclude={"x"})
            params = {p: g for p, g in params.items() if get_attr(layer, p) is not self.xw}
        for p, g in params.items():
            value, grad = get_attr(layer, p), get_grad(layer, g, p)
            raw = get_attr(layer, g)
            if grad is not raw and np.shape(raw) != np.shape(grad):  # not a sum made anew
                self.findings.append(Finding("gradient-reshaped", False, (
                    f"{g} has shape {raw.shape}, {p} {value.shape}: read in {p}'s shape (the "
                    "same elements; a sum with keepdims=True)"), p))
            if isinstance(value, np.ndarray) and value.dtype.kind != "f":
                raise GradCheckInputError(
                    f"parameter {p!r} has dtype {value.dtype}; trainable parameters must be "
                    "floating point (convert it with astype(float))", layer=name, target=p)
            check_array(value, layer=name, target=p, what=f"parameter {p!r}")
            self._check_grad(p, g, value, grad, "after backward()")
        _no_overlaps(layer, name, params)
        names = ["x"] + list(params)
        if wrt is not None:
            missing = [w for w in wrt if w not in names]
            if missing:
                raise LayerProtocolError(
                    f"wrt names {missing}, but backward() stores no gradient for "
                    f"{'it' if len(missing) == 1 else 'them'}; targets: {names}",
                    layer=name, target=missing[0])
            names = [t for t in names if t in wrt]
        self.params = params
        return names

    def _analytic(self, dout, params, wrt):
        dx1, mod1 = self._first_pass(dout)
        dx1 = np.array(dx1, dtype=np.float64)
        names = self._discover(params, wrt)
        grads1 = {p: np.array(get_grad(self.layer, g, p), dtype=np.float64)
                  for p, g in self.params.items()}
        # second pass: same input, gradients poisoned with NaN *before* forward, to catch
        # stale ones (a forward that rebinds a fresh buffer, zeroed for backward's +=, is fine)
        self.snapshot.restore_all()
        poison = self._poison()
        out = self._forward_base().reshape(-1)
        #: parameters whose gradient buffer forward refreshes, rebound or overwritten in place
        #: (zeroed there for backward's ``+=``: ``self.dW = np.zeros_like(W)``, ``self.dW[...]
        #: = 0``)
        self.forward_refreshed = {p for p, g in self.params.items()
                                  if "+" not in g and get_attr(self.layer, g) is not None
                                  and (get_attr(self.layer, g) is not poison[p]
                                       or not np.isnan(poison[p]).any())}
        if not _close(out, self.out0, self.nondet_tol):
            self.findings.append(Finding(
                "forward-nondeterministic", True,
                f"forward() gave different outputs for identical input and state (max "
                f"difference {np.max(np.abs(out - self.out0)):.3g} > nondet_tol = "
                f"{self.nondet_tol:g}); randomness the check cannot replay (an unseeded "
                "generator?" + _replayed(self.snapshot) + ")"))
        self.dirty = list(self.snapshot.changed())
        dx2, mod2 = self._poisoned_backward(poison)
        self._self_checks(dx1, grads1, mod1 or mod2)
        self.snapshot.restore_all()
        self.targets = tuple(Target(t, "input" if t == "x" else "parameter",
                                    self.xw if t == "x" else get_attr(self.layer, t))
                             for t in names)

    def _poison(self):
        """Set every existing gradient to NaN; ``{param: poison array}``.

        A gradient array the layer holds is filled in place (the snapshot puts its values
        back): an alias of it stays one (the second book's TimeBiLSTM keeps its two LSTMs'
        gradient arrays in its own grads list, and they write into them). Otherwise the
        gradient is rebound to a NaN array in the gradient's own shape (a keepdims
        ``(1, D)`` buffer written in place).
        """
        layer, poison = self.layer, {}
        self._held_grads = {}  # {param: the gradient array the layer held before the call}
        params = [get_attr(layer, q) for q in self.params]
        for p, g in self.params.items():
            value, current = get_attr(layer, p), get_attr(layer, g)
            held = isinstance(current, np.ndarray) and current.dtype.kind == "f" \
                and keepdims_of(current.shape, np.shape(value))
            if held and "+" not in g and current.flags.writeable \
                    and not any(current is q for q in params):
                current[...] = np.nan
                poison[p] = current
                self._held_grads[p] = current
                continue
            poison[p] = np.full(np.shape(current if held else value), np.nan,
                                dtype=(current if held else value).dtype)
            try:
                set_attr(layer, g, poison[p])
            except (TypeError, AttributeError):
                pass  # its container (``dweights``) does not exist yet: it cannot be stale
        return poison

    def _poisoned_backward(self, poison):
        layer = self.layer
        dx2, modified = self.adapter.backward(self.dout.reshape(self.out_shape),
                                              self.xw.shape, self.xw.dtype)
        self.analytic = {"x": np.array(dx2, dtype=np.float64)}
        for p, g in self.params.items():
            grad = get_attr(layer, g)
            if grad is poison[p] and np.isnan(grad).all():
                raise LayerProtocolError(
                    f"backward() did not refresh {g}: it still holds the value from before "
                    "this call (stale from an earlier call, or accumulated into with +=)",
                    layer=self.name, target=p)
            self._note_rebound_slot(p, g, grad)
            grad = get_grad(layer, g, p)
            self._check_grad(p, g, get_attr(layer, p), grad, "after the second backward()")
            self.analytic[p] = np.array(grad, dtype=np.float64)
        return dx2, modified

    def _note_rebound_slot(self, p, g, grad):
        """``gradient-rebound``: forward/backward put a new array in a list slot (``grads[0] =
        dW``) where the layer held one (the second book writes ``grads[0][...] = dW``).

        The gradient is right, but a model that gathered its layers' lists once (``self.grads
        += layer.grads``, every model of the second book) keeps the old array: its optimizer
        never sees this gradient. A note, not a failure (a model may gather them anew).
        """
        held = self._held_grads.get(p)
        if held is None or grad is held or not re.fullmatch(r".*\[\d+\]", g):
            return
        container = get_attr(self.layer, g[: g.rindex("[")])
        if isinstance(container, list):
            self.findings.append(Finding("gradient-rebound", False, (
                f"forward/backward replace the array in {g} ({g} = ...) instead of writing "
                f"into it ({g}[...] = ...): the gradient is right, but a model that gathered "
                "its layers' grads lists once (the second book's self.grads += layer.grads) "
                "still holds the old array, so its optimizer would not see this gradient"), p))

    def _self_checks(self, dx1, grads1, dout_modified):
        for p, g in self.params.items():
            if np.isnan(self.analytic[p]).any() and not np.isnan(grads1[p]).any():
                raise LayerProtocolError(
                    f"backward() did not refresh every element of {g} (it accumulates into "
                    "or partly keeps the array from an earlier call)", layer=self.name,
                    target=p)
        if dout_modified:
            self.findings.append(Finding(
                "backward-modifies-dout", False,
                "backward() modifies dout in place (the check passed it a copy); a layer "
                "before it in a network would see the changed array", "x"))
        if self.fresh_x and self.backward_modifies_x:
            self.findings.append(Finding(
                "backward-modifies-input", True,
                "backward() modifies the input 'x' forward kept (self.x) in place; the "
                "caller's array would change (the check gave forward a fresh copy per call)",
                "x"))
        elif self.fresh_x:
            self.findings.append(Finding(
                "forward-modifies-input", True,
                "forward() modifies its input 'x' in place; the caller's array would change "
                "(the check gave it a fresh copy per call)", "x"))
        for t, first in [("x", dx1)] + list(grads1.items()):
            if not _close(first, self.analytic[t], self.nondet_tol):
                self.findings.append(Finding(
                    "backward-nondeterministic", True,
                    f"two identical forward/backward passes gave different gradients for "
                    f"{t!r} (max difference {np.max(np.abs(first - self.analytic[t])):.3g} > "
                    f"nondet_tol = {self.nondet_tol:g})", t))
        for s in self.dirty:
            changed = [p for p in self.params if s.kind == "array"
                       and s.obj is get_attr(self.layer, p)]
            if changed:
                self.findings.append(Finding(
                    "forward-modifies-parameter", True,
                    f"forward() modifies {changed[0]!r} in place: every call moves the point "
                    "the gradient is checked at (the caller's array would change)", changed[0]))

    def _check_grad(self, p, g, value, grad, when):
        if isinstance(grad, (float, np.floating)) and not isinstance(grad, bool) \
                and np.ndim(value) == 0:
            grad = np.asarray(grad, dtype=np.float64)  # a scalar parameter's float gradient
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
    def target(self, name):
        """The :class:`Target` called ``name``."""
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def evaluator(self, target, array=None, dirty=None):
        """``evaluate(i) -> flat out`` for perturbations of ``target``.

        Parameters
        ----------
        target : Target
        array : ndarray or None
            The array actually perturbed, when it is not ``target.array`` (a
            complex working copy substituted into the layer by the caller).
        dirty : list of state slots or None
            The slots one forward call changes, when the caller substituted
            arrays (``None``: those of the analytic pass).
        """
        arr = target.array if array is None else array
        xw = arr if target.kind == "input" else self.xw
        return make_evaluator(self.adapter, xw, self.fresh_x,
                              self.dirty if dirty is None else dirty, target.name, arr,
                              self.out0.size)

    #: Scales of the upstream gradient whose backwards measure the analytic rounding: not
    #: powers of two (those would round exactly alike).
    ANALYTIC_PROBES = (1.2, 0.75)

    def analytic_noise(self):
        """``{target: (rounding of its analytic gradient, linear)}``, measured once per check.

        ``backward`` is linear in ``dout``, so ``backward(c dout) / c - backward(dout)``
        is the rounding of the analytic gradient alone (RMS over the target's elements)
        -- the floor of what a comparison with it can resolve. Two scales ``c``: their
        differences are independent noise when backward is linear, and proportional to
        each other when it is not (a terminal loss that ignores dout, a clipped dout),
        which ``linear`` then says (with fewer than 4 elements it cannot tell: None).
        The level is a 99 % upper bound from the samples (:func:`_upper_sigma`); the RMS
        estimate itself is kept in ``analytic_rms``. Two extra forward/backward pairs.
        """
        if getattr(self, "_analytic_noise", None) is None:
            self.analytic_rms = {}
            scaled = [self.vjp(self.dout.astype(np.float64) * c) for c in self.ANALYTIC_PROBES]
            #: backward returned bitwise the same gradients for another dout: it ignores dout
            self.ignores_dout = all(np.array_equal(g, self.analytic[n])
                                    for n, g in scaled[0].items())
            with np.errstate(all="ignore"):  # a non-finite gradient: inf below, its own FAIL
                diffs = [{n: g / c - self.analytic[n] for n, g in grads.items()}
                         for c, grads in zip(self.ANALYTIC_PROBES, scaled)]
            c1, c2 = self.ANALYTIC_PROBES
            additive = (1.0 / c2 - 1.0) / (1.0 / c1 - 1.0)  # b / a for a term e: e (1/c - 1)
            noise = {}
            for name in diffs[0]:
                a, b = diffs[0][name].reshape(-1), diffs[1][name].reshape(-1)
                if not (np.isfinite(a).all() and np.isfinite(b).all()):
                    noise[name] = (float("inf"), False)
                    continue
                level = float(np.hypot(rms(a), rms(b)) / np.sqrt(2.0))
                self.analytic_rms[name] = level  # the estimate itself (the precision note)
                noise[name] = (_upper_sigma(level, a.size + b.size),
                               _uncorrelated(a, b, additive))
            self._analytic_noise = noise
        return self._analytic_noise

    def vjp(self, u):
        """Analytic gradients of ``sum(forward(x) * u)`` for every target.

        Parameters
        ----------
        u : ndarray, shape (m,)
            Flat upstream gradient.

        Returns
        -------
        dict of str to ndarray of float64
        """
        self.snapshot.restore_all()
        self.adapter.forward(self.xw.copy() if self.fresh_x else self.xw)
        dx, _ = self.adapter.backward(np.asarray(u, dtype=self.out0.dtype).reshape(
            self.out_shape), self.xw.shape, self.xw.dtype)
        grads = {"x": np.array(dx, dtype=np.float64)}
        for p, g in self.params.items():
            grads[p] = np.array(get_grad(self.layer, g, p), dtype=np.float64)
        self.snapshot.restore_all()
        return {t.name: grads[t.name] for t in self.targets}
