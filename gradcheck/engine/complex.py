"""``method="complex"``: complex-step differentiation, when the layer allows it.

The layer's forward must accept complex input and be complex-analytic (no
``abs``, ``maximum``, comparisons or ``.real`` on the path). Both are found
out by a trial before the check: a forward call on complex copies must
return a complex output, and the complex-step derivative of the first
elements must agree with central differences. Otherwise a
:class:`~gradcheck.GradCheckInputError` refuses, suggesting
``method="central"``.
"""

import numpy as np

from gradcheck.engine.elementwise import compare
from gradcheck.protocol.state import StateSnapshot
from gradcheck.engine.steps import element_steps
from gradcheck.errors import GradCheckInputError

#: Elements of each target compared against central differences in the trial.
TRIAL_ELEMENTS = 3


def _refuse(run, target, why):
    raise GradCheckInputError(
        f"method='complex' needs a forward that accepts complex input and is complex-analytic; "
        f"{why} -- use method='central' (or 'richardson' for more accuracy)",
        layer=run.name, target=target)


def complex_step_results(run):
    """One elementwise :class:`TargetResult` per target, by complex step."""
    results = []
    for target in run.targets:
        real = run.target_array(target)
        trial = np.arange(min(TRIAL_ELEMENTS, real.size))
        central = run.numerical(target, real, element_steps(real, "central", run.eps), trial,
                                "central")[0]
        cdtype = np.complex64 if real.dtype == np.float32 else np.complex128
        work = real.astype(cdtype)
        run.snapshot.restore_all()
        outer = StateSnapshot(run.layer)
        if target != "x":
            mapping = outer.converted([real], cdtype)  # views of real become complex views
            work = mapping[id(real)]
            outer.substitute(mapping)
        try:
            inner = StateSnapshot(run.layer)
            try:
                out = run.adapter.raw_forward(work if target == "x" else run.xw)
            except Exception as exc:
                _refuse(run, target, f"forward() raised {type(exc).__name__}: {exc}")
            if not np.iscomplexobj(out):
                _refuse(run, target, f"forward() returned {np.asarray(out).dtype} for complex "
                        "input (the imaginary part is dropped)")
            dirty_saved, run.dirty = run.dirty, inner.changed()
            inner.restore_all()
            saved_snapshot, run.snapshot = run.snapshot, inner
            run.override = {target: work}
            try:
                cstep = run.numerical(target, work, element_steps(real, "complex", run.eps),
                                      trial, "complex")[0]
                scale = max(1.0, float(np.max(np.abs(central))))
                if np.any(np.abs(cstep - central) > 1e-5 * scale):
                    _refuse(run, target, "its complex-step and central differences disagree "
                            f"(e.g. {cstep[0]:.6g} vs {central[0]:.6g}): the forward is not "
                            "complex-analytic (abs, maximum, comparisons?)")
                results.append(compare(run, target, None, "elementwise"))
            finally:
                run.override = {}
                run.dirty, run.snapshot = dirty_saved, saved_snapshot
        finally:
            outer.restore_all()
    return tuple(results)
