"""Paths: how the toolkit names and reaches an object inside a layer.

One job: a path is a string (attribute names joined by dots, each optionally
followed by ``[key]`` subscripts: ``"W"``, ``"params['W1']"``, ``"grads[0]"``,
``"blocks.0.W"``); :func:`resolve` reads the object at a path and
:func:`assign` writes it, and :func:`key_path` / :func:`attr_path` build paths
that round-trip through both. Two compound forms: ``"a+b"`` resolves to the sum
of both (a tied weight's gradient, each slot assigned its own copy), and
``"g@v@base"`` to the gradient ``g`` of the view ``v`` mapped back onto
``base`` (:func:`view_index`). Which paths are parameters is
:mod:`gradcheck.protocol.discovery`'s job.
"""

import functools
import inspect
import re

import numpy as np

__all__ = ["attributes", "property_aliases", "key_path", "attr_path", "split_path", "lookup",
           "resolve", "assign", "view_index"]

#: What a step of a path reached when there is nothing there.
_MISSING = object()


def attributes(obj):
    """``{name: value}`` of ``obj``'s instance attributes: its ``__dict__`` and its set
    ``__slots__`` (a ``__slots__`` layer has no ``__dict__``)."""
    from gradcheck.protocol.state import _UNSET, _slot_values

    attrs = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    attrs.update((n, v) for n, v in _slot_values(obj).items() if v is not _UNSET)
    return attrs


def property_aliases(obj, attrs=None):
    """``{property: attribute}`` of the properties of ``obj``'s class that return an array
    ``obj`` holds under another name (``W`` returning ``self._W``: the same object)."""
    attrs = attributes(obj) if attrs is None else attrs
    found = {}
    for cls in type(obj).__mro__:
        for name, static in vars(cls).items():
            if not isinstance(static, property) or name in attrs or name in found:
                continue
            value = lookup(obj, name)
            if isinstance(value, np.ndarray):
                held = next((k for k, v in attrs.items() if v is value), None)
                if held is not None:
                    found[name] = held
    return found


def _settable(obj, name):
    """The attribute a value for ``obj.<name>`` is set under: ``name``, or for a property
    without a setter that returns an array ``obj`` holds (:func:`property_aliases`) that
    array's own attribute."""
    static = inspect.getattr_static(type(obj), name, None)
    if isinstance(static, property) and static.fset is None:
        return property_aliases(obj).get(name, name)
    return name


def key_path(path, key):
    """The path of ``key`` of the container at ``path``, round-tripping through
    :func:`resolve`: ``blocks.enc`` for an identifier string, else the key's ``repr`` in
    brackets (``blocks[0]``, ``blocks['encoder.fc']``, ``params[('W', 0)]``)."""
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


_PLAIN_NAME = re.compile(r"[^.\[\]+@'\"]+\Z")


def attr_path(prefix, name):
    """The path of the attribute ``name`` of the object at ``prefix`` (``""``, or a path
    and a dot), round-tripping through :func:`resolve`: ``blocks.0.W``; a name holding a
    separator in brackets, as its ``repr`` (``['enc.fc'].W`` of ``setattr(self, 'enc.fc',
    Dense())``)."""
    if _PLAIN_NAME.match(name):
        return prefix + name
    return f"{prefix[:-1] if prefix.endswith('.') else prefix}[{name!r}]"


def _bracket_end(path, i):
    """The index of the ``]`` closing the ``[`` at ``path[i]`` (outside string literals and
    nested brackets or parentheses), or ``len(path)``."""
    depth, j, quote = 0, i, None
    while j < len(path):
        c = path[j]
        if quote:
            if c == "\\":
                j += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return len(path)


def _bracket_key(text):
    """A subscript's key: the Python literal it spells (``'W'``, ``0``, ``('W', 0)``), or,
    unquoted, the text itself (``[W1]``)."""
    import ast

    try:
        key = ast.literal_eval(text)
        hash(key)
        return key
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _int_or_str(text)


@functools.lru_cache(maxsize=8192)
def split_path(path, sep):
    """``path`` split at ``sep`` (``"+"`` of a tied gradient, ``"@"`` of a view's) where it
    stands outside brackets: a key may hold either (``params['a+b']``)."""
    parts, start, i = [], 0, 0
    while i < len(path):
        if path[i] == "[":
            i = _bracket_end(path, i)
        elif path[i] == sep:
            parts.append(path[start:i])
            start = i + 1
        i += 1
    return tuple(parts) + (path[start:],)


@functools.lru_cache(maxsize=8192)
def _steps(path):
    """``"blocks.0.params['W']"`` -> ``(("attr", "blocks"), ("attr", "0"), ("attr",
    "params"), ("key", "W"))``; a bracket holds a Python literal (:func:`key_path`)."""
    steps, i = [], 0
    while i < len(path):
        if path[i] in ".]":
            i += 1
        elif path[i] == "[":
            end = _bracket_end(path, i)
            steps.append(("key", _bracket_key(path[i + 1:end])))
            i = end + 1
        else:
            end = i
            while end < len(path) and path[end] not in ".[]":
                end += 1
            steps.append(("attr", path[i:end]))
            i = end
    return tuple(steps)


def _int_or_str(key):
    try:
        return int(key)
    except ValueError:
        return key


def lookup(obj, name, default=None):
    """``getattr(obj, name, default)`` that takes any exception for "no such attribute" (a
    layer's ``__getattr__`` returning ``self.params[name]`` raises KeyError)."""
    try:
        return getattr(obj, name, default)
    except Exception:  # noqa: BLE001 -- the layer's own lookup, whatever it raises
        return default


def _step(obj, kind, name):
    if kind == "attr" and isinstance(obj, (list, tuple)) and name.isdigit():
        kind, name = "key", int(name)
    elif kind == "attr" and isinstance(obj, dict):
        kind = "key"
        if name not in obj and name.isdigit() and int(name) in obj:
            name = int(name)  # blocks.0.W of {0: Dense()}, as a user writes it
    if kind == "attr":
        return lookup(obj, name, _MISSING)
    try:
        return obj[name]
    except (KeyError, IndexError, TypeError):
        if isinstance(name, str) and not isinstance(obj, (dict, list, tuple)):
            return lookup(obj, name, _MISSING)  # ['enc.fc']: an attribute of that name
        return _MISSING


def resolve(root, path, default=None):
    """The object at ``path`` under ``root`` (see the module docstring), or ``default``.

    Parameters
    ----------
    root : object
    path : str
        ``"W"``, ``"params['W1']"``, ``"grads[0]"``, ``"blocks.0.W"``; ``"a+b"``
        is the sum of both (``default`` when either is missing or not an array).
    default : object

    Returns
    -------
    object
    """
    plus = split_path(path, "+")
    if len(plus) == 1 and len(split_path(path, "@")) == 3:
        return _mapped(root, path, default)
    if len(plus) > 1:
        parts = [resolve(root, p, None) for p in plus]
        if any(p is None or not isinstance(p, (np.ndarray, float, np.floating)) for p in parts):
            return default
        return sum(np.asarray(p) for p in parts[1:]) + np.asarray(parts[0])
    obj = root
    for kind, name in _steps(path):
        obj = _step(obj, kind, name)
        if obj is _MISSING:
            return default
    return obj


def assign(root, path, value):
    """Set the object at ``path`` (each part of a ``"a+b"`` path gets its own copy of
    ``value``: two slots of a tied weight's gradient stay two arrays)."""
    if len(split_path(path, "+")) > 1:
        for i, p in enumerate(split_path(path, "+")):
            assign(root, p, value if i == 0 or not hasattr(value, "copy") else value.copy())
        return
    if len(split_path(path, "@")) == 3:  # a view's gradient gets the view of value
        grad, view, base = split_path(path, "@")
        idx = view_index(resolve(root, view), resolve(root, base))
        path, value = grad, _memory_order(resolve(root, base), value)[idx]
    _assign_steps(root, _steps(path), value)


def view_index(view, base):
    """For each element of ``view`` (a view of the contiguous ``base``), its position in
    ``base``'s memory: ``as_strided`` of ``arange(base.size)`` with the view's layout.

    Parameters
    ----------
    view : ndarray
    base : ndarray, C or Fortran contiguous, owning the memory ``view`` points into

    Returns
    -------
    ndarray of intp, of the shape of ``view``
    """
    item = base.itemsize
    offset = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // item
    flat = np.arange(base.size, dtype=np.intp)
    strides = tuple(s // item * flat.itemsize for s in view.strides)
    return np.lib.stride_tricks.as_strided(flat[offset:], view.shape, strides, writeable=False)


def _memory_order(base, value):
    return np.asarray(value).reshape(-1, order="C" if base.flags.c_contiguous else "F")


def _mapped(root, path, default):
    """``"dWt@Wt@W"``: the gradient ``dWt`` of the view ``Wt`` mapped back onto ``W`` (the
    elements a view repeats summed, np.add.at), of ``W``'s shape."""
    grad, view, base = (resolve(root, p) for p in split_path(path, "@"))
    if not all(isinstance(a, np.ndarray) for a in (grad, view, base)) or grad.shape != view.shape:
        return default
    out = np.zeros(base.size, dtype=np.result_type(grad.dtype, np.float32))
    np.add.at(out, view_index(view, base).reshape(-1), grad.reshape(-1))
    return out.reshape(base.shape, order="C" if base.flags.c_contiguous else "F")


def _assign_steps(root, steps, value):
    obj = root
    for kind, name in steps[:-1]:
        obj = _step(obj, kind, name)
    kind, name = steps[-1]
    if kind == "attr" and isinstance(obj, (list, tuple)) and name.isdigit():
        kind, name = "key", int(name)
    elif kind == "attr" and isinstance(obj, dict):
        kind = "key"
    if kind == "attr" or (isinstance(name, str) and not isinstance(obj, (dict, list, tuple))
                          and not hasattr(obj, "__setitem__")):
        setattr(obj, _settable(obj, name), value)
    elif isinstance(obj, tuple):  # immutable: a new tuple in the tuple's place
        _assign_steps(root, steps[:-1], obj[:name] + (value,) + obj[name + 1:])
    else:
        obj[name] = value
