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
    """The text of a failed check: the lines naming what failed, then the report's table."""
    from gradcheck.render import failure_text

    return failure_text(report, run_options)


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
