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
    unperturbed call. ``intermittent`` is true when the same call, repeated on
    the same input and state, returned: the error is not the input's (not the
    edge of forward's domain that a smaller step avoids), and no retry may
    pass over it.
    """

    def __init__(self, message, *, layer=None, target=None, index=None, intermittent=False):
        if index is not None:
            message = f"{message} (while perturbing element {index})"
        super().__init__(message, layer=layer, target=target)
        self.index = index
        self.intermittent = intermittent


def intermittent_error(exc, again, where, *, layer, target=None, index=None, method="forward"):
    """The error for ``exc`` if it does not repeat: ``again()`` (the same call, on the same
    input and state) returning means the layer's error is not the input's.

    Parameters
    ----------
    exc : BaseException
        What the layer's call raised.
    again : callable
        Makes the call once more.
    where : str
        Which call it was (``"while perturbing element (1, 0)"``).
    layer, target, index, method : optional
        For the message (``method`` is ``"forward"`` or ``"backward"``).

    Returns
    -------
    LayerCallError or None
        An ``intermittent`` error naming the call, or ``None`` when ``again()``
        raised too (the caller's own handling applies: a domain edge, a mode that
        cannot run).
    """
    try:
        again()
    except (Exception, SystemExit):
        return None
    err = LayerCallError(
        f"{method}() raised {type(exc).__name__}: {exc} ({where}), but returned when called "
        "again on the same input and state: an intermittent error, not the input's, so the "
        "check stops instead of retrying past it", layer=layer, target=target,
        intermittent=True)
    err.index = index
    return err


class GradientCheckError(AssertionError):
    """A gradient check failed; raised by ``GradCheckReport.raise_if_failed``.

    The message is the report's table (or ``message``, when given); the
    report itself is ``.report``.
    """

    def __init__(self, report, message=None):
        super().__init__(str(report) if message is None else message)
        self.report = report
