"""Snapshot and restore of a layer's state.

A check must evaluate every perturbed forward call on the *same* layer, and
leave the layer exactly as it found it. :class:`StateSnapshot` walks the
layer's object graph once (attributes, lists, dicts, nested layers), keeps a
copy of every array and random-generator state it finds, and can

* tell which slots one forward call changed (:meth:`StateSnapshot.changed`),
  so that only those are put back between calls (a dict update and a few small
  array copies, not a deep copy of the layer per call), and
* put everything back (:meth:`StateSnapshot.restore_all`): every attribute is
  the same object as before with bit-identical contents; attributes that did
  not exist are removed again.
"""

import types

import numpy as np

_ATOMIC = (int, float, complex, str, bytes, bool, type(None))
_MAX_OBJECTS = 10_000


_NOT_STATE = (type, types.FunctionType, types.MethodType, types.ModuleType,
              types.BuiltinFunctionType, np.ndarray)


def _is_walkable_object(obj):
    """Plain user objects whose ``__dict__`` is layer state (not modules, classes, functions)."""
    if isinstance(obj, _NOT_STATE):
        return False
    d = getattr(obj, "__dict__", None)
    return isinstance(d, dict) and type(obj).__module__ not in ("builtins", "numpy")


class _Slot:
    """One restorable piece of state."""

    __slots__ = ("kind", "obj", "saved")

    def __init__(self, kind, obj, saved):
        self.kind = kind
        self.obj = obj
        self.saved = saved

    def changed(self):
        k, obj, saved = self.kind, self.obj, self.saved
        if k == "attrs":
            cur = obj.__dict__
            return cur.keys() != saved.keys() or any(cur[n] is not v for n, v in saved.items())
        if k == "array":
            return not _bitwise_equal(obj, saved)
        if k == "generator":
            return obj.bit_generator.state != saved
        if k == "randomstate":
            return not _rs_state_equal(obj.get_state(), saved)
        if k == "globalrng":
            return not _rs_state_equal(np.random.get_state(), saved)
        if k == "list":
            return len(obj) != len(saved) or any(a is not b for a, b in zip(obj, saved))
        if k == "dict":
            return obj.keys() != saved.keys() or any(obj[n] is not v for n, v in saved.items())
        raise AssertionError(k)

    def restore(self):
        k, obj, saved = self.kind, self.obj, self.saved
        if k == "attrs":
            d = obj.__dict__
            if d.keys() != saved.keys():
                d.clear()
            d.update(saved)
        elif k == "array":
            np.copyto(obj, saved, casting="no")
        elif k == "generator":
            obj.bit_generator.state = saved
        elif k == "randomstate":
            obj.set_state(saved)
        elif k == "globalrng":
            np.random.set_state(saved)
        elif k == "list":
            obj[:] = saved
        elif k == "dict":
            obj.clear()
            obj.update(saved)


def _padded(dtype):
    """Whether a floating dtype's items carry padding bytes (x87 long double: 80 of 128 bits)."""
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
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                               np.ascontiguousarray(b).view(np.uint8)))


def _rs_state_equal(s1, s2):
    return s1[0] == s2[0] and np.array_equal(s1[1], s2[1]) and tuple(s1[2:]) == tuple(s2[2:])


class StateSnapshot:
    """A restorable copy of everything a layer holds.

    Parameters
    ----------
    root : object
        The layer. Its ``__dict__`` is walked recursively: ndarrays (copied),
        ``numpy.random.Generator``/``RandomState`` (state saved), lists, dicts,
        tuples and nested objects with a ``__dict__`` (other layers).
    include_global_rng : bool, default True
        Also save numpy's global random state (``np.random.get_state``).
    """

    def __init__(self, root, include_global_rng=True):
        self.slots = []
        self._seen = set()
        self._visit(root, depth=0)
        if include_global_rng:
            self.slots.append(_Slot("globalrng", None, np.random.get_state()))
        del self._seen

    def _visit(self, v, depth):
        if isinstance(v, _ATOMIC) or depth > 8 or id(v) in self._seen:
            return
        if len(self._seen) > _MAX_OBJECTS:
            return
        self._seen.add(id(v))
        if isinstance(v, np.ndarray):
            if v.dtype != object and v.flags.writeable:
                self.slots.append(_Slot("array", v, v.copy()))
        elif isinstance(v, np.random.Generator):
            self.slots.append(_Slot("generator", v, v.bit_generator.state))
        elif isinstance(v, np.random.RandomState):
            self.slots.append(_Slot("randomstate", v, v.get_state()))
        elif isinstance(v, list):
            self.slots.append(_Slot("list", v, list(v)))
            for item in v:
                self._visit(item, depth + 1)
        elif isinstance(v, dict):
            self.slots.append(_Slot("dict", v, dict(v)))
            for item in list(v.values()):
                self._visit(item, depth + 1)
        elif isinstance(v, tuple):
            for item in v:
                self._visit(item, depth + 1)
        elif _is_walkable_object(v):
            self.slots.append(_Slot("attrs", v, dict(v.__dict__)))
            for item in list(v.__dict__.values()):
                self._visit(item, depth + 1)

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
        """Put back every slot: attributes, containers, array contents, RNG states.

        Containers and attributes are restored before array contents, so an
        array that was replaced by a new object is first re-attached, then
        its contents are checked.
        """
        for s in self.slots:
            if s.kind in ("attrs", "list", "dict"):
                s.restore()
        for s in self.slots:
            if s.kind not in ("attrs", "list", "dict") and s.changed():
                s.restore()

    def array_slot(self, arr):
        """The slot holding the saved copy of ``arr`` (by identity), or ``None``."""
        for s in self.slots:
            if s.kind == "array" and s.obj is arr:
                return s
        return None

    def substitute(self, mapping):
        """Replace, in every walked container, each object whose ``id`` is in ``mapping``.

        Used to swap a layer's arrays for working copies (float64 upcasts,
        complex copies) everywhere they are referenced, aliases included;
        :meth:`restore_all` puts the originals back.

        Returns
        -------
        int
            The number of references replaced.
        """
        count = 0
        for s in self.slots:
            if s.kind == "attrs":
                items = s.obj.__dict__
            elif s.kind in ("dict", "list"):
                items = s.obj
            else:
                continue
            keys = range(len(items)) if isinstance(items, list) else list(items)
            for k in keys:
                new = mapping.get(id(items[k]))
                if new is not None:
                    items[k] = new
                    count += 1
        return count

    def arrays(self):
        """The arrays found in the walk (the live objects)."""
        return [s.obj for s in self.slots if s.kind == "array"]
