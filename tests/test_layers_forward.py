"""Invariants of the layers in ``layers/``: what the forward pass promises.

Gradients are checked in ``test_layers_gradcheck.py`` and against PyTorch in
``test_oracle_torch.py``; here: normalisation statistics, probabilities,
Dropout's modes, Sequential's aliasing, output shapes, and the protocol
(``x`` and ``dout`` untouched, gradient shapes).
"""

import inspect

import numpy as np
import pytest
from hypothesis import given, strategies as st

import layers
from gradcheck.testing.strategies import float_arrays, layer_cases, parameters_for, shapes_2d, shapes_4d
from layers import (Affine, BatchNormalization, Convolution, Dropout, GroupNorm, LayerNorm,
                    Pooling, Relu, Sequential, Sigmoid, SoftmaxWithLoss,
                    SpatialBatchNormalization, Tanh)
from layers.batchnorm import BN_EPS
from gradcheck.gate.suite import SPECS, get_spec

SPEC_NAMES = [spec.name for spec in SPECS]


def _forward(layer, x, train_flg=True):
    if "train_flg" in inspect.signature(layer.forward).parameters:
        return layer.forward(x, train_flg=train_flg)
    return layer.forward(x)


def _normalised(x, axes, eps):
    """Expected mean 0 and variance ``var / (var + eps)`` over ``axes``."""
    var = np.var(x, axis=axes)
    return var / (var + eps)


# -- the protocol, for every built-in configuration ---------------------------

@pytest.mark.parametrize("name", SPEC_NAMES)
def test_protocol_x_and_dout_untouched_and_gradient_shapes(name):
    spec = get_spec(name)
    for train_flg in spec.modes:
        layer, x = spec.make(spec.shapes[0], np.random.default_rng(1), train_flg)
        x_before = x.copy()
        out = _forward(layer, x, train_flg)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        dout = np.random.default_rng(2).normal(size=out.shape)
        dout_before = dout.copy()
        dx = layer.backward(dout)
        assert dx.shape == x.shape
        assert np.array_equal(x, x_before) and np.array_equal(dout, dout_before)
        for p in ("W", "b", "gamma", "beta"):
            if isinstance(getattr(layer, p, None), np.ndarray):
                assert getattr(layer, "d" + p).shape == getattr(layer, p).shape, p


def test_every_layer_is_exported():
    expected = {"Affine", "BatchNormalization", "Convolution", "Dropout", "GroupNorm",
                "LayerNorm", "Pooling", "Relu", "Sequential", "Sigmoid", "SoftmaxWithLoss",
                "SpatialBatchNormalization", "Tanh"}
    assert set(layers.__all__) == expected
    assert all(hasattr(layers, name) for name in expected)


# -- normalisation statistics ---------------------------------------------------

@given(float_arrays(shapes_2d(min_n=2)))
def test_batchnorm_train_output_is_standardised_per_feature(x):
    D = x.shape[1]
    out = BatchNormalization(np.ones(D), np.zeros(D)).forward(x)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(out.var(axis=0), _normalised(x, 0, BN_EPS), rtol=1e-9, atol=1e-9)


@given(float_arrays(shapes_4d(min_n=1, max_hw=4)), st.booleans())
def test_spatial_batchnorm_standardises_each_channel(x, train_flg):
    C = x.shape[1]
    bn = SpatialBatchNormalization(np.ones(C), np.zeros(C), 0.9, np.zeros(C), np.ones(C))
    out = bn.forward(x, train_flg)
    if train_flg:
        np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-9)
        np.testing.assert_allclose(out.var(axis=(0, 2, 3)), _normalised(x, (0, 2, 3), BN_EPS),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(axis=(0, 2, 3)), atol=1e-12)
    else:  # running mean 0, running variance 1: (almost) the identity
        np.testing.assert_allclose(out, x / np.sqrt(1 + BN_EPS), rtol=1e-14)
        assert np.array_equal(bn.running_mean, np.zeros(C))


def test_spatial_batchnorm_is_the_seed_batchnorm_on_channels_last_rows():
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 5))
    gamma, beta = np.array([0.5, 2.0]), np.array([1.0, -1.0])
    out = SpatialBatchNormalization(gamma, beta).forward(x)
    rows = x.transpose(0, 2, 3, 1).reshape(-1, 2)
    ref = BatchNormalization(gamma, beta).forward(rows).reshape(3, 4, 5, 2).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, ref, rtol=1e-13, atol=1e-13)


@given(float_arrays(shapes_4d(max_c=4, max_hw=4)))
def test_layernorm_standardises_each_sample(x):
    out = LayerNorm(np.ones(x.shape[1:]), np.zeros(x.shape[1:])).forward(x)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-9)
    np.testing.assert_allclose(out.var(axis=(1, 2, 3)), _normalised(x, (1, 2, 3), 1e-5),
                               rtol=1e-9, atol=1e-9)


@given(float_arrays(shapes_4d(min_c=1, max_c=6, max_hw=3)), st.data())
def test_groupnorm_standardises_each_group(x, data):
    N, C = x.shape[:2]
    G = data.draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
    out = GroupNorm(G, np.ones(C), np.zeros(C)).forward(x).reshape(N, G, -1)
    np.testing.assert_allclose(out.mean(axis=2), 0, atol=1e-9)
    np.testing.assert_allclose(out.var(axis=2), _normalised(x.reshape(N, G, -1), 2, 1e-5),
                               rtol=1e-9, atol=1e-9)


def test_groupnorm_with_one_group_is_layernorm_with_channel_parameters():
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=3), rng.normal(size=3)
    out = GroupNorm(1, gamma, beta).forward(x)
    ln = LayerNorm(np.broadcast_to(gamma[:, None, None], (3, 2, 2)).copy(),
                   np.broadcast_to(beta[:, None, None], (3, 2, 2)).copy())
    np.testing.assert_allclose(out, ln.forward(x), rtol=1e-13, atol=1e-13)


# -- softmax, activations ---------------------------------------------------------

@given(float_arrays(shapes_2d(), edge_cases=True), st.data())
def test_softmax_probabilities_sum_to_one_and_loss_is_cross_entropy(x, data):
    kwargs = data.draw(parameters_for("SoftmaxWithLoss", x.shape))
    layer = SoftmaxWithLoss(**kwargs)
    loss = layer.forward(x)
    assert loss.shape == () and isinstance(loss, np.ndarray) and np.isfinite(loss)
    np.testing.assert_allclose(layer.y.sum(axis=1), 1.0, rtol=1e-14)
    assert np.all(layer.y >= 0) and loss >= 0
    t = kwargs["t"]
    labels = t if t.ndim == 1 else t.argmax(axis=1)
    shifted = x - x.max(axis=1, keepdims=True)
    log_y = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loss, -log_y[np.arange(len(x)), labels].mean(), rtol=1e-12,
                               atol=1e-12)
    dx = layer.backward(np.asarray(2.0))
    np.testing.assert_allclose(dx.sum(axis=1), 0, atol=1e-14 * len(x))


def test_softmax_loss_needs_labels():
    with pytest.raises(ValueError, match="labels t are not set"):
        SoftmaxWithLoss().forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        SoftmaxWithLoss(np.array([0, 3])).forward(np.zeros((2, 3)))


def test_activations_are_stable_at_extremes():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    np.testing.assert_array_equal(Sigmoid().forward(x)[[0, 2, 4]], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(Tanh().forward(x)[[0, 4]], [-1.0, 1.0])
    relu = Relu()
    assert np.array_equal(relu.forward(x), [0, 0, 0, 50, 1e4])
    dout = np.ones(5)
    assert np.array_equal(relu.backward(dout), [0, 0, 0, 1, 1]) and np.all(dout == 1)


# -- Dropout -------------------------------------------------------------------

@given(float_arrays(shapes_2d()), st.floats(0.0, 0.9), st.integers(0, 2**32 - 1))
def test_dropout_modes(x, p, seed):
    layer = Dropout(p, seed=seed)
    out = layer.forward(x, train_flg=False)
    assert np.array_equal(out, x) and out is not x
    assert np.array_equal(layer.backward(x), x)
    out = layer.forward(x, train_flg=True)
    kept = layer.mask
    np.testing.assert_allclose(out, np.where(kept, x / (1 - p), 0.0), rtol=1e-15)
    np.testing.assert_allclose(layer.backward(np.ones_like(x)), kept / (1 - p), rtol=1e-15)
    book = Dropout(p, seed=seed, scale=False)
    np.testing.assert_allclose(book.forward(x, train_flg=False), x * (1 - p), rtol=1e-15)
    assert np.array_equal(book.forward(x), np.where(book.mask, x, 0.0))


def test_dropout_draws_a_fresh_mask_from_its_own_generator_per_forward():
    x = np.ones((50, 20))
    layer = Dropout(0.5, seed=3)
    state = np.random.get_state()
    first, second = layer.forward(x).copy(), layer.forward(x)
    assert not np.array_equal(first, second)
    assert abs(np.mean(first == 0) - 0.5) < 0.05
    assert np.array_equal(first, Dropout(0.5, seed=3).forward(x))
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG untouched
    with pytest.raises(ValueError, match="dropout_ratio"):
        Dropout(1.0)


# -- Sequential ----------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in SPEC_NAMES if not n.startswith("Sequential")])
def test_sequential_of_one_layer_equals_the_layer(name):
    spec = get_spec(name)
    for train_flg in spec.modes:
        layer, x = spec.make(spec.shapes[0], np.random.default_rng(5), train_flg)
        twin, _ = spec.make(spec.shapes[0], np.random.default_rng(5), train_flg)
        seq = Sequential(twin)
        out = _forward(layer, x, train_flg)
        assert np.array_equal(seq.forward(x, train_flg), out)
        dout = np.random.default_rng(6).normal(size=out.shape)
        assert np.array_equal(seq.backward(dout), layer.backward(dout))
        for p in ("W", "b", "gamma", "beta"):
            if hasattr(layer, "d" + p):
                assert np.array_equal(getattr(seq, f"d{p}_0"), getattr(layer, "d" + p))


def test_sequential_exposes_unique_aliases_of_the_children():
    seq, x = get_spec("Sequential-mlp").make((4, 5), np.random.default_rng(0), True)
    assert seq.param_names == ["W_0", "b_0", "gamma_2", "beta_2", "W_4", "b_4"]
    assert len(set(seq.param_names)) == len(seq.param_names)
    for name in seq.param_names:
        attr, i = name.rsplit("_", 1)
        assert getattr(seq, name) is getattr(seq.layers[int(i)], attr)
    assert seq.rng_3 is seq.layers[3].rng and seq.dW_0 is None
    seq.W_0 += 0.5  # in place: the child sees it
    assert np.array_equal(seq.layers[0].W, seq.W_0)
    loss = seq.forward(x)
    assert loss.shape == ()
    seq.backward(np.asarray(1.0))
    assert seq.dW_0 is seq.layers[0].dW and seq.dW_0.shape == seq.W_0.shape
    assert seq.running_mean_2 is seq.layers[2].running_mean is not None
    new = np.zeros_like(seq.W_4)
    seq.W_4 = new  # assignment: the child gets the same object
    assert seq.layers[4].W is new


def test_sequential_passes_train_flg_only_to_layers_that_accept_it():
    bn = BatchNormalization(np.ones(3), np.zeros(3), 0.9, np.zeros(3), np.ones(3))
    seq = Sequential(Affine(np.eye(3), np.zeros(3)), bn, Dropout(0.5))
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(seq.forward(x, train_flg=False), x / np.sqrt(1 + BN_EPS))
    assert not bn.train_flg
    seq.forward(x, train_flg=True)
    assert bn.train_flg and seq.layers[2].mask is not None


def test_nested_sequential_names():
    inner = Sequential(Affine(np.eye(2), np.zeros(2)), Tanh())
    outer = Sequential(Relu(), inner)
    assert outer.param_names == ["W_0_1", "b_0_1"]
    assert outer.W_0_1 is inner.layers[0].W


# -- output shapes -------------------------------------------------------------

@given(shapes_4d(max_n=2, max_hw=6).flatmap(
    lambda s: st.tuples(st.just(s), parameters_for("Convolution", s))))
def test_convolution_output_shape_and_bias(case):
    shape, kwargs = case
    conv = Convolution(**kwargs)
    F, C, FH, FW = kwargs["W"].shape
    S, P = kwargs["stride"], kwargs["pad"]
    out = conv.forward(np.zeros(shape))
    assert out.shape == (shape[0], F, (shape[2] + 2 * P - FH) // S + 1,
                         (shape[3] + 2 * P - FW) // S + 1)
    np.testing.assert_array_equal(out, np.broadcast_to(kwargs["b"][:, None, None], out.shape[1:])
                                  [None].repeat(shape[0], 0))


@given(shapes_4d(max_n=2, max_hw=6).flatmap(
    lambda s: st.tuples(float_arrays(s, away_from_kinks=True), parameters_for("Pooling", s))))
def test_pooling_output_shape_and_values(case):
    x, kwargs = case
    pool = Pooling(**kwargs)
    ph, pw, S, P = kwargs["pool_h"], kwargs["pool_w"], kwargs["stride"], kwargs["pad"]
    out = pool.forward(x)
    N, C, H, W = x.shape
    assert out.shape == (N, C, (H + 2 * P - ph) // S + 1, (W + 2 * P - pw) // S + 1)
    fill = -np.inf if kwargs["mode"] == "max" else 0.0
    xp = np.pad(x, [(0, 0), (0, 0), (P, P), (P, P)], constant_values=fill)
    reduce = np.max if kwargs["mode"] == "max" else np.mean
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            window = xp[:, :, i * S:i * S + ph, j * S:j * S + pw]
            np.testing.assert_allclose(out[:, :, i, j], reduce(window, axis=(2, 3)), rtol=1e-14)


def test_max_pooling_routes_ties_to_the_first_maximum():
    pool = Pooling(2, 2, stride=2)
    pool.forward(np.array([[[[1.0, 3.0], [3.0, 3.0]]]]))
    assert np.array_equal(pool.backward(np.array([[[[1.0]]]])), [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_affine_flattens_and_restores_the_input_shape():
    x = np.random.default_rng(0).normal(size=(2, 3, 2, 2))
    layer = Affine(np.ones((12, 4)), np.zeros(4))
    assert layer.forward(x).shape == (2, 4)
    assert layer.backward(np.ones((2, 4))).shape == x.shape
    with pytest.raises(ValueError, match="expected 12 features"):
        layer.forward(np.zeros((2, 5)))


@given(layer_cases(modes=[False]))
def test_eval_forward_is_deterministic_and_leaves_running_stats(case):
    layer, x, _ = case
    before = {k: v.copy() for k, v in vars(layer).items()
              if k.startswith("running_") and isinstance(v, np.ndarray)}
    first = _forward(layer, x, False).copy()
    assert np.array_equal(_forward(layer, x, False), first)
    for k, v in before.items():
        assert np.array_equal(getattr(layer, k), v), k
