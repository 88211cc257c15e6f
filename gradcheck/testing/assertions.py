"""``assert_gradients``: a gradient check as one assertion in a test."""

from gradcheck.check import check_layer
from gradcheck.errors import GradientCheckError

__all__ = ["assert_gradients"]

# Options that apply to every call during a pytest run (``--gradcheck-method``,
# ...). Set by gradcheck.testing.pytest_plugin for the duration of the run; empty
# outside pytest.
_run_options = {}


def _set_run_options(options):
    """Replace the run-wide options; return the previous ones (to restore them)."""
    global _run_options
    previous, _run_options = _run_options, dict(options)
    return previous


def failure_message(report, run_options=None):
    """The text of a failed check: one line naming what failed, then the report's table."""
    lines = [f"gradient check failed: {report.layer} {tuple(report.input_shape)} "
             f"{report.dtype}, {report.mode} mode"]
    for r in report.results:
        if not r.passed:
            lines.append(
                f"  target {r.name!r} at index {tuple(r.worst_index)}: numerical "
                f"{r.worst_numerical:.10g}, analytic {r.worst_analytic:.10g} (max abs error "
                f"{r.max_abs_error:.3g}, max rel error {r.max_rel_error:.3g}; atol "
                f"{r.atol:.2g}, rtol {r.rtol:.2g})")
    for f in report.findings:
        if f.failure:
            lines.append(f"  {f.kind}: {f.message}")
    text = str(report)
    lines += ["", text]
    if run_options:
        lines.append("run-wide options from the command line: " + " ".join(
            f"--gradcheck-{k}={v}" for k, v in sorted(run_options.items())))
    if "hint:" not in text:
        lines.append("hint: an error far above the tolerance at the named index is a wrong "
                     "backward; one near it (marginal) may be the step: try "
                     "method='richardson'")
    return "\n".join(lines)


def assert_gradients(layer, x, **options):
    """Assert that ``layer.backward`` is the gradient of ``layer.forward`` at ``x``.

    Runs :func:`~gradcheck.check_layer` and raises when the check fails.
    Under pytest, the command-line options ``--gradcheck-method``,
    ``--gradcheck-seed``, ``--gradcheck-atol`` and ``--gradcheck-rtol``
    apply to every call of the run and take precedence over ``options``.

    Parameters
    ----------
    layer : object
        Has ``forward(x[, train_flg])`` and ``backward(dout)``.
    x : ndarray of shape (N, ...)
        The input.
    **options
        Keyword arguments of :func:`~gradcheck.check_layer` (``train_flg``,
        ``wrt``, ``params``, ``dout``, ``method``, ``eps``, ``atol``,
        ``rtol``, ``seed``, ...).

    Returns
    -------
    GradCheckReport
        The report of the passing check.

    Raises
    ------
    GradientCheckError
        An ``AssertionError`` whose message names the failing target, its
        worst index and both values, followed by the report's table.
    GradCheckInputError
        Bad input, an invalid option, or a layer that breaks the protocol.

    Examples
    --------
    >>> import numpy as np
    >>> from gradcheck import assert_gradients
    >>> from layers import Affine
    >>> rng = np.random.default_rng(0)
    >>> report = assert_gradients(Affine(rng.normal(size=(4, 3)), np.zeros(3)),
    ...                           rng.normal(size=(5, 4)))
    >>> report.passed
    True
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this one
    run_options = dict(_run_options)
    report = check_layer(layer, x, **{**options, **run_options})
    if not report.passed:
        raise GradientCheckError(report, failure_message(report, run_options))
    return report
