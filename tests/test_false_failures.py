"""No false failures: every correct built-in layer passes, in every mode, over hypothesis examples.

A correct layer may be reported VACUOUS (its gradient is identically zero
for the drawn input, e.g. train-mode batch normalisation of a batch of one)
or marginal, or have elements excluded at kinks, but it never FAILs -- under
every finite-difference method and every strategy ``check_layer`` accepts.

Edge cases beyond the registry's inputs: batch size 1, constant features
(zero batch/sample/group variance), magnitudes 1e-8 .. 1e8 for the
normalisations, inputs at and near the kinks of ReLU and max-pooling (ties),
float32 layers (upcast by the default precision policy, and at native
precision).

The number of examples run is printed by the module's last test (also
recorded as the junit property ``false_failure_examples``), which checks
that the module runs >= 2,000 examples under the ``ci`` profile.
"""

import collections

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from gradcheck import check_layer
from gradcheck.validate import METHODS, STRATEGIES
from gradcheck.testing.strategies import layer_cases
from layers import Pooling, Relu, Sequential
from gradcheck.gate.suite import SPECS, get_spec, make_batchnorm, make_cnn
from hostile_layers import TINY_LAYERS, Pointwise, RowSums, SortRows

FD_METHODS = tuple(m for m in METHODS if m != "complex")
NORMALISATIONS = ["BatchNormalization-2d", "BatchNormalization-4d", "SpatialBatchNormalization",
                  "LayerNorm-2d", "LayerNorm-4d", "GroupNorm"]

#: examples run per test, reported at module teardown
EXAMPLES = collections.Counter()

#: INCONCLUSIVE targets per pool (allowed: hostile inputs can leave nothing to resolve).
INCONCLUSIVE = collections.Counter()
#: the suite's goal under the ci profile
TARGET_EXAMPLES = 2000


def assert_no_false_failure(layer, x, train_flg, method="central", strategy="elementwise",
                            seed=0, label="", **kw):
    """Check a correct layer; FAIL is a false failure, INCONCLUSIVE/marginal/excluded are fine
    (``inconclusive="pass"``: an INCONCLUSIVE target does not fail the report)."""
    EXAMPLES[label] += 1
    report = check_layer(layer, x, train_flg=train_flg, method=method, strategy=strategy,
                         seed=seed, inconclusive="pass", **kw)
    assert report.passed, (f"false failure ({label}, method={method}, strategy={strategy}, "
                           f"seed={seed}):\n{report}")
    INCONCLUSIVE[label] += sum(r.verdict == "INCONCLUSIVE" for r in report.results)
    for r in report.results:
        assert r.verdict in ("PASS", "INCONCLUSIVE"), r
    return report


@st.composite
def builtin_cases(draw, names=None):
    """Like ``gradcheck.testing.strategies.layer_cases`` (spec, mode, shape, seed), but a factory
    that cannot build its input for a seed (``make_cnn``, see
    :func:`test_make_cnn_finds_an_input_for_every_seed`) rejects the example."""
    # the digits networks (fixed real images) have their own tests: test_digits_networks.py
    specs = [s for s in SPECS if (names is None or s.name in names)
             and not s.name.startswith("Digits-")]
    spec = draw(st.sampled_from(specs))
    mode = draw(st.sampled_from(spec.modes))
    shape = tuple(draw(st.sampled_from(spec.shapes)))
    seed = draw(st.integers(0, 2**32 - 1))
    try:
        layer, x = spec.make(shape, np.random.default_rng(seed), mode)
    except RuntimeError:
        reject()
    return layer, x, mode


def _methods_strategies(methods=FD_METHODS, strategies=STRATEGIES):
    return st.tuples(st.sampled_from(methods), st.sampled_from(strategies),
                     st.integers(0, 2**16))


#: Method x strategy pools of the edge cases: the full pools minus the combinations with
#: (these pools once left out the combinations of engine bugs E1-E7; all are fixed)
ILL_CONDITIONED_METHODS = FD_METHODS
ILL_CONDITIONED_STRATEGIES = STRATEGIES
KINK_METHODS = FD_METHODS
KINK_STRATEGIES = STRATEGIES
NATIVE32_METHODS = FD_METHODS


def _shape_with_batch(shape, n):
    return (n,) + tuple(shape[1:])


# ---------------------------------------------------------------------------
# The big sweep: every spec, mode, method and strategy
# ---------------------------------------------------------------------------

@pytest.mark.slow
@settings(max_examples=1000)
@given(case=builtin_cases(), how=_methods_strategies())
def test_every_builtin_layer_every_method_and_strategy(case, how):
    layer, x, train_flg = case
    method, strategy, seed = how
    assert_no_false_failure(layer, x, train_flg, method, strategy, seed, label="sweep")


@settings(max_examples=150)
@given(case=layer_cases([s.name for s in SPECS if s.name != "Sequential-cnn"]))
def test_every_builtin_layer_central_elementwise(case):
    layer, x, train_flg = case
    assert_no_false_failure(layer, x, train_flg, label="central")


# ---------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------

@st.composite
def batch_of_one(draw):
    spec = draw(st.sampled_from(SPECS))
    mode = draw(st.sampled_from(spec.modes))
    shape = _shape_with_batch(draw(st.sampled_from(spec.shapes)), 1)
    try:
        layer, x = spec.make(shape, np.random.default_rng(draw(st.integers(0, 2**32 - 1))),
                             mode)
    except RuntimeError:  # make_cnn, see test_make_cnn_finds_an_input_for_every_seed
        reject()
    return spec.name, layer, x, mode


@settings(max_examples=120)
@given(case=batch_of_one(), how=_methods_strategies())
def test_batch_size_one(case, how):
    """N = 1: train-mode batch normalisation is then constant in x (INCONCLUSIVE), never FAIL."""
    name, layer, x, mode = case
    report = assert_no_false_failure(layer, x, mode, *how, label="batch-1")
    if name.startswith("BatchNormalization") and mode:
        assert report.result("x").vacuous, str(report)


def _make_constant(name, x, rng):
    """Make one normalisation group of ``x`` constant (zero variance)."""
    x = x.copy()
    c = rng.normal()
    if name.startswith("BatchNormalization"):
        flat = x.reshape(x.shape[0], -1)
        flat[:, rng.integers(flat.shape[1])] = c
        return flat.reshape(x.shape)
    if name == "SpatialBatchNormalization":
        x[:, rng.integers(x.shape[1])] = c
    elif name.startswith("LayerNorm"):
        x[rng.integers(x.shape[0])] = c
    else:  # GroupNorm, 2 groups
        n, half = rng.integers(x.shape[0]), x.shape[1] // 2
        g = rng.integers(2)
        x[n, g * half:(g + 1) * half] = c
    return x


@st.composite
def normalisation_cases(draw, modes=None):
    name = draw(st.sampled_from(NORMALISATIONS))
    spec = get_spec(name)
    mode = draw(st.sampled_from([m for m in spec.modes if modes is None or m in modes]
                                or spec.modes))
    shape = tuple(draw(st.sampled_from(spec.shapes)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    layer, x = spec.make(shape, rng, mode)
    return name, layer, x, mode, rng


@settings(max_examples=150)
@given(case=normalisation_cases(),
       how=_methods_strategies(ILL_CONDITIONED_METHODS, ILL_CONDITIONED_STRATEGIES))
def test_constant_feature(case, how):
    """A feature (channel, sample, group) with zero variance: badly scaled, never FAIL."""
    name, layer, x, mode, rng = case
    assert_no_false_failure(layer, _make_constant(name, x, rng), mode, *how, label="constant")


@settings(max_examples=200)
@given(case=normalisation_cases(), k=st.integers(-8, 8),
       how=_methods_strategies(ILL_CONDITIONED_METHODS, ILL_CONDITIONED_STRATEGIES))
def test_normalisation_magnitudes(case, k, how):
    """x scaled by 10**k, k in -8 .. 8."""
    name, layer, x, mode, _ = case
    assert_no_false_failure(layer, x * 10.0**k, mode, *how, label="magnitude")


@settings(max_examples=100)
@given(case=normalisation_cases(), k=st.integers(-8, 8))
def test_normalisation_magnitudes_central(case, k):
    """The default method and strategy at every magnitude (the CI gate's configuration)."""
    name, layer, x, mode, _ = case
    assert_no_false_failure(layer, x * 10.0**k, mode, label="magnitude-central")


# -- kinks -------------------------------------------------------------------

#: Distances from a kink, up to the central step (6e-6) and beyond it (E5's band included).
_KINK_OFFSETS = [0.0, 1e-12, -1e-12, 1e-9, -1e-9, 1e-6, -1e-6, 2e-6, -2e-6, 5e-6, -5e-6]


@st.composite
def relu_near_kinks(draw):
    shape = draw(st.sampled_from([(4, 5), (2, 3, 3, 3), (1, 6)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(0.0, 1.0, shape)
    k = draw(st.integers(1, x.size))
    where = rng.choice(x.size, size=k, replace=False)
    x.flat[where] = rng.choice(_KINK_OFFSETS, size=k)
    return get_spec("Relu").make(shape, rng, True)[0], x


@settings(max_examples=120)
@given(case=relu_near_kinks(), how=_methods_strategies(KINK_METHODS, KINK_STRATEGIES))
def test_relu_at_and_near_the_kink(case, how):
    """ReLU inputs at 0 and within a step of it: excluded as kinks, never FAIL."""
    layer, x = case
    assert_no_false_failure(layer, x, True, *how, label="relu-kink")


@st.composite
def maxpool_with_ties(draw):
    spec = get_spec("Pooling-max-2x2")  # overlapping windows with ties: E4
    shape = tuple(draw(st.sampled_from(spec.shapes)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layer, _ = spec.make(shape, rng, True)
    kind = draw(st.sampled_from(["ties", "near-ties"]))
    x = rng.integers(-2, 3, shape).astype(float)  # many exact ties in every window
    if kind == "near-ties":
        x += rng.choice(_KINK_OFFSETS[:5], size=shape)  # within 1e-9: several near-ties
        # in one window at 1e-6 fall in E5's band for the element between them
    return layer, x


@settings(max_examples=120)
@given(case=maxpool_with_ties(), how=_methods_strategies(KINK_METHODS, KINK_STRATEGIES))
def test_maxpool_with_ties(case, how):
    """Non-overlapping max-pooling windows with exact and near ties: kinks, never FAIL."""
    layer, x = case
    assert_no_false_failure(layer, x, True, *how, label="maxpool-ties")


# -- float32 -----------------------------------------------------------------

def _to_float32(layer):
    """The same layer with every float64 array attribute as float32 (children too)."""
    if isinstance(layer, Sequential):
        return Sequential(*[_to_float32(c) for c in layer.layers])
    for k, v in list(vars(layer).items()):
        if isinstance(v, np.ndarray) and v.dtype == np.float64:
            setattr(layer, k, v.astype(np.float32))
    return layer


@settings(max_examples=150)
@given(case=builtin_cases(), how=_methods_strategies())
def test_float32_layers_upcast(case, how):
    """float32 layers under the default precision policy (evaluated in float64)."""
    layer, x, train_flg = case
    assert_no_false_failure(_to_float32(layer), x.astype(np.float32), train_flg, *how,
                            label="float32-auto")


@settings(max_examples=100)
@given(case=builtin_cases(), how=_methods_strategies(NATIVE32_METHODS))
def test_float32_layers_native(case, how):
    """float32 layers at native precision, with float32 tolerances."""
    layer, x, train_flg = case
    assert_no_false_failure(_to_float32(layer), x.astype(np.float32), train_flg, *how,
                            label="float32-native", precision="native")


# ---------------------------------------------------------------------------
# ENGINE BUGS found by this sweep, one reproducer per class; all fixed on main (the
# reproducers stay as regression tests).
# ---------------------------------------------------------------------------

def _bn_constant_feature():
    layer, x = make_batchnorm((8, 5), np.random.default_rng(0), True)
    x[:, 1] = 0.7
    return layer, x


@pytest.mark.parametrize("method", FD_METHODS)
def test_E1_projection_constant_feature(method):
    layer, x = _bn_constant_feature()
    assert check_layer(layer, x, method=method, strategy="projection").passed


@pytest.mark.parametrize("method", ["forward", "central", "richardson"])
def test_E1_projection_small_variance_batchnorm(method):
    rng = np.random.default_rng(20240607)
    layer, _ = make_batchnorm((6, 4), rng, True)
    x = rng.normal(0.3, 0.02, (6, 4))
    assert check_layer(layer, x, strategy="projection", seed=1, method=method).passed


def test_E1_same_inputs_pass_elementwise():
    """The layers of E1 are right: the same inputs pass elementwise under every method."""
    rng = np.random.default_rng(20240607)
    layer, _ = make_batchnorm((6, 4), rng, True)
    x = rng.normal(0.3, 0.02, (6, 4))
    for method in FD_METHODS:
        assert check_layer(layer, x, seed=1, method=method).passed
        assert check_layer(*_bn_constant_feature(), method=method).passed


@pytest.mark.parametrize("method", FD_METHODS)
def test_E2_jacobian_relu_at_zero(method):
    """No false FAIL; a third of the elements at kinks is INCONCLUSIVE, as elementwise
    (the kink fraction counts elements, not the Jacobian's 36 entries)."""
    x = np.array([[0.5, 0.0, -0.3], [1.2, -0.7, 0.0]])
    r = check_layer(Relu(), x, method=method, strategy="jacobian").result("x")
    assert r.verdict == "INCONCLUSIVE" and "2 of 6 elements sit at kinks" in r.inconclusive
    assert check_layer(Relu(), x, method=method, strategy="jacobian",
                       inconclusive="pass").passed


def test_E2_same_input_is_judged_at_its_kinks_elementwise():
    x = np.array([[0.5, 0.0, -0.3], [1.2, -0.7, 0.0]])
    report = check_layer(Relu(), x)
    r = report.result("x")
    assert sorted(r.excluded) == [(0, 1), (1, 2)]
    # a third of the elements sit at kinks: more than a small fraction, so inconclusive
    assert r.verdict == "INCONCLUSIVE" and "kinks" in r.inconclusive
    assert check_layer(Relu(), x, inconclusive="pass").passed


@pytest.mark.parametrize("method", ["central4", "richardson"])
def test_E3_large_step_crosses_a_kink(method):
    assert check_layer(Relu(), np.array([[-1e-4, 0.5, 1.5]]), method=method).passed


def test_E4_overlapping_maxpool_ties():
    """Values tied in overlapping windows: their subgradients lie outside the one-sided hull,
    but inside the hull of the pieces met nearby; never FAIL."""
    x = np.array([[[[2.0, -2.0, -2.0], [-1.0, -2.0, 2.0], [2.0, 0.0, -2.0]]]])
    report = check_layer(Pooling(3, 3, stride=1, pad=1), x, inconclusive="pass")
    assert report.passed, str(report)
    assert len(report.result("x").kinks) == 3


@pytest.mark.parametrize("layer, x", [
    pytest.param(Relu(), np.array([[5e-6, 0.5, -0.3]]), id="relu-5e-6"),
    pytest.param(Relu(), np.array([[-2e-6, 0.5, -0.3]]), id="relu-minus-2e-6"),
    pytest.param(Pooling(2, 2, stride=2), np.array([[[[1.0, 1.0 + 5e-6], [0.0, -1.0]]]]),
                 id="maxpool-near-tie-5e-6"),
])
def test_E5_kink_within_a_step(layer, x):
    assert check_layer(layer, x).passed


def test_E6_richardson_constant_feature():
    rng = np.random.default_rng(0)
    layer, x = get_spec("BatchNormalization-4d").make((4, 3, 5, 5), rng, True)
    x = _make_constant("BatchNormalization-4d", x, rng)
    assert check_layer(layer, x, method="richardson").passed


def test_E7_native_float32_central4_crosses_kinks():
    layer, x = get_spec("Sequential-cnn").make((2, 2, 4, 4), np.random.default_rng(3), True)
    report = check_layer(_to_float32(layer), x.astype(np.float32), method="central4",
                         precision="native", inconclusive="pass")
    assert report.passed, str(report)  # float32 steps cross kinks: refined, never FAIL


def test_make_cnn_finds_an_input_for_every_seed():
    make_cnn((2, 2, 4, 4), np.random.default_rng(951), True)


class _OneLargeOutput:
    """Correct: ``out[0, 0] = C + a x[0, 0]`` (a large output whose change at the element's
    step rounds away) and ``out[0, 1]`` moving with ``x[0, 0]`` too, beside ``tanh``."""

    def __init__(self, C, a, wrong=1.0):
        self.C, self.a, self.wrong = C, a, wrong

    def forward(self, x):
        self.x = x
        out = np.tanh(x)
        out[0, 0] = self.C + self.a * x[0, 0]
        out[0, 1] = np.tanh(x[0, 1]) + 0.1 * x[0, 0]
        return out

    def backward(self, dout):
        dx = dout * (1 - np.tanh(self.x) ** 2)
        dx[0, 0] = self.a * dout[0, 0] + 0.1 * dout[0, 1]
        dx[1, 1] *= self.wrong
        return dx


@pytest.mark.parametrize("C, a", [(1e10, 1e-3), (1e12, 1e-3), (1e8, 1e-6)])
@pytest.mark.parametrize("how", [(m, s) for m in ("central", "forward", "richardson")
                                 for s in ("elementwise", "auto", "projection", "jacobian")])
def test_an_output_whose_change_rounds_away_is_no_false_failure(C, a, how):
    """Its rounding counts for every element (an output 1e3 times the typical size may
    depend on an element without changing at its step): PASS or INCONCLUSIVE, never FAIL.
    A 1 % error elsewhere is never a PASS; with ``C = 1e12`` (ulp 1.2e-4) it lies below what
    the check can resolve (INCONCLUSIVE, its resolution says so), below that it FAILs under
    the default central differences."""
    method, strategy = how
    x = np.random.default_rng(0).normal(size=(6, 6))
    report = check_layer(_OneLargeOutput(C, a), x, method=method, strategy=strategy)
    assert report.result("x").verdict != "FAIL", str(report)
    wrong = check_layer(_OneLargeOutput(C, a, wrong=1.01), x, method=method, strategy=strategy)
    assert wrong.result("x").verdict != "PASS", str(wrong)
    if C <= 1e10 and method == "central" and strategy in ("elementwise", "auto"):
        assert wrong.result("x").verdict == "FAIL", str(wrong)


class _Exp:
    def __init__(self, wrong=None):
        self.wrong = wrong

    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def backward(self, dout):
        dx = dout * self.out
        if self.wrong is not None:
            dx.flat[self.wrong] *= 1.0 + 1e-6
        return dx


@pytest.mark.parametrize("strategy", ["elementwise", "auto"])
def test_large_outputs_that_move_cost_the_small_ones_no_resolution(strategy):
    """``exp`` over outputs 8e-7 .. 1e3: the large ones change with their own elements (in
    the noise table too), so their rounding is not counted for the others, and a 1e-6
    relative error is caught on every element, small outputs included."""
    x = np.linspace(-14, 7, 24).reshape(4, 6)
    assert check_layer(_Exp(), x, strategy=strategy).passed
    for j in (0, 2, 11, 23):
        report = check_layer(_Exp(wrong=j), x, strategy=strategy, sequence=False)
        assert report.result("x").verdict == "FAIL", (j, str(report))



@pytest.mark.parametrize("name", sorted(TINY_LAYERS))
@pytest.mark.parametrize("method, strategy", [("central", "auto"), ("central", "elementwise"),
                                              ("forward", "auto"), ("richardson", "auto"),
                                              ("central", "jacobian"), ("complex", "auto")])
def test_a_smooth_layer_at_inputs_of_1e_22_is_no_false_failure(name, method, strategy):
    """At ``|x| ~ 1e-22`` a step of ``max(1, |x|)`` scale (``5e-6``) jumps across the pole of
    ``1/x``, into ``log``'s NaN, and moves ``x**2`` to outputs whose rounding dwarfs the noise
    measured at ``x`` (a false FAIL with numerical 0): the steps take the target's own scale.
    The resolution holds: an error of three times it in one element FAILs."""
    f, df = TINY_LAYERS[name]
    x = np.random.default_rng(3).uniform(1.0, 2.0, size=(3, 4)) * 1e-22
    if name in ("square", "sin-1e20"):
        x[::2] *= -1.0
    report = check_layer(Pointwise(f, df), x, method=method, strategy=strategy)
    r = report.result("x")
    assert r.verdict == "PASS" and r.relative_resolution < 1e-3, str(report)
    relative = 3.0 * r.resolution / abs(float(df(x.flat[1])))
    wrong = check_layer(Pointwise(f, df, wrong=1.0 + relative), x, method=method,
                        strategy=strategy, sequence=False)
    assert wrong.result("x").verdict == "FAIL", str(wrong)


class _TinyAffine:
    """``x @ W + b`` at ``x ~ 1e-22``: linear, but (``b = 1``) its outputs are of order 1."""

    def __init__(self, bias):
        rng = np.random.default_rng(1)
        self.W, self.b = rng.normal(size=(3, 4)), np.full(4, float(bias))

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW, self.db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.W.T


@pytest.mark.parametrize("bias", [0.0, 1.0])
def test_an_affine_layer_at_inputs_of_1e_22_passes_on_x(bias):
    """With a bias of 1 the outputs do not move at all at a step of the inputs' own scale
    (``1e-27``): the steps grow, as measured, to where they do (a PASS on ``x``, not a
    numerical 0). ``dW ~ 1e-22`` under outputs of 1 cannot be resolved: never a FAIL."""
    x = np.random.default_rng(0).normal(size=(2, 3)) * 1e-22
    report = check_layer(_TinyAffine(bias), x)
    assert report.result("x").verdict == "PASS", str(report)
    assert report.result("x").relative_resolution < 1e-3, str(report)
    assert all(r.verdict != "FAIL" for r in report.results), str(report)


def test_log_near_its_domain_edge_passes():
    """``log`` at ``x`` in ``[1e-8, 1e-7]``: a step of ``5e-6`` leaves the domain (NaN, a
    ``LayerCallError``); at the target's own scale it is a PASS."""
    f, df = TINY_LAYERS["log"]
    x = np.random.default_rng(0).uniform(1e-8, 1e-7, size=(2, 3))
    report = check_layer(Pointwise(f, df), x)
    assert report.result("x").verdict == "PASS", str(report)


def _sort_input():
    """A (4, 8) input, distinct values but one three-way tie (row 1, columns 2, 4, 5)."""
    x = np.random.default_rng(0).normal(size=(4, 8))
    x[1, [2, 4, 5]] = 0.25
    return x


@pytest.mark.parametrize("method", ["central", "forward", "central4", "richardson"])
def test_a_sort_with_a_three_way_tie_is_no_false_failure_under_jacobian(method):
    """At a three-way tie the middle output is constant along each tied element's axis: its
    Jacobian entry's one-sided derivatives are both 0 and the analytic 1 (a permutation, an
    element of the Clarke Jacobian) was a false FAIL. The element is at a kink in the other
    outputs of its column, so all its entries are, judged on the hull widened at nearby
    points (as elements are); a 0.1 % error in a tied element or elsewhere FAILs."""
    x = _sort_input()
    report = check_layer(SortRows(), x, strategy="jacobian", method=method)
    assert report.result("x").verdict == "PASS", str(report)
    for wrong in (1 * 8 + 4, 2 * 8 + 3):
        bad = check_layer(SortRows(wrong), x, strategy="jacobian", method=method, sequence=False)
        assert bad.result("x").verdict == "FAIL", (wrong, str(bad))


@pytest.mark.parametrize("strategy", ["elementwise", "auto", "jacobian", "projection"])
def test_outputs_that_cancel_to_exactly_zero_are_no_false_failure(strategy):
    """Rows ``[0, 1e-3, -1e-3]``: every output is ``tanh(1e-3) + tanh(-1e-3) = 0`` exactly.
    The noise table's "L moves by more than 10 %" test (of an L of 0) rejected every
    spacing, the noise fell back to the rounding of outputs of 0 (nothing), the steps
    shrank to 5e-21 and the numerical gradient was 0: a false FAIL. A 0.1 % error FAILs."""
    x = np.zeros((2, 3)) + np.array([0.0, 1e-3, -1e-3])
    report = check_layer(RowSums(), x, strategy=strategy)
    assert report.result("x").verdict == "PASS", str(report)
    bad = check_layer(RowSums(1.001), x, strategy=strategy, sequence=False)
    assert bad.result("x").verdict == "FAIL", str(bad)


@pytest.mark.parametrize("train_flg", [True, False])
def test_a_tiny_bias_beside_outputs_of_one_is_judged_on_the_unit_scale(train_flg):
    """``beta ~ 1e-35`` in batch normalisation: at beta's own scale only the outputs that are
    ``beta`` alone (a row at the running mean, eval mode) move; the others round the change
    away, and the steps, the noise and the truncation all went wrong (INCONCLUSIVE, a
    numerical gradient of garbage). Measured: most outputs do not move there, so beta is
    stepped on the unit scale."""
    from layers import BatchNormalization

    layer = BatchNormalization(np.array([0.8, 1.3]), np.array([1e-35, -2e-35]), 0.9,
                               np.zeros(2), np.array([0.5, 2.0]))
    x = np.array([[-0.5, -0.5], [0.0, 0.0], [0.5, 0.5]])
    report = check_layer(layer, x, train_flg=train_flg)
    assert report.result("beta").verdict == "PASS", str(report)


@pytest.mark.parametrize("method", ["forward", "central4"])
def test_exp_at_inputs_of_1e_6_passes_under_the_other_methods(method):
    """``exp`` at ``x ~ 1e-6``: steps at the inputs' scale round (outputs of 1), the tuning
    grows them; the central differences that refine these methods' elements grew with
    them no more (a resolution of 0.2 %, INCONCLUSIVE)."""
    x = np.random.default_rng(5).uniform(1.0, 2.0, size=(4, 10)) * 1e-6
    report = check_layer(Pointwise(np.exp, np.exp), x, method=method, strategy="elementwise")
    assert report.result("x").verdict == "PASS", str(report)


@pytest.mark.parametrize("strategy", ["elementwise", "projection"])
def test_exp_at_inputs_of_1e_6_grows_its_steps_to_the_unit_scale(strategy):
    """``exp`` varies on the scale of 1 whatever ``x``: below the unit scale the steps grow
    until their rounding is what the base step's is on the unit scale (growth stopped at a
    rounding of 1e-5: resolutions of 1e-4 and 1e-3, a projection at the brink)."""
    x = np.random.default_rng(5).uniform(1.0, 2.0, size=(4, 10)) * 1e-6
    r = check_layer(Pointwise(np.exp, np.exp), x, strategy=strategy).result("x")
    assert r.verdict == "PASS" and r.relative_resolution < 1e-6, r


@st.composite
def tiny_magnitudes(draw):
    """A smooth pointwise layer (``TINY_LAYERS``, ``tanh``, ``exp``) at ``10**k``, k in
    [-30, 0], float64 or float32, positive (negative too where defined), maybe one 0."""
    fns = dict(TINY_LAYERS, tanh=(np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
               exp=(np.exp, np.exp))
    name = draw(st.sampled_from(sorted(fns)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    k = draw(st.integers(-30 if dtype == np.float64 else -15, 0))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.uniform(1.0, 2.0, size=(3, 5)) * 10.0 ** k
    if name not in ("log", "reciprocal"):
        x *= rng.choice([-1.0, 1.0], size=x.shape)
        if draw(st.booleans()):
            x[1, 2] = 0.0
    return Pointwise(*fns[name]), x.astype(dtype)


@settings(max_examples=60)
@given(case=tiny_magnitudes(), how=_methods_strategies())
def test_smooth_layers_at_tiny_magnitudes(case, how):
    """No FAIL at any magnitude from 1e-30 to 1: the steps, the noise table and the probes
    take the target's own scale (measured to hold), not ``max(1, |x|)``."""
    layer, x = case
    assert_no_false_failure(layer, x, True, *how, label="tiny")


@pytest.mark.parametrize("method", FD_METHODS)
@pytest.mark.parametrize("strategy", ["auto", "jacobian", "projection"])
def test_log_at_1e_8_beside_values_of_1_passes(method, strategy):
    """``log`` at ``[[1e-8, 0.5, 1], [2, 3e-8, 0.7]]``: the steps of the unit scale leave the
    domain at the two small elements (a LayerCallError); they are shrunk as measured (the
    report says so), and a 0.1 % error at one of them FAILs."""
    f, df = TINY_LAYERS["log"]
    x = np.array([[1e-8, 0.5, 1.0], [2.0, 3e-8, 0.7]])
    report = check_layer(Pointwise(f, df), x, method=method, strategy=strategy)
    r = report.result("x")
    assert r.verdict == "PASS" and "element(s) shrunk" in r.tolerance_reason, str(report)
    bad = check_layer(Pointwise(f, df, 1.001, at=4), x, method=method, strategy=strategy,
                      sequence=False)
    assert bad.result("x").verdict == "FAIL", str(bad)

def _sqrt_past(edge):
    """``sqrt(x - edge)``: its domain ends at ``edge``, an offset no magnitude of ``x`` shows."""
    return lambda x: np.sqrt(x - edge), lambda x: 0.5 / np.sqrt(x - edge)


#: ``sqrt(x - 1)`` at inputs of ``[1.5, 3]``, three of them ``1e-6``, ``1e-4`` and ``1e-3``
#: past the edge at 1 (flat elements 1, 5, 10)
SQRT_EDGE_X = np.random.default_rng(0).uniform(1.5, 3.0, size=(3, 4))
SQRT_EDGE_X.flat[[1, 5, 10]] = 1.0 + np.array([1e-6, 1e-4, 1e-3])


@pytest.mark.parametrize("method", FD_METHODS)
@pytest.mark.parametrize("strategy", ["auto", "elementwise", "jacobian", "projection"])
def test_sqrt_of_x_minus_1_near_its_domain_edge_passes(method, strategy):
    """At ``x = 1 + 1e-6`` a step of ``5e-6`` (``5e-3`` for richardson) reaches past the edge
    at 1: forward NaN, and the check raised it as the layer's error (only the elements whose
    points reach 0 were screened). Forward leaving its domain now screens every element: the
    offending steps shrink, as measured (the report says so), and the check PASSes; a 0.1 %
    error at the element ``1e-4`` from the edge FAILs."""
    f, df = _sqrt_past(1.0)
    report = check_layer(Pointwise(f, df), SQRT_EDGE_X, method=method, strategy=strategy)
    r = report.result("x")
    assert r.verdict == "PASS" and "element(s) shrunk" in r.tolerance_reason, str(report)
    bad = check_layer(Pointwise(f, df, 1.001, at=5), SQRT_EDGE_X, method=method,
                      strategy=strategy, sequence=False)
    assert bad.result("x").verdict == "FAIL", str(bad)


@settings(max_examples=20, deadline=None)
@given(edge=st.floats(-5.0, 5.0), exponents=st.lists(st.integers(-9, -3), min_size=1,
                                                      max_size=3),
       how=_methods_strategies(strategies=["auto", "elementwise", "jacobian", "projection"]))
def test_a_domain_edge_at_any_offset_is_no_false_failure(edge, exponents, how):
    """``sqrt(x - edge)`` with a few elements ``1e-9 .. 1e-3`` past the edge (relative to
    ``max(1, |edge|)``), at any ``edge``: never a FAIL, never forward's NaN raised as the
    layer's error; a 1 % error at the element nearest the edge FAILs, or the check says it
    cannot resolve it (INCONCLUSIVE), never PASS."""
    method, strategy, seed = how
    rng = np.random.default_rng(seed)
    x = edge + rng.uniform(0.5, 2.0, size=(2, 5))
    near = rng.choice(x.size, size=len(exponents), replace=False)
    x.flat[near] = edge + 10.0 ** np.array(exponents, float) * max(1.0, abs(edge))
    x.flat[near] = np.maximum(x.flat[near], np.nextafter(edge, np.inf))
    f, df = _sqrt_past(edge)
    r = check_layer(Pointwise(f, df), x, method=method, strategy=strategy).result("x")
    assert r.verdict in ("PASS", "INCONCLUSIVE"), r
    EXAMPLES["domain edge"] += 1
    at = int(near[np.argmin(x.flat[near] - edge)])
    bad = check_layer(Pointwise(f, df, 1.01, at=at), x, method=method, strategy=strategy,
                      sequence=False).result("x")
    assert bad.verdict != "PASS", (at, bad)


# ---------------------------------------------------------------------------

def test_zz_enough_examples_ran(capsys, record_property):
    """Runs last in this module: prints and records the number of examples checked."""
    total = sum(EXAMPLES.values())
    record_property("false_failure_examples", total)
    with capsys.disabled():
        print(f"\ntest_false_failures: {total} hypothesis examples of correct layers "
              "checked, 0 false failures (" +
              ", ".join(f"{k} {v}" for k, v in sorted(EXAMPLES.items())) + ")")
    if not EXAMPLES.get("sweep"):
        pytest.skip("the slow sweep did not run (deselected)")
    assert total >= TARGET_EXAMPLES, dict(EXAMPLES)


def test_a_constant_batch_through_batch_norm_is_no_false_fail():
    """Equal rows: zero variance, the outputs exactly ``beta`` at the point, so the noise
    measured there is far below the rounding a step meets, and the step tuning read that
    rounding as truncation until ``x + h == x`` (numerical 0, a false FAIL). Steps stay
    at ``MIN_ULPS`` of their element's spacing at least: the correct layer is not FAIL, a
    1 % error in dx is."""
    from gradcheck.engine.steps import MIN_ULPS

    import layers

    def make():
        return layers.BatchNormalization(gamma=np.array([0.109375]), beta=np.array([0.0]),
                                         momentum=0.0)

    class Off(layers.BatchNormalization):
        def backward(self, dout):
            return 1.01 * super().backward(dout)

    x = np.array([[0.09375], [0.09375]])  # found by test_random_configuration_passes
    report = check_layer(make(), x, inconclusive="pass")
    assert report.passed, str(report)
    assert report.result("x").step >= MIN_ULPS * np.spacing(0.09375)
    broken = Off(gamma=np.array([0.109375]), beta=np.array([0.0]), momentum=0.0)
    assert check_layer(broken, x, inconclusive="pass").result("x").verdict == "FAIL"


def test_a_constant_batch_away_from_zero_is_no_false_fail():
    """Equal values (3.3) through spatial batch norm: ``x - mean`` rounds at the ulp of
    ``x`` (about 2e-16 of it), which the noise measured at the point (outputs exactly 0)
    does not show; the step tuning counts one rounding of each input in its noise, so
    the steps stay where that rounding is below the truncation (they shrank to 2e-13
    and the rounding FAILed x by 4e-4 relative). A 1 % error in dx still FAILs."""
    import layers

    class Off(layers.SpatialBatchNormalization):
        def backward(self, dout):
            return 1.01 * super().backward(dout)

    x = np.full((2, 1, 3, 3), 3.3)  # as test_random_configuration_passes found at 1.7746...
    kw = dict(gamma=np.array([1.0]), beta=np.array([0.0]), momentum=0.0)
    report = check_layer(layers.SpatialBatchNormalization(**kw), x, inconclusive="pass")
    assert report.passed, str(report)
    assert check_layer(Off(**kw), x, inconclusive="pass").result("x").verdict == "FAIL"
