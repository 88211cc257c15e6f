"""Every verdict sound: the false PASSes and false FAILs of the first engine, case by case.

Each class of case below was measured to go wrong before the verdict path was rebuilt
(issue "A PASS that means something"): a wrong backward that passed, or a correct one that
failed. Now a wrong backward FAILs (or, where the check cannot resolve it, is
INCONCLUSIVE, never PASS) and a correct one PASSes.
"""

import copy
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gradcheck import check_layer
from gradcheck.gate.suite import get_spec
from gradcheck.testing.inject import wrong_element
from hostile_layers import TINY_LAYERS, Pointwise, SortRows
from layers import BatchNormalization, Relu

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 5))
STRATEGIES = ("elementwise", "sampled", "projection", "jacobian")


class F32Tanh:
    """Computes in float32 and returns float32, as the recurrent layers of the book's
    second volume do; ``scale`` != 1 makes its backward wrong."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def forward(self, x):
        self.y = np.tanh(x.astype(np.float32))
        return self.y

    def backward(self, dout):
        return self.scale * dout * (1.0 - self.y.astype(np.float64) ** 2)


class F32Round(F32Tanh):
    """Rounds through float32 and returns float64: the output dtype claims float64."""

    def forward(self, x):
        self.x = x
        return np.tanh(x.astype(np.float32)).astype(np.float64)

    def backward(self, dout):
        return self.scale * dout * (1.0 - np.tanh(self.x) ** 2)


class Scale:
    """``w * x``; ``wrong`` multiplies dx."""

    def __init__(self, w, wrong=1.0):
        self.w, self.wrong = w, wrong

    def forward(self, x):
        self.x = x
        return self.w * x

    def backward(self, dout):
        self.dw = (dout * self.x).sum(axis=0)
        return self.wrong * dout * self.w


class AffineB:
    """``x W + b``; ``bwrong`` multiplies db."""

    def __init__(self, W, b, bwrong=1.0):
        self.W, self.b, self.bwrong = W, b, bwrong

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = self.bwrong * dout.sum(axis=0)
        return dout @ self.W.T


class ReluThousandAtZero:
    """ReLU whose backward returns ``1000 * dout`` where ``x == 0``: outside the one-sided
    derivatives (0 and 1) of the kink."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0.0)

    def backward(self, dout):
        return dout * ((self.x > 0) + 1000.0 * (self.x == 0))


class Steep:
    """``tanh(x / 1e-6)``: smooth, but on a scale far below ``max(1, |x|)``."""

    def __init__(self, wrong=1.0):
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return np.tanh(x / 1e-6)

    def backward(self, dout):
        return self.wrong * dout * (1.0 - np.tanh(self.x / 1e-6) ** 2) / 1e-6


class Cube:
    """``x**3``; at ``|x| ~ 1e-8`` the classic step ``6e-6 * max(1, |x|)`` dwarfs ``x``."""

    def __init__(self, wrong=1.0):
        self.wrong = wrong

    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, dout):
        return self.wrong * 3.0 * self.x ** 2 * dout


def verdicts(report):
    return {r.name: r.verdict for r in report.results}


# -- false PASSes -------------------------------------------------------------------------

@pytest.mark.parametrize("wrong", [1.5, 1.01])
def test_a_float32_computing_layer_with_a_wrong_backward_fails(wrong):
    for layer in (F32Tanh(wrong), F32Round(wrong)):
        report = check_layer(layer, X)
        assert verdicts(report) == {"x": "FAIL"}, str(report)


@pytest.mark.parametrize("scale", [1e4, 1e6, 1e8, 1e150])
@pytest.mark.parametrize("wrong", [2.0, 1.0 + 1e-6])
def test_magnitudes_keep_their_relative_sensitivity(scale, wrong):
    w = RNG.normal(size=5)
    assert check_layer(Scale(w), X * scale).passed
    report = check_layer(Scale(w, wrong), X * scale)
    assert verdicts(report)["x"] == "FAIL", str(report)
    assert report.result("x").relative_resolution < 1e-7  # the goal at every scale


def test_outputs_above_1e154_keep_finite_tolerances():
    report = check_layer(Scale(RNG.normal(size=5), 1.001), X * 1e160)
    r = report.result("x")
    assert r.verdict == "FAIL" and np.isfinite(r.atol) and np.isfinite(r.resolution)


def test_a_small_target_beside_a_large_one_is_checked_on_its_own_scale():
    W = RNG.normal(size=(5, 3)) * 1e8
    b = RNG.normal(size=3)
    assert check_layer(AffineB(W, b), X).passed
    report = check_layer(AffineB(W, b, 1.001), X)
    assert verdicts(report) == {"x": "PASS", "W": "PASS", "b": "FAIL"}, str(report)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_wrong_value_at_a_kink_fails_under_every_strategy(strategy):
    x = X.copy()
    x[0, 0] = x[3, 2] = 0.0
    report = check_layer(ReluThousandAtZero(), x, strategy=strategy, samples=30)
    assert verdicts(report) == {"x": "FAIL"}, str(report)
    correct = check_layer(Relu(), x, strategy=strategy, samples=30, inconclusive="pass")
    assert correct.passed, str(correct)


@pytest.mark.parametrize("distance", [5e-7, 2e-6])
def test_an_element_a_little_away_from_a_kink_is_judged_on_its_own_slope(distance):
    """ReLU at x = 5e-7 has slope 1 within 5e-7: a backward returning 0 there is wrong, and the
    kink the coarse steps cross (or their nearby points) must not excuse it."""
    class ZeroNearKink:
        def forward(self, x):
            self.x = x.copy()
            return np.maximum(x, 0.0)

        def backward(self, dout):
            g = dout * (self.x > 0)
            g[2, 2] = 0.0
            return g

    x = X.copy()
    x[2, 2] = distance
    r = check_layer(ZeroNearKink(), x).result("x")
    assert r.verdict == "FAIL" and (2, 2) not in r.excluded, r


def test_kinks_are_listed_with_both_one_sided_derivatives():
    x = X.copy()
    x[1, 1] = 0.0
    r = check_layer(Relu(), x).result("x")
    ((index, minus, plus),) = r.kinks
    assert index == (1, 1) and sorted([minus, plus]) == pytest.approx(
        sorted([0.0, r.analytic[1, 1] or plus or minus]), abs=1e-6)
    assert r.excluded == ((1, 1),)


def test_a_steep_smooth_layer_is_not_taken_for_kinks():
    x = RNG.normal(size=(6, 5)) * 1e-6
    report = check_layer(Steep(), x)
    assert report.passed and not report.result("x").kinks, str(report)
    assert verdicts(check_layer(Steep(1.01), x)) == {"x": "FAIL"}


@pytest.mark.parametrize("method", ["central", "central4", "richardson"])
def test_every_method_catches_a_1e7_error(method):
    report = check_layer(Scale(RNG.normal(size=5), 1.0 + 1e-7), X, method=method)
    assert verdicts(report)["x"] == "FAIL", str(report)


def test_central4_judges_at_least_as_finely_as_central():
    """The fourth-order stencil's own error estimate is for the value it returns: its
    tolerances are no looser than central differences' (a refinement, the same for both,
    bounds the promised resolution of either)."""
    layer = Scale(RNG.normal(size=5))
    central = check_layer(layer, X, method="central").result("x").tolerances.max()
    assert check_layer(layer, X, method="central4").result("x").tolerances.max() <= central


def test_projection_honours_probes_and_its_bound_does_not_shrink_with_the_size():
    rel = []
    for n in (8, 512):
        x = np.random.default_rng(1).normal(size=(n, 8))
        report = check_layer(Scale(np.linspace(0.5, 1.5, 8)), x, strategy="projection",
                             probes=5, wrt=["x"], sequence=False)
        r = report.result("x")
        assert r.passed and r.numerical.shape == (5,)
        rel.append(r.relative_resolution)
    # 64x the elements: the noise of every output moved grows as sqrt(64) = 8, no faster
    assert rel[1] < rel[0] * 2 * 8


# -- false FAILs --------------------------------------------------------------------------

def test_a_forward_that_rounds_through_float32_passes():
    report = check_layer(F32Round(), X)
    assert report.passed, str(report)
    r = report.result("x")
    assert r.relative_resolution < 1e-3  # conclusive: a 0.1 % error in any element fails
    measured = float(re.search(r"noise \S+ \((\S+) relative", r.tolerance_reason).group(1))
    assert 1e-9 < measured < 1e-6  # float32's rounding, although the output is float64


class TiedF32:
    """``x W W^T`` with ``WT`` a view of float32 ``W`` (tied weights)."""

    def __init__(self, W):
        self.W = W
        self.WT = W.T

    def forward(self, x):
        self.x = x
        self.h = x @ self.W
        return self.h @ self.WT

    def backward(self, dout):
        dh = dout @ self.W
        self.dW = self.x.T @ dh + dout.T @ self.h
        return dh @ self.WT


def test_float32_tied_weights_keep_their_aliasing_and_pass():
    W = RNG.normal(size=(5, 3)).astype(np.float32)
    layer = TiedF32(W)
    report = check_layer(layer, X.astype(np.float32))
    assert report.passed, str(report)
    assert layer.WT.base is layer.W or np.shares_memory(layer.WT, layer.W)


def test_tiny_inputs_get_steps_of_their_own_scale():
    x = RNG.normal(size=(6, 5)) * 1e-8
    report = check_layer(Cube(), x)
    assert report.passed, str(report)
    assert verdicts(check_layer(Cube(1.01), x)) == {"x": "FAIL"}


def test_batchnorm_with_a_tiny_eps_and_a_constant_column_passes(monkeypatch):
    import layers.batchnorm as bn_module

    monkeypatch.setattr(bn_module, "BN_EPS", 1e-12)
    x = RNG.normal(size=(8, 5))
    x[:, 2] = 0.7
    report = check_layer(BatchNormalization(np.ones(5), np.zeros(5)), x)
    assert report.passed, str(report)


def test_a_long_double_input_is_not_nondeterministic():
    report = check_layer(Scale(RNG.normal(size=5)), X.astype(np.longdouble))
    assert report.passed, str(report)
    assert not any("nondeterministic" in f.kind for f in report.findings)


# -- one verdict path ---------------------------------------------------------------------

def test_the_method_a_report_names_is_the_one_used():
    report = check_layer(Scale(RNG.normal(size=5)), X[:2, :3] if False else X[:2],
                         strategy="jacobian", method="forward")
    assert report.method == "forward" and {r.method for r in report.results} == {"forward"}


@settings(max_examples=30, deadline=None)
@given(layer_index=st.integers(0, 3), strategy=st.sampled_from(STRATEGIES),
       seed=st.integers(0, 10))
def test_the_printed_tolerance_is_the_one_applied(layer_index, strategy, seed):
    """For every compared item: it fails exactly when its error exceeds the tolerance the
    report states for it, and the margin is the largest ratio of the two."""
    rng = np.random.default_rng(seed)
    layers_ = [Scale(rng.normal(size=5)), Scale(rng.normal(size=5), 1.01),
               BatchNormalization(rng.uniform(0.5, 1.5, 5), rng.normal(size=5)),
               AffineB(rng.normal(size=(5, 3)), rng.normal(size=3), 1.001)]
    report = check_layer(layers_[layer_index], rng.normal(size=(6, 5)), strategy=strategy,
                         samples=10, probes=4, seed=seed, sequence=False)
    for r in report.results:
        if r.tolerances is None:  # projection: the compared items are the probes
            continue
        err = np.abs(np.asarray(r.numerical) - np.asarray(r.analytic))
        tol = np.asarray(r.tolerances)
        checked = ~np.isnan(tol)
        excluded = np.zeros(tol.shape, bool)
        for index in r.excluded:
            excluded[index] = True
        judged = checked & ~excluded
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(tol[judged] > 0, err[judged] / tol[judged],
                             np.where(err[judged] > 0, np.inf, 0.0))
        assert (r.verdict == "FAIL") == bool(np.any(ratio > 1)), r
        assert r.margin == pytest.approx(float(np.max(ratio, initial=0.0)), rel=1e-9)
        assert r.resolution >= float(np.max(tol[judged], initial=0.0)) * (1 - 1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), factor=st.sampled_from([2.0, 10.0]))
def test_a_single_element_error_above_the_resolution_is_caught(seed, factor):
    """The resolution is a promise: an error ``factor`` times it, in any one element, FAILs."""
    rng = np.random.default_rng(seed)
    gamma, beta, x = rng.uniform(0.5, 1.5, 4), rng.normal(size=4), rng.normal(size=(6, 4))
    clean = check_layer(BatchNormalization(gamma, beta), x, wrt=["x"], sequence=False)
    r = clean.result("x")
    index = tuple(int(i) for i in np.unravel_index(rng.integers(x.size), x.shape))
    bump = factor * r.resolution * rng.choice([-1.0, 1.0])

    class OneOff(BatchNormalization):
        def backward(self, dout):
            dx = super().backward(dout)
            dx[index] += bump
            return dx

    report = check_layer(OneOff(gamma, beta), x, wrt=["x"], sequence=False)
    assert report.result("x").verdict == "FAIL", (index, bump, str(report))


# -- inconclusive, and how to say a gradient is zero ------------------------------------

def test_a_check_that_cannot_resolve_an_error_is_inconclusive_never_pass():
    report = check_layer(Scale(RNG.normal(size=5)), X, min_resolution=1e-14)
    assert {r.verdict for r in report.results} == {"INCONCLUSIVE"}
    assert not report.passed and "min_resolution" in report.result("x").inconclusive
    assert check_layer(Scale(RNG.normal(size=5)), X, min_resolution=1e-14,
                       inconclusive="pass").passed


def test_a_structurally_zero_gradient_is_declared_with_expect_zero():
    class BiasThenBN:
        """``BN(x + b)`` in train mode: db is zero for every input."""

        def __init__(self):
            self.b = np.zeros(5)
            self.bn = BatchNormalization(np.ones(5), np.zeros(5))

        def forward(self, x, train_flg=True):
            return self.bn.forward(x + self.b, train_flg)

        def backward(self, dout):
            dx = self.bn.backward(dout)
            self.db = dx.sum(axis=0)
            return dx

    report = check_layer(BiasThenBN(), X, wrt=["b"])
    assert report.result("b").verdict == "INCONCLUSIVE" and report.result("b").vacuous
    declared = check_layer(BiasThenBN(), X, wrt=["b"], expect_zero=["b"])
    assert declared.passed and declared.result("b").resolution < 1e-6
    unknown = check_layer(Scale(RNG.normal(size=5)), X, expect_zero=["b"])
    assert unknown.passed and any(f.kind == "expect-zero-unknown" for f in unknown.findings)


class ScaleAndBias:
    """``w * x + b`` (``used=True``) or ``w * x`` with a backward that still returns ``db``."""

    def __init__(self, used):
        self.w, self.b, self.used = np.linspace(0.5, 1.5, 5), np.zeros(5), used

    def forward(self, x, train_flg=True):
        self.x = x
        return self.w * x + (self.b if self.used else 0.0)

    def backward(self, dout):
        self.dw, self.db = np.sum(dout * self.x, axis=0), np.sum(dout, axis=0)
        return dout * self.w


@pytest.mark.parametrize("used, why", [
    (True, r"max\|numerical\| = [0-9.]+ at \(\d,\): the forward depends on it"),
    (False, r"max\|numerical\| = 0: backward returns a gradient the forward does not have")])
def test_an_expect_zero_target_whose_gradient_is_not_zero_fails_naming_its_largest_element(
        used, why):
    """Declared zero, but backward returns ``db = dout.sum(0)``: FAIL with a finding that says
    so and gives the largest element (also when the forward does depend on ``b``, where the
    comparison itself agrees: the declaration is wrong, and never silently ignored)."""
    report = check_layer(ScaleAndBias(used), X, expect_zero=["b"])
    assert not report.passed and report.result("b").verdict == "FAIL"
    assert report.result("w").verdict == report.result("x").verdict == "PASS"
    (finding,) = [f for f in report.findings if f.kind == "expect-zero-violated"]
    assert finding.failure and finding.target == "b"
    assert re.search(r"'b' was declared expect_zero, but its gradient is not zero: "
                     r"max\|analytic\| = [0-9.]+ at \(\d,\) \(tolerance [0-9.e+-]+\), " + why,
                     finding.message), finding.message
    assert "expect_zero" in str(report)
    projected = check_layer(ScaleAndBias(used), X, expect_zero=["b"], strategy="projection")
    assert projected.result("b").verdict == "FAIL" and any(re.search(
        r"max\|analytic\| = \S+ at random projection \d", f.message)
        for f in projected.findings if f.kind == "expect-zero-violated")


def test_the_gate_exits_1_for_inconclusive_and_takes_the_options(capsys):
    from gradcheck.gate.cli import main

    assert main(["BatchNormalization-2d", "--min-resolution", "1e-14", "--quiet"]) == 1
    assert "inconclusive" in capsys.readouterr().out
    assert main(["BatchNormalization-2d", "--min-resolution", "1e-14", "--inconclusive",
                 "pass", "--quiet"]) == 0


def test_the_configuration_takes_expect_zero(tmp_path, monkeypatch, capsys):
    from gradcheck.gate.cli import main

    (tmp_path / "zero.py").write_text(
        "import numpy as np\n"
        "from gradcheck.layers import BatchNormalization\n"
        "class BiasThenBN:\n"
        "    def __init__(self):\n"
        "        self.b = np.zeros(3); self.bn = BatchNormalization(np.ones(3), np.zeros(3))\n"
        "    def forward(self, x, train_flg=True): return self.bn.forward(x + self.b, train_flg)\n"
        "    def backward(self, dout):\n"
        "        dx = self.bn.backward(dout); self.db = dx.sum(axis=0); return dx\n"
        "def make():\n"
        "    return BiasThenBN(), np.random.default_rng(0).normal(size=(6, 3))\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gradcheck]\ntargets = ["zero.py:make"]\nexpect_zero = ["b"]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["--quiet"]) == 0
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\ntargets = ["zero.py:make"]\n')
    assert main(["--quiet"]) == 1
    capsys.readouterr()


@pytest.mark.slow
def test_elements_judged_only_coarsely_are_listed_and_the_resolution_holds_for_the_rest():
    """Near the ReLU and max-pool kinks of a small ConvNet, central4's wide stencil leaves a few
    elements with a loose tolerance: they are listed (``unresolved``, a finding) and left out of
    the resolution, and a single-element error of twice the resolution in any other element
    still FAILs."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import digits_networks as digits

    net, x = digits.make_convnet(True)
    report = check_layer(net, x, method="central4", wrt=["x"], sequence=False)
    r = report.result("x")
    assert r.verdict == "PASS" and r.unresolved
    assert any("could only be judged" in w for w in report.warnings)
    tol = np.asarray(r.tolerances)
    assert all(tol[i] > 1e-3 * np.max(np.abs(r.numerical)) for i in r.unresolved)
    resolved = [i for i in np.ndindex(x.shape) if i not in set(r.unresolved)]
    index = resolved[len(resolved) // 3]
    layer0 = net.layers[0]
    original = layer0.backward

    def wrong(dout):
        dx = original(dout).copy()
        dx[index] += 2 * r.resolution
        return dx

    layer0.backward = wrong
    bad = check_layer(net, x, method="central4", wrt=["x"], sequence=False)
    assert bad.result("x").verdict == "FAIL", (index, str(bad))


class _OffsetTanh:
    """``tanh`` whose backward adds a constant to every element of dx (``+ offset``)."""

    def __init__(self, offset):
        self.offset = offset

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout):
        return dout * (1 - self.y ** 2) + self.offset


@pytest.mark.parametrize("offset", [1e-2, 1e-5])
def test_a_constant_offset_in_dx_fails_and_is_not_taken_for_rounding(offset):
    """``backward(c dout) / c - backward(dout)`` is then the same value in every element:
    not rounding (which has mean zero), so no "lower precision" tolerance; it was
    INCONCLUSIVE with a float32-cast note (and passed with inconclusive="pass")."""
    x = np.random.default_rng(19).normal(size=(4, 8))
    report = check_layer(_OffsetTanh(offset), x, inconclusive="pass")
    assert not report.passed and report.results[0].verdict == "FAIL", str(report)
    assert not any(f.kind == "analytic-precision" for f in report.findings)


def test_a_check_at_1e300_emits_no_overflow_warning():
    """x ~ 1e300, W ~ 1e-300: dW ~ 1e300; the check's own statistics are scaled (its
    squares overflowed with RuntimeWarnings, an error under -W error)."""
    import warnings

    class Lin:
        def __init__(self, W):
            self.W = W

        def forward(self, x):
            self.x = x
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    rng = np.random.default_rng(5)
    x, W = rng.normal(size=(6, 7)) * 1e300, rng.normal(size=(7, 5)) * 1e-300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_layer(Lin(W), x)
    assert report.passed, str(report)


def test_an_infinite_gradient_fails_without_a_runtime_warning():
    """``dx`` with an inf: its own FAIL, and the check's arithmetic on it warns nothing (a
    RuntimeWarning from the analytic-rounding probe was an error under -W error)."""
    import warnings

    class InfDx:
        def forward(self, x):
            return 2.0 * x

        def backward(self, dout):
            dx = 2.0 * dout
            dx[0, 0] = np.inf
            return dx

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_layer(InfDx(), np.random.default_rng(1).normal(size=(4, 3)))
    assert report.result("x").verdict == "FAIL"


@pytest.mark.parametrize("method", ["central", "richardson"])
def test_the_jacobian_strategys_resolution_covers_its_refinement(method):
    """An entry outside its first tolerance is refined and judged on the refined tolerance
    (four times the first, for central): the resolution the PASS states must allow for it,
    or an error of 1.5 times the stated resolution PASSes."""
    f, df = TINY_LAYERS["log"]
    x = np.random.default_rng(3).uniform(1.0, 2.0, size=(3, 4))
    r = check_layer(Pointwise(f, df), x, strategy="jacobian", method=method).result("x")
    assert r.verdict == "PASS"
    wrong = 1.0 + 1.5 * r.resolution * x.flat[1]
    bad = check_layer(Pointwise(f, df, wrong), x, strategy="jacobian", method=method,
                      sequence=False)
    assert bad.result("x").verdict == "FAIL", str(bad)


class _Relu:
    """``max(x, 0)``, its gradient 0 at 0 (inside the hull [0, 1], off its central 1/2)."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0.0)

    def backward(self, dout):
        return dout * (self.x > 0)


@pytest.mark.parametrize("strategy", ["jacobian", "elementwise"])
def test_the_kink_fraction_counts_elements_under_every_strategy(strategy):
    """A ReLU at 0 in 6 of 8 elements (lone kinks, no smooth direction): 75 % of the
    elements sit at kinks, an INCONCLUSIVE. The jacobian strategy compared the 6 elements
    against its 32 entries (19 %) and PASSed on a check of hulls alone."""
    x = np.array([[0.0, 0.0, 0.0, -0.5], [0.3, 0.0, 0.0, 0.0]])
    r = check_layer(_Relu(), x, strategy=strategy).result("x")
    assert r.verdict == "INCONCLUSIVE" and "6 of 8 elements sit at kinks" in r.inconclusive, r


@pytest.mark.parametrize("strategy", ["jacobian", "elementwise"])
def test_sorted_ties_verified_along_their_groups_count_as_checked(strategy):
    """Sorting rows with three-way ties in 6 of 8 elements (was INCONCLUSIVE): each tie
    group's sum is verified along the direction moving it, every element is within its
    hull -- for a three-way tie all a generalized gradient (the permutohedron) satisfies --
    so they count as checked."""
    x = np.array([[1.0, 1.0, 1.0, -0.5], [0.3, 2.0, 2.0, 2.0]])
    report = check_layer(SortRows(), x, strategy=strategy)
    assert report.result("x").verdict == "PASS", str(report)
    (note,) = [f.message for f in report.findings if f.kind == "nondifferentiable"]
    assert "the 6 element(s) of the passing groups count as checked" in note


@pytest.mark.parametrize("name, scale, strategy", [
    ("Affine-2d", 1e8, "projection"), ("BatchNormalization-2d", 1e8, "projection"),
    ("Convolution", 1e8, "projection"), ("BatchNormalization-4d", 1.0, "projection"),
    ("Affine-2d", 1.0, "jacobian"), ("BatchNormalization-4d", 1e4, "jacobian")])
def test_richardson_catches_three_times_the_resolution_it_states(name, scale, strategy):
    """What a PASS rules out is caught: an error of 3x the stated relative resolution (times
    max|dx|), in one element of dx and linear in dout, FAILs. At inputs of 1e8 the
    projections' bisection judged the wrong element alone by the projections' own
    truncation term (1e7 times the gradient's units): errors 20 to 7000 times the stated
    resolution passed as "resolved"; and the best probe along a random upstream gradient
    stated a resolution that only the probes along dout (which see the whole error) keep."""
    rng = np.random.default_rng(0)
    layer, x = get_spec(name).make(get_spec(name).shapes[0], rng, True)
    x = x * scale
    dout = rng.standard_normal(np.shape(layer.forward(x)))
    fresh = copy.deepcopy(layer)
    fresh.forward(x)
    dx = np.asarray(fresh.backward(dout), dtype=np.float64)
    opts = dict(dout=dout, wrt=["x"], method="richardson", strategy=strategy, sequence=False)
    r = check_layer(layer, x, **opts).result("x")
    assert r.verdict == "PASS", r
    k = int(np.argmax(np.abs(dx)))
    bad = wrong_element(layer, k, 3.0 * r.relative_resolution * float(np.max(np.abs(dx))),
                          dout)
    assert check_layer(bad, x, **opts).result("x").verdict == "FAIL", (name, scale, r)


def test_the_projections_resolution_is_the_one_its_probes_along_dout_keep():
    """A probe along a random upstream gradient ``u`` sees the error of ``J^T u``: a wrong
    Jacobian entry moves it by ``|<u, dout>| / |dout|**2`` of what it moves the gradient at
    dout. Its bound stated a resolution 1.9x finer than what is caught (BatchNormalization
    4-d): an error of 1.5x the stated one, in one element and linear in dout, FAILs."""
    rng = np.random.default_rng(0)
    spec = get_spec("BatchNormalization-4d")
    layer, x = spec.make((4, 2, 3, 3), rng, True)
    dout = rng.standard_normal(np.shape(layer.forward(x)))
    fresh = copy.deepcopy(layer)
    fresh.forward(x)
    dx = np.asarray(fresh.backward(dout), dtype=np.float64)
    opts = dict(dout=dout, wrt=["x"], method="richardson", strategy="projection",
                sequence=False)
    r = check_layer(layer, x, **opts).result("x")
    assert r.verdict == "PASS", r
    delta = 1.5 * r.relative_resolution * float(np.max(np.abs(dx)))
    for k in range(x.size):
        bad = wrong_element(layer, k, delta, dout)
        assert check_layer(bad, x, **opts).result("x").verdict == "FAIL", (k, r)
