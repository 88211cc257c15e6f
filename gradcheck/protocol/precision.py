"""Precision policy: check float16/float32 layers in float64 when they allow it.

A float32 layer's finite differences are limited by float32's rounding
(central differences reach about ``eps32**(2/3) = 2.4e-5``), so a check at
native precision can only catch gross errors. Most numpy layers compute in
their input's dtype; for those the check substitutes float64 copies of ``x``,
of every float16/float32 parameter and of the state, everywhere they are
referenced, and evaluates in float64 -- the same code, differentiated 10^5
times more precisely. The originals are put back afterwards.
"""

import numpy as np

from gradcheck.protocol.state import StateSnapshot
from gradcheck.report import Finding

LOW = (np.float16, np.float32)


def working_precision(layer, adapter, original, xw, dout, precision, findings):
    """Return ``(xw, dout, snapshot)`` in the precision the check evaluates in.

    Parameters
    ----------
    layer, adapter : the layer and its :class:`~gradcheck.protocol.adapter.LayerAdapter`
    original : StateSnapshot
        Snapshot of the untouched layer (restores the originals at the end).
    xw : ndarray
        Working copy of ``x``.
    dout : ndarray or None
    precision : {"auto", "float64", "native"}
    findings : list
        A ``precision`` note is appended.
    """
    low = [a for a in original.arrays() if a.dtype.type in LOW]
    input_low = xw.dtype.type in LOW
    if not low and not input_low:
        return xw, dout, original
    dtypes = sorted({str(a.dtype) for a in low} | ({str(xw.dtype)} if input_low else set()))
    if precision == "native":
        findings.append(Finding(
            "precision", False,
            f"checked at native precision ({', '.join(dtypes)}) with that dtype's tolerances "
            "(precision='native')"))
        return xw, dout, original
    original.substitute(original.converted(low, np.float64))  # views stay views of the upcast
    trial = StateSnapshot(layer)
    x64 = xw.astype(np.float64)
    out = adapter.forward(x64.copy())
    trial.restore_all()
    if out.dtype != np.float64:
        original.restore_all()
        findings.append(Finding(
            "precision", False,
            f"the layer computes in {out.dtype} whatever its input's dtype: checked at native "
            f"precision with {out.dtype} tolerances"))
        return xw, dout, original
    what = (f"the layer computes in its input's dtype ({', '.join(dtypes)})" if input_low
            else f"the layer holds {', '.join(dtypes)} parameters or state (its input is "
            f"{xw.dtype})")
    findings.append(Finding(
        "precision", False,
        f"{what}: evaluated in float64 on upcast copies of x, its parameters and state; "
        f"precision='native' checks at {dtypes[0]} with its own tolerances"))
    if dout is not None:
        dout = dout.astype(np.float64)
    return x64, dout, trial
