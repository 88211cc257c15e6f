"""The perturb-evaluate-restore loop: the only place a target is perturbed.

:func:`differences` walks the items of a *move* (the elements of a target,
:class:`ElementMoves`, or whole-target directions, :class:`DirectionMoves`)
and the offset pairs ``(a, b)`` of a stencil: it perturbs the target *in
place* to ``x + a h``, calls ``forward``, perturbs to ``x + b h`` (or reuses
the unperturbed output when ``b = 0``), calls ``forward`` again, puts the
target back exactly (the saved scalar or array, also when ``forward``
raises), and hands both outputs to a *sink* before the next call. Sinks
subtract the outputs first and then reduce against ``dout``
(:class:`Reduce`; 5-10x more accurate than subtracting two values of the
scalar loss; :class:`GroupReduce` per member of a group over its own
predicted support), or keep the whole output differences (:class:`Columns`, for
the Jacobian and the noise estimate).

The step actually taken is the representable one: ``x + a h`` is rounded to
the target's dtype and an element move's denominator is ``(x + a h) - (x + b
h)`` as stored. The serial engine and every parallel worker run this loop.
"""

import cmath
import math
import sys
import weakref

import numpy as np

from gradcheck.errors import LayerCallError

__all__ = ["ElementMoves", "DirectionMoves", "GroupMoves", "Reduce", "GroupReduce", "Columns",
           "StructureViolated", "differences", "along", "flat_view"]


def flat_view(arr):
    """A writable flat view of ``arr`` (``arr.flat`` when it is not C-contiguous)."""
    return arr.reshape(-1) if arr.flags.c_contiguous else arr.flat


class ElementMoves:
    """Perturb one element at a time: item ``r`` is element ``idx[r]`` with step ``steps[idx[r]]``.

    Parameters
    ----------
    arr : ndarray
        The target (perturbed in place; real or complex).
    idx : ndarray of int, shape (m,)
        Flat indices of the elements.
    steps : ndarray of float64, shape (arr.size,)
        Base step ``h_i`` per element (complex offsets give ``x + i a h``).
    """

    def __init__(self, arr, idx, steps):
        self.arr, self.flat = arr, flat_view(arr)
        self.idx, self.steps = np.asarray(idx), steps
        self.tp = arr.dtype.type
        self.n = len(self.idx)
        self._saved = None
        self._complex = arr.dtype.kind == "c"
        # Python numbers for the hot loop (a numpy scalar per item costs ~1 us a call)
        self._at = self.idx.tolist()
        self._h = np.asarray(steps, dtype=np.float64)[self.idx].tolist() if self.n else []

    def index(self, r):
        return self._at[r]

    #: dtypes whose values a Python float holds exactly (the loop's precomputed points)
    EXACT = (np.float16, np.float32, np.float64)

    def points(self, offset):
        """Every item's value stored at ``x + offset * h`` (float64) and as Python numbers.

        The same rounding as :meth:`set` (the sum in float64, rounded to the
        target's dtype), for all items at once. Only for the :data:`EXACT` dtypes.
        """
        x = np.asarray(self.flat[self.idx]) if self.n else np.zeros(0, self.arr.dtype)
        if offset:
            x = (x.astype(np.float64) + offset * np.asarray(self._h)).astype(self.arr.dtype)
        return x.astype(np.float64), x.tolist()

    def set(self, r, offset):
        """Move item ``r`` to ``x + offset * h``; return the value stored, as a Python number."""
        if self._saved is None:
            i = self._at[r]
            self._saved = (i, self.flat[i])
        i, x = self._saved
        value = self.tp(x.item() + offset * self._h[r]) if offset else x
        self.flat[i] = value
        return value

    def reset(self, r):
        if self._saved is not None:
            i, x = self._saved
            self.flat[i] = x
            self._saved = None

    def span(self, r, a, b, xa, xb):
        """The denominator of pair ``(a, b)``: the representable ``x_a - x_b``."""
        if self._complex:  # the complex step: x + i h, denominator h
            return float(abs(a - b) * self._h[r])
        return float(xa) - float(xb)


class DirectionMoves:
    """Perturb the whole target along directions: item ``r`` moves it to ``x0 + t w_r``.

    Parameters
    ----------
    arr : ndarray
        The target (perturbed in place).
    directions : ndarray of float64, shape (m,) + arr.shape
        ``w_r``, in the target's units (the step is folded in).
    analytic : ndarray of float64, shape (m,) + arr.shape or None
        When given, :attr:`A` collects the analytic counterpart of every
        difference: ``analytic[r] . (x_a - x_b)`` over the representable
        points, so a directional difference and its analytic value see the
        same rounded perturbation.
    """

    def __init__(self, arr, directions, analytic=None):
        self.arr = arr
        self.x0 = arr.astype(np.float64)
        self.saved = arr.copy()
        self.w = np.asarray(directions, dtype=np.float64)
        self.n = len(self.w)
        self.analytic = analytic
        self.A = {}
        self._points = {}

    def index(self, r):
        return None

    def set(self, r, offset):
        point = (self.x0 + offset * self.w[r]).astype(self.arr.dtype)
        np.copyto(self.arr, point)
        self._points[offset] = point
        return offset

    def reset(self, r):
        np.copyto(self.arr, self.saved)

    def span(self, r, a, b, xa, xb):
        if self.analytic is not None:
            pa = self._points.get(a, self.saved)
            pb = self._points.get(b, self.saved) if b else self.saved
            delta = pa.astype(np.float64) - pb.astype(np.float64)
            self.A[r, (a, b)] = float(np.sum(self.analytic[r] * delta))
        self._points.clear()
        return float(a - b)


class GroupMoves:
    """Perturb a group of elements at once: item ``r`` moves every element of ``groups[r]``.

    The elements of a group have disjoint predicted output supports
    (:mod:`gradcheck.engine.structure`), so one pair of forward calls gives
    the derivative of each of them (:class:`GroupReduce`).

    Parameters
    ----------
    arr : ndarray
        The target (perturbed in place; real).
    groups : sequence of ndarray of int
        Flat indices of the elements of each group.
    steps : ndarray of float64, shape (arr.size,)
        Base step ``h_i`` per element.
    pairs : sequence of (a, b)
        The offsets the loop will use (to file each member's denominator).

    Attributes
    ----------
    spans : ndarray of float64, shape (arr.size, len(pairs))
        Every member's representable ``x_a - x_b``, per pair.
    """

    def __init__(self, arr, groups, steps, pairs):
        self.arr, self.flat = arr, flat_view(arr)
        self.groups = [np.asarray(g) for g in groups]
        self.steps, self.n = steps, len(self.groups)
        self.pairs = [tuple(p) for p in pairs]
        self.spans = np.zeros((arr.size, len(self.pairs)))
        self.where = " while perturbing a group of elements at once"
        self._saved, self._spans_filed = None, 0

    def index(self, r):
        return None

    def set(self, r, offset):
        """Move group ``r`` to ``x + offset * h``; return the values stored (an array)."""
        g = self.groups[r]
        if self._saved is None:
            self._saved = (g, np.array(self.flat[g]))
        x = self._saved[1]
        value = (x.astype(np.float64) + offset * self.steps[g]).astype(self.arr.dtype) \
            if offset else x
        self.flat[g] = value
        return value

    def reset(self, r):
        if self._saved is not None:
            g, x = self._saved
            self.flat[g] = x
            self._saved = None

    def span(self, r, a, b, xa, xb):
        """File every member's representable ``x_a - x_b``; the loop's own entry is 1.

        The loop asks once per item and pair, pairs in order, so the pair is the
        count of calls modulo the pairs (a stencil may hold the same pair twice).
        """
        k = self._spans_filed % len(self.pairs)
        if self.pairs[k] != (a, b):
            raise RuntimeError(f"GroupMoves: pair {(a, b)} asked where {self.pairs[k]} was due")
        self._spans_filed += 1
        self.spans[self.groups[r], k] = xa.astype(np.float64) - xb.astype(np.float64)
        return 1.0


class StructureViolated(Exception):
    """Raised by :class:`GroupReduce` when an output outside a group's predicted supports moved.

    Attributes
    ----------
    r : int
        The group.
    output : int
        Flat index of the first output that moved.
    change : float
        Its change.
    """

    def __init__(self, r, output, change):
        super().__init__(r, output, change)
        self.r, self.output, self.change = r, output, change


class NonFinite(Exception):
    """Raised by a sink when an output difference is NaN or inf (item ``r``)."""

    def __init__(self, r):
        super().__init__(r)
        self.r = r


class Reduce:
    """Sink: reduced differences ``(o_a - o_b) . dout``, optionally one-sided, noise and sizes.

    Parameters
    ----------
    dout : ndarray, shape (n_out,)
        Upstream gradient (flat).
    n_items, n_pairs : int
    out0 : ndarray, shape (n_out,)
        The unperturbed output (for one-sided differences).
    one_sided : bool
        Also keep ``(o_a - o_0) . dout`` and ``(o_0 - o_b) . dout`` (kink tests).
    noise_w : ndarray of float64, shape (n_out,) or None
        Per-output noise variance times ``dout**2``: :attr:`noise` holds, per
        item, ``sqrt(sum(noise_w))`` over the outputs that changed (the
        support of the perturbation), the largest over the pairs.
    sizes : bool
        Also keep ``S = sum |o_a - o_b| |dout|``, the size of the terms summed.
    supports : bool
        Also keep, per item, the outputs either point changed from ``out0`` (its output
        support, :attr:`supports`; needs ``out0``).

    Attributes
    ----------
    R : ndarray of float64 (complex for complex outputs), shape (n_items, n_pairs)
    P, M, S : ndarray of float64, shape (n_items, n_pairs), or None
    noise : ndarray of float64, shape (n_items,), or None
    supports : list of (ndarray of int or None), or None
        Per item, the flat outputs changed (union over the pairs); ``None`` for an item
        that changed more than :data:`SUPPORT_MAX` of them (dense).
    """

    #: Output supports of more outputs than this are kept as dense (``None``).
    SUPPORT_MAX = 4096

    def __init__(self, dout, n_items, n_pairs, out0=None, one_sided=False, noise_w=None,
                 sizes=False, supports=False):
        self.d = np.ascontiguousarray(dout, dtype=np.float64).reshape(-1)
        self.out0 = out0
        self.noise_w = None if noise_w is None else np.ascontiguousarray(noise_w,
                                                                         dtype=np.float64)
        self.shape = (n_items, n_pairs)
        self.R = None
        self.P = np.zeros(self.shape) if one_sided else None
        self.M = np.zeros(self.shape) if one_sided else None
        self.S = np.zeros(self.shape) if sizes else None
        self.noise = np.zeros(n_items) if noise_w is not None else None
        self.supports = [np.zeros(0, dtype=np.intp)] * n_items if supports else None
        self._prod, self._support, self._total = None, None, None
        self._pending, self._pending_terms = [], 0

    def _dot(self, v):
        """``v . dout``: real ``v`` by a product into a float64 buffer and numpy's pairwise
        sum (an OpenBLAS dot of more than ~10^4 terms wakes its threads: 5x slower)."""
        if v.dtype.kind == "c":
            return complex(np.einsum("i,i->", v, self.d))
        return float(np.add.reduce(np.multiply(v, self.d, out=self._buffer())))

    def __call__(self, r, k, oa, ob):
        if self.R is None:
            self.R = np.zeros(self.shape, dtype=np.result_type(oa.dtype, np.float64))
        if self.supports is not None:
            self._keep_support(r, oa, ob)
        if self.P is not None:
            self.P[r, k] = self._dot(oa - self.out0)
            self.M[r, k] = self._dot(self.out0 - ob)
        if self.noise_w is not None and self.S is None:
            value = self._support_sums(r, k, oa, ob)
            if value is None:  # filed: reduced with others by finish()
                return
        else:
            diff = np.subtract(oa, ob, out=oa)  # oa is the loop's own (a copy or fresh)
            value = self._dot(diff) if self.noise_w is None else self._support_sums(r, k, diff)
            if self.S is not None:
                self.S[r, k] = float(np.einsum("i,i->", np.abs(diff).astype(
                    np.float64, copy=False), np.abs(self.d)))
        if not cmath.isfinite(value):
            raise NonFinite(r)
        self.R[r, k] = value

    #: A support of at most this fraction of the outputs (one column of a batch norm, one
    #: row of an affine layer) is reduced over its own elements, gathered by index (above,
    #: the whole difference and a masked noise sum are as fast): the terms left out are
    #: exact zeros, so the sums agree up to rounding.
    SPARSE = 0.5

    #: A real support of at most this many outputs is filed and reduced by :meth:`finish`
    #: with the others at once (per item, numpy's per-call overhead of the two sums is
    #: more than the sums: measured on a 64-output support, 2.6 of 4 us); the filed
    #: differences are reduced when they hold :data:`PENDING` terms (~1 MB: the memory
    #: is reused, where a longer file grows the heap a page fault at a time).
    FILED = 4096
    PENDING = 1 << 16

    def _support_sums(self, r, k, oa, ob=None):
        """``(oa - ob) . dout``, and the noise share of the support (the outputs that changed).

        One pass over the two outputs finds the support (NaN counts as changed) and
        one over its mask lists it; the difference is taken on the support only,
        unless it is dense. ``ob=None``: ``oa`` is the difference already. Returns
        ``None`` when the support was filed for :meth:`finish`.
        """
        if self._support is None:
            self._support = np.empty(oa.shape, dtype=bool)
            self._total = float(np.add.reduce(self.noise_w))
        mask = np.not_equal(oa, 0 if ob is None else ob, out=self._support)
        nz = mask.nonzero()[0]
        count = len(nz)
        if count <= self.SPARSE * oa.size:
            diff = oa.take(nz)
            if ob is not None:
                diff -= ob.take(nz)
            if count <= self.FILED and diff.dtype.kind == "f":
                self._file(r, k, nz, diff)
                return None
            share = np.add.reduce(self.noise_w.take(nz))
            value = np.add.reduce(diff * self.d.take(nz))
            value = complex(value) if diff.dtype.kind == "c" else float(value)
        else:
            diff = oa if ob is None else np.subtract(oa, ob, out=oa)
            share = self._total if count == oa.size else float(np.add.reduce(
                np.multiply(self.noise_w, mask, out=self._buffer())))
            value = self._dot(diff)
        self._noise_at(r, math.sqrt(float(share)))
        return value

    def _keep_support(self, r, oa, ob):
        """Add the outputs ``oa`` or ``ob`` changed from ``out0`` to item ``r``'s support."""
        if self.supports[r] is None:
            return
        changed = np.flatnonzero(np.not_equal(oa, self.out0) | np.not_equal(ob, self.out0))
        both = np.union1d(self.supports[r], changed)
        self.supports[r] = None if len(both) > self.SUPPORT_MAX else both

    def _noise_at(self, r, noise):
        if noise > self.noise[r]:
            self.noise[r] = noise

    def _file(self, r, k, nz, diff):
        self._pending.append((r, k, nz, diff))
        self._pending_terms += len(nz)
        if self._pending_terms >= self.PENDING:
            self.finish()

    def finish(self):
        """Reduce the filed supports (all at once: one gather and two weighted counts).

        Raises
        ------
        NonFinite
            A filed difference is NaN or inf (the first such item).
        """
        if not self._pending:
            return
        pending, self._pending, self._pending_terms = self._pending, [], 0
        counts = np.fromiter((len(p[2]) for p in pending), dtype=np.intp, count=len(pending))
        nz = np.concatenate([p[2] for p in pending])
        diff = np.concatenate([p[3] for p in pending]).astype(np.float64, copy=False)
        seg = np.repeat(np.arange(len(pending)), counts)
        values = np.bincount(seg, weights=diff * self.d[nz], minlength=len(pending))
        shares = np.bincount(seg, weights=self.noise_w[nz], minlength=len(pending))
        bad = ~np.isfinite(values)
        if bad.any():
            raise NonFinite(pending[int(np.argmax(bad))][0])
        rk = np.array([(p[0], p[1]) for p in pending], dtype=np.intp).reshape(-1, 2)
        self.R[rk[:, 0], rk[:, 1]] = values
        np.maximum.at(self.noise, rk[:, 0], np.sqrt(shares))

    def _buffer(self):
        if self._prod is None:
            self._prod = np.empty(self.d.shape)
        return self._prod


class GroupReduce:
    """Sink of :class:`GroupMoves`: each member's difference reduced over its own predicted support.

    With the target's structure (:class:`gradcheck.engine.structure.Structure`:
    element ``j`` moves only the outputs of its predicted support), one output
    difference gives every member ``j`` of group ``r`` its own ``R_j =
    sum_{i in support(j)} (o_a - o_b)_i dout_i``. Each evaluation also verifies
    the assumption where it can for free: an output outside every member's
    support must not move (beyond ``tol``); if one does,
    :class:`StructureViolated` is raised.

    Parameters
    ----------
    dout : ndarray, shape (n_out,)
    groups : sequence of ndarray of int
    structure : object
        ``member_sums(v, members) -> (len(members),)`` and ``outside(members) ->``
        flat mask or ``None``.
    n_pairs : int
    noise_w : ndarray of float64, shape (n_out,) or None
        As for :class:`Reduce`: :attr:`noise` holds per member ``sqrt(sum(noise_w))``
        over the outputs of its support that changed.
    tol : float

    Attributes
    ----------
    R : ndarray of float64, shape (n, n_pairs)
        Indexed by flat element (members of no group stay 0).
    noise : ndarray of float64, shape (n,) or None
    """

    def __init__(self, dout, groups, structure, n_pairs, noise_w=None, tol=0.0):
        self.d = np.ascontiguousarray(dout, dtype=np.float64).reshape(-1)
        self.groups, self.st, self.tol, self.noise_w = groups, structure, tol, noise_w
        n = len(structure.in_block)
        self.R = np.zeros((n, n_pairs))
        self.noise = np.zeros(n) if noise_w is not None else None
        self._outside = {}

    def __call__(self, r, k, oa, ob):
        diff = np.subtract(oa, ob, out=oa).astype(np.float64, copy=False)
        if not np.isfinite(diff).all():
            raise NonFinite(r)
        g = self.groups[r]
        self.R[g, k] = self.st.member_sums(diff * self.d, g)
        if r not in self._outside:
            self._outside[r] = self.st.outside(g)
        outside = self._outside[r]
        if outside is not None:
            moved = outside & (np.abs(diff) > self.tol)
            if moved.any():
                i = int(np.argmax(moved))
                raise StructureViolated(r, i, float(diff[i]))
        if self.noise_w is not None:
            share = self.st.member_sums(self.noise_w * (diff != 0), g)
            self.noise[g] = np.maximum(self.noise[g], np.sqrt(np.maximum(share, 0.0)))


class Columns:
    """Sink: the whole output differences ``o_a - o_b`` in float64, shape (n_out, n_items, n_pairs).

    With ``out0`` given, also the one-sided ``P = o_a - o_0`` and ``M = o_0 - o_b``.
    """

    def __init__(self, n_out, n_items, n_pairs, out0=None):
        self.C = np.zeros((n_out, n_items, n_pairs))
        self.out0 = out0
        if out0 is not None:
            self.P = np.zeros_like(self.C)
            self.M = np.zeros_like(self.C)

    def __call__(self, r, k, oa, ob):
        np.subtract(oa, ob, out=self.C[:, r, k], casting="unsafe")
        if not np.isfinite(self.C[:, r, k]).all():
            raise NonFinite(r)
        if self.out0 is not None:
            np.subtract(oa, self.out0, out=self.P[:, r, k], casting="unsafe")
            np.subtract(self.out0, ob, out=self.M[:, r, k], casting="unsafe")


def differences(evaluate, moves, pairs, sink, out0):
    """Run the loop: every item of ``moves`` at every pair of ``pairs``.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(index) -> flat out``: one forward call on the layer's
        per-call state; the output may be a view of a buffer the layer
        reuses (it is copied or consumed before the next call).
    moves : ElementMoves or DirectionMoves
    pairs : sequence of (a, b)
        Offsets in units of the item's step; ``b = 0`` uses ``out0``.
    sink : callable
        ``sink(r, k, o_a, o_b)``, called once per item and pair.
    out0 : ndarray, shape (n_out,)
        The unperturbed output.

    Returns
    -------
    span : ndarray of float64, shape (moves.n, len(pairs))
        The denominators (``moves.span``): 0 where ``x + a h == x + b h``.
    """
    span = np.zeros((moves.n, len(pairs)))
    try:
        # a perturbed point may leave forward's domain on purpose (the noise and step
        # searches, the domain screen): its non-finite outputs are handled here, and
        # numpy's warnings about them are the check's, not the user's
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            _loop(evaluate, moves, pairs, sink, out0, span)
        if hasattr(sink, "finish"):
            sink.finish()
    except NonFinite as exc:
        where = moves.index(exc.r)
        index = None if where is None else tuple(
            int(j) for j in np.unravel_index(where, moves.arr.shape))
        raise LayerCallError(
            "forward() produced NaN or inf" + (getattr(moves, "where", " along a random "
                                                       "direction") if where is None else ""),
            layer=getattr(evaluate, "layer", None), target=getattr(evaluate, "target", None),
            index=index) from None
    finally:
        moves.reset(0)
    return span


def along(evaluate, arr, w, dout, out0, analytic, noise_w=None):
    """Central and one-sided differences of ``L = sum(forward * dout)`` along ``w``.

    The target moves to ``x + w`` and ``x - w`` (rounded to its dtype, put back
    exactly): two forward calls. The analytic counterpart is taken over the same
    representable points (:class:`DirectionMoves`), so the rounding of ``x +- w``
    moves both alike.

    Parameters
    ----------
    evaluate : callable
    arr : ndarray
        The target (perturbed in place).
    w : ndarray of float64, arr.shape
        The displacement, in the target's units.
    dout, out0 : ndarray, shape (n_out,)
    analytic : ndarray of float64, arr.shape
        The analytic gradient of ``L``.
    noise_w : ndarray of float64, shape (n_out,) or None
        As for :class:`Reduce`.

    Returns
    -------
    central, plus, minus, projected : float
        ``(L_+ - L_-) / 2``, ``L_+ - L_0``, ``L_0 - L_-`` and ``analytic . (x_+ - x_-)
        / 2``.
    share : float
        The noise share of the outputs that changed (:attr:`Reduce.noise`; 0 without
        ``noise_w``).
    """
    moves = DirectionMoves(arr, np.asarray(w, dtype=np.float64)[None],
                           analytic=np.asarray(analytic)[None])
    sink = Reduce(dout, 1, 1, out0=out0, one_sided=True, noise_w=noise_w)
    differences(evaluate, moves, [(1.0, -1.0)], sink, out0)
    share = float(sink.noise[0]) if sink.noise is not None else 0.0
    return (float(sink.R[0, 0].real) / 2.0, float(sink.P[0, 0]), float(sink.M[0, 0]),
            moves.A[0, (1.0, -1.0)] / 2.0, share)


def _base_refs(flat):
    """References to the array ``flat`` is a view of (``None``: ``flat`` is no such view)."""
    base = flat.base
    if type(base) is not np.ndarray:
        return None
    return sys.getrefcount(base)


#: :func:`_base_refs` of a view whose base nothing else refers to (measured here, not
#: assumed: how an interpreter counts the references of a call varies)
_ALONE = _base_refs(np.empty(2).reshape(-1))


def _exclusive(flat):
    """Whether ``flat`` views a fresh, writeable array nothing but ``flat`` refers to.

    A layer that kept no reference to its output (no ``self.out = out``, no
    buffer it reuses, weakly referenced or not, not a view of its input) cannot
    write into it on the next call: the output need not be copied before that
    call (one pass over the output saved per call), and the sink may take the
    difference in it (so it must be writeable). Any doubt copies.
    """
    refs = _base_refs(flat)
    return sys.getrefcount is not None and refs is not None and refs == _ALONE \
        and flat.base.base is None and flat.flags.writeable \
        and weakref.getweakrefcount(flat.base) == 0


def _loop(evaluate, moves, pairs, sink, out0, span):
    """The loop of :func:`differences` (fills ``span`` in place)."""
    if type(moves) is ElementMoves and moves.arr.dtype.type in ElementMoves.EXACT:
        return _element_loop(evaluate, moves, pairs, sink, out0, span)
    buf = None
    move, reset, denominator, index = moves.set, moves.reset, moves.span, moves.index
    pairs = list(enumerate(pairs))
    for r in range(moves.n):
        where = index(r)
        for k, (a, b) in pairs:
            xa = move(r, a)
            oa = evaluate(where)
            if not _exclusive(oa):
                if buf is None or (buf.dtype is not oa.dtype and buf.dtype != oa.dtype):
                    buf = np.empty(oa.shape, dtype=oa.dtype)
                np.copyto(buf, oa)
                oa = buf  # the layer's output freed before the next call can reuse its memory
            xb = move(r, b)
            ob = evaluate(where) if b else out0
            span[r, k] = denominator(r, a, b, xa, xb)
            sink(r, k, oa, ob)  # before the reset: ob may be a view of the target
            oa = ob = None
            reset(r)


def _element_loop(evaluate, moves, pairs, sink, out0, span):
    """:func:`_loop` for single real elements: every point stored is computed up front.

    The same calls in the same order as the general loop, with the perturbed
    values (:meth:`ElementMoves.points`) and the denominators taken for all
    items at once: per item, only the forward calls and the sink run.
    """
    x0, back = moves.points(0)
    plan = []
    for k, (a, b) in enumerate(pairs):
        pa, va = moves.points(a)
        pb, vb = moves.points(b) if b else (x0, None)
        span[:, k] = pa - pb
        plan.append((k, va, vb))
    flat, at, buf = moves.flat, moves._at, None
    r = 0
    try:
        for r in range(moves.n):
            i = at[r]
            for k, va, vb in plan:
                flat[i] = va[r]
                oa = evaluate(i)
                if not _exclusive(oa):
                    if buf is None or (buf.dtype is not oa.dtype and buf.dtype != oa.dtype):
                        buf = np.empty(oa.shape, dtype=oa.dtype)
                    np.copyto(buf, oa)
                    oa = buf
                if vb is None:
                    flat[i] = back[r]
                    ob = out0
                else:
                    flat[i] = vb[r]
                    ob = evaluate(i)
                sink(r, k, oa, ob)
                oa = ob = None
            flat[i] = back[r]
    finally:
        if moves.n:
            flat[at[r]] = back[r]
