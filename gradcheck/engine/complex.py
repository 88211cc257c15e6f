"""``method="complex"``: complex-step differentiation, when the layer allows it.

``Im L(x + i h e_j) / h`` is the derivative to the forward's own rounding
(no subtractive cancellation, so ``h = 1e-20``) [1]_. The layer's forward
must accept complex input and be complex-analytic (no ``abs``, ``maximum``,
comparisons or ``.real`` on the path). Both are found out by a trial: a
forward call on complex copies must return a complex output, and the
complex-step derivatives of *all* elements, projected on
:data:`TRIAL_DIRECTIONS` random real directions, must agree with central
differences along them (two forward calls a direction; an element whose
forward is not analytic there, the ``abs`` branch of a Huber loss wherever it
sits, makes them disagree with probability one). Otherwise a
:class:`~gradcheck.GradCheckInputError` refuses, suggesting
``method="central"``.

The rounding error of each derivative is taken as ``COMPLEX_ROUNDING * eps *
sum |Im out_k| |dout_k| / h``: the rounding of the summed terms, times an
allowance for cancellation inside the forward (centring in a normalisation,
a softmax); there is no truncation error to speak of, and no refinement.

References
----------
.. [1] W. Squire and G. Trapp, "Using complex variables to estimate
   derivatives of real functions", SIAM Review 40 (1998).
"""

import zlib

import numpy as np

from gradcheck.engine import methods
from gradcheck.engine.perturb import DirectionMoves, ElementMoves, Reduce, differences
from gradcheck.engine.steps import element_steps
from gradcheck.engine.tolerances import analytic_floor, rules
from gradcheck.engine.verdict import Comparison
from gradcheck.errors import GradCheckInputError, intermittent_error
from gradcheck.protocol.state import StateSnapshot

__all__ = ["comparisons"]

#: Random real directions along which the complex-step derivatives of every element are
#: compared with central differences in the trial (two forward calls each).
TRIAL_DIRECTIONS = 2

#: Relative agreement the trial asks of the two projections.
TRIAL_RTOL = 1e-5

#: Rounding of a complex-step derivative, in units of ``eps`` times its summed terms.
COMPLEX_ROUNDING = 16.0


def _refuse(problem, target, why):
    raise GradCheckInputError(
        f"method='complex' needs a forward that accepts complex input and is complex-analytic; "
        f"{why} -- use method='central' (or 'richardson' for more accuracy)",
        layer=problem.name, target=target)


def _directions(problem, target):
    """``w``: :data:`TRIAL_DIRECTIONS` random real directions, scaled by the central step."""
    rng = np.random.default_rng([problem.seed, 5, zlib.crc32(target.name.encode())])
    steps = element_steps(target.array, methods.get("central"), np.finfo(np.float64).eps)
    w = rng.standard_normal((TRIAL_DIRECTIONS, target.array.size)) * steps
    return w.reshape((TRIAL_DIRECTIONS,) + target.array.shape)


def _central(problem, target, w):
    """``(D, delta, S)``: central differences along each direction ``w_r`` (per unit of
    ``t`` in ``x + t w_r``), the representable moves ``((x + w_r) - (x - w_r)) / 2``, and
    the size of the summed terms."""
    real = target.array
    sink = Reduce(problem.dout, len(w), 1, sizes=True)
    differences(problem.evaluator(target), DirectionMoves(real, w), [(1.0, -1.0)], sink,
                problem.out0)
    x0 = real.astype(np.float64)
    delta = np.stack([((x0 + d).astype(real.dtype).astype(np.float64)
                       - (x0 - d).astype(real.dtype).astype(np.float64)) / 2 for d in w])
    return sink.R[:, 0].real / 2, delta.reshape(len(w), -1), sink.S[:, 0] / 2


def _check_trial(problem, target, trial, num):
    """Refuse unless the complex-step derivatives ``num`` of every element, projected on
    the trial's directions, agree with the central differences along them."""
    D, delta, S = trial
    P = delta @ num
    eps = float(np.finfo(target.array.dtype).eps)
    scale = np.maximum(np.linalg.norm(delta, axis=1), np.linalg.norm(delta * num, axis=1))
    bad = np.abs(P - D) > TRIAL_RTOL * scale + COMPLEX_ROUNDING * eps * S
    if np.any(bad):
        r = int(np.argmax(bad))
        _refuse(problem, target.name, "its complex-step and central differences disagree "
                f"along a random direction ({P[r]:.6g} vs {D[r]:.6g}): the forward is not "
                "complex-analytic at some element (abs, maximum, comparisons?)")


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
    trial = _central(problem, target, _directions(problem, target))
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
        num, S, h = _complex_step(problem, target, work, np.arange(real.size), dirty)
        _check_trial(problem, target, trial, num)
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
