"""``method="complex"``: complex-step differentiation, when the layer allows it.

``Im L(x + i h e_j) / h`` is the derivative to the forward's own rounding
(no subtractive cancellation, so ``h = 1e-20``) [1]_. The layer's forward
must accept complex input and be complex-analytic (no ``abs``, ``maximum``,
comparisons or ``.real`` on the path). Both are found out by a trial before
the check: a forward call on complex copies must return a complex output,
and the complex-step derivative of the first elements must agree with
central differences. Otherwise a :class:`~gradcheck.GradCheckInputError`
refuses, suggesting ``method="central"``.

The rounding error of each derivative is taken as ``COMPLEX_ROUNDING * eps *
sum |Im out_k| |dout_k| / h``: the rounding of the summed terms, times an
allowance for cancellation inside the forward (centring in a normalisation,
a softmax); there is no truncation error to speak of, and no refinement.

References
----------
.. [1] W. Squire and G. Trapp, "Using complex variables to estimate
   derivatives of real functions", SIAM Review 40 (1998).
"""

import numpy as np

from gradcheck.engine import methods
from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.engine.steps import element_steps
from gradcheck.engine.tolerances import analytic_floor, rules
from gradcheck.engine.verdict import Comparison
from gradcheck.errors import GradCheckInputError, intermittent_error
from gradcheck.protocol.state import StateSnapshot

__all__ = ["comparisons"]

#: Elements of each target compared against central differences in the trial.
TRIAL_ELEMENTS = 3

#: Rounding of a complex-step derivative, in units of ``eps`` times its summed terms.
COMPLEX_ROUNDING = 16.0


def _refuse(problem, target, why):
    raise GradCheckInputError(
        f"method='complex' needs a forward that accepts complex input and is complex-analytic; "
        f"{why} -- use method='central' (or 'richardson' for more accuracy)",
        layer=problem.name, target=target)


def _central(problem, target, idx):
    """Central differences of the trial elements, at the float64 base step."""
    central = methods.get("central")
    steps = element_steps(target.array, central, np.finfo(np.float64).eps)
    sink = Reduce(problem.dout, len(idx), 1)
    span = differences(problem.evaluator(target), ElementMoves(target.array, idx, steps),
                       central.pairs, sink, problem.out0)
    return sink.R[:, 0].real / span[:, 0]


def _complex_step(problem, target, work, idx, dirty):
    """``(D, S, h)``: complex-step derivatives of ``idx``, the size of their summed terms."""
    steps = element_steps(target.array, None, 0.0)
    sink = Reduce(problem.dout, len(idx), 1, sizes=True)
    evaluate = problem.evaluator(target, array=work, dirty=dirty)
    span = differences(evaluate, ElementMoves(work, idx, steps), [(1j, 0.0)], sink,
                       problem.out0)
    return sink.R[:, 0].imag / span[:, 0], sink.S[:, 0] / span[:, 0], steps[idx]


def comparisons(problem, opts, strategy):
    """``(target, Comparison)`` of every target, by complex step."""
    for target in problem.targets:
        yield target, _compare(problem, target, opts)


def _compare(problem, target, opts):
    real = target.array
    trial = np.arange(min(TRIAL_ELEMENTS, real.size))
    central = _central(problem, target, trial)
    cdtype = np.complex64 if real.dtype == np.float32 else np.complex128
    work = real.astype(cdtype)
    problem.snapshot.restore_all()
    outer = StateSnapshot(problem.layer)
    if target.kind != "input":
        mapping = outer.converted([real], cdtype)  # views of real become complex views
        work = mapping[id(real)]
        outer.substitute(mapping)
    try:
        inner = StateSnapshot(problem.layer)
        arg = work if target.kind == "input" else problem.xw
        try:
            out = problem.adapter.raw_forward(arg)
        except Exception as exc:
            inner.restore_all()
            err = intermittent_error(exc, lambda: problem.adapter.raw_forward(arg),
                                     "on the complex input of the complex-step probe",
                                     layer=problem.adapter.name, target=target.name)
            if err:
                raise err from exc
            _refuse(problem, target.name, f"forward() raised {type(exc).__name__}: {exc}")
        if not np.iscomplexobj(out):
            _refuse(problem, target.name, f"forward() returned {np.asarray(out).dtype} for "
                    "complex input (the imaginary part is dropped)")
        dirty = inner.changed()
        inner.restore_all()
        cstep = _complex_step(problem, target, work, trial, dirty)[0]
        scale = max(1.0, float(np.max(np.abs(central))))
        if np.any(np.abs(cstep - central) > 1e-5 * scale):
            _refuse(problem, target.name, "its complex-step and central differences disagree "
                    f"(e.g. {cstep[0]:.6g} vs {central[0]:.6g}): the forward is not "
                    "complex-analytic (abs, maximum, comparisons?)")
        idx = np.arange(real.size)
        num, S, h = _complex_step(problem, target, work, idx, dirty)
    finally:
        outer.restore_all()
    eps = float(np.finfo(real.dtype).eps)
    ana = problem.analytic[target.name].reshape(-1)
    rule, own = rules(num, eps, opts.atol, opts.rtol, eps,
                      floor=analytic_floor(problem.analytic_noise()[target.name], ana, num))
    return Comparison(
        name=target.name, shape=real.shape, dtype=str(real.dtype), strategy="elementwise",
        method="complex", numerical=num, analytic=ana, rounding=COMPLEX_ROUNDING * eps * S,
        estimate=np.full(num.shape, np.nan), rule=rule,
        own_rule=own, skipped=np.zeros(num.size, bool),
        steps=h, index=lambda r: tuple(int(j) for j in np.unravel_index(int(r), real.shape)),
        noise=None, full=lambda st: {"numerical": st.num.reshape(real.shape),
                                     "analytic": ana.reshape(real.shape),
                                     "tolerances": st.allowed.reshape(real.shape),
                                     "estimates": st.bound.reshape(real.shape)},
        reason=f"; complex step: rounding_i = {COMPLEX_ROUNDING:g} eps x sum|Im out||dout| / h")
