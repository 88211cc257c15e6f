"""The finite-difference engine on functions with known derivatives."""

import numpy as np
import pytest

from gradcheck.engine.methods import METHODS, richardson
from gradcheck.engine.perturb import ElementMoves, Reduce, differences
from gradcheck.engine.steps import element_steps, relative_step

EPS64 = float(np.finfo(np.float64).eps)


def _run(method, ev, arr, dout, steps, out0=None):
    """The method's derivatives of ``sum(ev() * dout)`` for every element of ``arr``."""
    pairs = METHODS[method].pairs
    sink = Reduce(dout, arr.size, len(pairs))
    out0 = ev(None).reshape(-1).copy() if out0 is None else out0
    span = differences(lambda i: ev(i).reshape(-1), ElementMoves(arr, np.arange(arr.size),
                                                                 steps), pairs, sink, out0)
    return METHODS[method].combine(sink.R.real / span)[0]


class Elementwise:
    """``out = f(x)`` elementwise, as a layer-like evaluator over ``arr``."""

    def __init__(self, f, arr):
        self.f, self.arr = f, arr

    def __call__(self, i):
        return self.f(self.arr)


FUNCS = {
    "cubic": (lambda x: x**3 - 2 * x**2 + x, lambda x: 3 * x**2 - 4 * x + 1),
    "exp": (np.exp, np.exp),
    "sin": (np.sin, np.cos),
}


def _errors(name, method, hs):
    f, df = FUNCS[name]
    x0 = np.array([0.3, -0.7, 1.1])
    dout = np.array([1.0, -0.5, 2.0])
    errs = []
    for h in hs:
        arr = x0.copy()
        steps = np.full(3, h)
        ev = Elementwise(f, arr)
        D = _run(method, ev, arr, dout, steps, f(x0))
        errs.append(np.max(np.abs(D - df(x0) * dout)))
        assert np.array_equal(arr, x0), "the target must be restored exactly"
    return np.array(errs)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_central_error_shrinks_like_h_squared(name):
    errs = _errors(name, "central", [1e-2, 5e-3, 2.5e-3])
    rates = np.log2(errs[:-1] / errs[1:])
    assert np.all(np.abs(rates - 2.0) < 0.15), rates


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_forward_error_shrinks_like_h(name):
    errs = _errors(name, "forward", [1e-3, 5e-4, 2.5e-4])
    rates = np.log2(errs[:-1] / errs[1:])
    assert np.all(np.abs(rates - 1.0) < 0.1), rates


def test_matrix_product_gradient_is_exact_to_rounding():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(4, 3))
    x = rng.normal(size=(5, 4))
    dout = rng.normal(size=(5, 3))
    steps = element_steps(x, METHODS["central"], EPS64)
    D = _run("central", lambda i: x @ W, x, dout.reshape(-1), steps)
    np.testing.assert_allclose(D.reshape(x.shape), dout @ W.T, rtol=1e-9, atol=1e-10)


def test_richardson_beats_central_by_orders_of_magnitude():
    f, df = FUNCS["sin"]
    x0 = np.array([0.9])
    h = 1e-2
    D = np.array([[(f(x0 + c * h) - f(x0 - c * h))[0] / (2 * c * h) for c in (1, .5, .25)]])
    value, err = richardson(D)
    assert abs(D[0, -1] - df(x0)[0]) > 1e-7
    assert abs(value[0] - df(x0)[0]) < 1e-12
    assert abs(value[0] - df(x0)[0]) <= err[0], "the error estimate bounds the actual error"


def test_steps_follow_the_noise_and_the_magnitude():
    x = np.array([0.0, 0.5, 10.0, -1000.0])
    central = METHODS["central"]
    h = element_steps(x, central, EPS64)
    np.testing.assert_allclose(h, EPS64 ** (1 / 3) * np.array([1.0, 1.0, 10.0, 1000.0]))
    eps32 = float(np.finfo(np.float32).eps)
    assert relative_step(central, eps32) > 100 * relative_step(central, EPS64)
    assert np.all(element_steps(x, central, EPS64, eps=1e-4) == 1e-4)


def test_target_is_restored_when_forward_raises():
    arr = np.array([1.0, 2.0, 3.0])
    calls = []

    def ev(i):
        calls.append(i)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return arr * 2

    sink = Reduce(np.ones(3), 3, 1)
    with pytest.raises(RuntimeError):
        differences(ev, ElementMoves(arr, np.arange(3), np.full(3, 1e-3)), [(1.0, -1.0)],
                    sink, arr * 2)
    assert np.array_equal(arr, [1.0, 2.0, 3.0])
