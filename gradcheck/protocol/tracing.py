"""Which instance attributes a layer's ``forward`` and ``backward`` read and write.

:class:`AccessTracer` swaps, for the duration of one traced call, the class
of every object of the layer for a subclass of it (same name, same module,
``__slots__ = ()`` so the layout is unchanged) whose ``__getattribute__``,
``__setattr__`` and ``__delattr__`` record the instance attributes touched.
The first access of each attribute in a call is kept: a read *before* any
write reads state left behind by an earlier call. The original classes are
back when the call returns or raises, KeyboardInterrupt included (and
:class:`~gradcheck.protocol.state.StateSnapshot` restores classes too).

Objects whose class cannot be swapped (extension types, classes with a
custom metaclass) are listed in ``untraced``; callers fall back to poisoning
their attributes.
"""

import abc
import contextlib

from gradcheck.protocol.state import slot_names

_MISSING = object()


def _tracing_class(cls, tracer):
    """A subclass of ``cls`` that reports instance-attribute accesses to ``tracer``.

    Made without side effects on the user's classes: only for the plain
    metaclasses (a custom one may register every subclass), and with the
    ``__init_subclass__`` hooks of ``cls``'s bases silenced while it is made.

    Raises
    ------
    TypeError
        ``cls`` cannot be subclassed this way (the caller does not trace it).
    """
    if type(cls) not in (type, abc.ABCMeta):
        raise TypeError(f"{cls.__name__} has a custom metaclass")
    get, set_, delete = cls.__getattribute__, cls.__setattr__, cls.__delattr__
    slots = frozenset(slot_names(cls))

    def __getattribute__(self, name):
        events = tracer.events
        if events is not None and name[:2] != "__":
            key = (id(self), name)
            if key not in events[1] and _is_instance_attr(self, name, slots):  # read once
                events[0].setdefault(key, "r")
                events[1].add(key)
        return get(self, name)

    def __setattr__(self, name, value):
        if tracer.events is not None:
            tracer.record(self, name, "w")
        set_(self, name, value)

    def __delattr__(self, name):
        if tracer.events is not None:
            tracer.record(self, name, "w")
        delete(self, name)

    namespace = {"__getattribute__": __getattribute__, "__setattr__": __setattr__,
                 "__delattr__": __delattr__, "__slots__": (), "__module__": cls.__module__,
                 "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
    own = cls.__dict__.get("__init_subclass__", _MISSING)
    hooked = any("__init_subclass__" in k.__dict__ for k in cls.__mro__[:-1])
    if hooked:
        type.__setattr__(cls, "__init_subclass__", classmethod(lambda c, **kw: None))
    try:
        return type(cls)(cls.__name__, (cls,), namespace)
    finally:
        if hooked and own is _MISSING:
            type.__delattr__(cls, "__init_subclass__")
        elif hooked:
            type.__setattr__(cls, "__init_subclass__", own)


def _is_instance_attr(obj, name, slots):
    if name in slots:
        return True
    try:
        return name in object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return False


class AccessTracer:
    """Records, per named phase, the instance attributes read and written.

    Parameters
    ----------
    objects : list of (object, str)
        The objects to trace and their paths from the layer
        (:attr:`StateSnapshot.objects <gradcheck.protocol.state.StateSnapshot>`).

    Attributes
    ----------
    untraced : list of (object, str)
        Objects whose class could not be swapped.
    """

    def __init__(self, objects):
        self.phase = None
        self.events = None  # the current phase's (first, reads, writes), while tracing
        self.paths = {}
        self.untraced = []
        self._swaps = []
        self._events = {}
        classes = {}
        for obj, path in objects:
            cls = type(obj)
            self.paths[id(obj)] = path
            try:
                if cls not in classes:
                    classes[cls] = _tracing_class(cls, self)
                object.__setattr__(obj, "__class__", classes[cls])
                object.__setattr__(obj, "__class__", cls)
            except Exception:  # extension types, final classes, odd metaclasses
                self.untraced.append((obj, path))
                continue
            self._swaps.append((obj, cls, classes[cls]))

    def is_traced(self, obj_id):
        """Whether the object with this ``id`` is traced (its class could be swapped)."""
        return any(id(obj) == obj_id for obj, _, _ in self._swaps)

    def record(self, obj, name, kind):
        """Note one access (``kind`` ``"r"`` or ``"w"``) in the current phase."""
        first, reads, writes = self.events
        key = (id(obj), name)
        first.setdefault(key, kind)
        (reads if kind == "r" else writes).add(key)

    @contextlib.contextmanager
    def trace(self, phase):
        """Trace the calls made inside the ``with`` block under the name ``phase``."""
        self._events[phase] = ({}, set(), set())
        swapped = []
        try:
            for obj, cls, tracing in self._swaps:
                object.__setattr__(obj, "__class__", tracing)
                swapped.append((obj, cls))
            self.phase, self.events = phase, self._events[phase]
            yield self
        finally:
            self.phase, self.events = None, None
            for obj, cls in swapped:
                object.__setattr__(obj, "__class__", cls)

    def traced(self, phase):
        """Whether calls were traced under the name ``phase``.

        Parameters
        ----------
        phase : str

        Returns
        -------
        bool
        """
        return phase in self._events

    def first_reads(self, phase):
        """``[(id(obj), name)]`` read before any write in ``phase``, in the order of the reads."""
        return [k for k, kind in self._events[phase][0].items() if kind == "r"]

    def reads(self, phase):
        """``{(id(obj), name)}`` read at all in ``phase``."""
        return set(self._events[phase][1])

    def writes(self, phase):
        """``{(id(obj), name)}`` assigned or deleted in ``phase``."""
        return set(self._events[phase][2])

    def name(self, key):
        """The path of attribute ``key = (id(obj), name)`` from the layer (``"layers[0].xn"``)."""
        path = self.paths.get(key[0], "")
        return f"{path}.{key[1]}" if path else key[1]
