"""Finite differences of ``L = sum(forward(x) * dout)`` element by element.

The layer is a black box: one forward call per perturbed point. The target
array is perturbed *in place*, one element at a time, and that element is put
back exactly (the saved scalar) before the next one, also when the forward
raises. Each forward output is consumed before the next call: for central
differences the ``+h`` output is copied into one preallocated buffer, the
``-h`` output subtracted from it in place, and only then reduced against
``dout`` -- subtracting the outputs before reducing is 5-10x more accurate
than subtracting two values of the scalar loss.

The step actually taken is the representable one: ``x + h`` is rounded to the
target's dtype and the denominator is ``(x + h) - (x - h)`` as stored.
"""

import numpy as np



#: Step multipliers of each central-type method (two forward calls each).
MULTIPLIERS = {"central": (1.0,), "central4": (2.0, 1.0), "richardson": (1.0, 0.5, 0.25)}


def combine(method, D):
    """The derivative and its truncation-error estimate from the differences ``D``.

    Parameters
    ----------
    method : str
    D : ndarray, shape (m, len(MULTIPLIERS[method])) (``(m, 1)`` for forward)

    Returns
    -------
    value, trunc : ndarray of float64, shape (m,)
        ``trunc`` is NaN for ``forward`` and ``central`` (no estimate).
    """
    if method in ("forward", "central"):
        return D[:, 0].copy(), np.full(D.shape[0], np.nan)
    return richardson(D)


def _flat_view(arr):
    """A writable flat view of ``arr`` (``arr.flat`` when it is not C-contiguous)."""
    return arr.reshape(-1) if arr.flags.c_contiguous else arr.flat


def _reducer(out_shape, out_dtype, dout):
    """Preallocated buffer and ``sum(buffer * dout)`` in float64.

    ``einsum`` rather than ``dot``: a multithreaded BLAS dot per call costs
    more than the forward call itself on a loaded 2-core machine.
    """
    buf = np.empty(out_shape, dtype=out_dtype)
    bflat = buf.reshape(-1)
    d = np.ascontiguousarray(dout, dtype=np.float64).reshape(-1)
    if out_dtype == np.float64:
        def reduce():
            return float(np.einsum("i,i->", bflat, d))
    else:
        def reduce():
            return float(np.einsum("i,i->", bflat.astype(np.float64), d))
    return buf, reduce


def central_differences(evaluate, arr, dout, idx, steps, multipliers=(1.0,)):
    """Central differences ``D(c*h)`` of ``L`` for each element and step multiplier.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(index) -> out``: one forward call on the layer's current
        state (the caller restores per-call state); ``out`` may be a view of
        a buffer the layer reuses, it is consumed before the next call.
    arr : ndarray
        The target, perturbed in place; contiguous, floating.
    dout : ndarray of the output's shape
        Upstream gradient.
    idx : ndarray of int, shape (m,)
        Flat indices of the elements to differentiate.
    steps : ndarray of float64, shape (arr.size,)
        Base step ``h_i`` per element.
    multipliers : sequence of float
        Steps ``c * h_i`` to evaluate (two forward calls each).

    Returns
    -------
    D : ndarray of float64, shape (m, len(multipliers))
        ``(out(x + c h) - out(x - c h)) . dout / ((x + c h) - (x - c h))``.
    denom : ndarray of float64, shape (m, len(multipliers))
        The representable ``2 c h`` actually used; 0 where ``x + c h == x``.
    """
    flat = _flat_view(arr)
    tp = arr.dtype.type
    m, k = len(idx), len(multipliers)
    D = np.zeros((m, k))
    denom = np.zeros((m, k))
    buf = reduce = None
    i = None
    saved = None
    try:
        for row, i in enumerate(idx):
            saved = flat[i]
            xi = float(saved)
            for col, c in enumerate(multipliers):
                hi = c * steps[i]
                xp = tp(xi + hi)
                xm = tp(xi - hi)
                flat[i] = xp
                out = evaluate(i)
                if buf is None:
                    buf, reduce = _reducer(out.shape, out.dtype, dout)
                np.copyto(buf, out)
                flat[i] = xm
                out = evaluate(i)
                np.subtract(buf, out, out=buf)
                flat[i] = saved
                den = float(xp) - float(xm)
                denom[row, col] = den
                D[row, col] = reduce() / den if den != 0.0 else 0.0
            saved = None
    finally:
        if saved is not None:
            flat[i] = saved
    return D, denom


def forward_differences(evaluate, arr, dout, idx, steps, out0):
    """One-sided differences ``(out(x + h) - out(x)) . dout / ((x + h) - x)``.

    Parameters are as for :func:`central_differences`; ``out0`` is the
    unperturbed output (a private copy).

    Returns
    -------
    D, denom : ndarray of float64, shape (m, 1)
    """
    flat = _flat_view(arr)
    tp = arr.dtype.type
    m = len(idx)
    D = np.zeros((m, 1))
    denom = np.zeros((m, 1))
    buf, reduce = _reducer(out0.shape, out0.dtype, dout)
    i = None
    saved = None
    try:
        for row, i in enumerate(idx):
            saved = flat[i]
            xi = float(saved)
            xp = tp(xi + steps[i])
            flat[i] = xp
            out = evaluate(i)
            np.subtract(out, out0, out=buf)
            flat[i] = saved
            saved = None
            den = float(xp) - xi
            denom[row, 0] = den
            D[row, 0] = reduce() / den if den != 0.0 else 0.0
    finally:
        if saved is not None:
            flat[i] = saved
    return D, denom


def one_sided_differences(evaluate, arr, dout, idx, steps, out0):
    """``D+ = (L(x+h) - L(x)) / h`` and ``D- = (L(x) - L(x-h)) / h`` per element.

    At a smooth point both approach the derivative; across a kink (ReLU at
    0, a max-pool tie, ``abs``) they differ by the jump in slope [1]_.

    Returns
    -------
    Dp, Dm : ndarray of float64, shape (m,)

    References
    ----------
    .. [1] Chainer, ``chainer.gradient_check.numerical_grad``,
       ``detect_nondifferentiable``.
    """
    flat = _flat_view(arr)
    tp = arr.dtype.type
    Dp, Dm = np.zeros(len(idx)), np.zeros(len(idx))
    buf, reduce = _reducer(out0.shape, out0.dtype, dout)
    i = saved = None
    try:
        for row, i in enumerate(idx):
            saved = flat[i]
            xi = float(saved)
            xp, xm = tp(xi + steps[i]), tp(xi - steps[i])
            flat[i] = xp
            np.subtract(evaluate(i), out0, out=buf)
            hp = float(xp) - xi
            Dp[row] = reduce() / hp if hp else 0.0
            flat[i] = xm
            np.subtract(out0, evaluate(i), out=buf)
            hm = xi - float(xm)
            Dm[row] = reduce() / hm if hm else 0.0
            flat[i] = saved
            saved = None
    finally:
        if saved is not None:
            flat[i] = saved
    return Dp, Dm


def richardson(D, ratio=2.0, order=2):
    """Richardson extrapolation of central differences at steps ``h, h/r, h/r**2, ...``.

    Parameters
    ----------
    D : ndarray, shape (m, k)
        Column ``j`` holds the central difference at step ``h / ratio**j``;
        its error expands in even powers ``h**2, h**4, ...``.
    ratio : float
        Step ratio between columns.
    order : int
        Order of the leading error term (2 for central differences).

    Returns
    -------
    value : ndarray, shape (m,)
        The most extrapolated estimate.
    error : ndarray, shape (m,)
        ``|value - previous|``, the difference between the two most
        extrapolated estimates, a (pessimistic) estimate of the truncation
        error of ``value`` [1]_.

    References
    ----------
    .. [1] L. F. Richardson, "The deferred approach to the limit", Phil.
       Trans. R. Soc. A 226 (1927); numdifftools' ``Richardson`` class.
    """
    T = np.array(D, dtype=np.float64)
    if T.shape[1] == 1:
        return T[:, 0], np.full(T.shape[0], np.nan)
    p = order
    while T.shape[1] > 1:
        prev = T[:, -1]
        f = ratio ** p
        T = (f * T[:, 1:] - T[:, :-1]) / (f - 1.0)
        p += 2
    return T[:, 0], np.abs(T[:, 0] - prev)


def jacobian_columns(evaluate, arr, idx, steps, multipliers=(1.0,)):
    """Columns ``d out / d arr_j`` of the Jacobian by central differences.

    Parameters are as for :func:`central_differences` (no ``dout``: nothing
    is reduced).

    Returns
    -------
    C : ndarray of float64, shape (out.size, len(idx), len(multipliers))
    denom : ndarray of float64, shape (len(idx), len(multipliers))
    """
    flat = _flat_view(arr)
    tp = arr.dtype.type
    C = denom = buf = None
    i = saved = None
    try:
        for row, i in enumerate(idx):
            saved = flat[i]
            xi = float(saved)
            for col, c in enumerate(multipliers):
                xp, xm = tp(xi + c * steps[i]), tp(xi - c * steps[i])
                flat[i] = xp
                out = evaluate(i)
                if C is None:
                    C = np.zeros((out.size, len(idx), len(multipliers)))
                    denom = np.zeros((len(idx), len(multipliers)))
                    buf = np.empty(out.shape, dtype=np.float64)
                np.copyto(buf, out)
                flat[i] = xm
                buf -= evaluate(i)
                flat[i] = saved
                den = float(xp) - float(xm)
                denom[row, col] = den
                C[:, row, col] = buf.reshape(-1) / den if den else 0.0
            saved = None
    finally:
        if saved is not None:
            flat[i] = saved
    return C, denom


def complex_step(evaluate, arr, dout, idx, steps):
    """Complex-step derivatives ``Im(out(x + i h)) . dout / h``.

    ``arr`` is a complex working copy of the target; one forward call per
    element and no subtractive cancellation, so the result is exact to the
    forward's rounding for complex-analytic layers [1]_.

    Returns
    -------
    D, denom : ndarray of float64, shape (m, 1)
    S : ndarray of float64, shape (m,)
        ``sum |Im(out) * dout| / h``: the size of the terms summed, whose
        rounding (``~eps * S``) bounds the error of ``D``.

    References
    ----------
    .. [1] W. Squire and G. Trapp, "Using complex variables to estimate
       derivatives of real functions", SIAM Review 40 (1998).
    """
    flat = _flat_view(arr)
    d = np.ascontiguousarray(dout, dtype=np.float64).reshape(-1)
    D, denom, S = np.zeros((len(idx), 1)), np.zeros((len(idx), 1)), np.zeros(len(idx))
    d_abs = np.abs(d)
    i = saved = None
    try:
        for row, i in enumerate(idx):
            saved = flat[i]
            h = steps[i]
            flat[i] = saved + 1j * h
            out = evaluate(i)
            flat[i] = saved
            saved = None
            im = np.ascontiguousarray(out.imag).reshape(-1)
            D[row, 0] = float(np.einsum("i,i->", im, d)) / h
            S[row] = float(np.einsum("i,i->", np.abs(im), d_abs)) / h
            denom[row, 0] = h
    finally:
        if saved is not None:
            flat[i] = saved
    return D, denom, S
