"""The ``elementwise`` and ``sampled`` strategies: every (or m random) element(s) of a target.

For each checked element ``i``, the numerical derivative of ``L = sum(out *
dout)`` is taken by the method's stencil at the element's step, and handed
to the verdict (:mod:`gradcheck.engine.verdict`) with its rounding error --
the measured noise of the outputs that element's perturbation changed, over
the step -- and the method's own truncation estimate. Before the loop, the
target's noise is measured (:mod:`gradcheck.engine.noise`) and its steps are
tuned to the measured curvature (:mod:`gradcheck.engine.steps`).
"""

import time

import numpy as np

from gradcheck.engine import methods
from gradcheck.engine.noise import measure_noise
from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.engine.refine import REFINED_GAIN, StepSearch
from gradcheck.engine.steps import (element_steps, keep_in_domain, reach, relative_step,
                                    tune)
from gradcheck.engine.ties import TieCheck
from gradcheck.engine.tolerances import analytic_floor, rounding_error, rules
from gradcheck.engine.verdict import Comparison
from gradcheck.errors import GradCheckInputError

__all__ = ["prepare", "rebind", "compare", "one_sided_screen"]


#: The step tuning's calls time a forward call when it made at least this many.
TIMED_CALLS = 8


def _index_fn(idx, shape):
    return lambda r: tuple(int(j) for j in np.unravel_index(int(idx[r]), shape))


class Setup:
    """A target's evaluator, measured noise and tuned steps (shared by every strategy).

    ``tuner(setup, steps) -> (steps, tuning)`` replaces the step tuning on single
    elements (the grouped strategy learns the target's structure there and tunes on
    a group); :attr:`structure` is what it found (``None``: not looked for).
    """

    def __init__(self, problem, target, opts, method, tuner=None):
        self.problem, self.target, self.opts, self.method = problem, target, opts, method
        self.arr = target.array
        self.evaluate = problem.evaluator(target)
        out_eps = float(np.finfo(problem.out0.dtype).eps)
        t0 = time.perf_counter()
        self.noise = measure_noise(self.evaluate, self.arr, problem.out0, problem.dout,
                                   seed=opts.seed, name=target.name, out_eps=out_eps)
        #: seconds per forward call: as the step tuning's took (the main pass's perturbation
        #: and reduction) when it made enough, else as the noise table's (which keeps whole
        #: output differences: up to 25x slower per call, measured on BatchNormalization)
        self.call_time = (time.perf_counter() - t0) / max(1, self.noise.calls)
        steps = element_steps(self.arr, method, self.noise.relative, opts.eps,
                              self.noise.local)
        self.structure = None
        before, t0 = problem.adapter.forward_calls, time.perf_counter()
        self.steps, self.tuning = (tuner or _tune_elements)(self, steps)
        tuned = problem.adapter.forward_calls - before
        if tuned >= TIMED_CALLS:
            self.call_time = (time.perf_counter() - t0) / tuned
        # refinement extrapolates central differences at 2h, h, h/2 (removing h^2 and h^4):
        # it starts from this method's step when that is a central one (the larger steps of
        # central4/richardson round less), from central's own otherwise, changed as the
        # tuning changed this method's: shrunk, or grown from a target's own scale below 1
        # (where outputs of 1 round away) up to the unit scale, never beyond (it only
        # searches downwards)
        central = methods.get("central")
        self.refine_steps = self.steps if method.order >= central.order else _refine_steps(
            self.arr, central, self.noise, opts.eps, self.tuning.factor)
        self.domain_calls, self.screened_all = 0, False
        self.shrunk = np.zeros(self.arr.size, dtype=bool)  # elements whose steps were shrunk
        self.keep_in_domain()

    def keep_in_domain(self, every=False):
        """Keep the method's points and the refinement's where forward is defined.

        Screens the elements whose points reach 0 (:func:`~gradcheck.engine.steps.
        keep_in_domain`), or, with ``every`` (forward left its domain elsewhere: an edge
        at ``x = 1``), every element; nothing when the caller fixed the step (``eps=``).

        Returns
        -------
        bool
            Whether any step was shrunk.
        """
        self.screened_all = self.screened_all or every
        if self.opts.eps is not None:
            return False
        widest = np.maximum(self.steps, self.refine_steps)
        kept, calls, shrunk = keep_in_domain(
            self.evaluate, self.arr, widest, self.problem.out0, reach(self.method),
            np.arange(self.arr.size) if every else None)
        self.domain_calls += calls
        if shrunk:  # both by the same factor (a projection's refinement keeps the ratio)
            self.steps, self.refine_steps = self.steps * (kept / widest), \
                self.refine_steps * (kept / widest)
            self.shrunk = self.shrunk | (kept != widest)  # not in place: rebind shares it
        return bool(shrunk)

    @property
    def calls(self):
        return self.noise.calls + self.tuning.calls + self.domain_calls

    def reason(self):
        """How the noise and the steps were found, for the report."""
        text = (f"; noise {self.noise.level:.2g} ({self.noise.relative:.1g} relative, "
                f"{self.noise.note})")
        if self.tuning.factor != 1.0:
            text += f"; {self.tuning.note}"
        if self.shrunk.any():
            text += (f"; the steps of {int(self.shrunk.sum())} element(s) shrunk: at x +- h "
                     "forward left its domain (NaN or inf)")
        return text


def _refine_steps(arr, central, noise, eps, factor):
    """Central differences' steps for the refinement of another method's elements."""
    steps = element_steps(arr, central, noise.relative, eps, noise.local)
    if factor <= 1.0 or eps is not None:
        return steps * min(1.0, factor)
    unit = relative_step(central, noise.relative) * np.maximum(
        1.0, np.abs(arr.reshape(-1)).astype(np.float64))
    return np.minimum(steps * factor, np.maximum(steps, unit))


def _tune_elements(s, steps):
    """The steps tuned on a few single elements (:func:`gradcheck.engine.steps.tune`)."""
    return tune(s.evaluate, s.arr, steps, s.method, s.noise, s.problem.dout, s.problem.out0,
                seed=s.opts.seed, name=s.target.name, adjust=s.opts.eps is None)


def prepare(problem, target, opts, tuner=None):
    """The :class:`Setup` of ``target`` for the method of ``opts`` (made once per check).

    ``tuner`` applies when the setup is made here (the first strategy to ask makes it).
    """
    cache = problem.__dict__.setdefault("setups", {})
    key = (target.name, opts.method)
    if key not in cache:
        cache[key] = Setup(problem, target, opts, methods.get(opts.method), tuner)
    return cache[key]


def rebind(setup, problem, target, measure=True):
    """``setup``'s tuned steps on another state of the layer, with its noise measured again.

    The sequence check verifies a second call at the post-step state: the same
    layer and target, so the same steps apply; the outputs may differ (the
    layer's function moved with its state), so their noise is measured anew
    (``measure=False`` keeps the main check's: for a screen whose failures are
    judged again with the noise measured).
    """
    s = object.__new__(Setup)
    s.__dict__.update(setup.__dict__)
    s.problem, s.target, s.arr = problem, target, target.array
    s.evaluate = problem.evaluator(target)
    if measure:
        s.noise = measure_noise(s.evaluate, s.arr, problem.out0, problem.dout,
                                seed=setup.opts.seed, name=target.name,
                                out_eps=float(np.finfo(problem.out0.dtype).eps))
    return s


def compare(problem, target, opts, idx=None, strategy="elementwise", setup=None, diffs=None):
    """Differentiate the elements ``idx`` of ``target``; the :class:`Comparison` for the verdict.

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    target : gradcheck.protocol.problem.Target
    opts : gradcheck.check.Options
    idx : ndarray of int or None
        Flat indices to check (``None``: all).
    strategy : str
        ``"elementwise"`` or ``"sampled"`` (recorded in the result).
    setup : Setup or None
        Reuse a target's measured noise and steps.
    diffs : callable or None
        ``diffs(problem, setup, idx) -> (R, span, support)``: the reduced
        differences, denominators and support noise shares of the elements
        (``None``: one element at a time; the grouped strategy perturbs groups).

    Returns
    -------
    Comparison
    """
    s = setup or prepare(problem, target, opts)
    arr, method = s.arr, s.method
    n = arr.size
    idx = np.arange(n) if idx is None else np.asarray(idx)
    R, span, support = (diffs or _differences)(problem, s, idx)
    with np.errstate(divide="ignore", invalid="ignore"):
        D = np.where(span != 0, R / span, 0.0)
    num, est = method.combine(D)
    skipped = (span == 0).any(axis=1)
    if skipped.all() and opts.eps is not None:
        raise GradCheckInputError(
            f"eps={opts.eps:g} underflows: x + h == x in {arr.dtype} for every checked element "
            f"(max|x| = {float(np.max(np.abs(arr))):.3g}); pass eps=None for steps chosen from "
            "the measured noise and each element's magnitude", layer=problem.name,
            target=target.name)
    h = s.steps[idx]
    sigma = s.noise.of_support(support)
    rounding = rounding_error(sigma, h, method.gain)
    tau = s.tuning.relative(num)
    ana = problem.analytic[target.name].reshape(-1)
    rule, own = rules(num, tau, opts.atol, opts.rtol, s.noise.relative, method.estimates,
                      floor=analytic_floor(problem.analytic_noise()[target.name], ana, num))

    def full(st):
        out = {}
        for key, values in (("numerical", st.num), ("estimates", st.bound),
                            ("tolerances", st.allowed)):
            a = np.full(n, np.nan)
            a[idx] = values
            out[key] = a.reshape(arr.shape)
        out["analytic"] = ana.reshape(arr.shape)
        return out

    flat, screened = one_sided_screen(problem, target, opts, s)
    suspects = None if flat is None else np.flatnonzero(np.isin(idx, flat))
    refiner = StepSearch(s.evaluate, arr, idx, s.refine_steps, problem.dout, problem.out0,
                         s.noise, seed=opts.seed)
    ties = TieCheck(s, problem.dout, problem.out0, ana.reshape(arr.shape), rule,
                    refiner.supports, seed=opts.seed, smooth=refiner.smooth)
    return Comparison(
        name=target.name, shape=arr.shape, dtype=str(arr.dtype), strategy=strategy,
        method=method.name, numerical=num, analytic=ana[idx], rounding=rounding,
        estimate=est, rule=rule,
        own_rule=own, skipped=skipped, steps=h, index=_index_fn(idx, arr.shape),
        noise=s.noise, refiner=refiner, ties=ties, full=full, reason=s.reason() + screened,
        refined_rounding=REFINED_GAIN * sigma / s.refine_steps[idx],
        checked_fraction=len(idx) / n if n else 1.0, suspects=suspects)


def one_sided_screen(problem, target, opts, s):
    """``(elements, reason)``: the flat elements at kinks a one-sided method cannot see
    (:func:`gradcheck.engine.projection.left_screen`), for the comparison's ``suspects``,
    and what the report says of the screen (``(None, "")`` for a method that looks at
    both sides).

    Parameters
    ----------
    problem : gradcheck.protocol.problem.Problem
    target : gradcheck.protocol.problem.Target
    opts : gradcheck.check.Options
    s : Setup

    Returns
    -------
    tuple of (ndarray of int or None, str)
    """
    if not s.method.one_sided:
        return None, ""
    from gradcheck.engine.projection import left_screen

    flat = left_screen(problem, target, opts, s)
    count = s.left_screened[2]
    found = (f"they disagreed: {len(flat)} element(s) found by bisection, refined here"
             if len(flat) else "they agreed")
    return flat, (f"; method {s.method.name!r} is one-sided: {count} random projections "
                  "moving every element to the left (x - h v) screened for kinks it cannot "
                  f"see; {found}")


def _differences(problem, s, idx):
    """``(R, span, support)``: reduced differences, denominators, support noise fractions."""
    opts = s.opts
    if opts.parallel:
        from gradcheck.engine.parallel import parallel_differences, worth_it

        if worth_it(problem, s, len(idx), minimum=opts.parallel_min):
            return parallel_differences(problem, s, idx)
    sink = Reduce(problem.dout, len(idx), len(s.method.pairs), noise_w=s.noise.weights)
    span = differences(s.evaluate, ElementMoves(s.arr, idx, s.steps), s.method.pairs, sink,
                       problem.out0)
    return sink.R.real, span, sink.noise
