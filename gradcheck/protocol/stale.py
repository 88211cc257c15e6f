"""Naming stale state: what a ``backward`` reads that its own ``forward`` did not leave it.

A backward may read what its forward wrote (caches), the parameters, and
what its forward read (running statistics in eval mode, the hidden state of
a recurrent layer, hyperparameters). An attribute that backward reads before
writing it, that this forward neither wrote nor read, but that an earlier
call did write, is *left over* from that call: the seed's eval-mode backward
reads ``xn``, ``xc``, ``std`` and ``batch_size``, which only its train-mode
forward writes.

Every such attribute is confirmed by poisoning it (NaN for a floating array,
``+1`` for an integer, the negation of a boolean) and calling backward again
on the same forward: it is named only when the gradients change, or backward
raises. Objects that could not be traced (:mod:`gradcheck.protocol.tracing`)
fall back to poisoning alone: each attribute an earlier call wrote and this
forward did not is poisoned, and kept when backward depends on it and forward
does not.
"""

import types

import numpy as np

from gradcheck.protocol.state import slot_names

_UNPOISONABLE = object()


def poisoned(value):
    """A value of the same type and shape that no correct computation can mistake for ``value``.

    Returns ``_UNPOISONABLE`` for values without one (``None``, objects).
    """
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in "fc":
            return np.full_like(value, np.nan)
        if kind == "b":
            return ~value
        return value + 1 if kind in "iu" else _UNPOISONABLE
    if isinstance(value, (bool, np.bool_)):
        return not value
    if isinstance(value, (int, np.integer)):
        return value + 1
    if isinstance(value, (float, np.floating)):
        return float("nan")
    if isinstance(value, tuple) and value:
        parts = tuple(poisoned(v) for v in value)
        return _UNPOISONABLE if any(p is _UNPOISONABLE for p in parts) else parts
    return _UNPOISONABLE


def _size(value):
    try:
        return int(np.size(value))
    except (TypeError, ValueError):
        return 1


class Leftovers:
    """The attributes a backward read that were left over from earlier calls.

    Parameters
    ----------
    tracer : AccessTracer
        With the phases ``"f1"``, ``"b1"`` (the earlier call), ``"f2"``,
        ``"b2"`` (this forward and backward).
    written : dict of str to set
        Per phase, the attributes a state snapshot saw change
        (:meth:`StateSnapshot.written <gradcheck.protocol.state.StateSnapshot.written>`).
    objects : dict of int to object
        The layer's objects by ``id``.
    protected : callable
        ``protected(key) -> bool``: parameters and gradients, never named.
    changes_backward, changes_forward : callable
        ``(obj, name, poison) -> bool``: whether backward (forward) on the
        current forward's state gives another result with ``obj.name = poison``.

    Attributes
    ----------
    forward, backward : list of str
        Names (paths from the layer) left over from an earlier forward, or
        written by an earlier backward; largest first, then in the order
        backward read them.
    """

    def __init__(self, tracer, written, objects, protected, changes_backward, changes_forward):
        self._objects = objects
        self._protected = protected
        self._changes_backward, self._changes_forward = changes_backward, changes_forward
        w_f1 = tracer.writes("f1") | written["f1"]
        w_b1 = tracer.writes("b1") | written["b1"]
        w_f2 = tracer.writes("f2") | written["f2"]
        used = w_f2 | tracer.reads("f2")
        keys = [k for k in tracer.first_reads("b2") if k not in used]
        fallback = [(id(obj), n) for obj, _ in tracer.untraced for n in _names(obj)
                    if (id(obj), n) not in w_f2]
        found = {"forward": [], "backward": []}
        for key in keys + fallback:
            origin = "forward" if key in w_f1 else "backward" if key in w_b1 else None
            if origin and self._confirmed(key, key in fallback):
                found[origin].append(key)
        self.forward, self.backward = ([tracer.name(k) for k in self._largest_first(found[o])]
                                       for o in ("forward", "backward"))

    def _value(self, key):
        return getattr(self._objects[key[0]], key[1], _UNPOISONABLE)

    def _confirmed(self, key, fallback):
        value = self._value(key)
        if value is _UNPOISONABLE or self._protected(key):
            return False
        poison = poisoned(value)
        if poison is _UNPOISONABLE:
            return False
        obj = self._objects[key[0]]
        if fallback and self._changes_forward(obj, key[1], poison):
            return False
        return self._changes_backward(obj, key[1], poison)

    def _largest_first(self, keys):
        return sorted(keys, key=lambda k: -_size(self._value(k)))


def _names(obj):
    names = list(getattr(obj, "__dict__", {}))
    return names + [n for n in slot_names(type(obj)) if n not in names]


def stale_message(names, mode_now, mode_then):
    """``"backward reads `xn`, `xc`, which this eval-mode forward did not write: ..."``."""
    listed = ", ".join(f"`{n}`" for n in names)
    pronoun = "they are" if len(names) > 1 else "it is"
    return (f"backward reads {listed}, which this {mode_now}forward did not write: {pronoun} "
            f"left over from an earlier {mode_then}forward")


def unwritten_read(exc, layer, adapter, x):
    """``exc`` said again with why, when it is a backward's AttributeError for an instance
    attribute this forward does not write (the book's eval-mode BatchNormalization on a
    fresh instance reads ``xn``, which only its train-mode forward writes).

    Parameters
    ----------
    exc : GradCheckInputError
        The error the check is about to raise.
    layer : object
    adapter : LayerAdapter
        The check's: its mode, and whether the layer has two.
    x : ndarray
        The input: the other mode's forward is run on it (state put back) to tell whether
        that one writes the attribute.

    Returns
    -------
    GradCheckInputError
        ``exc`` itself, or a :class:`~gradcheck.errors.LayerCallError` whose message ends
        with the explanation.
    """
    from gradcheck.errors import LayerCallError

    cause = exc.__cause__
    name, obj = getattr(cause, "name", None), getattr(cause, "obj", None)
    if isinstance(exc, LayerCallError) and isinstance(cause, TypeError) and "NoneType" in str(
            cause):
        return _none_read(exc, layer, adapter, x)
    if not (isinstance(exc, LayerCallError) and isinstance(cause, AttributeError) and name
            and obj is not None):
        return exc
    instance = hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType))
    if not (instance and _stored_by_class(type(obj), name)):
        return _misspelt(exc, obj, name, instance)  # np.dott, self._gard
    if not str(exc).split(": ", 1)[-1].startswith("backward()"):
        return exc
    mode = ("train-mode " if adapter.train_flg else "eval-mode ") if _has_modes(adapter) \
        else ""
    text = f"backward reads {name!r}, which this {mode}forward does not write"
    if mode and _other_mode_writes(layer, adapter, x, obj, name):
        other = "eval-mode " if adapter.train_flg else "train-mode "
        text += (f" ({_a(other)} {other}forward does): {_a(mode)} {mode}backward that depends on "
                 f"the last {other}forward's cache")
    return LayerCallError(f"{str(exc).split(': ', 1)[-1]} ({text})", layer=exc.layer,
                          target=exc.target)  # the index is in the message already


def _none_read(exc, layer, adapter, x):
    """``exc``, a backward's TypeError on ``None``, said again with the attributes of
    ``layer`` that are ``None`` here and that the other mode's forward sets (the book's
    ``Dropout`` checked in eval mode on a fresh instance: ``self.mask = None`` from
    ``__init__``, set by a train-mode forward only); ``exc`` itself when none is."""
    from gradcheck.errors import LayerCallError

    text = str(exc).split(": ", 1)[-1]
    if not _has_modes(adapter) or not text.startswith("backward()"):
        return exc
    from gradcheck.protocol.state import StateSnapshot

    unset = [(obj, f"{path}." if path else "", n)
             for obj, path in StateSnapshot(layer, include_global_rng=False).objects
             for read in [_loaded_names(getattr(type(obj), "backward", None))]
             for n, v in getattr(obj, "__dict__", {}).items()
             if v is None and n in read and _stored_by_class(type(obj), n)]
    if not unset:
        return exc
    other, this = (_left_none(layer, adapter, x, train) for train in (
        not adapter.train_flg, adapter.train_flg))
    names = [prefix + n for obj, prefix, n in unset
             if (id(obj), n) not in other and (id(obj), n) in this]
    if not names:
        return exc
    mode, other = ("train-mode ", "eval-mode ") if adapter.train_flg else (
        "eval-mode ", "train-mode ")
    listed = ", ".join(f"`{n}`" for n in names)
    return LayerCallError(
        f"{text} (backward reads {listed}, None until {_a(other)} "
        f"{other}forward sets {'them' if len(names) > 1 else 'it'}; this {mode}forward does "
        f"not: {_a(mode)} {mode}backward that depends on the last "
        f"{other}forward's cache)", layer=exc.layer, target=exc.target)


def _a(mode):
    """The article before ``"train-mode "`` / ``"eval-mode "``."""
    return "an" if mode[0] == "e" else "a"


def _has_modes(adapter):
    """Whether the layer has a train and an eval mode: a switch ``forward`` takes, or an
    attribute it (or a sub-layer) holds it in."""
    return adapter.flag_mode is not None or bool(adapter.mode_holders)


def _loaded_names(fn):
    """The attribute names ``fn``'s own code reads (``LOAD_ATTR``), or none."""
    import dis

    code = getattr(fn, "__code__", None)
    return set() if code is None else {i.argval for i in dis.get_instructions(code)
                                       if i.opname in ("LOAD_ATTR", "LOAD_METHOD")}


def _misspelt(exc, obj, name, instance):
    """``exc`` for an attribute nothing assigns (a typo), said again with the closest name
    ``obj`` has or its class's methods assign (Python prints its own suggestion only in a
    traceback), or ``exc`` itself when none is close."""
    from gradcheck.errors import LayerCallError
    from gradcheck.validate import did_you_mean

    known = {n for n in dir(obj) if not n.startswith("__")}
    if instance:
        known |= _stored_names(type(obj))
        where, what = "self.", f"no method of {type(obj).__name__} assigns self.{name}"
    else:
        owner = getattr(obj, "__name__", type(obj).__name__)
        where, what = f"{owner}.", f"{owner} has no attribute {name!r}"
    hint = did_you_mean(name, sorted(known), quote=lambda n: where + n)
    if not hint:
        return exc
    return LayerCallError(f"{str(exc).split(': ', 1)[-1]} ({what}: a misspelt name? "
                          f"{hint.strip()[1:-1]})", layer=exc.layer, target=exc.target)


def _stored_names(klass):
    """The names the methods of ``klass`` (and of its bases) assign as ``self.<name>``
    (read from the bytecode; once per class and its methods' code)."""
    import dis

    from gradcheck.protocol.state import _functions_of

    fns = [fn for base in klass.__mro__[:-1] for fn in _functions_of(base)]
    key = (klass, tuple(getattr(fn, "__code__", None) for fn in fns))
    if key not in _STORED:
        if len(_STORED) >= 256:
            _STORED.clear()
        _STORED[key] = frozenset(i.argval for fn in fns for i in dis.get_instructions(fn)
                                 if i.opname == "STORE_ATTR")
    return _STORED[key]


#: ``{(class, its methods' code objects): names}`` of :func:`_stored_names`.
_STORED = {}


def _stored_by_class(klass, name):
    """Whether a method of ``klass`` (or of a base) assigns ``self.<name>`` somewhere: an
    attribute some call writes, not a misspelt one."""
    return name in _stored_names(klass)


def _forward_in_mode(layer, adapter, x, train_flg, read, failed):
    """``read()`` after ``forward(x)`` in the mode ``train_flg`` (a mode attribute the
    layer or a sub-layer holds set for it), the layer's state put back afterwards;
    ``failed`` when that forward raises (its own error: nothing known then)."""
    from gradcheck.protocol.adapter import LayerAdapter, flag_value
    from gradcheck.protocol.state import StateSnapshot

    snapshot = StateSnapshot(layer)
    try:
        for holder, attr in adapter.mode_holders:
            setattr(holder, attr, flag_value(attr, train_flg))
        LayerAdapter(layer, train_flg).raw_forward(np.array(x, copy=True))
        return read(snapshot)
    except Exception:  # noqa: BLE001 -- that mode's own error: not known then
        return failed
    finally:
        snapshot.restore_all()


def _left_none(layer, adapter, x, train_flg):
    """``{(id(obj), name)}``: the attributes of the layer and its sub-layers that are
    ``None`` after ``forward(x)`` in the mode ``train_flg`` (everything, when that forward
    raises)."""
    return _forward_in_mode(layer, adapter, x, train_flg, lambda snapshot: {
        (id(obj), n) for obj, _ in snapshot.objects
        for n, v in getattr(obj, "__dict__", {}).items() if v is None}, _EVERYTHING)


class _Everything:
    """Contains every key: what is known of a forward that raised (nothing)."""

    def __contains__(self, key):
        return True


_EVERYTHING = _Everything()


def _other_mode_writes(layer, adapter, x, obj, name):
    """Whether ``forward(x)`` in the mode ``adapter`` is not in leaves ``obj.<name>`` set
    (the layer's state put back afterwards)."""
    return _forward_in_mode(layer, adapter, x, not adapter.train_flg, lambda _: (
        name in getattr(obj, "__dict__", {}) or name in slot_names(type(obj))), False)