"""The structure of a target's Jacobian, learned from a few forward probes.

A black-box elementwise check perturbs one element per forward call because
it does not know which outputs each element moves. Most layers have a
block-diagonal Jacobian along some of their axes: a batch-independent layer
(Affine, convolution, pooling, softmax per row) w.r.t. ``x`` moves only the
element's own row of the output, train-mode batch normalisation w.r.t. ``x``
only its own feature, an activation only its own output. Then several
elements whose output supports are disjoint can be perturbed in one forward
call (Curtis, Powell and Reid [1]_): :mod:`gradcheck.engine.grouped`.

The hypotheses are *axis pairings*: target axis ``a`` with output axis ``b``
of the same length, meaning "element ``j`` moves output ``i`` only if
``j[a] == i[b]``" (or with a run of output axes flattened in C order, as
batch normalisation's ``gamma`` of length ``C*H*W`` for a 4D input). A set of pairings partitions the target and the output
into blocks (the key of an element is its index along the paired target
axes, of an output along the paired output axes), and the Jacobian is
block-diagonal over them. A pairing is tested with two forward calls, by
*exact* comparison of output entries: the target is moved on a random half
``Q`` of the blocks, and every output outside ``Q`` must come out
bit-identical to the unperturbed output (within ``nondet_tol``); then the same
for the complement of ``Q``. Any coupling from one block into another shows
with probability 1/2 per pair of probes (a coupling from one block into all
the others, as a max over the batch, always shows). The maximal same-position
pairing is tried first (two calls for an elementwise layer), then single
pairings; pairings verified one by one hold together (each is a necessary
condition on the Jacobian's sparsity pattern).

Probes see the layer at one point and miss couplings that vanish there; a
wrong structure is caught later: every grouped evaluation checks that no
output outside the union of the group's predicted supports moved, every
element whose grouped value fails is refined black-box, and random
projections of the whole target back up a grouped PASS
(:mod:`gradcheck.engine.grouped`).

The groups are a coloring of the column-intersection graph (two elements are
adjacent when their output supports intersect [2]_). For block-diagonal
structure that graph is a disjoint union of cliques (the blocks), and greedy
coloring in index order, :func:`color`, gives every element its rank within
its block: optimal, with as many colors as the largest block has elements.

References
----------
.. [1] A. R. Curtis, M. J. D. Powell and J. K. Reid, "On the estimation of
   sparse Jacobian matrices", J. Inst. Maths Applics 13 (1974) 117-119.
.. [2] T. F. Coleman and J. J. Moré, "Estimation of sparse Jacobian matrices
   and graph coloring problems", SIAM J. Numer. Anal. 20(1) (1983) 187-209.
"""

import zlib
from dataclasses import dataclass

import numpy as np

from gradcheck.engine.perturb import Columns, DirectionMoves, differences
from gradcheck.engine.steps import element_scale
from gradcheck.errors import LayerCallError

__all__ = ["Structure", "detect", "color", "interval_colors", "block_keys", "DETECT_STEP",
           "MAX_TESTS", "BAND_SPACING"]

#: Relative size of the probes' perturbation, ``DETECT_STEP`` times the element's scale
#: (:func:`gradcheck.engine.steps.element_scale`): large enough that a coupling moves an
#: output by more than its rounding, small enough to stay inside forward's domain.
DETECT_STEP = 1e-4

#: Pairings tested at most per target (each costs one or two forward calls).
MAX_TESTS = 8


@dataclass(frozen=True)
class Structure:
    """The block structure found for one target.

    Attributes
    ----------
    kind : str
        ``"elementwise"``, ``"batch-independent"``, ``"feature-independent"``,
        ``"channel-independent"``, ``"disjoint"`` (every element its own
        block), ``"block-diagonal"`` or ``"dense"`` (nothing found).
    pairs : tuple of (int, tuple of int)
        ``(target axis, output axes)`` pairings that held (a run of output
        axes when the layer flattens them into one of the target's).
    in_block : ndarray of int, shape (n,)
        Block of every element of the target (flat, C order).
    out_block : ndarray of int, shape (n_out,)
        Block of every output element.
    n_blocks : int
    groups : tuple of ndarray of int
        The colors: flat element indices perturbed together.
    calls : int
        Forward calls the probes made.
    note : str
        What was tested and found, for the report.
    """

    kind: str
    pairs: tuple
    in_block: np.ndarray
    out_block: np.ndarray
    n_blocks: int
    groups: tuple
    calls: int
    note: str

    out_shape: tuple = ()
    bands: tuple = ()
    shape: tuple = ()

    def _band_coords(self):
        grids = np.indices(self.shape, sparse=True)
        return [np.broadcast_to(grids[a], self.shape).reshape(-1) for a, *_ in self.bands]

    def member_sums(self, v, members):
        """``sum(v[i] for i in support(j))`` for every member ``j`` (``v`` flat, n_out).

        A reduction over the output's unpaired axes (far faster than ``np.bincount``),
        then, along each banded axis, interval sums from a cumulative sum.
        """
        keep = _out_axes(self.pairs)
        banded = [b for _, b, _, _ in self.bands]
        other = tuple(b for b in range(len(self.out_shape)) if b not in keep + banded)
        t = np.asarray(v).reshape(self.out_shape).sum(axis=other)
        order = sorted(keep + banded)
        t = t.transpose([order.index(b) for b in keep + banded])
        t = t.reshape((self.n_blocks,) + tuple(self.out_shape[b] for b in banded))
        for k, (_, _, lo, hi) in enumerate(self.bands):
            c = np.cumsum(t, axis=k + 1)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=k + 1)), c], axis=k + 1)
            t = np.take(c, hi + 1, axis=k + 1) - np.take(c, lo, axis=k + 1)
        if not self.bands:
            return t[self.in_block[members]]
        coords = self.__dict__.get("_coords")
        if coords is None:  # cached on the frozen record, outside its fields
            coords = self.__dict__["_coords"] = self._band_coords()
        return t[(self.in_block[members],) + tuple(c[members] for c in coords)]

    def outside(self, members):
        """Flat mask of the outputs outside the members' predicted supports (``None``: none)."""
        keys = self.in_block[members]
        if not self.bands:
            if len(np.unique(keys)) == self.n_blocks:
                return None
            present = np.zeros(self.n_blocks, dtype=bool)
            present[keys] = True
            return ~present[self.out_block]
        banded = [b for _, b, _, _ in self.bands]
        cover = np.zeros((self.n_blocks,) + tuple(self.out_shape[b] for b in banded), bool)
        coords = self._band_coords()
        for m, key in zip(members, keys):
            box = tuple(slice(lo[c[m]], hi[c[m]] + 1) for (_, _, lo, hi), c in
                        zip(self.bands, coords))
            cover[(key,) + box] = True
        if cover.all():
            return None
        grids = np.indices(self.out_shape, sparse=True)
        where = (self.out_block,) + tuple(np.broadcast_to(grids[b], self.out_shape)
                                          .reshape(-1) for b in banded)
        return ~cover[where]

    @property
    def found(self):
        """Whether grouping saves anything (some group has two or more elements)."""
        return self.kind != "dense" and len(self.groups) < len(self.in_block)

    def describe(self, name):
        """One line for the report: the structure and the axes behind it."""
        if self.kind == "dense":
            return f"{name!r}: no block structure found ({self.note})"
        axes = ", ".join([_show(p, name) for p in self.pairs] + [
            f"{name} axis {a} ~ output axis {b} banded (at most "
            f"{int(np.max(hi - lo + 1))} wide)" for a, b, lo, hi in self.bands])
        return (f"{name!r}: {self.kind} ({axes}; {self.n_blocks} blocks, "
                f"{len(self.groups)} group(s); {self.note})")


def block_keys(shape, axes):
    """Block key of every element of an array of ``shape``: its index along ``axes``, raveled.

    Parameters
    ----------
    shape : tuple of int
    axes : sequence of int

    Returns
    -------
    keys : ndarray of int, shape (prod(shape),)
    n_blocks : int
    """
    if not axes:
        return np.zeros(int(np.prod(shape)), dtype=np.intp), 1
    grids = np.indices(shape, sparse=True)
    dims = tuple(shape[a] for a in axes)
    index = tuple(np.broadcast_to(grids[a], shape) for a in axes)
    return np.ravel_multi_index(index, dims).reshape(-1), int(np.prod(dims))


def color(in_block):
    """Greedy coloring, in index order, of the column-intersection graph of block-diagonal structure.

    Two elements are adjacent when they share a block; greedy coloring gives
    each element the smallest color not taken by an earlier element of its
    block, which is its rank within the block.

    Parameters
    ----------
    in_block : ndarray of int, shape (n,)

    Returns
    -------
    tuple of ndarray of int
        The groups (flat indices, ascending), color 0 first.
    """
    in_block = np.asarray(in_block)
    order = np.argsort(in_block, kind="stable")
    sorted_keys = in_block[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order)) - np.repeat(starts, sizes)
    return tuple(np.flatnonzero(rank == c) for c in range(int(rank.max(initial=-1)) + 1))


def interval_colors(lo, hi):
    """Greedy coloring, in index order, of the interval graph of supports ``[lo_p, hi_p]``.

    Index ``p`` gets the smallest color not taken by an earlier index whose
    interval overlaps its own (optimal for interval graphs whose intervals
    start in index order, as the monotone bands here). Empty intervals
    (``lo > hi``) get color 0.

    Parameters
    ----------
    lo, hi : ndarray of int, shape (m,)
        Inclusive interval bounds per index.

    Returns
    -------
    ndarray of int, shape (m,)
    """
    colors = np.zeros(len(lo), dtype=np.intp)
    for p in range(len(lo)):
        if lo[p] > hi[p]:
            continue
        taken = {colors[q] for q in range(p) if lo[q] <= hi[q] and lo[q] <= hi[p]
                 and lo[p] <= hi[q]}
        colors[p] = min(set(range(len(taken) + 1)) - taken)
    return colors


def _groups(shape, pairs, bands):
    """The colors of the whole target: its index along the free axes (every element of a
    block meets every other there) and the interval color along each banded axis."""
    paired = {a for a, _ in pairs} | {a for a, *_ in bands}
    free = [a for a in range(len(shape)) if a not in paired]
    if not bands:
        keys, _ = block_keys(shape, free)
    else:
        grids = np.indices(shape, sparse=True)
        parts = [np.broadcast_to(grids[a], shape).reshape(-1) for a in free]
        dims = [shape[a] for a in free]
        for a, _, lo, hi in bands:
            c = interval_colors(lo, hi)
            parts.append(c[np.broadcast_to(grids[a], shape).reshape(-1)])
            dims.append(int(c.max()) + 1)
        keys = np.ravel_multi_index(parts, dims) if parts else np.zeros(
            int(np.prod(shape)), dtype=np.intp)
    _, inverse = np.unique(keys, return_inverse=True)
    return tuple(np.flatnonzero(inverse == c) for c in range(int(inverse.max()) + 1))


#: First spacing of the band probes (doubled while supports of probed indices touch, up
#: to ``MAX_BAND_SPACING``: a probe per phase, so at most that many calls per axis).
BAND_SPACING = 4
MAX_BAND_SPACING = 16


def _runs(changed):
    """``(starts, ends)`` of the runs of True in a 1-D mask (inclusive ends)."""
    d = np.diff(np.r_[0, changed.astype(np.int8), 0])
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


def _band(prober, shape, out_shape, a, b, tol):
    """``(lo, hi)``: the output interval along ``b`` that each index along ``a`` moves, or
    ``None``. Indices ``BAND_SPACING`` apart are moved together, each phase in one call;
    their supports must come out as separate runs, in order, and monotone."""
    n, m = shape[a], BAND_SPACING
    index = np.broadcast_to(np.indices(shape, sparse=True)[a], shape).reshape(-1)
    other = tuple(k for k in range(len(out_shape)) if k != b)
    while m < n and m <= MAX_BAND_SPACING:
        lo, hi = np.zeros(n, dtype=np.intp), np.zeros(n, dtype=np.intp)
        for phase in range(m):
            ps = np.arange(phase, n, m)
            diff = prober.moved(np.isin(index, ps))
            changed = np.any((np.abs(diff) > tol).reshape(out_shape), axis=other)
            starts, ends = _runs(changed)
            if len(starts) != len(ps):
                break
            lo[ps], hi[ps] = starts, ends
        else:
            if np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0):
                return (lo, hi) if interval_colors(lo, hi).max() + 1 < n else None
            return None
        m *= 2
    return None


def _search_bands(prober, shape, out_shape, pairs, tol):
    """Banded pairings of the axes the block pairings left free (a convolution's or a
    pooling's spatial axes)."""
    used_a = {a for a, _ in pairs}
    used_b = set(_out_axes(pairs))
    cands = [(a, b) for a in range(len(shape)) for b in range(len(out_shape))
             if a not in used_a and b not in used_b and shape[a] >= 2 * BAND_SPACING
             and out_shape[b] > 1]
    cands.sort(key=lambda ab: ab[0] != ab[1])
    bands = []
    for a, b in cands:
        if a in used_a or b in used_b:
            continue
        found = _band(prober, shape, out_shape, a, b, tol)
        if found is not None:
            bands.append((a, b) + found)
            used_a.add(a)
            used_b.add(b)
    return tuple(bands)


class _Prober:
    """One forward call with the target moved on a subset of its elements (exact diffs)."""

    def __init__(self, evaluate, arr, out0, seed, name, local=True):
        self.evaluate, self.arr, self.out0 = evaluate, arr, out0
        rng = np.random.default_rng([seed, 11, zlib.crc32(name.encode())])
        self.rng = rng
        scale = element_scale(arr, local)
        self.w = (rng.choice([-1.0, 1.0], size=arr.shape) * rng.uniform(0.5, 1.0, arr.shape)
                  * DETECT_STEP * scale)
        self.calls = 0

    def moved(self, mask):
        """Output differences (float64, shape (n_out,)) with the elements ``mask`` moved."""
        sink = Columns(self.out0.size, 1, 1)
        w = self.w * mask.reshape(self.arr.shape)
        self.calls += 1
        differences(self.evaluate, DirectionMoves(self.arr, w[None]), [(1.0, 0.0)], sink,
                    self.out0)
        return sink.C[:, 0, 0]


def _holds(prober, in_key, out_key, n_blocks, tol):
    """Whether moving a random half of the blocks, then the other half, leaves every output
    of the other blocks exactly in place."""
    q = prober.rng.random(n_blocks) < 0.5
    if q.all() or not q.any():
        q[:] = False
        q[prober.rng.permutation(n_blocks)[: n_blocks // 2]] = True
    for side in (q, ~q):
        diff = prober.moved(side[in_key])
        if np.any(np.abs(diff[~side[out_key]]) > tol):
            return False
    return True


def _candidates(shape, out_shape):
    """``(same, cross)`` pairings ``(a, bs)``, ``bs`` a run of output axes whose lengths
    multiply to ``shape[a]``: same-position single axes first, then the others (single
    axes, then runs of two or more, as a layer that flattens ``(C, H, W)`` into features)."""
    p, q = len(shape), len(out_shape)
    same = [(a, (a,)) for a in range(min(p, q)) if shape[a] == out_shape[a] and shape[a] > 1]
    cross = [(a, (b,)) for a in range(p) for b in range(q)
             if a != b and shape[a] == out_shape[b] and shape[a] > 1]
    cross += [(a, tuple(range(b0, b1))) for a in range(p) for b0 in range(q)
              for b1 in range(b0 + 2, q + 1)
              if shape[a] > 1 and int(np.prod(out_shape[b0:b1])) == shape[a]]
    return same, cross


def _out_axes(pairs):
    return [b for _, bs in pairs for b in bs]


def _test(prober, shape, out_shape, pairs, tol):
    in_key, n = block_keys(shape, [a for a, _ in pairs])
    out_key, _ = block_keys(out_shape, _out_axes(pairs))
    return _holds(prober, in_key, out_key, n, tol)


def _search(prober, shape, out_shape, tol):
    """The pairings that held, and the list of those tested."""
    same, cross = _candidates(shape, out_shape)
    tested = []
    if same:
        tested.append(tuple(same))
        if _test(prober, shape, out_shape, same, tol):
            return tuple(same), tested
    accepted = []
    for pair in (same if len(same) > 1 else []) + cross:
        if len(tested) >= MAX_TESTS:
            break
        if any(pair[0] == a or set(pair[1]) & set(bs) for a, bs in accepted):
            continue
        tested.append((pair,))
        if _test(prober, shape, out_shape, [pair], tol):
            accepted.append(pair)
    return tuple(sorted(accepted)), tested


def _kind(name, shape, out_shape, pairs):
    axes = {a for a, _ in pairs}
    if not pairs:
        return "dense"
    if len(axes) == len(shape):
        same = all((a,) == bs for a, bs in pairs) and tuple(shape) == tuple(out_shape)
        return "elementwise" if same else "disjoint"
    if name == "x" and pairs == ((0, (0,)),):
        return "batch-independent"
    if name == "x" and 0 not in axes and axes == set(range(1, len(shape))):
        return "feature-independent"
    if len(pairs) == 1 and pairs[0][1] == (1,):
        return "channel-independent"
    return "block-diagonal"


def _show(pair, name="target"):
    a, bs = pair
    if len(bs) == 1:
        return f"{name} axis {a} ~ output axis {bs[0]}"
    return f"{name} axis {a} ~ output axes {bs[0]}-{bs[-1]} flattened"


def detect(evaluate, arr, out0, out_shape, *, seed, name, tol=0.0, banded=True, local=True):
    """Learn the block structure of ``arr``'s Jacobian from a few forward probes.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(index) -> flat out`` for the target (restores per-call state).
    arr : ndarray
        The target, perturbed in place and restored exactly.
    out0 : ndarray, shape (n_out,)
        The unperturbed output (flat).
    out_shape : tuple of int
        The output's shape (``out0.size`` elements).
    seed : int
    name : str
        The target's name (seeds the probes).
    tol : float
        Largest change of an output that counts as "did not move" (the
        check's ``nondet_tol``; 0: bitwise).
    banded : bool
        Also look for banded axes among those the block pairings left free.
    local : bool
        The probes' scale (:func:`gradcheck.engine.steps.element_scale`).

    Returns
    -------
    Structure

    References
    ----------
    .. [1] A. R. Curtis, M. J. D. Powell and J. K. Reid (1974), see the module notes.
    """
    prober = _Prober(evaluate, arr, out0, seed, name, local)
    shape = arr.shape
    try:
        pairs, tested = _search(prober, shape, tuple(out_shape), tol)
        bands = _search_bands(prober, shape, tuple(out_shape), pairs, tol) if banded else ()
    except LayerCallError as exc:
        if exc.intermittent:  # not the probe's fault: never retried past
            raise
        return _dense(arr, out0, prober.calls, f"a probe's forward call failed: {exc}")
    shown = "; ".join("+".join(f"{a}~{'.'.join(map(str, bs))}" for a, bs in t)
                      for t in tested) or "none"
    if not pairs and not bands:
        return _dense(arr, out0, prober.calls,
                      f"{prober.calls} probe(s) of the axis pairings {shown}: every one "
                      "coupled blocks" if tested else "no target axis has the length of an "
                      "output axis")
    in_block, n = block_keys(shape, [a for a, _ in pairs])
    out_block, _ = block_keys(tuple(out_shape), _out_axes(pairs))
    kind = _kind(name, shape, out_shape, pairs)
    if bands:
        kind = "banded" if kind == "dense" else f"{kind}, banded"
    return Structure(
        kind=kind, pairs=pairs, in_block=in_block,
        out_block=out_block, n_blocks=n, groups=_groups(shape, pairs, bands),
        calls=prober.calls,
        note=f"found by {prober.calls} exact probe(s) of the axis pairings {shown}"
        + (" and of bands" if bands else ""), out_shape=tuple(out_shape), bands=bands,
        shape=tuple(shape))


def _dense(arr, out0, calls, note):
    n = arr.size
    return Structure(kind="dense", pairs=(), in_block=np.zeros(n, dtype=np.intp),
                     out_block=np.zeros(out0.size, dtype=np.intp), n_blocks=1,
                     groups=(), calls=calls, note=note)
