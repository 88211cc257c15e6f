"""The raw random states (gradcheck.protocol.rngstate) decide and restore as the public API.

For any sequence of draws, seeds and cached Gaussians, a state read as bytes
counts as changed exactly when the public state (``get_state()`` /
``getstate()``) differs, and restoring it gives back the public state exactly;
the same holds on the public-API fallback a failed calibration uses.
"""

import random
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gradcheck.protocol import rngstate

_NP_OPS = {
    "rand": lambda r: r.rand(),
    "randn": lambda r: r.randn(),  # fills or consumes the cached Gaussian
    "randn2": lambda r: r.randn(2),
    "seed": lambda r: r.seed(3) if isinstance(r._bit_generator, np.random.MT19937) else None,
    "none": lambda r: None,
}
_PY_OPS = {
    "random": lambda r: r.random(),
    "gauss": lambda r: r.gauss(0.0, 1.0),  # fills or consumes gauss_next
    "seed": lambda r: r.seed(3),
    "bits": lambda r: r.getrandbits(64),
    "none": lambda r: None,
}


def _np_public(r):
    s = r.get_state(legacy=isinstance(r._bit_generator, np.random.MT19937))
    return repr(s) if isinstance(s, dict) else (s[0], s[1].tobytes(), s[2], s[3], s[4])


@pytest.fixture(params=["raw", "public"])
def layout(request, monkeypatch):
    """Both paths: the calibrated raw read and the public-API fallback."""
    if request.param == "public":
        monkeypatch.setattr(rngstate, "_NP_GAUSS", None)
        monkeypatch.setattr(rngstate, "_PY_RAW", False)
    return request.param


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's layouts")
def test_the_raw_layouts_calibrate_on_cpython_and_this_numpy():
    assert rngstate._NP_GAUSS is not None and rngstate._PY_RAW
    assert isinstance(rngstate.save_rs(rngstate.NP_GLOBAL)[0], bytes)
    assert isinstance(rngstate.save_py(random.Random(1))[0], bytes)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # set once, never mutated
@given(before=st.lists(st.sampled_from(sorted(_NP_OPS)), max_size=3),
       during=st.lists(st.sampled_from(sorted(_NP_OPS)), max_size=3),
       seed=st.integers(0, 2 ** 32 - 1))
@example(before=["randn"], during=["randn"], seed=0)  # the cache consumed, MT unmoved
@example(before=["seed", "randn"], during=["seed"], seed=3)  # same MT, cache dropped
@pytest.mark.parametrize("bits", [np.random.MT19937, np.random.PCG64])
def test_a_randomstate_counts_as_changed_exactly_when_its_public_state_differs(
        layout, bits, before, during, seed):
    """Over MT19937 (a legacy tuple, read as bytes) and PCG64 (a dict, read through
    ``get_state``: it raised KeyError, and the layer's generator was left advanced)."""
    r = np.random.RandomState(bits(seed))
    for op in before:
        _NP_OPS[op](r)
    start = _np_public(r)
    saved = rngstate.save_rs(r)
    for op in during:
        _NP_OPS[op](r)
    assert rngstate.rs_changed(r, saved) == (_np_public(r) != start)
    rngstate.restore_rs(r, saved)
    assert _np_public(r) == start and not rngstate.rs_changed(r, saved)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # set once, never mutated
@given(before=st.lists(st.sampled_from(sorted(_PY_OPS)), max_size=3),
       during=st.lists(st.sampled_from(sorted(_PY_OPS)), max_size=3),
       seed=st.integers(0, 2 ** 64))
@example(before=["gauss"], during=["gauss"], seed=0)  # gauss_next consumed, MT unmoved
@example(before=["seed", "gauss"], during=["seed"], seed=3)
def test_a_python_random_counts_as_changed_exactly_when_its_public_state_differs(
        layout, before, during, seed):
    r = random.Random(seed)
    for op in before:
        _PY_OPS[op](r)
    start = r.getstate()
    saved = rngstate.save_py(r)
    for op in during:
        _PY_OPS[op](r)
    assert rngstate.py_changed(r, saved) == (r.getstate() != start)
    rngstate.restore_py(r, saved)
    assert r.getstate() == start and not rngstate.py_changed(r, saved)


class _OwnState(random.Random):
    """A subclass with its own getstate: read through it, never as raw bytes."""

    def getstate(self):
        return ("own",) + super().getstate()

    def setstate(self, state):
        super().setstate(state[1:])


def test_a_random_subclass_with_its_own_getstate_is_read_through_it():
    r = _OwnState(4)
    saved = rngstate.save_py(r)
    assert saved[0] == "own"
    r.random()
    assert rngstate.py_changed(r, saved)
    rngstate.restore_py(r, saved)
    assert r.getstate() == saved
