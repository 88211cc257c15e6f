"""Every built-in layer passes ``check_layer`` in every mode; broken ones fail.

Three families of properties:

- the built-in suite (:data:`gradcheck.gate.suite.SPECS`): every spec and mode, drawn
  through :func:`gradcheck.testing.strategies.layer_cases`, passes without warnings;
- random configurations (shapes, parameters, strides, paddings, groups, ...)
  drawn through the other strategies pass;
- deliberately broken variants, one realistic bug each, fail on the target
  the bug is in.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import layers
from gradcheck import check_layer
from gradcheck.testing.strategies import float_arrays, layer_cases, parameters_for, shapes_2d, shapes_4d
from layers import Sequential
from gradcheck.gate.suite import SPECS, get_spec

# the digits networks are fixed (real images, no random draw): tests/test_digits_networks.py
SPEC_MODES = [pytest.param(s.name, m, id=f"{s.name}-{'train' if m else 'eval'}")
              for s in SPECS for m in s.modes if not s.name.startswith("Digits-")]


def expected_targets(layer):
    names = {"x"} | set(getattr(layer, "param_names", []))
    return names | {p for p in ("W", "b", "gamma", "beta")
                    if isinstance(getattr(layer, p, None), np.ndarray)}


# The spec's shapes are fixed, only the seed varies: 10 draws per spec and mode
# (the most expensive property of the suite; 25 in the "ci" profile elsewhere).
@pytest.mark.parametrize("name, train_flg", SPEC_MODES)
@settings(max_examples=10)
@given(data=st.data())
def test_builtin_layer_passes(name, train_flg, data):
    layer, x, flg = data.draw(layer_cases([name], modes=[train_flg]))
    report = check_layer(layer, x, train_flg=flg)
    assert report.passed, str(report)
    assert not report.warnings, str(report)
    assert {r.name for r in report.results} == expected_targets(layer)


# -- random configurations through the strategies ------------------------------

small_4d = shapes_4d(max_n=2, max_c=2, min_hw=1, max_hw=4)
INPUTS = {  # layer -> (input shapes, float_arrays keywords, modes)
    "Affine": (shapes_2d(max_n=4, max_d=5) | small_4d, {}, (True,)),
    "Relu": (shapes_2d() | small_4d, {"away_from_kinks": True}, (True,)),
    "Sigmoid": (shapes_2d() | small_4d, {}, (True,)),
    "Tanh": (shapes_2d() | small_4d, {"max_magnitude": 5.0}, (True,)),
    "SoftmaxWithLoss": (shapes_2d(max_n=5, max_d=5), {}, (True,)),
    "Dropout": (shapes_2d() | small_4d, {}, (True, False)),
    "Convolution": (small_4d, {}, (True,)),
    "Pooling": (shapes_4d(max_n=2, max_c=2, max_hw=5), {"away_from_kinks": True}, (True,)),
    "BatchNormalization": (shapes_2d(min_n=2, max_n=6, max_d=4)
                           | shapes_4d(min_n=2, max_n=3, max_c=2, max_hw=2), {}, (True, False)),
    "SpatialBatchNormalization": (shapes_4d(min_n=2, max_n=3, max_c=3, max_hw=3), {},
                                  (True, False)),
    "LayerNorm": (shapes_2d(max_d=6) | small_4d, {}, (True,)),
    "GroupNorm": (shapes_4d(max_n=2, max_c=4, max_hw=3), {}, (True,)),
}


@pytest.mark.parametrize("name, train_flg", [pytest.param(n, m, id=f"{n}-{m and 'train' or 'eval'}")
                                             for n, (_, _, modes) in INPUTS.items()
                                             for m in modes])
@given(data=st.data())
def test_random_configuration_passes(name, train_flg, data):
    shapes, array_kwargs, _ = INPUTS[name]
    shape = data.draw(shapes, label="shape")
    kwargs = data.draw(parameters_for(name, shape), label="parameters")
    x = data.draw(float_arrays(shape, **array_kwargs), label="x")
    layer = getattr(layers, name)(**kwargs)
    # random parameters can make a gradient zero (W = 0 before x): INCONCLUSIVE, never FAIL
    report = check_layer(layer, x, train_flg=train_flg, inconclusive="pass")
    assert report.passed, str(report)
    assert {r.name for r in report.results} <= expected_targets(layer)


# -- broken layers ---------------------------------------------------------------

class AffineMeanBias(layers.Affine):
    """db averaged over the batch instead of summed."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.db = dout.mean(axis=0)
        return dx


class SigmoidNoOneMinus(layers.Sigmoid):
    """dx = dout * y: the (1 - y) factor forgotten."""

    def backward(self, dout):
        return dout * self.out


class TanhFromInput(layers.Tanh):
    """1 - x**2 instead of 1 - y**2 (the input kept instead of the output)."""

    def forward(self, x):
        self.x = x
        return super().forward(x)

    def backward(self, dout):
        return dout * (1.0 - self.x**2)


class SoftmaxNoBatchMean(layers.SoftmaxWithLoss):
    """The loss is a batch mean but the gradient is not divided by N."""

    def backward(self, dout=1.0):
        return super().backward(dout) * self._onehot.shape[0]


class ConvWrongWeightLayout(layers.Convolution):
    """dW reshaped from (C*FH*FW, F) without the transpose."""

    def backward(self, dout):
        dx = super().backward(dout)
        F, C, FH, FW = self.W.shape
        self.dW = (self.col.T @ dout.transpose(0, 2, 3, 1).reshape(-1, F)).reshape(F, C, FH, FW)
        return dx


class MaxPoolEverywhere(layers.Pooling):
    """The window's gradient spread over the whole window instead of the arg-max."""

    def backward(self, dout):
        mode, self.mode = self.mode, "avg"
        try:
            return super().backward(dout) * self.pool_h * self.pool_w
        finally:
            self.mode = mode


class DropoutUnscaledBackward(layers.Dropout):
    """Forward scales the kept units by 1/(1-p), backward forgets it."""

    def backward(self, dout):
        return dout * self.mask if self.mask is not None else dout.copy()


class SpatialBNTrainFormulaInEval(layers.SpatialBatchNormalization):
    """The seed's bug: eval mode backpropagates through batch statistics."""

    def _backward(self, dout):
        train_flg, self.train_flg = self.train_flg, True
        try:
            return super()._backward(dout)
        finally:
            self.train_flg = train_flg


class LayerNormNoMeanTerm(layers.LayerNorm):
    """dx without the mean(g) term."""

    def backward(self, dout):
        dx = super().backward(dout)
        axes = tuple(range(1, dout.ndim))
        return dx + np.mean(dout * self.gamma, axis=axes, keepdims=True) / self.std


class GroupNormDgammaWithoutXhat(layers.GroupNorm):
    """dgamma = sum(dout): the normalised input forgotten."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dgamma = self.dbeta.copy()
        return dx


def _tanh_in_mlp(seq):
    seq.layers[1].__class__ = TanhFromInput
    return seq


BROKEN = [  # (spec, modes, broken class or patch, targets that must fail)
    ("Affine-2d", (True,), AffineMeanBias, {"b"}),
    ("Sigmoid", (True,), SigmoidNoOneMinus, {"x"}),
    ("Tanh", (True,), TanhFromInput, {"x"}),
    ("SoftmaxWithLoss-index", (True,), SoftmaxNoBatchMean, {"x"}),
    ("Convolution", (True,), ConvWrongWeightLayout, {"W"}),
    ("Pooling-max-2x2", (True,), MaxPoolEverywhere, {"x"}),
    ("Dropout", (True,), DropoutUnscaledBackward, {"x"}),
    ("SpatialBatchNormalization", (False,), SpatialBNTrainFormulaInEval, {"x"}),
    ("LayerNorm-4d", (True,), LayerNormNoMeanTerm, {"x"}),
    ("GroupNorm", (True,), GroupNormDgammaWithoutXhat, {"gamma"}),
    ("Sequential-mlp", (True, False), _tanh_in_mlp, {"x", "W_0", "b_0"}),
]


@pytest.mark.parametrize("name, modes, broken, failing", BROKEN,
                         ids=[getattr(b[2], "__name__", b[0]) for b in BROKEN])
@settings(max_examples=5)
@given(data=st.data())
def test_broken_layer_fails_on_the_buggy_target(name, modes, broken, failing, data):
    train_flg = data.draw(st.sampled_from(modes), label="train_flg")
    layer, x, _ = data.draw(layer_cases([name], modes=[train_flg]))
    if isinstance(broken, type):
        layer.__class__ = broken
    else:
        layer = broken(layer)
    report = check_layer(layer, x, train_flg=train_flg)
    assert not report.passed, str(report)
    assert failing <= {r.name for r in report.results if not r.passed}, str(report)
    with pytest.raises(AssertionError, match="FAIL"):
        report.raise_if_failed()


def test_books_relu_passes_but_warns_about_dout_modified_in_place():
    class BookRelu:
        def forward(self, x):
            self.mask = x <= 0
            out = x.copy()
            out[self.mask] = 0
            return out

        def backward(self, dout):
            dout[self.mask] = 0
            return dout

    layer, x = get_spec("Relu").make((4, 5), np.random.default_rng(0), True)
    report = check_layer(BookRelu(), x)
    assert report.passed
    assert any("in place" in w for w in report.warnings), report.warnings


def test_sequential_reports_children_parameters_by_their_aliases():
    seq, x = get_spec("Sequential-cnn").make((2, 2, 4, 4), np.random.default_rng(0), True)
    report = check_layer(seq, x)
    assert [r.name for r in report.results] == ["x"] + seq.param_names
    assert isinstance(seq, Sequential) and report.passed
