"""``gradcheck.testing.strategies`` produces what its docstrings promise."""

import inspect
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings, strategies as st
from hypothesis.errors import InvalidArgument

import layers
from gradcheck.testing.strategies import (EDGE_LARGE, EDGE_TINY, float_arrays, layer_cases,
                                  parameters_for, shapes_2d, shapes_4d)
from gradcheck.gate.suite import SPECS

FIND = settings(database=None, max_examples=500, derandomize=True, phases=[Phase.generate])


def test_import_gradcheck_does_not_import_hypothesis():
    code = "import sys, gradcheck; sys.exit('hypothesis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@given(shapes_2d(min_n=2, max_n=5, min_d=3, max_d=4))
def test_shapes_2d_respect_bounds(shape):
    assert len(shape) == 2 and 2 <= shape[0] <= 5 and 3 <= shape[1] <= 4


@given(shapes_4d(min_n=1, max_n=2, min_c=2, max_c=3, min_hw=3, max_hw=5))
def test_shapes_4d_respect_bounds(shape):
    N, C, H, W = shape
    assert 1 <= N <= 2 and 2 <= C <= 3 and 3 <= H <= 5 and 3 <= W <= 5


@pytest.mark.parametrize("call", [lambda: shapes_2d(min_n=0), lambda: shapes_2d(min_d=3, max_d=2),
                                  lambda: shapes_4d(max_hw=1.5)])
def test_shape_bounds_are_validated(call):
    with pytest.raises(InvalidArgument, match="min_"):
        call()


@given(st.data(), st.sampled_from([np.float64, np.float32]), st.sampled_from([0.0, 0.01, 0.3]),
       st.sampled_from([0.5, 10.0, 1e3]))
def test_float_arrays_are_finite_and_within_the_magnitudes(data, dtype, low, high):
    shape = data.draw(shapes_2d(max_n=4, max_d=4) | shapes_4d(max_hw=3))
    x = data.draw(float_arrays(shape, dtype=dtype, min_magnitude=low, max_magnitude=high))
    assert x.shape == shape and x.dtype == dtype
    assert np.all(np.isfinite(x))
    assert np.all(np.abs(x) >= low) and np.all(np.abs(x) <= high)
    tiny = np.finfo(dtype).tiny
    assert np.all((x == 0) | (np.abs(x) >= tiny))  # no subnormals


@given(st.data(), st.sampled_from([np.float64, np.float32]), st.sampled_from([0.05, 0.2]))
def test_away_from_kinks_keeps_values_apart_and_off_zero(data, dtype, margin):
    shape = data.draw(shapes_2d(max_n=6, max_d=6) | shapes_4d(max_hw=4))
    x = data.draw(float_arrays(shape, dtype=dtype, away_from_kinks=True, kink_margin=margin))
    assert x.shape == shape and x.dtype == dtype
    tol = 1 - 1e-6  # rounding to the dtype
    assert np.all(np.abs(x) >= margin * tol)
    if x.size > 1:
        assert np.min(np.diff(np.sort(x.ravel()))) >= margin * tol


@given(float_arrays((3, 3), away_from_kinks=True, max_magnitude=2.0))
def test_away_from_kinks_stays_within_max_magnitude_when_there_is_room(x):
    assert np.max(np.abs(x)) <= 2.0


@given(float_arrays(shapes_4d(max_hw=2)))
def test_shape_may_be_a_strategy(x):
    assert x.ndim == 4 and x.shape[2] <= 2


@pytest.mark.parametrize("kind, predicate", [
    ("large", lambda a: np.max(np.abs(a)) > 10.0 * 10),
    ("tiny", lambda a: 0 < np.max(np.abs(a)) < 0.01),
    ("constant column", lambda a: np.ptp(a[:, 1]) == 0 and np.ptp(a[:, 0]) > 0),
])
def test_edge_cases_include_each_kind(kind, predicate):
    x = find(float_arrays((4, 3), edge_cases=True), predicate, settings=FIND)
    assert np.all(np.isfinite(x))
    if kind == "large":
        assert np.max(np.abs(x)) <= 10.0 * EDGE_LARGE
    if kind == "tiny":
        assert np.min(np.abs(x)) >= 0.01 * EDGE_TINY * (1 - 1e-12)


@given(float_arrays((3, 4), away_from_kinks=True, edge_cases=True))
def test_edge_cases_away_from_kinks_keep_values_apart(x):
    assert np.all(np.abs(x) >= 0.05 * (1 - 1e-12))
    assert np.min(np.diff(np.sort(x.ravel()))) >= 0.05 * (1 - 1e-12)


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": np.int64}, "dtype"), ({"min_magnitude": 2.0, "max_magnitude": 1.0}, "magnitude"),
    ({"max_magnitude": np.inf}, "magnitude"), ({"kink_margin": 0.0}, "kink_margin"),
])
def test_float_arrays_validates_arguments(kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        float_arrays((2, 2), **kwargs)


LAYER_SHAPES = {
    "Affine": [(2, 3), (2, 2, 3, 3)], "Relu": [(2, 3)], "Sigmoid": [(2, 3)], "Tanh": [(2, 3)],
    "SoftmaxWithLoss": [(3, 4), (1, 1)], "Dropout": [(2, 3)],
    "Convolution": [(2, 3, 4, 4), (1, 1, 1, 1)], "Pooling": [(1, 2, 4, 5), (1, 1, 1, 1)],
    "BatchNormalization": [(3, 4), (2, 2, 2, 2)], "SpatialBatchNormalization": [(2, 3, 2, 2)],
    "LayerNorm": [(2, 5), (2, 2, 3, 3)], "GroupNorm": [(2, 6, 2, 2), (1, 1, 1, 1)],
}


@pytest.mark.parametrize("name, shape", [(n, s) for n, shapes in LAYER_SHAPES.items()
                                         for s in shapes])
@given(data=st.data())
def test_parameters_for_builds_a_working_layer(name, shape, data):
    kwargs = data.draw(parameters_for(name, shape))
    layer = getattr(layers, name)(**kwargs)
    x = np.random.default_rng(0).normal(size=shape)
    out = layer.forward(x)
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape and np.all(np.isfinite(out))
    for p in ("W", "b", "gamma", "beta"):
        if p in kwargs:
            assert kwargs[p].dtype == np.float64 and np.max(np.abs(kwargs[p])) <= 2.0
            assert getattr(layer, "d" + p).shape == kwargs[p].shape
    if "running_var" in kwargs:
        assert (kwargs["running_mean"] is None) == (kwargs["running_var"] is None)
        assert kwargs["running_var"] is None or np.all(kwargs["running_var"] >= 0.25)


@pytest.mark.parametrize("name, shape, match", [
    ("Sequential", (2, 3), "no parameter strategy"), ("Convolution", (2, 3), "4 dimensions"),
    ("SoftmaxWithLoss", (2, 3, 4), "2 dimensions"), ("Affine", (3,), "at least 2"),
])
def test_parameters_for_validates_arguments(name, shape, match):
    with pytest.raises(InvalidArgument, match=match):
        parameters_for(name, shape)


@given(layer_cases())
def test_layer_cases_are_complete_and_runnable(case):
    layer, x, train_flg = case
    assert isinstance(train_flg, bool) and x.dtype == np.float64
    assert any(x.shape == tuple(sh) and train_flg in s.modes for s in SPECS for sh in s.shapes)
    if "train_flg" in inspect.signature(layer.forward).parameters:
        out = layer.forward(x, train_flg)
    else:
        out = layer.forward(x)
    assert layer.backward(np.ones_like(out)).shape == x.shape


@pytest.mark.parametrize("name, mode", [(s.name, m) for s in SPECS for m in s.modes])
@settings(max_examples=2)
@given(data=st.data())
def test_layer_cases_cover_every_spec_and_mode(name, mode, data):
    spec = next(s for s in SPECS if s.name == name)
    layer, x, train_flg = data.draw(layer_cases([name], modes=[mode]))
    assert train_flg is mode and x.shape in [tuple(s) for s in spec.shapes]


def test_layer_cases_validates_its_arguments():
    with pytest.raises(InvalidArgument, match="spec names"):
        layer_cases(["NoSuchLayer"])
    with pytest.raises(InvalidArgument, match="modes"):
        layer_cases(["Relu"], modes=[False])


class _Scale32:
    """A float32 layer whose backward casts its parameter gradient to float32 (rounded at
    ~3e-8 relative): every strategy allows for that rounding, none is fooled by a 1e-3 error."""

    def __init__(self, wrong=1.0):
        self.g = np.random.default_rng(0).normal(size=3).astype(np.float32)
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return x * self.g

    def backward(self, dout):
        dg = (dout * self.x).sum(0)
        dg[1] *= self.wrong
        self.dg = dg.astype(np.float32)
        return dout * self.g


@pytest.mark.parametrize("strategy", ["elementwise", "auto", "projection", "jacobian"])
def test_a_float32_cast_gradient_gets_the_same_verdict_under_every_strategy(strategy):
    from gradcheck import check_layer

    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    right = check_layer(_Scale32(), x, strategy=strategy)
    assert {r.name: r.verdict for r in right.results} == {"x": "PASS", "g": "PASS"}, str(right)
    wrong = check_layer(_Scale32(wrong=1.001), x, strategy=strategy)
    assert wrong.result("g").verdict == "FAIL", str(wrong)
