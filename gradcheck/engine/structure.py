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
from gradcheck.errors import LayerCallError

__all__ = ["Structure", "detect", "color", "block_keys", "DETECT_STEP", "MAX_TESTS"]

#: Relative size of the probes' perturbation, ``DETECT_STEP * max(1, |x|)``: large enough
#: that a coupling moves an output by more than its rounding, small enough to stay inside
#: forward's domain.
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

    def block_sums(self, v):
        """``sum(v[i] for i in block b)`` for every block ``b`` (``v`` flat, of the output's size).

        A reduction over the output's unpaired axes (far faster than ``np.bincount``
        over ``out_block``), in the block order of :attr:`out_block`.
        """
        keep = _out_axes(self.pairs)
        other = tuple(b for b in range(len(self.out_shape)) if b not in keep)
        s = np.asarray(v).reshape(self.out_shape).sum(axis=other)
        order = sorted(keep)
        return s.transpose([order.index(b) for b in keep]).reshape(-1)

    @property
    def found(self):
        """Whether grouping saves anything (some group has two or more elements)."""
        return self.kind != "dense" and len(self.groups) < len(self.in_block)

    def describe(self, name):
        """One line for the report: the structure and the axes behind it."""
        if self.kind == "dense":
            return f"{name!r}: no block structure found ({self.note})"
        axes = ", ".join(_show(p, name) for p in self.pairs)
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


class _Prober:
    """One forward call with the target moved on a subset of its elements (exact diffs)."""

    def __init__(self, evaluate, arr, out0, seed, name):
        self.evaluate, self.arr, self.out0 = evaluate, arr, out0
        rng = np.random.default_rng([seed, 11, zlib.crc32(name.encode())])
        self.rng = rng
        scale = np.maximum(1.0, np.abs(arr.astype(np.float64)))
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


def detect(evaluate, arr, out0, out_shape, *, seed, name, tol=0.0):
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

    Returns
    -------
    Structure

    References
    ----------
    .. [1] A. R. Curtis, M. J. D. Powell and J. K. Reid (1974), see the module notes.
    """
    prober = _Prober(evaluate, arr, out0, seed, name)
    shape = arr.shape
    try:
        pairs, tested = _search(prober, shape, tuple(out_shape), tol)
    except LayerCallError as exc:
        return _dense(arr, out0, prober.calls, f"a probe's forward call failed: {exc}")
    shown = "; ".join("+".join(f"{a}~{'.'.join(map(str, bs))}" for a, bs in t)
                      for t in tested) or "none"
    if not pairs:
        return _dense(arr, out0, prober.calls,
                      f"{prober.calls} probe(s) of the axis pairings {shown}: every one "
                      "coupled blocks" if tested else "no target axis has the length of an "
                      "output axis")
    in_block, n = block_keys(shape, [a for a, _ in pairs])
    out_block, _ = block_keys(tuple(out_shape), _out_axes(pairs))
    return Structure(
        kind=_kind(name, shape, out_shape, pairs), pairs=pairs, in_block=in_block,
        out_block=out_block, n_blocks=n, groups=color(in_block), calls=prober.calls,
        note=f"found by {prober.calls} exact probe(s) of the axis pairings {shown}",
        out_shape=tuple(out_shape))


def _dense(arr, out0, calls, note):
    n = arr.size
    return Structure(kind="dense", pairs=(), in_block=np.zeros(n, dtype=np.intp),
                     out_block=np.zeros(out0.size, dtype=np.intp), n_blocks=1,
                     groups=(), calls=calls, note=note)
