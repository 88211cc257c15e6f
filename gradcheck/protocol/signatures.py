"""The signatures of a layer's methods: read once, seen through decorators.

Every part of the layer protocol asks a method's signature (how to pass the
train/eval switch, what backward takes, which inputs forward names): this is
the one reader. It caches per function (a check asks the same few dozen
times), and sees through decorators:

* ``functools.wraps`` sets ``__wrapped__``, which :func:`inspect.signature`
  follows;
* a plain decorator's ``wrapper(*args, **kwargs)`` hides the method's own
  parameters. When the wrapper closes over one function -- the method it
  wraps, as ``def deco(f): def wrapper(*a, **k): return f(*a, **k)`` does --
  that function's signature is the method's (without ``self`` for a bound
  method): the switch is then passed by its name, as the wrapper passes it on.
"""

import inspect
import types

__all__ = ["signature", "only_var_args", "positional_parameters", "signature_text",
           "callable_without_arguments",
           "unwrapped", "source_of"]

#: Cached signatures: {(function, bound): Signature or None}; bounded (long test runs
#: define many classes).
_CACHE = {}
_CACHE_SIZE = 2048


def signature(fn):
    """``inspect.signature(fn)`` seen through a decorator's ``*args, **kwargs`` wrapper.

    Parameters
    ----------
    fn : callable
        A function, a bound method, or any callable.

    Returns
    -------
    inspect.Signature or None
        ``None`` when the signature cannot be read (a builtin without one).
    """
    func, bound = _function_of(fn)
    if func is None or "__signature__" in getattr(func, "__dict__", {}):
        return _read(fn)  # (the toolkit's own wrappers carry theirs: made per call)
    key = (func, bound)
    try:
        return _CACHE[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable function object
        return _seen_through(fn, func, bound)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[key] = sig = _seen_through(fn, func, bound)
    return sig


def only_var_args(fn):
    """Whether ``fn``'s signature, seen through decorators, is nothing but
    ``*args``/``**kwargs`` (its parameters cannot be known).

    Parameters
    ----------
    fn : callable

    Returns
    -------
    bool
    """
    sig = signature(fn)
    return sig is not None and _opaque(sig)


def positional_parameters(fn, required=False):
    """``fn``'s positional parameters (seen through decorators), in order.

    Parameters
    ----------
    fn : callable
    required : bool
        Only those without a default.

    Returns
    -------
    list of inspect.Parameter
        Empty when the signature cannot be read.
    """
    sig = signature(fn)
    return [] if sig is None else [
        p for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and not (required and p.default is not p.empty)]


def callable_without_arguments(fn):
    """Whether ``fn`` can be called with no argument: a readable signature (seen through
    decorators) whose every parameter has a default or is ``*args``/``**kwargs``.

    Parameters
    ----------
    fn : object

    Returns
    -------
    bool
    """
    sig = signature(fn) if callable(fn) else None
    return sig is not None and all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values())


def signature_text(fn):
    """The signature shown in a message.

    Parameters
    ----------
    fn : callable

    Returns
    -------
    str
        ``"(x, train_flg=True)"``, or ``"(...)"`` when not readable.
    """
    sig = signature(fn)
    return "(...)" if sig is None else str(sig)


def _function_of(fn):
    """``(plain function, bound)`` behind ``fn``, or ``(None, False)`` for another callable."""
    if isinstance(fn, types.MethodType) and isinstance(fn.__func__, types.FunctionType):
        return fn.__func__, True
    if isinstance(fn, types.FunctionType):
        return fn, False
    return None, False


def _read(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _opaque(sig):
    params = sig.parameters.values()
    return bool(params) and all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _seen_through(fn, func, bound):
    """The signature of ``fn``; through the one function a ``*args, **kwargs`` wrapper
    closes over, when it does."""
    sig = _read(fn)
    if sig is None or not _opaque(sig):
        return sig
    inner = _wrapped_by(func)
    if inner is None:
        return sig
    inner_sig = _read(inner)
    return sig if inner_sig is None else (_drop_first(inner_sig) if bound else inner_sig)


def unwrapped(fn):
    """The function whose code is ``fn``'s own: through ``__wrapped__`` and through the
    one function a plain decorator's ``*args, **kwargs`` wrapper closes over (its source
    and bytecode are what the protocol reads: ``return dx, dW, db``); ``fn``'s function
    itself when nothing wraps it (``fn`` for another callable).

    Parameters
    ----------
    fn : callable

    Returns
    -------
    callable
    """
    func, _ = _function_of(fn)
    if func is None:
        return fn
    sig = _read(func)
    if sig is not None and _opaque(sig) and "__signature__" not in func.__dict__:
        return _wrapped_by(func) or inspect.unwrap(func)
    return inspect.unwrap(func)


def source_of(fn):
    """The source of the method ``fn`` decorates or is (:func:`unwrapped`), dedented.

    Parameters
    ----------
    fn : callable

    Returns
    -------
    str or None
        ``None`` when it cannot be read (a class made by ``exec`` or ``python -c``, a
        compiled module).
    """
    import textwrap

    try:
        return textwrap.dedent(inspect.getsource(unwrapped(fn)))
    except (OSError, TypeError):
        return None


def _wrapped_by(func):
    """The first function below ``func``'s ``*args, **kwargs`` wrappers (each closing
    over exactly one function) with a readable signature of its own; ``None`` if none."""
    inner = inspect.unwrap(func)
    for _ in range(8):  # decorators stacked
        cells = [c.cell_contents for c in (inner.__closure__ or ()) if _filled(c)]
        wrapped = [f for f in cells if isinstance(f, types.FunctionType)]
        if len(wrapped) != 1:
            return None
        inner = inspect.unwrap(wrapped[0])
        inner_sig = _read(inner)
        if inner_sig is None:
            return None
        if not _opaque(inner_sig):
            return inner
    return None


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def _drop_first(sig):
    params = list(sig.parameters.values())
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]
    return sig.replace(parameters=params)
