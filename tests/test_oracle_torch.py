"""Forward and backward of the layers against PyTorch autograd, in float64.

An independent oracle: every layer that ``torch.nn.functional`` defines must
agree with it to ``rtol=1e-10`` and ``atol=1e-12 * scale`` on
hypothesis-generated inputs and parameters, in train and eval mode. ``scale``
is the reference's largest magnitude, or for the normalisation layers the
magnitude of the terms the result is computed from: centring ``x - mu`` of a
(nearly) constant feature leaves only rounding noise of size ``u |x|``,
amplified by ``1 / sqrt(var + eps)``, and two correct implementations then
agree only to ``u |x| / std`` (the condition number of the centring).

Running statistics are compared through the documented mapping: the seed's
momentum ``m`` is PyTorch's ``1 - m``, and PyTorch updates ``running_var``
with the unbiased batch variance.
"""

import json
import os

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from gradcheck.testing.strategies import float_arrays, parameters_for, shapes_2d, shapes_4d
from layers import (Affine, BatchNormalization, Convolution, GroupNorm, LayerNorm, Pooling,
                    Relu, Sigmoid, SoftmaxWithLoss, SpatialBatchNormalization, Tanh)
from layers.batchnorm import BN_EPS

torch = pytest.importorskip("torch", reason="the PyTorch oracle needs torch (extra 'oracle')")
F = torch.nn.functional

pytestmark = pytest.mark.oracle

#: Worst discrepancy seen per comparison, max|ours - ref| / scale (diagnostics;
#: written to $GRADCHECK_ORACLE_REPORT when set).
WORST = {}


@pytest.fixture(scope="module", autouse=True)
def _report_worst():
    yield
    path = os.environ.get("GRADCHECK_ORACLE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(WORST, f, indent=1, sort_keys=True)


def T(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def close(name, ours, ref, scale=0.0):
    """``ours == ref`` to rtol 1e-10, atol 1e-12 * max(max|ref|, scale)."""
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    ours = np.asarray(ours)
    assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
    scale = max(float(np.max(np.abs(ref), initial=0.0)), scale)
    if scale:
        WORST[name] = max(WORST.get(name, 0.0), float(np.max(np.abs(ours - ref))) / scale)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12 * scale, err_msg=name)


def norm_scales(x, centre, var, gamma, beta, dout, axes, eps):
    """Scales of out, dx, dgamma, dbeta of ``gamma * (x - centre) / std + beta``.

    ``centre`` and ``var`` broadcast against ``x``; ``axes`` are the
    normalised axes (their size ``M`` is the group size).
    """
    std = float(np.min(np.sqrt(var + eps)))
    cond = 1.0 + (np.max(np.abs(x)) + np.max(np.abs(centre))) / std
    g, d = float(np.max(np.abs(gamma))), float(np.max(np.abs(dout)))
    M = int(np.prod([x.shape[a] for a in axes]))
    terms = x.size / np.size(gamma)  # summands of each dgamma element
    return {"out": g * cond + np.max(np.abs(beta)), "dx": g * d / std * cond * np.sqrt(M),
            "dgamma": terms * d * cond, "dbeta": terms * d}


def backprop(out, params, dout):
    """Gradients of ``sum(out * dout)`` with respect to ``params`` (None for unused)."""
    return torch.autograd.grad(out, params, grad_outputs=T(dout), allow_unused=True)


def douts(data, shape):
    return data.draw(float_arrays(shape, min_magnitude=0.0, max_magnitude=2.0), label="dout")


def inputs(shape_strategy, **kwargs):
    return float_arrays(shape_strategy, min_magnitude=0.0, **kwargs)


def with_params(name, shape_strategy, **kwargs):
    """``(x, constructor kwargs)`` for layer ``name``."""
    return shape_strategy.flatmap(lambda s: st.tuples(float_arrays(s, **kwargs),
                                                      parameters_for(name, s)))


# -- affine, activations, loss ------------------------------------------------

@given(with_params("Affine", shapes_2d() | shapes_4d(max_hw=3)), st.data())
def test_affine_is_linear(case, data):
    x, kw = case
    layer = Affine(**kw)
    out = layer.forward(x)
    xt, Wt, bt = T(x, True), T(kw["W"], True), T(kw["b"], True)
    ref = F.linear(xt.reshape(x.shape[0], -1), Wt.T, bt)
    close("linear out", out, ref)
    dout = douts(data, out.shape)
    dx = layer.backward(dout)
    gx, gW, gb = backprop(ref, (xt, Wt, bt), dout)
    close("linear dx", dx, gx)
    close("linear dW", layer.dW, gW)
    close("linear db", layer.db, gb)


# dx scale |dout|: both libraries compute the derivative from the output
# (y (1 - y), 1 - y**2), whose absolute error is ~u; once y is close to 1 a
# last-ulp difference of the two forwards is a large *relative* difference.
@pytest.mark.parametrize("cls, fn", [(Relu, F.relu), (Sigmoid, torch.sigmoid),
                                     (Tanh, torch.tanh)], ids=["relu", "sigmoid", "tanh"])
@given(data=st.data())
def test_activation(cls, fn, data):
    # zeros included: at ReLU's kink both sides use the subgradient 0
    x = data.draw(inputs(shapes_2d() | shapes_4d(max_hw=3), max_magnitude=40.0), label="x")
    layer = cls()
    out = layer.forward(x)
    xt = T(x, True)
    ref = fn(xt)
    close(f"{cls.__name__} out", out, ref)
    dout = douts(data, out.shape)
    close(f"{cls.__name__} dx", layer.backward(dout), backprop(ref, (xt,), dout)[0],
          float(np.max(np.abs(dout), initial=0.0)))


@given(with_params("SoftmaxWithLoss", shapes_2d(), min_magnitude=0.0, edge_cases=True),
       st.floats(-3.0, 3.0))
def test_softmax_with_loss_is_cross_entropy(case, dout):
    x, kw = case
    layer = SoftmaxWithLoss(**kw)
    loss = layer.forward(x)
    t = kw["t"]
    target = torch.tensor(t) if t.ndim == 1 else T(t)  # class indices or probabilities
    xt = T(x, True)
    ref = F.cross_entropy(xt, target)
    close("cross_entropy loss", loss, ref)
    dx = layer.backward(np.asarray(dout))
    close("cross_entropy dx", dx, backprop(ref, (xt,), np.asarray(dout))[0])


# -- convolution and pooling ------------------------------------------------------

@given(with_params("Convolution", shapes_4d(max_n=3, max_hw=6), min_magnitude=0.0), st.data())
def test_conv2d(case, data):
    x, kw = case
    layer = Convolution(**kw)
    out = layer.forward(x)
    xt, Wt, bt = T(x, True), T(kw["W"], True), T(kw["b"], True)
    ref = F.conv2d(xt, Wt, bt, stride=kw["stride"], padding=kw["pad"])
    close("conv2d out", out, ref)
    dout = douts(data, out.shape)
    dx = layer.backward(dout)
    gx, gW, gb = backprop(ref, (xt, Wt, bt), dout)
    close("conv2d dx", dx, gx)
    close("conv2d dW", layer.dW, gW)
    close("conv2d db", layer.db, gb)


@given(with_params("Pooling", shapes_4d(max_n=3, max_hw=6), away_from_kinks=True), st.data())
def test_pool2d(case, data):
    x, kw = case
    layer = Pooling(**kw)
    out = layer.forward(x)
    xt = T(x, True)
    k, s, p = (kw["pool_h"], kw["pool_w"]), kw["stride"], kw["pad"]
    if kw["mode"] == "max":
        ref = F.max_pool2d(xt, k, stride=s, padding=p)
    else:
        ref = F.avg_pool2d(xt, k, stride=s, padding=p, count_include_pad=True)
    name = f"{kw['mode']}_pool2d"
    close(f"{name} out", out, ref)
    dout = douts(data, out.shape)
    close(f"{name} dx", layer.backward(dout), backprop(ref, (xt,), dout)[0])


# -- batch, layer and group normalisation -----------------------------------------

def _check_batchnorm(name, layer, x, kw, train_flg, data, rows):
    """Compare a seed-style BN layer with ``F.batch_norm`` on ``rows(x)`` (N, D[, ...])."""
    D = kw["gamma"].shape[0]
    rm0 = np.zeros(D) if kw["running_mean"] is None else kw["running_mean"].copy()
    rv0 = np.zeros(D) if kw["running_var"] is None else kw["running_var"].copy()
    m = kw["momentum"]
    out = layer.forward(x, train_flg)
    xt, gt, bt = T(x, True), T(kw["gamma"], True), T(kw["beta"], True)
    rm, rv = T(rm0), T(rv0)
    ref = F.batch_norm(rows(xt), rm, rv, gt, bt, training=train_flg, momentum=1 - m,
                       eps=BN_EPS).reshape(x.shape)
    dout = douts(data, out.shape)
    dx = layer.backward(dout)
    gx, gg, gb = backprop(ref, (xt, gt, bt), dout)
    xr = rows(xt).detach().numpy()
    axes = (0,) + tuple(range(2, xr.ndim))
    bc = (1, D) + (1,) * (xr.ndim - 2)
    var = np.var(xr, axis=axes) if train_flg else rv0
    centre = np.zeros(D) if train_flg else rm0
    sc = norm_scales(xr, centre.reshape(bc), var.reshape(bc), kw["gamma"], kw["beta"],
                     dout, axes, BN_EPS)
    close(f"{name} out", out, ref, sc["out"])
    close(f"{name} dx", dx, gx, sc["dx"])
    close(f"{name} dgamma", layer.dgamma, gg, sc["dgamma"])
    close(f"{name} dbeta", layer.dbeta, gb, sc["dbeta"])
    xmax = float(np.max(np.abs(x)))
    close(f"{name} running_mean", layer.running_mean, rm, xmax + np.max(np.abs(rm0)))
    M = x.size // D  # values per feature
    if train_flg:  # PyTorch: unbiased batch variance; the seed: biased
        ours_rv = (layer.running_var - m * rv0) * M / (M - 1) + m * rv0
        close(f"{name} running_var", ours_rv, rv, xmax**2 + np.max(rv0))
    else:
        close(f"{name} running_var", layer.running_var, rv)


@given(with_params("BatchNormalization", shapes_2d(min_n=2) | shapes_4d(min_n=2, max_hw=3),
                   min_magnitude=0.0, edge_cases=True), st.booleans(), st.data())
def test_batch_norm_flattened_seed_convention(case, train_flg, data):
    x, kw = case
    layer = BatchNormalization(**kw)
    _check_batchnorm("batch_norm(flat)", layer, x, kw, train_flg, data,
                     lambda xt: xt.reshape(x.shape[0], -1))


@given(with_params("SpatialBatchNormalization", shapes_4d(max_hw=3), min_magnitude=0.0,
                   edge_cases=True), st.booleans(), st.data())
def test_batch_norm_per_channel(case, train_flg, data):
    x, kw = case
    assume(x.size // x.shape[1] >= 2)  # PyTorch needs two values per channel in train mode
    layer = SpatialBatchNormalization(**kw)
    _check_batchnorm("batch_norm(channel)", layer, x, kw, train_flg, data, lambda xt: xt)


@given(with_params("LayerNorm", shapes_2d() | shapes_4d(max_hw=3), min_magnitude=0.0,
                   edge_cases=True), st.data())
def test_layer_norm(case, data):
    x, kw = case
    layer = LayerNorm(**kw)
    out = layer.forward(x)  # no train_flg: both modes are the same function
    xt, gt, bt = T(x, True), T(kw["gamma"], True), T(kw["beta"], True)
    ref = F.layer_norm(xt, x.shape[1:], gt, bt, eps=1e-5)
    dout = douts(data, out.shape)
    dx = layer.backward(dout)
    gx, gg, gb = backprop(ref, (xt, gt, bt), dout)
    axes = tuple(range(1, x.ndim))
    sc = norm_scales(x, 0.0, np.var(x, axis=axes), kw["gamma"], kw["beta"], dout, axes, 1e-5)
    close("layer_norm out", out, ref, sc["out"])
    close("layer_norm dx", dx, gx, sc["dx"])
    close("layer_norm dgamma", layer.dgamma, gg, sc["dgamma"])
    close("layer_norm dbeta", layer.dbeta, gb, sc["dbeta"])


@given(with_params("GroupNorm", shapes_4d(max_c=6, max_hw=3), min_magnitude=0.0,
                   edge_cases=True), st.data())
def test_group_norm(case, data):
    x, kw = case
    assume(x.size // kw["num_groups"] >= 2)  # PyTorch refuses a single value per group
    layer = GroupNorm(**kw)
    out = layer.forward(x)
    xt, gt, bt = T(x, True), T(kw["gamma"], True), T(kw["beta"], True)
    ref = F.group_norm(xt, kw["num_groups"], gt, bt, eps=1e-5)
    dout = douts(data, out.shape)
    dx = layer.backward(dout)
    gx, gg, gb = backprop(ref, (xt, gt, bt), dout)
    xg = x.reshape(x.shape[0], kw["num_groups"], -1)
    sc = norm_scales(xg, 0.0, np.var(xg, axis=2), kw["gamma"], kw["beta"], dout, (2,), 1e-5)
    close("group_norm out", out, ref, sc["out"])
    close("group_norm dx", dx, gx, sc["dx"])
    close("group_norm dgamma", layer.dgamma, gg, sc["dgamma"])
    close("group_norm dbeta", layer.dbeta, gb, sc["dbeta"])
