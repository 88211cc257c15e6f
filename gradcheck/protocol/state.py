"""Snapshot and restore of a layer's state.

A check must evaluate every perturbed forward call on the *same* layer, and
leave the layer exactly as it found it. :class:`StateSnapshot` walks the
layer's object graph once (attributes and ``__slots__``, lists, dicts, deques,
sets, tuples, object arrays, nested layers; no depth or size limit), keeps a
copy of every array and random-generator state it finds, and can

* tell which slots one forward call changed (:meth:`StateSnapshot.changed`),
  so that only those are put back between calls (a dict update and a few small
  array copies, not a deep copy of the layer per call), and
* put everything back (:meth:`StateSnapshot.restore_all`): every attribute is
  the same object as before with bit-identical contents, every object has its
  class again; attributes that did not exist are removed again.

Aliases survive: an array referenced twice is one slot, and converted copies
(:meth:`StateSnapshot.converted`, the float64 upcast and the complex step) and
pickled copies (:func:`dumps_shared`, the parallel workers) keep a view a view
of the converted base, so perturbing a tied weight moves every alias of it.
"""

import collections
import functools
import inspect
import io
import pickle
import random
import threading
import types

import numpy as np

from gradcheck.protocol import rngstate

_ATOMIC = (int, float, complex, str, bytes, bool, type(None), frozenset, range)

_NOT_STATE = (type, types.FunctionType, types.MethodType, types.ModuleType,
              types.BuiltinFunctionType, np.ndarray)

#: Slot kinds that hold references (restored before array contents).
_CONTAINERS = ("attrs", "slots", "list", "dict", "deque", "set", "objarray")

_UNSET = object()
_SLOT_NAMES = {}



def slot_names(cls):
    """The ``__slots__`` attribute names of ``cls`` and its bases (name-mangled).

    Returns
    -------
    tuple of str
        Without ``__dict__`` and ``__weakref__``.
    """
    try:
        return _SLOT_NAMES[cls]
    except (KeyError, TypeError):
        pass
    names = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for s in (slots,) if isinstance(slots, str) else slots:
            if s in ("__dict__", "__weakref__"):
                continue
            if s.startswith("__") and not s.endswith("__"):
                s = f"_{klass.__name__.lstrip('_')}{s}"
            if s not in names:
                names.append(s)
    names = tuple(names)
    try:
        _SLOT_NAMES[cls] = names
    except TypeError:
        pass
    return names


#: ``type.__flags__`` bit of classes created at run time (``class`` statements, ``exec``).
_HEAPTYPE = 1 << 9


def _is_walkable_object(obj):
    """User objects whose attributes are layer state: instances with a ``__dict__`` or
    ``__slots__`` of a class defined in Python, whatever its ``__module__`` says (a class
    defined by ``exec(src, {})`` claims ``'builtins'``); not modules, classes, functions,
    numpy's own objects or built-in types."""
    cls = type(obj)
    if isinstance(obj, _NOT_STATE) or cls.__module__ == "numpy":
        return False
    if cls.__module__ == "builtins" and not cls.__flags__ & _HEAPTYPE:
        return False
    return isinstance(getattr(obj, "__dict__", None), dict) or bool(slot_names(cls))


def _slot_values(obj):
    values = {}
    for name in slot_names(type(obj)):
        try:
            values[name] = object.__getattribute__(obj, name)
        except AttributeError:
            values[name] = _UNSET
    return values


#: Slot kinds of random generators; ``"entropy"`` is one without a state to replay
#: (``random.SystemRandom``): named by the nondeterminism finding, never saved.
RNG_KINDS = ("generator", "bitgenerator", "randomstate", "pyrandom", "entropy")
_RNG_TYPES = (np.random.Generator, np.random.BitGenerator, np.random.RandomState, random.Random)


def rng_kind(v):
    """The slot kind of a random generator (one of :data:`RNG_KINDS`: a numpy
    ``Generator``, a bare ``BitGenerator`` a ``Generator`` is made over per call, a
    ``RandomState``, a ``random.Random``, a ``random.SystemRandom``), or ``None``."""
    if not isinstance(v, _RNG_TYPES):  # the common case, in one test
        return None
    if isinstance(v, np.random.Generator):
        return "generator"
    if isinstance(v, np.random.BitGenerator):
        return "bitgenerator"
    if isinstance(v, np.random.RandomState):
        return "randomstate"
    if isinstance(v, random.SystemRandom):
        return "entropy"
    if isinstance(v, random.Random):
        return "pyrandom"
    return None


_BOUND_TYPES = (functools.partial, types.BuiltinMethodType, types.MethodType)


def _bound_generator(v):
    """The generator a held callable draws from: a bound method of one (``self.draw =
    rng.random``), or a ``functools.partial`` of such a method (``partial(rng.normal, 0,
    0.1)``); else ``None``."""
    if isinstance(v, functools.partial):
        v = v.func
    if isinstance(v, _BOUND_TYPES[1:]):
        owner = getattr(v, "__self__", None)
        return owner if isinstance(owner, _RNG_TYPES) else None
    return None


def _functions_of(klass):
    """The Python functions of a class's ``__dict__`` (methods, static and class methods,
    property accessors), unwrapped from their decorators."""
    for v in vars(klass).values():
        if isinstance(v, (staticmethod, classmethod)):
            v = v.__func__
        fns = (v.fget, v.fset) if isinstance(v, property) else (v,)
        for fn in fns:
            try:
                fn = inspect.unwrap(fn) if callable(fn) else fn
            except ValueError:  # a __wrapped__ cycle
                pass
            if isinstance(fn, types.FunctionType):
                yield fn


#: How many entries of a module-level dict or object a method reads the generators are
#: looked for in (a configuration, not a data set).
_HELD_AT_MODULE_LEVEL = 64


def _function_generators(fn, seen, scanned, depth=2):
    """``(generator, where)`` a function reaches without an instance: its module's globals,
    its closure cells and its default arguments (``def forward(self, x, rng=default_rng())``),
    and, ``depth`` calls down, those of the module-level functions it calls and the module
    attributes it reads (``utils.rng.random()``, ``from utils import mask``), and the
    entries of the module-level dicts and objects it reads (``CONFIG["rng"]``, ``cfg.rng``).
    ``seen`` (functions) and ``scanned`` (globals dicts) are the ids already looked at."""
    if id(fn) in seen:
        return
    seen.add(id(fn))
    name = f"{fn.__module__}.{fn.__qualname__}"
    found = [] if id(fn.__globals__) in scanned else [
        (k, v) for k, v in list(fn.__globals__.items()) if isinstance(v, _RNG_TYPES + _BOUND_TYPES)]
    scanned.add(id(fn.__globals__))
    for key, v in found:  # a generator, or a method of one (rand = rng.random)
        yield (v if isinstance(v, _RNG_TYPES) else _bound_generator(v)), f"{fn.__module__}.{key}"
    for cell, var in zip(fn.__closure__ or (), fn.__code__.co_freevars):
        try:
            yield cell.cell_contents, f"{name}: {var}"
        except ValueError:  # an empty cell
            pass
    for i, v in enumerate(fn.__defaults__ or ()):
        yield v, f"{name}: default {i}"
    for key, v in (fn.__kwdefaults__ or {}).items():
        yield v, f"{name}: default {key}"
    names = fn.__code__.co_names
    for key in names if depth else ():
        v = fn.__globals__.get(key)
        if isinstance(v, types.FunctionType):
            yield from _function_generators(v, seen, scanned, depth - 1)
        elif isinstance(v, types.ModuleType):
            for attr in names:  # the module's own dict: no lazy-loading __getattr__
                yield inspect.getattr_static(v, attr, None), f"{v.__name__}.{attr}"
        elif isinstance(v, dict) or _is_walkable_object(v):  # CONFIG["rng"], cfg.rng
            items = v if isinstance(v, dict) else getattr(v, "__dict__", {})
            for k, item in list(items.items())[:_HELD_AT_MODULE_LEVEL]:
                yield item, f"{fn.__module__}.{key}[{k!r}]"


def unheld_generators(objects):
    """Random generators the walked objects use without holding them.

    A layer's ``forward`` may draw from a generator of its class (``rng =
    default_rng(0)`` in the class body, on ``type(self)`` or a base) or of its
    module (``rng = np.random.default_rng(0)`` at the top of the file, the numpy
    recommended replacement of ``np.random.*``), or one in a closure or a default
    argument of its methods, or of the functions, modules and configuration
    objects they read (:func:`_function_generators`). Those are state of the
    check as much as ``self.rng``: saved, replayed for every call, restored
    afterwards, sent to worker processes (:func:`unheld_states`).

    Parameters
    ----------
    objects : iterable of object
        The walked objects (the layer and its sub-layers).

    Returns
    -------
    list of (str, object, str)
        ``(kind, generator, where)``, each generator once (``"Dropout.rng"``,
        ``"mymodule.rng"``).
    """
    classes = {}
    for obj in objects:
        for klass in type(obj).__mro__:
            if klass.__module__.split(".")[0] not in ("builtins", "numpy") and klass is not object:
                classes.setdefault(id(klass), klass)
    scans = getattr(_CHECK, "scans", None)
    key = tuple(classes)
    if scans is not None and key in scans:
        return list(scans[key])
    found = _scan(classes.values())
    if scans is not None:
        scans[key] = found
    return list(found)


#: Per thread, while a check runs (:func:`one_scan_per_check`): ``scans``, the generators
#: :func:`unheld_generators` found for each set of classes.
_CHECK = threading.local()


def one_scan_per_check(check):
    """Decorator of a check's entry point: the generators its layer reaches without
    holding them are looked for once per set of classes and check, not at every one of
    its state snapshots (a scan of the classes' methods and modules, ~0.1 ms: a dozen
    snapshots a check). Nested entry points share the outermost one's scans."""
    @functools.wraps(check)
    def run(*args, **kwargs):
        outer = getattr(_CHECK, "scans", None) is None
        if outer:
            _CHECK.scans = {}
        try:
            return check(*args, **kwargs)
        finally:
            if outer:
                _CHECK.scans = None
    return run


def _scan(classes):
    """``[(kind, generator, where)]`` of :func:`unheld_generators` for these classes."""
    found, seen, scanned = {}, set(), set()
    for klass in classes:
        for key, v in list(vars(klass).items()):
            if rng_kind(v) is not None:
                found.setdefault(id(v), (rng_kind(v), v, f"{klass.__qualname__}.{key}"))
        for fn in _functions_of(klass):
            for v, where in _function_generators(fn, seen, scanned):
                if rng_kind(v) is not None:
                    found.setdefault(id(v), (rng_kind(v), v, where))
    return tuple(found.values())


def _join(path, name):
    return f"{path}.{name}" if path else name


def walk(root):
    """Every piece of state under ``root``, each object once, depth first.

    Yields
    ------
    kind : str
        ``"attrs"``, ``"slots"``, ``"array"``, ``"objarray"``, one of
        :data:`RNG_KINDS`, ``"list"``, ``"dict"``, ``"deque"`` or ``"set"``.
    obj : object
    path : str
        How it is reached from ``root`` (``"layers[0].running_mean"``).
    owner : tuple (object, str) or None
        The object and attribute name it is reached through (``None`` for ``root``).
    """
    seen = set()
    stack = [(root, "", None)]
    while stack:
        v, path, owner = stack.pop()
        if isinstance(v, _ATOMIC) or id(v) in seen:
            continue
        seen.add(id(v))
        children = []
        if isinstance(v, np.ndarray):
            if v.flags.writeable:
                yield ("objarray" if v.dtype == object else "array"), v, path, owner
                if v.dtype == object:
                    children = [(item, f"{path}[{i}]", owner) for i, item in enumerate(v.flat)]
        elif rng_kind(v) is not None:
            yield rng_kind(v), v, path, owner
        elif _bound_generator(v) is not None:  # self.draw = rng.random
            children = [(_bound_generator(v), path, owner)]
        elif isinstance(v, (list, collections.deque)):
            yield ("list" if isinstance(v, list) else "deque"), v, path, owner
            children = [(item, f"{path}[{i}]", owner) for i, item in enumerate(v)]
        elif isinstance(v, dict):
            yield "dict", v, path, owner
            children = [(item, f"{path}[{k!r}]", owner) for k, item in list(v.items())]
        elif isinstance(v, set):
            yield "set", v, path, owner
        elif isinstance(v, tuple):
            children = [(item, f"{path}[{i}]", owner) for i, item in enumerate(v)]
        elif _is_walkable_object(v):
            items = []
            if isinstance(getattr(v, "__dict__", None), dict):
                yield "attrs", v, path, owner
                items += list(v.__dict__.items())
            if slot_names(type(v)):
                yield "slots", v, path, owner
                items += [(n, x) for n, x in _slot_values(v).items() if x is not _UNSET]
            children = [(item, _join(path, n), (v, n)) for n, item in items]
        stack.extend(reversed(children))


def _save(kind, obj):
    if kind == "attrs":
        return type(obj), dict(obj.__dict__)
    if kind == "slots":
        return type(obj), _slot_values(obj)
    if kind in ("array", "objarray"):
        return obj.copy()
    if kind == "generator":
        return obj.bit_generator.state
    if kind == "bitgenerator":
        return obj.state
    if kind == "entropy":
        return None
    if kind == "randomstate":
        return rngstate.save_rs(obj)
    if kind == "pyrandom":
        return rngstate.save_py(obj)
    if kind == "globalrng":
        return rngstate.save_rs(rngstate.NP_GLOBAL)
    return {"dict": dict, "set": set}.get(kind, list)(obj)


def _same_items(cur, saved):
    return cur.keys() == saved.keys() and all(cur[n] is v for n, v in saved.items())


class _Slot:
    """One restorable piece of state, with the path it was found at."""

    __slots__ = ("kind", "obj", "saved", "path", "owner")

    def __init__(self, kind, obj, path="", owner=None):
        self.kind, self.obj, self.path, self.owner = kind, obj, path, owner
        self.saved = _save(kind, obj)

    def changed(self):
        k, obj, saved = self.kind, self.obj, self.saved
        if k == "attrs":
            return type(obj) is not saved[0] or not _same_items(obj.__dict__, saved[1])
        if k == "slots":
            return type(obj) is not saved[0] or not _same_items(_slot_values(obj), saved[1])
        if k == "array":
            return not _bitwise_equal(obj, saved)
        if k == "objarray":
            return any(a is not b for a, b in zip(obj.flat, saved.flat))
        if k == "generator":
            return obj.bit_generator.state != saved
        if k == "bitgenerator":
            return obj.state != saved
        if k == "entropy":
            return False
        if k == "randomstate":
            return rngstate.rs_changed(obj, saved)
        if k == "pyrandom":
            return rngstate.py_changed(obj, saved)
        if k == "globalrng":
            return rngstate.rs_changed(rngstate.NP_GLOBAL, saved)
        if k in ("list", "deque"):
            return len(obj) != len(saved) or any(a is not b for a, b in zip(obj, saved))
        if k == "dict":
            return not _same_items(obj, saved)
        if k == "set":
            return obj != saved
        raise AssertionError(k)

    def restore(self):
        k, obj, saved = self.kind, self.obj, self.saved
        if k in ("attrs", "slots"):
            if type(obj) is not saved[0]:
                object.__setattr__(obj, "__class__", saved[0])
            if k == "attrs":
                d = obj.__dict__
                if d.keys() != saved[1].keys():
                    d.clear()
                d.update(saved[1])
            else:
                for name, value in saved[1].items():
                    if value is not _UNSET:
                        object.__setattr__(obj, name, value)
                    elif hasattr(obj, name):
                        object.__delattr__(obj, name)
        elif k in ("array", "objarray"):
            np.copyto(obj, saved, casting="no")
        elif k == "generator":
            obj.bit_generator.state = saved
        elif k == "bitgenerator":
            obj.state = saved
        elif k == "randomstate":
            rngstate.restore_rs(obj, saved)
        elif k == "pyrandom":
            rngstate.restore_py(obj, saved)
        elif k == "globalrng":
            rngstate.restore_rs(rngstate.NP_GLOBAL, saved)
        elif k == "list":
            obj[:] = saved
        elif k == "deque":
            obj.clear()
            obj.extend(saved)
        elif k in ("dict", "set"):
            obj.clear()
            obj.update(saved)


@functools.lru_cache(maxsize=None)
def _padded(dtype):
    """Whether a floating dtype's items carry padding bytes (x87 long double: 80 of 128 bits);
    once per dtype (``np.finfo`` is a microsecond, and every state comparison asks)."""
    if dtype.kind not in "fc":
        return False
    info = np.finfo(dtype)
    per = dtype.itemsize * 8 // (2 if dtype.kind == "c" else 1)
    return info.nmant + info.nexp + 2 < per


def _bitwise_equal(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if _padded(a.dtype):  # the padding bytes are garbage: compare values and signs
        return bool(np.array_equal(a, b, equal_nan=True)
                    and np.array_equal(np.signbit(a.real), np.signbit(b.real)))
    # compare the bytes: NaN equals NaN with the same payload, -0.0 differs from 0.0
    if a.nbytes <= 65536:  # bytes objects compare 50x faster than a ufunc call on small arrays
        return a.tobytes() == b.tobytes()
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                               np.ascontiguousarray(b).view(np.uint8)))


#: Slot kinds of the generators a check replays (:meth:`StateSnapshot.generators`).
_REPLAYED = tuple(k for k in RNG_KINDS if k != "entropy") + ("globalrng",)

#: One draw from a generator of each replayed kind (:meth:`StateSnapshot.advance`).
_ADVANCE = {
    "generator": lambda g: g.bit_generator.random_raw(),
    "bitgenerator": lambda g: g.random_raw(),
    "randomstate": lambda g: g.random_sample(),
    "pyrandom": lambda g: g.random(),
    "globalrng": lambda g: rngstate.NP_GLOBAL.random_sample(),
}


def unheld_states(snapshot):
    """The saved states of the generators ``snapshot`` holds that the layer does not (the
    global ones, its classes' and modules': :func:`unheld_generators`), for a worker
    process, whose modules were imported anew: ``[(kind, where, state)]``."""
    return [(s.kind, s.path, s.saved) for s in snapshot.generators() if s.owner is None]


def put_unheld(snapshot, states):
    """Set the generators of ``snapshot`` to ``states`` (:func:`unheld_states` of the
    caller's snapshot): a worker draws what the caller's process would."""
    slots = {(s.kind, s.path): s for s in snapshot.slots if s.owner is None}
    for kind, where, state in states:
        slot = slots.get((kind, where))
        if slot is not None:
            slot.saved = state
            slot.restore()


class StateSnapshot:
    """A restorable copy of everything a layer holds.

    Parameters
    ----------
    root : object
        The layer. Its attributes (``__dict__`` and ``__slots__``) are walked
        (:func:`walk`): ndarrays (copied), ``numpy.random.Generator``/
        ``RandomState`` and ``random.Random`` (state saved), lists, dicts,
        deques, sets, tuples and nested objects (other layers), at any depth.
    include_global_rng : bool, default True
        Also save the random states the layer reaches without holding them:
        numpy's global one (``np.random.get_state``), Python's ``random``
        module's (the ``random.Random`` behind ``random.random()``, saved as
        any held ``random.Random``), and the generators of the walked objects'
        classes and of their methods' modules, closures and defaults
        (:func:`unheld_generators`).

    Attributes
    ----------
    slots : list of _Slot
    objects : list of (object, str)
        The user objects walked (the layer first) and their paths.
    """

    def __init__(self, root, include_global_rng=True):
        self.slots = [_Slot(kind, obj, path, owner) for kind, obj, path, owner in walk(root)]
        objects = {id(s.obj): (s.obj, s.path) for s in self.slots if s.kind in ("attrs", "slots")}
        self.objects = list(objects.values())
        if include_global_rng:
            self.slots.append(_Slot("globalrng", None, "numpy.random"))
            held = {id(s.obj) for s in self.slots} | {id(rngstate.NP_GLOBAL)}  # globalrng's
            unheld = [("pyrandom", rngstate.PY_GLOBAL, "random")] + unheld_generators(
                obj for obj, _ in self.objects)
            for kind, gen, where in unheld:
                if id(gen) not in held:
                    held.add(id(gen))
                    self.slots.append(_Slot(kind, gen, where))

    def changed(self):
        """Return the slots whose current value differs from the snapshot.

        Returns
        -------
        list of _Slot
            Pass to :meth:`restore` to put only these back.
        """
        return [s for s in self.slots if s.changed()]

    @staticmethod
    def restore(slots):
        """Put back the given slots (from :meth:`changed`)."""
        for s in slots:
            s.restore()

    def restore_all(self):
        """Put back every slot: classes, attributes, containers, array contents, RNG states.

        Containers and attributes are restored before array contents, so an
        array that was replaced by a new object is first re-attached, then
        its contents are checked.
        """
        for s in self.slots:
            if s.kind in _CONTAINERS:
                s.restore()
        for s in self.slots:
            if s.kind not in _CONTAINERS and s.changed():
                s.restore()

    def written(self, changed=None):
        """The attributes whose value changed since the snapshot.

        Parameters
        ----------
        changed : list of _Slot, optional
            The result of :meth:`changed`, when already at hand.

        Returns
        -------
        set of (int, str)
            ``(id(obj), name)`` for every attribute of a walked object that
            was rebound, added or deleted, or under which an array, container
            or generator was modified in place.
        """
        keys = set()
        for s in self.changed() if changed is None else changed:
            if s.kind in ("attrs", "slots"):
                cur = s.obj.__dict__ if s.kind == "attrs" else _slot_values(s.obj)
                saved = s.saved[1]
                keys.update((id(s.obj), n) for n in cur.keys() | saved.keys()
                            if cur.get(n, _UNSET) is not saved.get(n, _UNSET))
            elif s.owner is not None:
                keys.add((id(s.owner[0]), s.owner[1]))
        return keys

    def substitute(self, mapping):
        """Replace, in every walked container, each object whose ``id`` is in ``mapping``.

        Used to swap a layer's arrays for working copies (float64 upcasts,
        complex copies, see :meth:`converted`) everywhere they are referenced,
        aliases included; :meth:`restore_all` puts the originals back.

        Returns
        -------
        int
            The number of references replaced.
        """
        count = 0
        for s in self.slots:
            if s.kind in ("attrs", "slots"):
                items = s.obj.__dict__ if s.kind == "attrs" else _slot_values(s.obj)
                setter = (items.__setitem__ if s.kind == "attrs"
                          else (lambda k, v, o=s.obj: object.__setattr__(o, k, v)))
            elif s.kind in ("dict", "list", "deque"):
                items, setter = s.obj, s.obj.__setitem__
            elif s.kind == "objarray":
                items = s.obj.reshape(-1) if s.obj.flags.c_contiguous else None
                if items is None:
                    continue
                setter = items.__setitem__
            else:
                continue
            keys = list(items) if isinstance(items, dict) else range(len(items))
            for k in keys:
                new = mapping.get(id(items[k]))
                if new is not None:
                    setter(k, new)
                    count += 1
        return count

    def converted(self, arrays, dtype):
        """Copies of ``arrays`` in ``dtype`` that keep every view a view.

        Every state array that shares memory with one of ``arrays`` (tied
        weights, ``W`` and ``W.T``, slices of one buffer) and has its dtype is
        converted too, as the same view of one converted buffer; pass the
        result to :meth:`substitute`.

        Parameters
        ----------
        arrays : list of ndarray
        dtype : numpy dtype

        Returns
        -------
        dict
            ``{id(original): converted}``.
        """
        wanted = {id(a): a for a in arrays}
        groups = {}
        for a in list(wanted.values()) + self.arrays():
            groups.setdefault(id(_owner(a)), []).append(a)
        mapping = {}
        for members in groups.values():
            if not any(id(m) in wanted for m in members):
                continue
            dt = {m.dtype for m in members if id(m) in wanted}
            members = list({id(m): m for m in members if m.dtype in dt}.values())
            mapping.update(_convert_group(members, np.dtype(dtype)))
        return mapping

    def arrays(self):
        """The arrays found in the walk (the live objects)."""
        return [s.obj for s in self.slots if s.kind == "array"]

    def generators(self):
        """The slots of the random generators the check replays (held by the layer or
        not, :data:`RNG_KINDS` and numpy's global one; not ``random.SystemRandom``)."""
        return [s for s in self.slots if s.kind in _REPLAYED]

    @staticmethod
    def advance(slots):
        """Draw once from each replayed generator among ``slots`` (from :meth:`changed`: the
        generators a forward draws from), so that their next draws are not the ones the
        snapshot's state gives (the sequence check's first call gets another dropout mask
        than the check's); :meth:`restore_all` rewinds them."""
        for s in slots:
            if s.kind in _REPLAYED:
                _ADVANCE[s.kind](s.obj)


# -- aliases: views rebuilt over a converted or unpickled buffer ------------------

def _owner(a):
    """The last ndarray in ``a``'s chain of bases (the one holding the memory)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _byte_layout(a, owner):
    """``(offset, strides)`` of ``a`` in bytes of ``owner``'s memory, or ``None``."""
    if not (owner.flags.c_contiguous or owner.flags.f_contiguous):
        return None
    offset = a.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    lo = offset + sum(min(0, (n - 1) * s) for n, s in zip(a.shape, a.strides))
    hi = offset + sum(max(0, (n - 1) * s) for n, s in zip(a.shape, a.strides)) + a.itemsize
    if a.size == 0 or lo < 0 or hi > owner.nbytes:
        return None
    return offset, a.strides


def _view(flat, offset, shape, strides, dtype, writeable=True):
    """The array of ``shape``/``strides`` at byte ``offset`` of the 1-D buffer ``flat``."""
    view = np.ndarray(shape, dtype=dtype, buffer=flat, offset=offset, strides=strides)
    if not writeable:
        view.flags.writeable = False
    return view


def _convert_group(members, dtype):
    """``{id(m): converted m}`` for arrays sharing one owner, as views of one buffer."""
    owner = _owner(members[0])
    layouts = [_byte_layout(m, owner) for m in members]
    old = members[0].dtype
    ok = all(lay is not None and m.dtype == owner.dtype and
             all(s % old.itemsize == 0 for s in lay[1]) and lay[0] % old.itemsize == 0
             for m, lay in zip(members, layouts))
    if not ok or len(members) == 1:
        return {id(m): m.astype(dtype) for m in members}
    flat = owner.ravel(order="K").astype(dtype)
    scale = dtype.itemsize / old.itemsize
    return {id(m): _view(flat, int(off * scale), m.shape, tuple(int(s * scale) for s in st),
                         dtype, m.flags.writeable)
            for m, (off, st) in zip(members, layouts)}


def _rebuild_view(owner, offset, shape, strides, dtype, writeable):
    return _view(owner.ravel(order="K"), offset, shape, strides, dtype, writeable)


class _SharingPickler(pickle.Pickler):
    """Pickles an ndarray view as (its owner, offset, strides): aliases survive a round trip."""

    def reducer_override(self, obj):
        if type(obj) is not np.ndarray or obj.base is None:
            return NotImplemented
        owner = _owner(obj)
        layout = _byte_layout(obj, owner) if owner is not obj else None
        if layout is None or type(owner) is not np.ndarray:
            return NotImplemented
        return _rebuild_view, (owner, layout[0], obj.shape, layout[1], obj.dtype,
                               obj.flags.writeable)


def dumps_shared(obj):
    """``pickle.dumps(obj)``, except that views of one array stay views after loading.

    ``pickle.loads`` reads the result; every ndarray view is rebuilt over its
    unpickled owner, so tied weights and ``W``/``W.T`` pairs still share memory
    in a parallel worker.
    """
    buf = io.BytesIO()
    _SharingPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()
