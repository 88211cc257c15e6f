"""The ``jacobian`` strategy: the whole Jacobian, numerically and analytically.

Numerically, one column per input element by the method's own stencil
(nothing reduced); analytically, one row per output element: a ``backward``
with the unit upstream gradient ``e_i`` scaled by a random factor (one
forward and one backward call each), as PyTorch's ``gradcheck`` does (not for
a scalar output checked with ``dout = 1``: a loss, checked where it is used). Every
entry is compared -- its rounding error is the measured noise of its own
output over the step -- and the worst one is reported as ``(output index,
input index)`` with both values. Meant for small layers: it costs
``out.size`` backward calls and ``out.size x n`` memory.

Entries at a kink are judged on their one-sided hulls, as elements are; the
input elements at a kink they share (a tie) are then checked together along
the direction that moves them (:mod:`gradcheck.engine.ties`), on the gradient
of ``L = sum(out * dout)`` the Jacobian gives (``dout @ J``): an entry ``1``
for every tied element of a max lies in each entry's hull, their sum does not.
"""

import numpy as np

from gradcheck.engine.elementwise import one_sided_screen, prepare
from gradcheck.engine.perturb import Columns, ElementMoves, differences
from gradcheck.engine.refine import (REFINED_GAIN, Refined, level_factor, search,
                                     widen_nearby)
from gradcheck.engine.ties import TieCheck
from gradcheck.engine.tolerances import analytic_floor, rms, rounding_error, rules
from gradcheck.engine.verdict import Comparison
from gradcheck.errors import GradCheckInputError

__all__ = ["comparisons", "MAX_ENTRIES"]

#: The strategy refuses above this many Jacobian entries (memory and hours of calls).
MAX_ENTRIES = 4_000_000


def _analytic_rows(problem, opts):
    """``{target: J_analytic}`` of shape (n_out, target.size), from one VJP per output."""
    m = problem.out0.size
    rows = {t.name: np.zeros((m, t.array.size)) for t in problem.targets}
    # e_i scaled by a random c_i (then divided out): with c_i = 1, a backward that
    # ignores dout would look right whenever the output is a scalar loss
    scales = np.random.default_rng([opts.seed, 4]).uniform(0.5, 2.0, m)
    if getattr(problem, "scalar_dout", False):
        scales[:] = 1.0  # a loss checked at dout = 1, as every strategy checks it
    for i in range(m):
        u = np.zeros(m, dtype=problem.out0.dtype)
        u[i] = scales[i]
        grads = problem.vjp(u)
        for t in rows:
            rows[t][i] = grads[t].reshape(-1) / scales[i]
    return rows


def comparisons(problem, opts, strategy):
    """``(target, Comparison)`` of every target's Jacobian block."""
    m = problem.out0.size
    total = sum(t.array.size for t in problem.targets)
    if m * total > MAX_ENTRIES:
        raise GradCheckInputError(
            f"strategy='jacobian' needs a {m} x {total} Jacobian and {m} backward calls; that "
            "would take hours -- use strategy='elementwise' or 'projection'",
            layer=problem.name)
    rows = _analytic_rows(problem, opts)
    for target in problem.targets:
        yield target, _compare(problem, target, opts, rows[target.name])


def _columns(s, problem, cols, steps, pairs, out0=None):
    """``(C, span)``: output differences per pair for the input elements ``cols``."""
    sink = Columns(problem.out0.size, len(cols), len(pairs), out0=out0)
    span = differences(s.evaluate, ElementMoves(s.arr, cols, steps), pairs, sink,
                       problem.out0)
    return sink, span


def _compare(problem, target, opts, Ja):
    s = prepare(problem, target, opts)
    arr, method = s.arr, s.method
    m, n = Ja.shape
    sink, span = _columns(s, problem, np.arange(n), s.steps, method.pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        D = np.where(span[None] != 0, sink.C / span[None], 0.0)
    value, est = method.combine(D.reshape(m * n, -1))
    sigma = np.repeat(s.noise.variance_std, n)
    h = np.tile(s.steps, m)
    rounding = rounding_error(sigma, h, method.gain)
    g = problem.analytic[target.name]
    tau = s.tuning.relative(g)
    # the analytic gradient's own rounding (a float32 cast in backward), relative to its
    # size, for the largest entry
    level, size = analytic_floor(problem.analytic_noise()[target.name], g, g), rms(g)
    floor = level / size * float(np.max(np.abs(Ja), initial=0.0)) if size > 0 else 0.0
    rule, own = rules(value, tau, opts.atol, opts.rtol, s.noise.relative, method.estimates,
                      floor=floor)

    refiner = _ColumnRefiner(s, problem, Ja)
    flat, screened = one_sided_screen(problem, target, opts, s)
    return Comparison(
        name=target.name, shape=arr.shape, dtype=str(arr.dtype), strategy="jacobian",
        method=method.name, numerical=value, analytic=Ja.reshape(-1), rounding=rounding,
        estimate=est, rule=rule, own_rule=own, skipped=(span[:, 0] == 0)[np.arange(m * n) % n],
        steps=s.steps, noise=s.noise, refiner=refiner,
        ties=_ties(problem, s, Ja, value.reshape(m, n), tau, refiner.supports),
        index=lambda r: tuple(int(j) for j in np.unravel_index(int(r) % n, arr.shape)),
        full=lambda st: {"numerical": st.num.reshape(m, n), "analytic": Ja,
                         "tolerances": st.allowed.reshape(m, n),
                         "estimates": st.bound.reshape(m, n)},
        extra={"worst_output_index": lambda r: tuple(
            int(j) for j in np.unravel_index(int(r) // n, problem.out_shape))},
        reason=s.reason() + "; per entry: the noise of its own output" + screened,
        suspects=_suspects(flat, Ja, value.reshape(m, n)),
        # an entry outside its first tolerance is judged on its refined one: the resolution
        # promises that for every entry (as for elements)
        refined_rounding=REFINED_GAIN * sigma / np.tile(s.refine_steps, m))


def _suspects(flat, Ja, J):
    """The entries to refine of a one-sided method's screened elements ``flat`` (``None``:
    not screened): those of their columns where the analytic or the numerical Jacobian is
    not zero. Where both are, the analytic value 0 is the right-hand derivative: a kink
    there has 0 in its hull, and no gradient flows through the entry to a tie group, so
    refining it would only list it."""
    if flat is None:
        return None
    outs, cols = np.nonzero((Ja[:, flat] != 0) | (J[:, flat] != 0))
    return np.sort(outs * Ja.shape[1] + flat[cols])


class _ColumnRefiner:
    """The refiner of the Jacobian's entries (:func:`_refine_columns`).

    Attributes
    ----------
    supports : dict
        Input element -> its output support (the outputs its column changed at the
        refinement's first level), for every element with an entry at a kink: the tie
        groups' (:class:`gradcheck.engine.ties.TieCheck`).
    """

    def __init__(self, s, problem, Ja):
        self.s, self.problem, self.Ja = s, problem, Ja
        self.supports, self._first = {}, {}

    def level(self, entries):
        """``level(k)`` of :func:`gradcheck.engine.refine.search` for the entries
        ``entries`` (their columns differentiated whole)."""
        s, problem, n = self.s, self.problem, self.Ja.shape[1]
        cols, where = np.unique(entries % n, return_inverse=True)
        outs = entries // n

        def at(k):
            c, sp = _columns(s, problem, cols, s.refine_steps * level_factor(k), [(1.0, -1.0)],
                             out0=problem.out0)
            if k == 0:
                self._first.update((int(col), np.flatnonzero(c.C[:, j, 0] != 0))
                                   for j, col in enumerate(cols))
            sp = sp[:, 0][where]
            with np.errstate(divide="ignore", invalid="ignore"):
                D = c.C[outs, where, 0] / sp
                Dp = c.P[outs, where, 0] / (sp / 2.0)
                Dm = c.M[outs, where, 0] / (sp / 2.0)
            return (D, Dp, Dm, s.noise.variance_std[outs],
                    s.refine_steps[cols][where] * level_factor(k))
        return at

    def refine(self, rows, analytic):
        rows = np.asarray(rows)
        r = _refine_columns(self.level, self.s, self.Ja, rows)
        for c in np.unique(rows[r.kink] % self.Ja.shape[1]).tolist():
            if c in self._first:
                self.supports[c] = self._first[c]
        return r


def _ties(problem, s, Ja, J, tau, supports):
    """The :class:`~gradcheck.engine.ties.TieCheck` of the target, on ``L = sum(out * dout)``.

    Its gradient is ``dout @ Ja`` (the Jacobian's own rows), judged by the rule the
    elementwise strategy derives from the numerical ``dout @ J``.
    """
    opts, target = s.opts, s.target
    dout = problem.dout.reshape(-1).astype(np.float64)
    ana, num = dout @ Ja, dout @ J
    rule, _ = rules(num, tau, opts.atol, opts.rtol, s.noise.relative, s.method.estimates,
                    floor=analytic_floor(problem.analytic_noise()[target.name], ana, num))
    return TieCheck(s, problem.dout, problem.out0, ana.reshape(s.arr.shape), rule, supports,
                    seed=opts.seed)


def _refine_columns(level, s, Ja, rows):
    """Refine the entries ``rows`` together with every entry of their columns.

    The columns cost the same forward calls whichever of their entries are asked
    for; refined together, an input element at a kink in any output puts all its
    entries at the kink (:func:`gradcheck.engine.refine.search` ``element``), and an
    entry outside its one-sided hull is judged on the hull widened at nearby points,
    as elements are.
    """
    m, n = Ja.shape
    cols = np.unique(rows % n)
    every = (np.arange(m)[:, None] * n + cols[None, :]).reshape(-1)  # sorted
    pos = np.searchsorted(every, rows)

    def nearby(outside, lower, upper):
        which = np.flatnonzero(outside)
        at = level(every[which])
        return widen_nearby(s.arr, s.refine_steps, s.opts.seed, which, lower, upper,
                            lambda: at(4)[0])

    r = search(level(every), Ja.reshape(-1)[every], nearby, element=every % n)
    return Refined(*(getattr(r, f)[pos] for f in ("value", "rounding", "estimate", "step",
                                                  "kink", "minus", "plus", "lower", "upper")),
                   calls=r.calls, hull_noise=None if r.hull_noise is None else r.hull_noise[pos])
