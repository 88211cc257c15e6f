"""Validation of ``check_layer``'s arguments, all in one place, before any work."""

import numbers

import numpy as np

from gradcheck.errors import GradCheckInputError

METHODS = ("forward", "central", "central4", "richardson", "complex")
STRATEGIES = ("auto", "grouped", "elementwise", "jacobian", "projection", "sampled")
PRECISIONS = ("auto", "float64", "native")


def did_you_mean(name, known, *, n=1, cutoff=0.6, quote=repr):
    """The hint `` (did you mean 'method'?)`` for a mistyped ``name``: the closest of
    ``known`` (:func:`difflib.get_close_matches`), each shown with ``quote``; ``""`` when
    none is close. The one home of the toolkit's did-you-mean (the command line's options,
    the configuration's keys, the built-in layers' names, the pytest marker's keywords).

    Parameters
    ----------
    name : str
    known : iterable of str
    n : int
        How many suggestions at most.
    cutoff : float
        :func:`difflib.get_close_matches`'s similarity cutoff.
    quote : callable
        How a suggestion is shown (``repr``; ``str`` for ``--method``).

    Returns
    -------
    str
    """
    import difflib

    close = difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)
    return f" (did you mean {', '.join(map(quote, close))}?)" if close else ""


def check_options(name, *, method, strategy, eps, atol, rtol, seed, wrt, train_flg):
    """Raise :class:`GradCheckInputError` for an invalid option value."""
    if method not in METHODS:
        raise GradCheckInputError(
            f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}", layer=name)
    if strategy not in STRATEGIES:
        raise GradCheckInputError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {strategy!r}",
            layer=name)
    if eps is not None:
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not np.isfinite(eps) \
                or eps <= 0:
            raise GradCheckInputError(f"eps must be a finite float > 0 or None; got {eps!r}",
                                      layer=name)
    for label, tol in (("atol", atol), ("rtol", rtol)):
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real)
                                or not np.isfinite(tol) or tol < 0):
            raise GradCheckInputError(f"{label} must be a finite float >= 0 or None; got {tol!r}",
                                      layer=name)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise GradCheckInputError(f"seed must be an int >= 0; got {seed!r}", layer=name)
    if not isinstance(train_flg, (bool, np.bool_)):
        raise GradCheckInputError(f"train_flg must be True or False; got {train_flg!r}",
                                  layer=name)
    if wrt is not None:
        if isinstance(wrt, str):
            wrt = [wrt]
        if not isinstance(wrt, (list, tuple, set, frozenset)) or not all(
                isinstance(w, str) for w in wrt) or not len(wrt):
            raise GradCheckInputError(
                f"wrt must be None or a non-empty list of target names ('x', 'gamma', ...); "
                f"got {wrt!r}", layer=name)
        wrt = list(dict.fromkeys(wrt))
    return wrt


def _positive_int(value, label, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise GradCheckInputError(f"{label} must be an int >= 1; got {value!r}", layer=name)
    return int(value)


def check_engine_options(name, *, samples, probes, precision, nondet_tol, n_jobs, executor,
                         sequence=True):
    """Raise :class:`GradCheckInputError` for an invalid engine option."""
    if not isinstance(sequence, (bool, np.bool_)):
        raise GradCheckInputError(f"sequence must be True or False; got {sequence!r}",
                                  layer=name)
    _positive_int(samples, "samples", name)
    _positive_int(probes, "probes", name)
    if precision not in PRECISIONS:
        raise GradCheckInputError(
            f"precision must be one of {', '.join(map(repr, PRECISIONS))}; got {precision!r}",
            layer=name)
    if isinstance(nondet_tol, bool) or not isinstance(nondet_tol, numbers.Real) \
            or not np.isfinite(nondet_tol) or nondet_tol < 0:
        raise GradCheckInputError(f"nondet_tol must be a finite float >= 0; got {nondet_tol!r}",
                                  layer=name)
    if n_jobs is not None:
        _positive_int(n_jobs, "n_jobs", name)
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise GradCheckInputError(
            f"executor must be a concurrent.futures.Executor (with submit()); got "
            f"{type(executor).__name__}", layer=name)


def check_gradient_method(name, layer, gradient_method):
    """Validate ``check_layer``'s ``gradient_method``.

    Parameters
    ----------
    name : str
        The layer's name (for the message).
    layer : object
    gradient_method : str or None
        The name of a method of ``layer`` called with no argument after every backward.

    Returns
    -------
    str or None

    Raises
    ------
    GradCheckInputError
        Not a string, no such callable attribute, or one that needs arguments.
    """
    if gradient_method is None:
        return None
    from gradcheck.protocol.paths import lookup
    from gradcheck.protocol.signatures import callable_without_arguments, signature_text

    if not isinstance(gradient_method, str):
        raise GradCheckInputError(
            "gradient_method must be None or the name of the layer's method that computes "
            f"the parameter gradients after backward ('compute_gradients'); got "
            f"{gradient_method!r}", layer=name, target="gradient_method")
    method = lookup(layer, gradient_method)
    if not callable(method):
        raise GradCheckInputError(
            f"gradient_method={gradient_method!r}: the layer has no method of that name"
            + ("" if method is None else f" ({type(method).__name__}, not callable)"),
            layer=name, target="gradient_method")
    if not callable_without_arguments(method):
        raise GradCheckInputError(
            f"gradient_method={gradient_method!r}: {gradient_method}"
            f"{signature_text(method)} needs arguments; the check calls it with none after "
            "every backward", layer=name, target="gradient_method")
    return gradient_method


def check_backward_kwargs(name, backward_kwargs, backward):
    """Validate ``check_layer``'s ``backward_kwargs``.

    Parameters
    ----------
    name : str
        The layer's name (for the message).
    backward_kwargs : dict or None
    backward : callable or None
        The layer's backward (its signature says which keywords it takes).

    Returns
    -------
    dict
        ``backward_kwargs`` (empty for ``None``).

    Raises
    ------
    GradCheckInputError
        Not a dict of str keys, or a keyword ``backward`` does not take.
    """
    if backward_kwargs is None:
        return {}
    if not isinstance(backward_kwargs, dict) or not all(
            isinstance(k, str) for k in backward_kwargs):
        raise GradCheckInputError(
            "backward_kwargs must be None or a dict of backward's keyword arguments "
            f"({{'alpha': 0.1}}); got {backward_kwargs!r}", layer=name)
    from gradcheck.protocol.signatures import signature

    sig = signature(backward)
    if sig is None:
        return dict(backward_kwargs)
    params = sig.parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in backward_kwargs if k not in params
                   or params[k].kind == params[k].POSITIONAL_ONLY]
        if unknown:
            raise GradCheckInputError(
                f"backward_kwargs names {unknown}, which backward{sig} "
                "does not take by keyword", layer=name)
    return dict(backward_kwargs)


def check_array(arr, *, layer, target, what):
    """Return ``arr`` as a floating ndarray, or raise for bad dtype/size/values.

    Returns
    -------
    array : ndarray
        ``arr`` itself when it is a floating ndarray, else a float64 copy.
    converted : bool
        True when an integer array was converted to float64.
    """
    if not isinstance(arr, np.ndarray):
        if isinstance(arr, (list, tuple, numbers.Number)) and not isinstance(arr, bool):
            arr = np.asarray(arr)
        else:
            raise GradCheckInputError(f"{what} must be a numpy array; got {type(arr).__name__}",
                                      layer=layer, target=target)
    if isinstance(arr, np.matrix):
        raise GradCheckInputError(
            f"{what} is a numpy.matrix, whose * is a matrix product (the check's elementwise "
            "arithmetic on it would be wrong); hold it as np.asarray(...)", layer=layer,
            target=target)
    kind = arr.dtype.kind
    converted = False
    if kind == "b":
        raise GradCheckInputError(f"{what} is boolean; gradients need floating point values",
                                  layer=layer, target=target)
    if kind == "c":
        raise GradCheckInputError(
            f"{what} is complex ({arr.dtype}); check the real and imaginary parts as two real "
            "inputs", layer=layer, target=target)
    if kind in "iu":
        arr = arr.astype(np.float64)
        converted = True
    elif kind != "f":
        raise GradCheckInputError(f"{what} has dtype {arr.dtype}; expected a floating dtype",
                                  layer=layer, target=target)
    if arr.size == 0:
        raise GradCheckInputError(f"{what} is empty (shape {arr.shape}); nothing to check",
                                  layer=layer, target=target)
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise GradCheckInputError(
            f"{what} contains NaN or inf (first at index {bad}); a gradient check needs "
            "finite values", layer=layer, target=target)
    return arr, converted


INCONCLUSIVE = ("fail", "pass")


def check_verdict_options(name, *, min_resolution, inconclusive, expect_zero):
    """Validate the verdict options; return ``expect_zero`` as a tuple of names."""
    if isinstance(min_resolution, bool) or not isinstance(min_resolution, numbers.Real) \
            or not np.isfinite(min_resolution) or min_resolution <= 0:
        raise GradCheckInputError(
            f"min_resolution must be a finite float > 0; got {min_resolution!r}", layer=name)
    if inconclusive not in INCONCLUSIVE:
        raise GradCheckInputError(
            f"inconclusive must be 'fail' or 'pass'; got {inconclusive!r}", layer=name)
    if isinstance(expect_zero, str):
        expect_zero = (expect_zero,)
    try:
        names = tuple(expect_zero)
    except TypeError:
        names = None
    if names is None or not all(isinstance(t, str) for t in names):
        raise GradCheckInputError(
            f"expect_zero must be a list of target names; got {expect_zero!r}", layer=name)
    return names


def _may_overlap(arr):
    """Whether two elements of ``arr`` can share memory (stride 0, or strides that interleave)."""
    extent = arr.itemsize
    for n, s in sorted(((n, abs(s)) for n, s in zip(arr.shape, arr.strides) if n > 1),
                       key=lambda t: t[1]):
        if s < extent:
            return True
        extent += (n - 1) * s
    return False


def check_writable(arr, *, layer, target, what):
    """Raise :class:`GradCheckInputError` unless ``arr`` can be perturbed one element at a time.

    The check perturbs a parameter in place and puts it back; a read-only
    array cannot be written, and in a broadcast view (stride 0, e.g. from
    ``np.broadcast_to``) one write moves several elements.
    """
    fix = f"pass a copy of its own, e.g. layer.{target} = np.array(layer.{target})"
    if _may_overlap(arr):
        zero = [ax for ax, (n, s) in enumerate(zip(arr.shape, arr.strides)) if n > 1 and s == 0]
        how = (f"a broadcast view (stride 0 along axis {', '.join(map(str, zero))})" if zero
               else "a view whose elements overlap in memory")
        raise GradCheckInputError(
            f"{what} is {how}: several of its {arr.size} elements share memory, so perturbing "
            f"one element would move several; {fix}", layer=layer, target=target)
    if not arr.flags.writeable:
        raise GradCheckInputError(
            f"{what} is read-only (flags.writeable is False): the check perturbs it in place, "
            f"one element at a time, and restores it; {fix}", layer=layer, target=target)
