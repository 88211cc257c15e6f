"""Results of a gradient check: frozen dataclasses, a table and a JSON form."""

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from gradcheck.errors import GradientCheckError

__all__ = ["TargetResult", "Finding", "GradCheckReport"]

#: Version of the layout of :meth:`GradCheckReport.to_dict`.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TargetResult:
    """The comparison for one target (the input ``"x"`` or one parameter).

    Attributes
    ----------
    name : str
        ``"x"`` or the parameter's attribute name.
    shape : tuple of int
    verdict : {"PASS", "FAIL", "INCONCLUSIVE"}
        ``FAIL``: some checked element lies outside its tolerance (or the
        analytic gradient is not finite). ``INCONCLUSIVE``: none does, but the
        check could not have caught an error of practical size
        (``inconclusive`` says why). ``PASS`` otherwise: no single-element
        error larger than ``resolution`` is present.
    max_abs_error : float
        ``max |numerical - analytic|``.
    max_rel_error : float
        ``max |numerical - analytic| / max(max|numerical|, max|analytic|)``:
        the error relative to the gradient's scale (elementwise relative
        errors of tiny true entries are meaningless).
    worst_index : tuple of int
        The element whose error uses most of its tolerance.
    worst_numerical, worst_analytic : float
        Both values at ``worst_index``.
    atol, rtol : float
        The tolerances used.
    tolerance_reason : str
        Where ``atol`` and ``rtol`` come from.
    numerical, analytic : ndarray of the target's shape (float64)
        The two gradients.
    step, max_step : float
        Smallest and largest absolute step used (the steps are per element).
    error_estimate : float
        Largest estimated error of the numerical gradient (rounding, and
        truncation where the method estimates it).
    margin : float
        Worst ``|numerical - analytic| / (atol + rtol |numerical|)``; below 1
        passes. ``marginal`` is true when it lies between 0.3 and 3.
    vacuous : bool
        The check cannot tell a right backward from a wrong one (the
        gradient is identically zero, or no element could be perturbed).
    n_checked, n_skipped, n_refined : int
        Elements compared; elements skipped (``x + h == x``); elements whose
        first comparison failed and were recomputed by Richardson
        extrapolation before the verdict.
    excluded : tuple of tuple of int
        Elements excluded from the verdict at non-differentiable points.
    strategy : str
        ``"elementwise"``, ``"sampled"``, ``"jacobian"`` or ``"projection"``.
        For ``"jacobian"``, ``numerical``/``analytic`` are the Jacobian
        blocks of shape ``(out.size, target.size)`` and
        ``worst_output_index`` is the output element of the worst entry; for
        ``"projection"`` they are the ``k`` compared scalars ``u . (J v)``
        and ``(J^T u) . v`` and ``worst_index`` is ``(probe,)``.
    error_estimates : ndarray of the target's shape or None
        Per-element estimate of the numerical gradient's error (rounding,
        plus truncation where the method estimates it); NaN where not checked.
    located : tuple of (index, numerical, analytic)
        ``"projection"``: the wrong elements found by bisection after a
        failed probe (derivatives of ``sum(forward * u)`` for that probe's
        ``u``).
    resolution : float
        The smallest single-element error of the analytic gradient that the
        check would have caught, in the units of the gradient: an error
        larger than this in any checked element fails.
    noise : float
        The measured noise level of the reduced forward ``L = sum(out * dout)``
        at the working point (absolute, one evaluation).
    inconclusive : str
        Why the check could not have caught an error of practical size
        (empty when it could): then the verdict is ``"INCONCLUSIVE"``.
    relative_resolution : float
        ``resolution`` over the gradient's scale (``max |numerical|``).
    tolerances : ndarray of the target's shape or None
        The tolerance applied to each element (``atol_i + rtol |numerical_i|``;
        NaN where not checked): an element fails when ``|numerical -
        analytic|`` exceeds it. ``margin`` is the largest ratio of the two.
    kinks : tuple of (index, minus, plus)
        Elements judged at non-differentiable points, with the one-sided
        derivatives there (the analytic value must lie between them).
    method : str
        The finite-difference method actually used for this target.
    unresolved : tuple of tuple of int
        Elements judged only at a tolerance coarser than ``min_resolution`` times
        the gradient's scale (near a kink or a steep feature); the resolution
        leaves them out, and a finding lists them.
    checked_fraction : float
        The share of the target's elements the check saw: below 1 under
        ``strategy="sampled"``, whose ``resolution`` holds for the sampled
        elements only (an error in another is not caught): INCONCLUSIVE.
    """

    name: str
    shape: tuple
    dtype: str
    verdict: str
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple
    worst_numerical: float
    worst_analytic: float
    atol: float
    rtol: float
    tolerance_reason: str
    numerical: np.ndarray = field(repr=False)
    analytic: np.ndarray = field(repr=False)
    step: float = 0.0
    max_step: float = 0.0
    error_estimate: float = 0.0
    margin: float = 0.0
    marginal: bool = False
    vacuous: bool = False
    n_checked: int = 0
    n_skipped: int = 0
    n_refined: int = 0
    excluded: tuple = ()
    strategy: str = "elementwise"
    worst_output_index: Optional[tuple] = None
    located: tuple = ()
    error_estimates: Optional[np.ndarray] = field(default=None, repr=False)
    resolution: float = float("nan")
    noise: float = float("nan")
    inconclusive: str = ""
    tolerances: Optional[np.ndarray] = field(default=None, repr=False)
    kinks: tuple = ()
    unresolved: tuple = ()
    method: str = ""
    relative_resolution: float = float("nan")
    checked_fraction: float = 1.0

    @property
    def passed(self):
        """``verdict == "PASS"``."""
        return self.verdict == "PASS"

    def to_dict(self, arrays=False):
        """JSON-serialisable fields (the gradients only when ``arrays``)."""
        d = {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype,
            "passed": self.passed, "verdict": self.verdict,
            "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
            "worst_index": list(self.worst_index), "worst_numerical": self.worst_numerical,
            "worst_analytic": self.worst_analytic, "atol": self.atol, "rtol": self.rtol,
            "tolerance_reason": self.tolerance_reason, "step": self.step,
            "max_step": self.max_step or self.step,
            "error_estimate": self.error_estimate, "margin": self.margin,
            "marginal": self.marginal, "vacuous": self.vacuous,
            "n_checked": self.n_checked, "n_skipped": self.n_skipped,
            "n_refined": self.n_refined, "strategy": self.strategy,
            "excluded": [list(i) for i in self.excluded],
            "worst_output_index": (list(self.worst_output_index)
                                   if self.worst_output_index is not None else None),
            "located": [{"index": list(i), "numerical": n, "analytic": a}
                        for i, n, a in self.located],
            "resolution": self.resolution, "noise": self.noise,
            "inconclusive": self.inconclusive,
            "relative_resolution": self.relative_resolution, "method": self.method,
            "kinks": [{"index": list(i), "minus": lo, "plus": hi} for i, lo, hi in self.kinks],
            "unresolved": [list(i) for i in self.unresolved],
            "checked_fraction": self.checked_fraction,
        }
        if arrays:
            d["numerical"] = self.numerical.tolist()
            d["analytic"] = self.analytic.tolist()
        return d


@dataclass(frozen=True)
class Finding:
    """Something the check noticed besides the gradient comparison.

    Attributes
    ----------
    kind : str
        A stable identifier, e.g. ``"forward-modifies-input"``,
        ``"backward-modifies-dout"``, ``"vacuous"``, ``"integer-input"``.
    failure : bool
        ``True`` makes the report fail; ``False`` is a warning.
    message : str
    target : str or None
    """

    kind: str
    failure: bool
    message: str
    target: Optional[str] = None

    def to_dict(self):
        return {"kind": self.kind, "failure": self.failure, "message": self.message,
                "target": self.target}


@dataclass(frozen=True)
class GradCheckReport:
    """Everything one :func:`~gradcheck.check_layer` call found.

    Attributes
    ----------
    layer : str
        The layer's class name.
    input_shape : tuple of int
    dtype : str
        The dtype the check evaluated in.
    train_flg : bool
    method, strategy : str
    seed : int
    results : tuple of TargetResult
        One per target, ``"x"`` first.
    findings : tuple of Finding
    forward_calls, backward_calls : int
        Calls the check made.
    versions : dict
        Library versions (for reproducing the verdict).
    not_checked : tuple of (str, str)
        Every array or scalar considered and not checked -- attributes that
        are not parameters, inputs not differentiated -- with the reason
        (``("h", "written by forward -> state, not a parameter")``).
    discovery_calls : tuple of int
        ``(forward, backward)`` calls made to discover the parameters (and the
        outputs of a several-input call, and the two deciding whether a
        ``__call__`` is the forward pass) before the check; not included in
        ``forward_calls``/``backward_calls``.
    single_mode : bool
        ``train_flg=False`` was asked of a layer with no train/eval switch: it
        was checked in the one mode it has (``mode-switch`` warning).
    """

    layer: str
    input_shape: tuple
    dtype: str
    train_flg: bool
    method: str
    strategy: str
    seed: int
    results: tuple
    findings: tuple = ()
    forward_calls: int = 0
    backward_calls: int = 0
    versions: dict = field(default_factory=dict)
    input_dtype: str = ""
    inconclusive: str = "fail"
    not_checked: tuple = ()
    discovery_calls: tuple = (0, 0)
    single_mode: bool = False

    @property
    def passed(self):
        """Every target PASS (or INCONCLUSIVE, with ``inconclusive="pass"``), no failing finding."""
        ok = ("PASS", "INCONCLUSIVE") if self.inconclusive == "pass" else ("PASS",)
        return all(r.verdict in ok for r in self.results) and not any(
            f.failure for f in self.findings)

    @property
    def warnings(self):
        """Messages of the findings that are not failures (vacuous checks, ...)."""
        return [f.message for f in self.findings if not f.failure]

    @property
    def failures(self):
        """Messages of the findings that fail the check (besides gradient mismatches)."""
        return [f.message for f in self.findings if f.failure]

    def result(self, name):
        """The :class:`TargetResult` called ``name`` (``KeyError`` otherwise)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no target {name!r}; targets: {[r.name for r in self.results]}")

    @property
    def mode(self):
        """``"train"``, ``"eval"``, or ``"one-mode"`` (:attr:`single_mode`)."""
        if self.single_mode:
            return "one-mode"
        return "train" if self.train_flg else "eval"

    @property
    def dtype_label(self):
        """The input's dtype, and the dtype checked in when they differ (``"float32 as
        float64"``: an integer input cast, a float32 input of a layer computing in float64
        or upcast by ``precision="auto"``)."""
        if not self.input_dtype or self.input_dtype == self.dtype:
            return self.dtype
        return f"{self.input_dtype} as {self.dtype}"

    def raise_if_failed(self):
        """Raise :class:`~gradcheck.GradientCheckError` (with this table) if the check failed.

        Returns
        -------
        GradCheckReport
            ``self``, when the check passed.
        """
        if not self.passed:
            raise GradientCheckError(self)
        return self

    def to_dict(self, arrays=False):
        """A JSON-serialisable dict (schema version :data:`SCHEMA_VERSION`).

        Parameters
        ----------
        arrays : bool, default False
            Include both gradients of every target as nested lists.
        """
        return {
            "schema_version": SCHEMA_VERSION,
            "layer": self.layer, "input_shape": list(self.input_shape), "dtype": self.dtype,
            "mode": self.mode, "method": self.method, "strategy": self.strategy,
            "seed": self.seed, "passed": self.passed,
            "results": [r.to_dict(arrays) for r in self.results],
            "findings": [f.to_dict() for f in self.findings],
            "forward_calls": self.forward_calls, "backward_calls": self.backward_calls,
            "versions": dict(self.versions), "input_dtype": self.input_dtype or self.dtype,
            "checked": [r.name for r in self.results],
            "discovery_calls": list(self.discovery_calls),
            "not_checked": [{"name": n, "reason": why} for n, why in self.not_checked],
        }

    def __str__(self):
        from gradcheck.render import report_text

        return report_text(self)

    def _repr_html_(self):
        from gradcheck.notebook import report_html

        return report_html(self)
