"""The grouped strategy: exact elementwise verdicts from groups of disjoint output supports.

Facts tested:

* for every built-in layer, the grouped numerical gradient equals the black-box
  (one element at a time) one to rounding, at the same steps;
* the structure probes find what the layer's Jacobian has (elementwise, rows,
  features, output channels, flattened features) and reject what it has not
  (a 3x3 convolution's spatial axes);
* a layer whose structure is not what the probes suggest -- a row coupling
  for some rows only, a max over the batch, a forward that changes between
  calls -- never gets a false PASS: a correct backward passes, a backward that
  ignores the coupling fails;
* on layers with random block structure (hypothesis) the grouped verdict is
  the black-box verdict, and it is PASS exactly when the backward is right;
* every mutant of the corpus fails under ``strategy="grouped"``.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gradcheck import check_layer
from gradcheck.engine import grouped
from gradcheck.engine.perturb import (GroupMoves, GroupReduce, StructureViolated,
                                      differences)
from gradcheck.engine.structure import Structure, block_keys, color, detect, interval_colors
from gradcheck.gate.suite import builtin_cases
from layers import Affine, BatchNormalization, Convolution, Relu

#: Fixed steps and tolerances so loose that nothing is refined: the first numerical
#: values of both strategies, at the same steps.
RAW = dict(eps=1e-6, atol=1e3, rtol=0.0, min_resolution=1e30, sequence=False)

CASES = list(builtin_cases())


def _numerical(layer, x, train_flg, strategy, **options):
    report = check_layer(layer, x, train_flg=train_flg, strategy=strategy, **RAW, **options)
    return {r.name: (r.numerical, r.strategy) for r in report.results}


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_grouped_gradient_equals_black_box_for_every_builtin_layer(case):
    options = {k: v for k, v in case.spec.options.items() if k != "expect_zero"}
    layer, x = case.build()
    got = _numerical(layer, x, case.train_flg, "grouped", **options)
    layer, x = case.build()
    want = _numerical(layer, x, case.train_flg, "elementwise", **options)
    assert got.keys() == want.keys()
    for name, (g, _) in got.items():
        e = want[name][0]
        scale = float(np.max(np.abs(e), initial=0.0))
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12 * max(scale, 1.0),
                                   err_msg=f"{case.label}: {name}")


@pytest.mark.parametrize("method", ["forward", "central", "central4", "richardson"])
@pytest.mark.parametrize("make", [
    lambda r: (BatchNormalization(r.normal(size=12) + 1, r.normal(size=12)), r.normal(size=(8, 12))),
    lambda r: (Affine(r.normal(size=(10, 7)), r.normal(size=7)), r.normal(size=(5, 10))),
], ids=["batchnorm", "affine"])
def test_grouped_gradient_equals_black_box_for_every_method(make, method):
    got = _numerical(*make(np.random.default_rng(0)), True, "grouped", method=method)
    want = _numerical(*make(np.random.default_rng(0)), True, "elementwise", method=method)
    for name, (g, used) in got.items():
        assert used == "grouped"
        np.testing.assert_allclose(g, want[name][0], rtol=1e-9, atol=1e-12, err_msg=name)


def _banded_cases():
    from gradcheck.gate.suite import make_convolution, make_pooling

    return {
        "conv 3x3": (make_convolution, (2, 3, 12, 12), {}),
        "conv stride 2 pad 1": (make_convolution, (2, 2, 12, 12), {"stride": 2, "pad": 1}),
        "max pool 2x2": (make_pooling, (1, 2, 8, 8), {}),
        "max pool 3x3 stride 1 pad 1": (make_pooling, (1, 2, 9, 9),
                                        {"pool": 3, "stride": 1, "pad": 1}),
        "avg pool 3x3 stride 2 pad 1": (make_pooling, (1, 2, 11, 11),
                                        {"pool": 3, "stride": 2, "pad": 1, "mode": "avg"}),
    }


@pytest.mark.parametrize("name", list(_banded_cases()))
def test_banded_structure_gradient_equals_black_box(name):
    make, shape, kw = _banded_cases()[name]
    got = _numerical(*make(shape, np.random.default_rng(0), **kw), True, "grouped", wrt=["x"])
    want = _numerical(*make(shape, np.random.default_rng(0), **kw), True, "elementwise",
                      wrt=["x"])
    assert got["x"][1] == "grouped"
    np.testing.assert_allclose(got["x"][0], want["x"][0], rtol=1e-9, atol=1e-12)
    report = check_layer(*make(shape, np.random.default_rng(0), **kw), wrt=["x"],
                         strategy="grouped", sequence=False)
    assert report.passed, str(report)
    text = report.result("x").tolerance_reason
    assert "banded" in text and not report.warnings, text


def test_interval_coloring_is_greedy_and_proper():
    lo, hi = np.array([0, 0, 1, 2, 3, 5]), np.array([0, 1, 2, 3, 4, 4])  # last one empty
    c = interval_colors(lo, hi)
    assert c.tolist() == [0, 1, 0, 1, 0, 0]
    for p in range(6):
        for q in range(p):
            if c[p] == c[q] and lo[p] <= hi[p] and lo[q] <= hi[q]:
                assert hi[q] < lo[p] or hi[p] < lo[q]


def _structure(layer, x, target="x"):
    report = check_layer(layer, x, strategy="grouped", wrt=[target], sequence=False)
    assert report.passed, str(report)
    assert not report.warnings, str(report)
    return report.results[0].strategy, report.results[0].tolerance_reason


@pytest.mark.parametrize("make, target, kind, groups", [
    (lambda r: (Relu(), r.normal(size=(6, 40))), "x", "elementwise", 1),
    (lambda r: (BatchNormalization(r.uniform(0.5, 1.5, 12), r.normal(size=12)),
                r.normal(size=(8, 12))), "x",
     "feature-independent", 8),
    (lambda r: (BatchNormalization(r.uniform(0.5, 1.5, 48), r.normal(size=48)),
                r.normal(size=(4, 3, 4, 4))),
     "gamma", "disjoint", 1),
    (lambda r: (Affine(r.normal(size=(10, 7)), r.normal(size=7)), r.normal(size=(5, 10))),
     "x", "batch-independent", 10),
    (lambda r: (Affine(r.normal(size=(10, 7)), r.normal(size=7)), r.normal(size=(5, 10))),
     "W", "channel-independent", 10),
    (lambda r: (Convolution(r.normal(size=(4, 2, 3, 3)), r.normal(size=4), pad=1),
                r.normal(size=(2, 2, 6, 6))), "x", "batch-independent", 72),
    (lambda r: (Convolution(r.normal(size=(4, 2, 3, 3)), r.normal(size=4), pad=1),
                r.normal(size=(2, 2, 6, 6))), "W", "channel-independent", 18),
    (lambda r: (Convolution(r.normal(size=(4, 3, 3, 3)) * 0.3, r.normal(size=4)),
                r.normal(size=(2, 3, 12, 12))), "x", "batch-independent, banded", 27),
])
def test_probes_find_the_structure_the_jacobian_has(make, target, kind, groups):
    strategy, text = _structure(*make(np.random.default_rng(0)), target)
    assert strategy == "grouped"
    assert f"{kind} (" in text and f"{groups} group(s)" in text, text


def test_batchnorm_64x256_wrt_x_within_the_call_budget():
    rng = np.random.default_rng(0)
    bn = BatchNormalization(rng.normal(size=256) + 1.0, rng.normal(size=256))
    report = check_layer(bn, rng.normal(size=(64, 256)), wrt=["x"], sequence=False)
    assert report.passed and report.results[0].strategy == "grouped", str(report)
    assert report.forward_calls <= 2 * 64 + 30


@pytest.mark.parametrize("shape", [(7, 9), (100, 1000)])
def test_an_activation_is_checked_in_under_20_forward_calls_at_any_size(shape):
    report = check_layer(Relu(), np.random.default_rng(0).normal(size=shape), sequence=False)
    assert report.passed and report.results[0].strategy == "grouped", str(report)
    assert report.forward_calls < 20


def test_an_element_within_a_step_of_a_kink_is_refined_without_a_fallback():
    x = np.random.default_rng(0).normal(size=(10, 40))
    x[3, 7] = 1e-7  # the grouped value at h straddles ReLU's kink, as the black-box one does
    report = check_layer(Relu(), x, sequence=False)
    assert report.passed and report.results[0].strategy == "grouped", str(report)
    assert report.results[0].n_refined >= 1
    assert not [f for f in report.findings if f.kind == "grouped-fallback"]


def test_coloring_is_the_rank_within_each_block():
    keys = np.array([2, 0, 2, 1, 0, 2])
    assert [g.tolist() for g in color(keys)] == [[0, 1, 3], [2, 4], [5]]
    k, n = block_keys((2, 3, 4), [1])
    assert n == 3 and k.reshape(2, 3, 4)[1, 2, 3] == 2


def test_group_reduce_raises_when_an_output_outside_the_supports_moves():
    x = np.arange(6.0)

    def evaluate(i=None):
        return np.r_[x[:3] * 2.0, x[3:] * 2.0 + 0.1 * x[0]]  # x[0] leaks into block 3..5

    groups = [np.array([0, 1])]
    st_ = Structure(kind="elementwise", pairs=((0, (0,)),), in_block=np.arange(6),
                    out_block=np.arange(6), n_blocks=6, groups=tuple(groups), calls=0, note="",
                    out_shape=(6,), shape=(6,))
    sink = GroupReduce(np.ones(6), groups, st_, 1)
    with pytest.raises(StructureViolated):
        differences(evaluate, GroupMoves(x, groups, np.full(6, 1e-3), [(1.0, -1.0)]),
                    [(1.0, -1.0)], sink, evaluate())
    assert np.array_equal(x, np.arange(6.0))  # restored exactly


class RowLeak:
    """``tanh(x)``, plus ``c * x[src]`` leaking into row ``dst`` only (a coupling that a
    random half of the rows misses half the time); ``honest=False`` drops it in backward."""

    def __init__(self, src=0, dst=3, c=0.7, honest=True):
        self.src, self.dst, self.c, self.honest = src, dst, c, honest

    def forward(self, x):
        self.t = np.tanh(x)
        out = self.t.copy()
        out[self.dst] += self.c * x[self.src]
        return out

    def backward(self, dout):
        dx = dout * (1.0 - self.t ** 2)
        if self.honest:
            dx[self.src] += self.c * dout[self.dst]
        return dx


class MaxOverBatch:
    """``x - max(x, axis=0)``: every row depends on the batch's largest entry per column."""

    def __init__(self, honest=True):
        self.honest = honest

    def forward(self, x):
        self.arg = np.argmax(x, axis=0)
        return x - x.max(axis=0, keepdims=True)

    def backward(self, dout):
        dx = dout.copy()
        if self.honest:
            dx[self.arg, np.arange(dout.shape[1])] -= dout.sum(axis=0)
        return dx


#: Forward calls of :class:`Switching`, kept outside the layer (the check restores the
#: layer's own state before every call).
SWITCH_CALLS = [0]


class Switching:
    """Row-independent ``tanh(x)`` for its first ``k`` forward calls, then rows coupled
    (each row gets ``0.5 *`` the previous one): a structure that changes between calls."""

    def __init__(self, k):
        self.k = k
        SWITCH_CALLS[0] = 0

    def forward(self, x):
        SWITCH_CALLS[0] += 1
        self.t = np.tanh(x)
        return self.t + (0.5 * np.roll(x, 1, axis=0) if SWITCH_CALLS[0] > self.k else 0.0)

    def backward(self, dout):
        return dout * (1.0 - self.t ** 2)


def _x(seed, shape=(8, 6)):
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layer_cls", [RowLeak, MaxOverBatch])
def test_a_coupling_the_probes_may_miss_never_gives_a_false_pass(layer_cls, seed):
    honest = check_layer(layer_cls(honest=True), _x(seed), strategy="grouped", seed=seed,
                         sequence=False)
    assert honest.passed, str(honest)
    dishonest = check_layer(layer_cls(honest=False), _x(seed), strategy="grouped", seed=seed,
                            sequence=False)
    assert not dishonest.passed and dishonest.results[0].verdict == "FAIL", str(dishonest)


class MisroutedLeak(RowLeak):
    """:class:`RowLeak` whose backward adds the coupling's gradient to the wrong element:
    ``dx[dst] += c dout[dst]`` where it belongs to ``dx[src]``. When the probes miss the
    coupling, the grouped differences attribute it exactly as this bug does (``+e`` at one
    element, ``-e`` at the other): only the projections can see it, and a ±1 direction with
    equal signs at the two elements cannot (half the time)."""

    def backward(self, dout):
        dx = dout * (1.0 - self.t ** 2)
        dx[self.dst] += self.c * dout[self.dst]
        return dx


class DifferenceFeature:
    """``tanh(x)`` plus ``0.7 (x[0, b] - x[0, c])`` in output ``(0, a)``, a term backward
    forgets (``honest=False``): the grouped pass moves ``b`` and ``c`` by the same step, so
    the term never changes there."""

    def __init__(self, a=8, b=9, c=10, honest=True):
        self.a, self.b, self.c, self.honest = a, b, c, honest

    def forward(self, x):
        self.t = np.tanh(x)
        out = self.t.copy()
        out[0, self.a] += 0.7 * (x[0, self.b] - x[0, self.c])
        return out

    def backward(self, dout):
        dx = dout * (1.0 - self.t ** 2)
        if self.honest:
            dx[0, self.b] += 0.7 * dout[0, self.a]
            dx[0, self.c] -= 0.7 * dout[0, self.a]
        return dx


def test_a_contribution_misattributed_between_two_elements_never_passes():
    """Every placement of a misrouted coupling between two rows of a (4, 8) input (96): the
    default check FAILs each (21 PASSed with ±1 projections alone: the one projection
    backing a single-group PASS cancels the pair when its signs agree)."""
    x = np.random.default_rng(0).normal(size=(4, 8)) * 0.5
    passed = [(src, dst) for src in np.ndindex(4, 8) for k in (1, 2, 3)
              for dst in [((src[0] + k) % 4, src[1])]
              if check_layer(MisroutedLeak(src, dst), x, sequence=False).passed]
    assert not passed


@pytest.mark.parametrize("seed", range(8))
def test_a_forgotten_term_in_a_difference_of_two_elements_never_passes(seed):
    x = np.random.default_rng(0).normal(size=(1, 32)) * 0.5
    assert check_layer(DifferenceFeature(), x, seed=seed, sequence=False).passed
    report = check_layer(DifferenceFeature(honest=False), x, seed=seed, sequence=False)
    assert not report.passed and report.results[0].verdict == "FAIL", str(report)


@pytest.mark.parametrize("k", [4, 8, 11, 12, 13, 14, 15, 16, 17])
def test_a_forward_that_changes_structure_between_calls_never_passes(k):
    # the check makes 19 forward calls: the 4 analytic ones, then the numerical ones
    report = check_layer(Switching(k), _x(0), strategy="grouped", sequence=False)
    assert SWITCH_CALLS[0] > k  # the forward did change during the numerical check
    assert report.results[0].verdict != "PASS", str(report)


def test_a_wrong_structure_falls_back_with_a_finding():
    # seed 1: the probes' random half keeps rows 0 and 3 together, the coupling unseen
    found = []
    for seed in range(8):
        report = check_layer(RowLeak(), _x(seed), strategy="grouped", seed=seed,
                             sequence=False)
        assert report.passed, str(report)
        found += [f for f in report.findings if f.kind == "grouped-fallback"]
    assert found and all("structure found" in f.message for f in found)


class Blocks:
    """``tanh(x @ M)``, ``M`` block-diagonal over random feature blocks, optionally with a
    leak from row ``src`` into row ``dst``; ``bug`` names one wrong backward."""

    def __init__(self, M, leak, bug):
        self.M, self.leak, self.bug = M, leak, bug

    def forward(self, x):
        self.x = x
        self.t = np.tanh(x @ self.M)
        out = self.t.copy()
        if self.leak:
            src, dst = self.leak
            out[dst] += 0.6 * x[src]
        return out

    def backward(self, dout):
        dz = dout * (1.0 - self.t ** 2)
        M = np.diag(np.diag(self.M)) if self.bug == "diagonal-only" else self.M
        dx = dz @ M.T
        if self.leak and self.bug != "no-leak":
            src, dst = self.leak
            dx[src] += 0.6 * dout[dst]
        if self.bug == "one-element":
            dx[0, 0] *= 1.01
        return dx


@st.composite
def block_layers(draw):
    n, d = draw(st.integers(2, 6)), draw(st.integers(3, 9))
    cuts = sorted(draw(st.sets(st.integers(1, d - 1), max_size=d - 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    M = np.zeros((d, d))
    for lo, hi in zip([0] + cuts, cuts + [d]):
        M[lo:hi, lo:hi] = rng.normal(size=(hi - lo, hi - lo)) * 0.6 / np.sqrt(hi - lo)
        M[lo:hi, lo:hi] += np.eye(hi - lo)
    leak = tuple(rng.choice(n, size=2, replace=False)) if draw(st.booleans()) else None
    bugs = [None, "one-element"] + (["diagonal-only"] if np.count_nonzero(
        M - np.diag(np.diag(M))) else []) + (["no-leak"] if leak else [])
    bug = draw(st.sampled_from(bugs))
    return Blocks(M, leak, bug), rng.normal(size=(n, d)), bug


@settings(max_examples=20)
@given(block_layers(), st.integers(0, 3))
def test_random_block_structure_grouped_verdict_is_the_truth(case, seed):
    layer, x, bug = case
    report = check_layer(layer, x, strategy="grouped", seed=seed, sequence=False)
    black = check_layer(layer, x, strategy="elementwise", seed=seed, sequence=False)
    assert report.passed == (bug is None), str(report)
    assert [r.verdict for r in report.results] == [r.verdict for r in black.results]


def test_auto_is_the_default_and_small_targets_stay_elementwise():
    rng = np.random.default_rng(0)
    report = check_layer(Affine(rng.normal(size=(10, 3)), rng.normal(size=3)),
                         rng.normal(size=(5, 10)), sequence=False)
    assert report.strategy == "auto"
    assert {r.name: r.strategy for r in report.results} == {
        "x": "grouped", "W": "elementwise", "b": "elementwise"}
    assert grouped.AUTO_MIN > 30


def test_detect_on_a_dense_layer_finds_nothing():
    x = _x(0)

    def evaluate(i=None):
        return np.tanh(x * x.sum()).reshape(-1)

    st_ = detect(evaluate, x, evaluate().copy(), x.shape, seed=0, name="x")
    assert st_.kind == "dense" and not st_.found
    assert np.array_equal(x, _x(0))


@pytest.mark.parametrize("name, train_flg", __import__("mutants.test_mutants", fromlist=["CASES"])
                         .CASES)
def test_every_mutant_fails_under_the_grouped_strategy(name, train_flg):
    from mutants.test_mutants import check_mutant

    check_mutant(name, train_flg, "central", "grouped")


class LoudTanh:
    """``tanh(x)`` with one output a 1e8 times the rest: a projection of the whole target
    moves that output too, so its resolution is far coarser than the elements'."""

    def forward(self, x):
        self.x = x
        out = np.tanh(x)
        out[0, 0] *= 1e8
        return out

    def backward(self, dout):
        dx = dout * (1 - np.tanh(self.x) ** 2)
        dx[0, 0] *= 1e8
        return dx


def test_a_grouped_pass_states_the_resolution_of_the_projections_behind_it():
    """A contribution misattributed inside a group is seen by the backing projections alone:
    a grouped PASS takes their resolution when it is coarser and says so."""
    x = np.random.default_rng(2).normal(size=(4, 8))
    auto = check_layer(LoudTanh(), x, sequence=False).result("x")
    black = check_layer(LoudTanh(), x, sequence=False, strategy="elementwise").result("x")
    assert auto.passed and auto.strategy == "grouped"
    assert "backed by 1 random projection(s) of the whole target" in auto.tolerance_reason
    assert "(the resolution stated)" in auto.tolerance_reason
    assert auto.resolution > black.resolution  # the elements' largest tolerance (the loud one)
