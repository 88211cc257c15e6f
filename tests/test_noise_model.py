"""The noise model and the error estimates, against known truths and against scipy.

* ECnoise (Moré and Wild 2011) recovers the standard deviation of noise added
  to a smooth function, says "spacing too small" for constant values and
  "too large" for a smooth function without noise;
* the measured noise of a layer follows the precision it really computes in
  (a float32 cast inside a float64 layer), not the dtype it answers in;
* the extrapolation is exact on polynomials of the degree it removes, and
  both its value and its error estimate are calibrated against
  ``scipy.differentiate.derivative`` on smooth functions.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.differentiate import derivative

from gradcheck import check_layer
from gradcheck.engine import methods
from gradcheck.engine.noise import ecnoise, measure_noise
from gradcheck.engine.refine import extrapolate


@given(sigma=st.floats(1e-14, 1e-3), slope=st.floats(-10.0, 10.0),
       curve=st.floats(-10.0, 10.0), seed=st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_ecnoise_recovers_the_noise_added_to_a_smooth_function(sigma, slope, curve, seed):
    """Averaged over 40 tables, the estimate is within a factor 1.6 of the true sigma.

    The smooth part (a quadratic at spacing 1e-6, so far below sigma from the
    second differences on) vanishes in the difference table; noise of standard
    deviation sigma has ``E[(Delta^k f)^2] = binom(2k, k) sigma^2`` at every level.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(8) * 1e-6
    estimates = []
    for _ in range(40):
        f = 1.0 + slope * t + curve * t ** 2 + sigma * rng.standard_normal(8)
        noise, level, inform = ecnoise(f)
        if inform == 1:
            estimates.append(noise)
    assert len(estimates) >= 30  # noise is detected in most tables
    ratio = np.sqrt(np.mean(np.square(estimates))) / sigma
    assert 1 / 1.6 < ratio < 1.6


def test_ecnoise_says_when_the_spacing_is_wrong():
    assert ecnoise(np.full(8, 3.0))[2] == 2  # all differences zero: spacing too small
    t = np.arange(8) * 0.5
    assert ecnoise(np.exp(t))[2] == 3  # smooth, no noise, large spacing: never settles


class _Cube:
    """``out = x**3`` computed in ``dtype``, answered in float64."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.x = np.asarray(x, self.dtype)
        return np.asarray(self.x ** 3, np.float64)

    def backward(self, dout):
        return np.asarray(3 * self.x.astype(np.float64) ** 2 * dout)


def test_the_measured_noise_follows_the_precision_the_layer_computes_in():
    """A float32 cast inside shows as float32 noise (about 2**29 times float64's)."""
    x = np.random.default_rng(0).uniform(0.5, 2.0, (6, 5))
    dout = np.random.default_rng(1).standard_normal((6, 5))
    n64 = check_layer(_Cube(np.float64), x, dout=dout).result("x").noise
    n32 = check_layer(_Cube(np.float32), x, dout=dout).result("x").noise
    assert 2.0 ** 29 / 100 < n32 / n64 < 2.0 ** 29 * 100


@given(coef=st.lists(st.floats(-5.0, 5.0), min_size=6, max_size=6),
       x=st.floats(-2.0, 2.0), h=st.floats(1e-3, 1e-1))
@settings(max_examples=50, deadline=None)
def test_extrapolation_is_exact_on_quintics(coef, x, h):
    """Central differences of a quintic are ``f'(x) + c2 h^2 + c4 h^4``: three steps
    remove both terms, so the extrapolated value is ``f'(x)`` to rounding."""
    p = np.polynomial.Polynomial(coef)
    factors = [2.0, 1.0, 0.5]
    Ds = [np.array([(p(x + a * h) - p(x - a * h)) / (2 * a * h)]) for a in factors]
    value, _ = extrapolate(Ds, factors)
    scale = sum(abs(c) * max(1.0, abs(x) + 2 * h) ** k for k, c in enumerate(coef))
    assert abs(value[0] - p.deriv()(x)) <= 1e-9 * scale / h


SMOOTH = {
    "sin": (np.sin, np.cos),
    "exp(x/2)": (lambda x: np.exp(x / 2), lambda x: np.exp(x / 2) / 2),
    "tanh(3x)": (lambda x: np.tanh(3 * x), lambda x: 3 / np.cosh(3 * x) ** 2),
    "1/(1+x^2)": (lambda x: 1 / (1 + x ** 2), lambda x: -2 * x / (1 + x ** 2) ** 2),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_richardson_calibrated_against_scipy_differentiate(name):
    """On smooth functions, the engine's Richardson value and error estimate behave as
    scipy's: both values are within their own estimates (plus rounding) of the truth,
    and within the two estimates combined of each other."""
    f, df = SMOOTH[name]
    x = np.linspace(-1.3, 1.7, 25)
    h = 1e-2
    m = methods.get("richardson")
    D = np.stack([(f(x + a * h) - f(x + b * h)) / ((a - b) * h) for a, b in m.pairs], axis=1)
    ours, ours_err = m.combine(D)
    ref = derivative(f, x)
    assert ref.success.all()
    truth = df(x)
    rounding = 1e-13
    assert np.all(np.abs(ours - truth) <= ours_err + rounding)
    assert np.all(np.abs(ref.df - truth) <= ref.error + rounding)
    assert np.all(np.abs(ours - ref.df) <= ours_err + ref.error + 2 * rounding)


class _Elementwise:
    """``out = f(x)`` elementwise, with the exact backward."""

    def __init__(self, f, df):
        self.f, self.df = f, df

    def forward(self, x):
        self.x = x.copy()
        return self.f(x)

    def backward(self, dout):
        return dout * self.df(self.x)


@pytest.mark.parametrize("method", ["central", "richardson"])
@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_a_check_agrees_with_scipy_differentiate(name, method):
    """The numerical gradient a check reports equals scipy's derivative (times ``dout``)
    within the check's own tolerances: what the report prints is as accurate as it says."""
    f, df = SMOOTH[name]
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.3, 1.7, (4, 6))
    dout = rng.standard_normal((4, 6))
    r = check_layer(_Elementwise(f, df), x, dout=dout, method=method).result("x")
    assert r.verdict == "PASS"
    ref = derivative(f, x)
    gap = np.abs(np.asarray(r.numerical) - ref.df * dout)
    assert np.all(gap <= np.asarray(r.tolerances) + np.abs(dout) * ref.error)


@pytest.mark.parametrize("dout0", [1.0, -1.0])
def test_an_output_whose_table_crosses_a_kink_is_left_out_whatever_the_sign_of_its_term(dout0):
    """One output crosses the kink of ``|x|`` inside the noise table; the others are smooth.
    It is left out of the rounding estimate, for ``out0 * dout`` of either sign (a negative
    term once hid it, and the noise came out 1e5 times its rounding)."""
    rng = np.random.default_rng(0)
    n = 40
    arr = rng.normal(size=n)
    arr[0] = -3e-9  # the table's first steps cross 0
    W = rng.normal(size=(n, n))

    def evaluate(index=None):
        out = np.tanh(W @ arr)
        out[0] = np.abs(arr[0]) + 1.0
        return out

    out0 = evaluate()
    dout = rng.normal(size=n)
    dout[0] = dout0
    est = measure_noise(evaluate, arr, out0, dout, seed=0, name="x",
                        out_eps=np.finfo(float).eps)
    assert "1 output(s) left out" in est.note
    assert est.relative < 1e-14
