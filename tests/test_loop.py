"""The perturbation loop's shortcuts give what the plain loop gives, whatever the layer does
with its output (keeps it, reuses its buffer, returns a view of its input)."""

import weakref

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from gradcheck.engine.methods import METHODS
from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.errors import LayerCallError


def g(x):
    """Couples every element to every output: no output is left unchanged by a perturbation."""
    return np.sin(x) + 0.1 * np.sum(x)


class Fresh:
    """Returns a new array every call and keeps nothing."""

    def __call__(self, x):
        return g(x)


class Kept:
    """Keeps its output (``self.out = out``, the book's Sigmoid) and zeroes it on the next call."""

    out = None

    def __call__(self, x):
        if self.out is not None:
            self.out[...] = 0.0
        self.out = g(x)
        return self.out


class Reused:
    """Writes every output into one buffer it returns."""

    buf = None

    def __call__(self, x):
        if self.buf is None:
            self.buf = np.empty(x.shape, dtype=x.dtype)
        self.buf[...] = g(x)
        return self.buf


class SliceOfBuffer:
    """Returns a view of part of a larger buffer it reuses."""

    buf = None

    def __call__(self, x):
        if self.buf is None:
            self.buf = np.empty(2 * x.size, dtype=x.dtype)
        self.buf[:x.size] = g(x).reshape(-1)
        return self.buf[:x.size]


class ViewOfInput:
    """``out = x`` (a reshape: a view of the perturbed array itself), plus nothing."""

    def __call__(self, x):
        return x.reshape(-1)


class ReadOnly:
    """Returns a new array every call, keeps nothing, and marks it read-only."""

    def __call__(self, x):
        out = g(x)
        out.flags.writeable = False
        return out


_WEAK = weakref.WeakValueDictionary()


class WeakCached:
    """Reuses one buffer it holds only through a weak reference (a cache keyed by shape)."""

    def __call__(self, x):
        buf = _WEAK.get(x.shape)
        if buf is None:
            buf = np.empty(x.shape, dtype=x.dtype)
            _WEAK[x.shape] = buf
        np.copyto(buf, g(x))
        return buf


KINDS = [Fresh, Kept, Reused, SliceOfBuffer, ViewOfInput, ReadOnly, WeakCached]


def _reference(fn, x, steps, dout, a=1.0, b=-1.0):
    """``(f(x + a h e_i) - f(x + b h e_i)) . dout`` per element, each point on a fresh copy."""
    flat_g = (lambda v: np.sin(v) + 0.1 * np.sum(v)) if fn is not ViewOfInput else (lambda v: v)
    out = []
    for i in range(x.size):
        xa, xb = x.reshape(-1).copy(), x.reshape(-1).copy()
        xa[i] = x.dtype.type(float(xa[i]) + a * steps[i])
        xb[i] = x.dtype.type(float(xb[i]) + b * steps[i])
        out.append(float(np.sum((flat_g(xa).astype(np.float64) - flat_g(xb)) * dout)))
    return np.array(out)


def _loop(kind, x, steps, dout, pairs=((1.0, -1.0),), noise=True, moves_type=ElementMoves):
    layer = kind()
    ev = lambda i: np.asarray(layer(x)).reshape(-1)  # noqa: E731
    out0 = ev(None).copy()
    sink = Reduce(dout, x.size, len(pairs), noise_w=np.full(out0.size, 1e-30) if noise else None)
    span = differences(ev, moves_type(x, np.arange(x.size), steps), list(pairs), sink, out0)
    return sink, span


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
@given(x=arrays(np.float64, st.integers(1, 12),
                elements=st.floats(-3, 3, allow_nan=False, allow_subnormal=False)))
def test_reduced_differences_are_the_differences_of_fresh_evaluations(kind, x):
    x0 = x.copy()
    steps = np.full(x.size, 1e-4)
    dout = np.linspace(-1.0, 2.0, x.size)
    sink, span = _loop(kind, x, steps, dout)
    want = _reference(kind, x0, steps, dout)
    scale = np.sum(np.abs(dout)) * (1.0 + np.max(np.abs(x0)) + 0.1 * np.sum(np.abs(x0)))
    np.testing.assert_allclose(sink.R[:, 0].real, want, rtol=0, atol=1e-13 * scale)
    assert np.array_equal(x, x0), "the target is put back exactly"


class General(ElementMoves):
    """Not an :class:`ElementMoves` by type: the loop takes its general path."""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_the_element_loop_and_the_general_loop_agree_bitwise(dtype, method):
    rng = np.random.default_rng(3)
    x = rng.normal(size=7).astype(dtype)
    steps = np.abs(x).astype(np.float64) * 1e-3 + 1e-4
    dout = rng.normal(size=7)
    pairs = METHODS[method].pairs
    fast = _loop(Fresh, x.copy(), steps, dout, pairs)
    plain = _loop(Fresh, x.copy(), steps, dout, pairs, moves_type=General)
    assert np.array_equal(fast[1], plain[1]), "the same denominators"
    assert np.array_equal(fast[0].R, plain[0].R)
    assert np.array_equal(fast[0].noise, plain[0].noise)


@given(x=arrays(np.float64, st.integers(1, 40),
                elements=st.floats(-3, 3, allow_nan=False, allow_subnormal=False)))
def test_filed_supports_reduce_to_the_sums_taken_one_at_a_time(x):
    """The batched reduction of :meth:`Reduce.finish` is the per-item sum, up to rounding."""
    steps = np.full(x.size, 1e-3)
    dout = np.cos(np.arange(x.size))
    weights = np.linspace(1e-30, 3e-30, x.size)

    def run(filed):
        ev = lambda i: np.sin(x) * np.roll(x, 1)  # noqa: E731  (a support of two outputs)
        sink = Reduce(dout, x.size, 1, noise_w=weights)
        sink.FILED = filed
        differences(ev, ElementMoves(x, np.arange(x.size), steps), [(1.0, -1.0)], sink,
                    ev(None).copy())
        return sink

    filed, single = run(4096), run(-1)
    assert x.size < 4 or not filed._support.all(), "sparse supports: the filed path ran"
    scale = np.sum(np.abs(dout)) * (1.0 + 0.2 * np.sum(np.abs(x)))
    np.testing.assert_allclose(filed.R, single.R, rtol=0, atol=1e-15 * scale)
    np.testing.assert_allclose(filed.noise, single.noise, rtol=1e-12)


def test_a_nan_in_a_filed_support_names_its_element():
    x = np.array([0.5, 1.0, 2.0, 3.0])

    def ev(i):
        out = x.copy()
        if x[2] != 2.0:
            out[2] = np.nan
        return out

    sink = Reduce(np.ones(4), 4, 1, noise_w=np.full(4, 1e-30))
    with pytest.raises(LayerCallError, match="NaN or inf") as info:
        differences(ev, ElementMoves(x, np.arange(4), np.full(4, 1e-3)), [(1.0, -1.0)], sink,
                    x.copy())
    assert info.value.index == (2,)
    assert np.array_equal(x, [0.5, 1.0, 2.0, 3.0])


class MatrixAffine:
    """Returns ``np.matrix`` (whose ``reshape(-1)`` keeps two dimensions); ``wrong`` scales dW."""

    def __init__(self, wrong=1.0):
        self.W = np.random.default_rng(1).standard_normal((5, 3))
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return np.asmatrix(x) @ np.asmatrix(self.W)

    def backward(self, dout):
        dout = np.asarray(dout)
        self.dW = self.wrong * (self.x.T @ dout)
        return dout @ self.W.T


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("strategy", ["elementwise", "auto"])
def test_an_ndarray_subclass_output_is_checked_as_its_array(strategy):
    from gradcheck import check_layer

    x = np.random.default_rng(2).standard_normal((6, 5))
    right = check_layer(MatrixAffine(), x, strategy=strategy)
    assert [r.verdict for r in right.results] == ["PASS", "PASS"]
    wrong = check_layer(MatrixAffine(wrong=1.001), x, strategy=strategy)
    assert wrong.result("x").verdict == "PASS" and wrong.result("W").verdict == "FAIL"


class ForwardProperty:
    """``forward`` is a property building a function of the weights at lookup time (a
    compiled or jitted forward): every call must look it up again."""

    def __init__(self, wrong=1.0):
        self.W = np.linspace(-1.0, 1.0, 20).reshape(5, 4)
        self.wrong = wrong

    @property
    def forward(self):
        W = self.W.copy()

        def fwd(x):
            self.x, self.y = x, np.tanh(x @ W)
            return self.y.copy()
        return fwd

    def backward(self, dout):
        g = dout * (1.0 - self.y ** 2)
        self.dW = self.x.T @ g
        self.dW.flat[2] *= self.wrong
        return g @ self.W.T


@pytest.mark.parametrize("strategy", ["elementwise", "auto", "projection"])
def test_a_forward_property_is_looked_up_at_every_call(strategy):
    from gradcheck import check_layer

    x = np.random.default_rng(0).normal(size=(3, 5))
    right = check_layer(ForwardProperty(), x, strategy=strategy)
    assert right.passed, str(right)
    wrong = check_layer(ForwardProperty(wrong=1.01), x, strategy=strategy)
    assert wrong.result("W").verdict == "FAIL", str(wrong)
