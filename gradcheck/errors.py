"""Exceptions and warnings of :mod:`gradcheck`.

One hierarchy: every problem with what the user passed in is a
:class:`GradCheckInputError` (also a :class:`ValueError`); a failed check that
the user asked to raise is a :class:`GradientCheckError` (also an
:class:`AssertionError`, so test runners show it as a test failure).
"""

__all__ = [
    "GradCheckInputError",
    "LayerProtocolError",
    "LayerCallError",
    "GradientCheckError",
]


class GradCheckInputError(ValueError):
    """Bad input to a check: a layer, an array or an option that cannot be checked.

    The message names the layer, the target (``"x"``, ``"gamma"``, ...) and
    what is wrong.

    Parameters
    ----------
    message : str
    layer : str, optional
        Name of the layer's class.
    target : str, optional
        The target concerned, or ``None``.
    """

    def __init__(self, message, *, layer=None, target=None):
        prefix = []
        if layer is not None:
            prefix.append(f"layer {layer}")
        if target is not None:
            prefix.append(f"target {target!r}")
        text = f"{', '.join(prefix)}: {message}" if prefix else message
        super().__init__(text)
        self.layer = layer
        self.target = target


class LayerProtocolError(GradCheckInputError):
    """The layer does not follow the protocol (``forward``/``backward``/``dp``).

    Examples: no ``forward`` method, ``backward`` returning ``None`` or an
    array of the wrong shape or dtype, a parameter gradient that never appears
    or has the wrong shape, a forward that returns a tuple.
    """


class LayerCallError(GradCheckInputError):
    """The layer's own ``forward`` or ``backward`` raised, or produced NaN/inf.

    The original exception is chained (``__cause__``), so its traceback is
    shown; ``index`` is the perturbed element (a tuple) or ``None`` for the
    unperturbed call.
    """

    def __init__(self, message, *, layer=None, target=None, index=None):
        if index is not None:
            message = f"{message} (while perturbing element {index})"
        super().__init__(message, layer=layer, target=target)
        self.index = index


class GradientCheckError(AssertionError):
    """A gradient check failed; raised by ``GradCheckReport.raise_if_failed``.

    The message is the report's table (or ``message``, when given); the
    report itself is ``.report``.
    """

    def __init__(self, report, message=None):
        super().__init__(str(report) if message is None else message)
        self.report = report
