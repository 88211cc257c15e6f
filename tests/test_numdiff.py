"""The finite-difference engine on functions with known derivatives."""

import numpy as np
import pytest

from gradcheck.engine import perturb as _numdiff
from gradcheck.engine.steps import base_step, element_steps


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
        if method == "central":
            D, _ = _numdiff.central_differences(ev, arr, dout, np.arange(3), steps)
        else:
            D, _ = _numdiff.forward_differences(ev, arr, dout, np.arange(3), steps, f(x0))
        errs.append(np.max(np.abs(D[:, 0] - df(x0) * dout)))
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
    steps = element_steps(x, "central")
    D, _ = _numdiff.central_differences(lambda i: x @ W, x, dout, np.arange(x.size), steps)
    np.testing.assert_allclose(D[:, 0].reshape(x.shape), dout @ W.T, rtol=1e-9, atol=1e-10)


def test_richardson_beats_central_by_orders_of_magnitude():
    f, df = FUNCS["sin"]
    x0 = np.array([0.9])
    h = 1e-2
    D = np.array([[(f(x0 + c * h) - f(x0 - c * h))[0] / (2 * c * h) for c in (1, .5, .25)]])
    value, err = _numdiff.richardson(D)
    assert abs(D[0, -1] - df(x0)[0]) > 1e-7
    assert abs(value[0] - df(x0)[0]) < 1e-12
    assert abs(value[0] - df(x0)[0]) <= err[0], "the error estimate bounds the actual error"


def test_steps_follow_dtype_and_magnitude():
    x = np.array([0.0, 0.5, 10.0, -1000.0])
    h = element_steps(x, "central")
    b = np.finfo(np.float64).eps ** (1 / 3)
    np.testing.assert_allclose(h, b * np.array([1.0, 1.0, 10.0, 1000.0]))
    assert base_step("central", np.float32) > 100 * base_step("central", np.float64)
    assert np.all(element_steps(x, "central", eps=1e-4) == 1e-4)


def test_target_is_restored_when_forward_raises():
    arr = np.array([1.0, 2.0, 3.0])
    calls = []

    def ev(i):
        calls.append(i)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return arr * 2

    with pytest.raises(RuntimeError):
        _numdiff.central_differences(ev, arr, np.ones(3), np.arange(3), np.full(3, 1e-3))
    assert np.array_equal(arr, [1.0, 2.0, 3.0])
