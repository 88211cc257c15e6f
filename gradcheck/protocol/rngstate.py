"""The states of numpy's ``RandomState`` and of ``random.Random``, read as bytes.

A state snapshot saves and compares every random generator a layer can reach,
and a sequence check compares them a dozen times. Through the public API that
is most of a small layer's snapshot: ``np.random.get_state()`` builds a
624-word array (~33 µs), ``random.Random.getstate()`` a 625-int tuple (~9 µs,
~14 µs compared). Here both states are read from memory as bytes (~1 µs):

* a numpy ``RandomState`` (the global one behind ``np.random.rand()`` too): its MT19937 state through the bit
  generator's ``ctypes.state_address`` (public), and the cached Gaussian
  (``has_gauss``, ``gauss``) from the ``RandomState`` object at an offset
  found once by calibration;
* a ``random.Random``: CPython's ``RandomObject`` (``int index; uint32_t
  state[624]`` after the object header) and its ``gauss_next``.

Each layout is calibrated once against the public API (a state is set, found
in memory and read back on fresh generators, then on the global ones); where a
calibration fails (another interpreter, another numpy) the public API is used
throughout. The raw states are restored through the public ``set_state`` and
``setstate``.
"""

import ctypes
import random
import struct
import sys

import numpy as np

#: Bytes of an MT19937 state, numpy's and CPython's alike: ``uint32 key[624]``; ``int pos``.
_MT_WORDS = 624
_MT_BYTES = _MT_WORDS * 4 + 4

#: The ``RandomState`` behind ``np.random.rand()``.
NP_GLOBAL = np.random.mtrand._rand
#: The ``random.Random`` behind the ``random`` module's functions.
PY_GLOBAL = random.random.__self__


def _words(raw, index_first):
    """``(key as uint32 array, index)`` from a raw MT19937 state."""
    if index_first:
        return np.frombuffer(raw, dtype=np.uint32, count=_MT_WORDS, offset=4), \
            int.from_bytes(raw[:4], sys.byteorder, signed=True)
    return np.frombuffer(raw, dtype=np.uint32, count=_MT_WORDS), \
        int.from_bytes(raw[-4:], sys.byteorder, signed=True)


# -- numpy's global RandomState ------------------------------------------------
def _mt_bytes(rs):
    bg = rs._bit_generator
    if type(bg) is not np.random.MT19937:  # a subclass may hold another state struct
        return None
    return ctypes.string_at(bg.ctypes.state_address, _MT_BYTES)


#: ``aug_bitgen_t``'s ``int has_gauss`` (padded to 8 bytes) and ``double gauss``.
_GAUSS = struct.Struct("i4xd")


def _gauss_at(rs, offset):
    return _GAUSS.unpack(ctypes.string_at(id(rs) + offset - 8, 16))


def _calibrate_numpy():
    """The offset of ``gauss`` in a ``RandomState`` (``has_gauss`` 8 bytes before), or None."""
    try:
        size = type(NP_GLOBAL).__basicsize__
        probe = np.random.RandomState(np.random.MT19937(7))
        key, pos = probe.get_state()[1:3]
        marks = [(1, 1.2345678901234567), (0, -7.654321098765432), (1, 3.0e-300)]
        probe.set_state(("MT19937", key, pos) + marks[0])
        mem = ctypes.string_at(id(probe), size)
        offset = mem.find(struct.pack("d", marks[0][1]))
        if offset < 8 or mem.find(struct.pack("d", marks[0][1]), offset + 1) != -1:
            return None
        for mark in marks:
            probe.set_state(("MT19937", key, pos) + mark)
            if _gauss_at(probe, offset) != mark or not _decodes(probe):
                return None
        if type(NP_GLOBAL) is not np.random.RandomState or _mt_bytes(NP_GLOBAL) is None:
            return None
        state = NP_GLOBAL.get_state()
        return offset if _gauss_at(NP_GLOBAL, offset) == (state[3], state[4]) else None
    except Exception:  # another layout: the public API
        return None


def _decodes(rs):
    key, pos = _words(_mt_bytes(rs), index_first=False)
    state = rs.get_state()
    return np.array_equal(key, state[1]) and pos == state[2]


_NP_GAUSS = _calibrate_numpy()


def _rs_readable(rs):
    return _NP_GAUSS is not None and isinstance(rs, np.random.RandomState) \
        and type(rs).__basicsize__ >= _NP_GAUSS + 8


def save_rs(rs):
    """The state of a ``RandomState`` (:data:`NP_GLOBAL`: numpy's global one): ``(raw MT bytes,
    has_gauss, gauss)`` where calibrated, else ``rs.get_state()``."""
    if _rs_readable(rs):
        raw = _mt_bytes(rs)
        if raw is not None:
            return (raw,) + _gauss_at(rs, _NP_GAUSS)
    return _public(rs)


def rs_changed(rs, saved):
    """Whether a ``RandomState``'s state differs from ``saved`` (:func:`save_rs`), the
    cached Gaussian included."""
    if isinstance(saved, tuple) and isinstance(saved[0], bytes):
        raw = _mt_bytes(rs) if _rs_readable(rs) else None
        return raw is None or raw != saved[0] or _gauss_at(rs, _NP_GAUSS) != saved[1:]
    return not _same_state(_public(rs), saved)


def _public(rs):
    """``rs.get_state()``: the legacy tuple over MT19937, a dict over another bit
    generator (asked for as such: numpy warns when asked for the tuple)."""
    mt = isinstance(getattr(rs, "_bit_generator", None), np.random.MT19937)
    return rs.get_state(legacy=mt)


def _same_state(a, b):
    """Public states equal: MT19937's legacy tuple (a key array inside), another bit
    generator's dict (``RandomState(PCG64())``), nested."""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            _same_state(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) \
            and len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def restore_rs(rs, saved):
    """Set a ``RandomState``'s state to ``saved`` (:func:`save_rs`)."""
    if isinstance(saved, tuple) and isinstance(saved[0], bytes):
        key, pos = _words(saved[0], index_first=False)
        saved = ("MT19937", key.copy(), pos, saved[1], saved[2])
    rs.set_state(saved)


# -- random.Random -------------------------------------------------------------
_PY_OFFSET = object.__basicsize__  # after the object header: int index; uint32_t state[624]


def _py_raw(obj):
    return ctypes.string_at(id(obj) + _PY_OFFSET, _MT_BYTES)


def _calibrate_python():
    """Whether CPython's ``RandomObject`` layout reads back as ``getstate()`` does."""
    try:
        import _random

        if sys.implementation.name != "cpython" or \
                _random.Random.__basicsize__ < _PY_OFFSET + _MT_BYTES:
            return False
        for probe in (random.Random(12345), random.Random(2 ** 40 + 3)):
            for _ in range(3):  # as seeded, then advanced (the index moves)
                if _py_decoded(_py_raw(probe)) != probe.getstate()[1]:
                    return False
                probe.random()
        return _py_decoded(_py_raw(PY_GLOBAL)) == PY_GLOBAL.getstate()[1]
    except Exception:
        return False


def _py_decoded(raw):
    key, index = _words(raw, index_first=True)
    return tuple(key.tolist()) + (index,)


_PY_RAW = _calibrate_python()


def _raw_readable(obj):
    cls = type(obj)
    return _PY_RAW and isinstance(obj, random.Random) \
        and cls.__basicsize__ >= _PY_OFFSET + _MT_BYTES \
        and cls.getstate is random.Random.getstate \
        and cls.setstate is random.Random.setstate and "gauss_next" in getattr(obj, "__dict__", ())


def save_py(obj):
    """The state of a ``random.Random``: ``(raw bytes, gauss_next)`` where its layout is
    CPython's, else ``obj.getstate()``."""
    if _raw_readable(obj):
        return _py_raw(obj), obj.gauss_next
    return obj.getstate()


def py_changed(obj, saved):
    """Whether a ``random.Random``'s state differs from ``saved`` (:func:`save_py`)."""
    if isinstance(saved, tuple) and isinstance(saved[0], bytes):
        if not _raw_readable(obj):
            return True
        return _py_raw(obj) != saved[0] or obj.gauss_next != saved[1]
    return obj.getstate() != saved


def restore_py(obj, saved):
    """Set a ``random.Random``'s state to ``saved`` (:func:`save_py`)."""
    if isinstance(saved, tuple) and isinstance(saved[0], bytes):
        saved = (random.Random.VERSION, _py_decoded(saved[0]), saved[1])
    obj.setstate(saved)
