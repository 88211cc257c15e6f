"""Ties: elements at a kink they share are checked together along the direction that moves them.

At a tie of a max the function is not differentiable along a tied element alone, but it is
along the direction moving the whole tied group (``max(a + t, b + t) = max(a, b) + t``): the
sum of the group's gradients must be that directional derivative, whatever the split
(:mod:`gradcheck.engine.ties`). CS231n's ``max_pool_backward_reshape`` without its
``/= np.sum(mask)`` (every tied element gets the full dout) passed element by element.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gradcheck.engine.elementwise as elementwise
import gradcheck.engine.jacobian as jacobian
import gradcheck.engine.projection as projection
import gradcheck.engine.ties as ties
from gradcheck import check_function, check_layer
from gradcheck.engine.ties import tie_groups

POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}

STRATEGIES = ["auto", "elementwise", "projection", "jacobian"]


def without_ties(monkeypatch):
    """No tie check in any strategy."""
    for module in (elementwise, projection, jacobian):
        monkeypatch.setattr(module, "TieCheck", lambda *a, **k: None)


def pool_forward(x, pool_param):
    """CS231n ``max_pool_forward_reshape``."""
    N, C, H, W = x.shape
    p = pool_param["pool_height"]
    xr = x.reshape(N, C, H // p, p, W // p, p)
    out = xr.max(axis=3).max(axis=4)
    return out, (x, xr, out)


def _pool_backward(dout, cache, split):
    x, xr, out = cache
    dx = np.zeros_like(xr)
    mask = xr == out[:, :, :, None, :, None]
    dx[mask] = np.broadcast_arrays(dout[:, :, :, None, :, None], dx)[0][mask]
    if split:
        dx /= np.sum(mask, axis=(3, 5), keepdims=True)
    return dx.reshape(x.shape)


def pool_backward_all_ties(dout, cache):
    """Without ``/= np.sum(mask)``: each tied element gets the whole dout (k times in all)."""
    return _pool_backward(dout, cache, split=False)


def pool_backward_split(dout, cache):
    return _pool_backward(dout, cache, split=True)


def pool_backward_first(dout, cache):
    """All of a window's dout to its first argmax (as im2col max pooling does)."""
    x, xr, out = cache
    N, C, Hp, _, Wp, _ = xr.shape
    windows = xr.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4)
    dw = np.zeros_like(windows)
    dw[np.arange(len(windows)), windows.argmax(axis=1)] = dout.reshape(-1)
    return dw.reshape(N, C, Hp, Wp, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)


def relu_pooled_input(seed=0):
    """A ReLU output: 5 of 96 windows are four-way ties at 0."""
    return np.maximum(0, np.random.default_rng(seed).normal(size=(2, 3, 8, 8)))


def finding(report, kind):
    return [f for f in report.findings if f.kind == kind]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_double_counted_maxpool_ties_fail(strategy):
    report = check_function(pool_forward, pool_backward_all_ties, relu_pooled_input(), POOL,
                            strategy=strategy)
    r = report.result("x")
    assert r.verdict == "FAIL", str(report)
    failed = finding(report, "tie-gradient")
    assert len(failed) == 5 and all(f.failure for f in failed)
    assert "at a tie of 4 elements" in failed[0].message
    assert "4 times as much: a gradient counted once per tied element?" in failed[0].message
    assert r.worst_analytic == pytest.approx(4 * r.worst_numerical)


@pytest.mark.parametrize("backward", [pool_backward_split, pool_backward_first])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_correct_maxpool_ties_pass_and_say_what_was_checked(backward, strategy):
    report = check_function(pool_forward, backward, relu_pooled_input(), POOL,
                            strategy=strategy)
    assert report.result("x").verdict == "PASS", str(report)
    (note,) = finding(report, "nondifferentiable")
    assert "5 tie group(s) of 20 elements checked along their common direction" in note.message
    assert "is not caught here" not in note.message


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), shift=st.sampled_from([0.0, 0.5, 1.0]))
def test_maxpool_over_relu_outputs_fails_iff_ties_are_counted_once_per_element(seed, shift):
    """ReLU outputs (windows tied at 0, more of them as the shift grows): the backward that
    gives every tied element the whole dout FAILs whenever a window is tied; the even split
    and the first argmax never FAIL (PASS, or INCONCLUSIVE when too many elements sit at
    kinks)."""
    x = np.maximum(0, np.random.default_rng(seed).normal(size=(2, 2, 6, 6)) - shift)
    xr = x.reshape(2, 2, 3, 2, 3, 2)
    tied = int(np.sum(np.sum(xr == xr.max(axis=(3, 5), keepdims=True), axis=(3, 5)) > 1))
    bad = check_function(pool_forward, pool_backward_all_ties, x, POOL)
    assert (bad.result("x").verdict == "FAIL") == (tied > 0), str(bad)
    for backward in (pool_backward_split, pool_backward_first):
        report = check_function(pool_forward, backward, x, POOL)
        assert report.result("x").verdict != "FAIL", str(report)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), shift=st.sampled_from([0.0, 0.5, 1.0]),
       strategy=st.sampled_from(["projection", "jacobian"]))
def test_maxpool_ties_under_projection_and_jacobian(seed, shift, strategy):
    """As above, under the strategies that judge directions and Jacobian entries: the
    double-counting backward FAILs whenever a window is tied; the split and the first
    argmax never FAIL."""
    x = np.maximum(0, np.random.default_rng(seed).normal(size=(2, 2, 6, 6)) - shift)
    xr = x.reshape(2, 2, 3, 2, 3, 2)
    tied = int(np.sum(np.sum(xr == xr.max(axis=(3, 5), keepdims=True), axis=(3, 5)) > 1))
    bad = check_function(pool_forward, pool_backward_all_ties, x, POOL, strategy=strategy)
    assert (bad.result("x").verdict == "FAIL") == (tied > 0), str(bad)
    for backward in (pool_backward_split, pool_backward_first):
        report = check_function(pool_forward, backward, x, POOL, strategy=strategy)
        assert report.result("x").verdict != "FAIL", str(report)


def test_a_wrong_split_within_each_hull_fails():
    """(dout, dout/4) at a two-way tie: each inside its hull [0, dout], the sum 1.25 dout.

    (Not dout/2: that is the element's central difference, so it is not found at a kink and
    its group is the other element alone, not checked.)"""
    x = np.array([[3.0, 3.0, 1.0, 0.5], [0.1, 2.0, -1.0, 0.7]])

    def backward(dout, x):
        dx = (x == x.max(axis=1, keepdims=True)) * dout[:, None]
        dx[0, 1] *= 0.25
        return dx

    report = check_function(lambda x: (x.max(axis=1), x), backward, x, strategy="elementwise")
    assert report.result("x").verdict == "FAIL", str(report)
    (failed,) = finding(report, "tie-gradient")
    assert "split or duplicated wrongly" in failed.message


def row_max(x):
    return x.max(axis=1), x


def row_max_all_ties(dout, x):
    return (x == x.max(axis=1, keepdims=True)) * dout[:, None]


def row_max_first(dout, x):
    dx = np.zeros_like(x)
    dx[np.arange(len(x)), x.argmax(axis=1)] = dout
    return dx


def row_max_split(dout, x):
    mask = x == x.max(axis=1, keepdims=True)
    return mask * (dout / mask.sum(axis=1))[:, None]


@st.composite
def rows_with_ties(draw):
    """(8, 6) rows, one to three of them with their max tied at 2 or 3 places."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x = rng.normal(size=(8, 6))
    for row in rng.choice(8, size=draw(st.integers(1, 3)), replace=False):
        k = draw(st.integers(2, 3))
        x[row, rng.choice(6, size=k, replace=False)] = x[row].max() + 0.25
    return x


@settings(max_examples=12, deadline=None)
@given(x=rows_with_ties(), strategy=st.sampled_from(["auto", "elementwise"]))
def test_a_row_max_counting_every_tie_fails_and_valid_subgradients_pass(x, strategy):
    """Every tie group whose gradients are counted once per tied element fails; the first
    argmax and the even split (both in the generalized gradient, with the same sum) pass."""
    bad = check_function(row_max, row_max_all_ties, x, strategy=strategy)
    assert bad.result("x").verdict == "FAIL", str(bad)
    ties_in_rows = int(np.sum(np.sum(x == x.max(axis=1, keepdims=True), axis=1) > 1))
    assert len(finding(bad, "tie-gradient")) == ties_in_rows
    for backward in (row_max_first, row_max_split):
        report = check_function(row_max, backward, x, strategy=strategy)
        assert report.result("x").verdict == "PASS", str(report)


def relu(x):
    return np.maximum(x, 0), x


def relu_backward(dout, x):
    return dout * (x > 0)


def test_relu_at_exactly_zero_stays_a_kink_not_checked_and_costs_one_call(monkeypatch):
    """A ReLU at 0 alone has no smooth direction: listed and excluded as before, no group;
    one forward call more (the backward over its outputs that looks for tied partners not
    found at a kink: it names none, so nothing is measured)."""
    x = np.random.default_rng(1).normal(size=(6, 7))
    x[1, 2] = x[4, 5] = 0.0
    report = check_function(relu, relu_backward, x, strategy="elementwise")
    r = report.result("x")
    assert r.verdict == "PASS" and set(r.excluded) == {(1, 2), (4, 5)}, str(report)
    (note,) = finding(report, "nondifferentiable")
    assert "tie group" not in note.message and "is not caught here" in note.message
    monkeypatch.setattr(elementwise, "TieCheck", lambda *a, **k: None)
    without = check_function(relu, relu_backward, x, strategy="elementwise")
    assert report.forward_calls - without.forward_calls == 1
    assert report.backward_calls - without.backward_calls == 1


def test_a_group_not_smooth_along_its_direction_stays_unchecked():
    """Two ReLUs at 0 feeding one output (a row sum): along the pair's direction the sum is
    still a kink (slopes 2 and 0), so the group is not checked and the verdict is unchanged."""
    x = np.random.default_rng(2).normal(size=(5, 8))
    x[3, 1] = x[3, 6] = 0.0

    def forward(x):
        return np.maximum(x, 0).sum(axis=1), x

    def backward(dout, x):
        return (x > 0) * dout[:, None]

    report = check_function(forward, backward, x, strategy="elementwise")
    r = report.result("x")
    assert r.verdict == "PASS" and set(r.excluded) == {(3, 1), (3, 6)}, str(report)
    (note,) = finding(report, "nondifferentiable")
    assert "checked along their common direction" not in note.message
    assert ("1 group(s) of elements sharing a kink not smooth along their common direction "
            "either, not checked") in note.message
    assert "for the other 2 element(s)" in note.message


def smooth(x):
    return np.tanh(x) * x, x


def smooth_backward(dout, x):
    return dout * (np.tanh(x) + x * (1.0 - np.tanh(x) ** 2))


def never(*args, **kwargs):
    raise AssertionError("called without kinks")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_inputs_without_kinks_cost_no_forward_call_more(monkeypatch, strategy):
    """Neither the tie check, the partner lookup nor the projection's kink descent runs."""
    x = np.random.default_rng(3).normal(size=(6, 9))
    with monkeypatch.context() as m:
        m.setattr(ties.TieCheck, "_partners", never)
        m.setattr(ties.TieCheck, "_check", never)
        m.setattr(projection._ProbeRefiner, "_crosses", never)
        report = check_function(smooth, smooth_backward, x, strategy=strategy)
    assert report.passed and not report.result("x").kinks, str(report)
    without_ties(monkeypatch)
    without = check_function(smooth, smooth_backward, x, strategy=strategy)
    assert without.forward_calls == report.forward_calls
    assert without.backward_calls == report.backward_calls


def test_each_tie_group_costs_two_forward_calls_plus_one_for_partners(monkeypatch):
    """Two calls a group, and one backward (with its forward) over the kinks' outputs that
    finds no partner outside the kinks (every tied element is one here)."""
    x = relu_pooled_input()
    report = check_function(pool_forward, pool_backward_split, x, POOL, strategy="elementwise")
    monkeypatch.setattr(elementwise, "TieCheck", lambda *a, **k: None)
    without = check_function(pool_forward, pool_backward_split, x, POOL,
                             strategy="elementwise")
    assert report.forward_calls - without.forward_calls == 2 * 5 + 1


def test_at_most_max_groups_are_checked_and_the_note_says_so(monkeypatch):
    monkeypatch.setattr(ties, "MAX_GROUPS", 2)
    report = check_function(pool_forward, pool_backward_all_ties, relu_pooled_input(), POOL,
                            strategy="elementwise")
    assert report.result("x").verdict == "FAIL"
    assert len(finding(report, "tie-gradient")) == 2
    (note,) = finding(report, "nondifferentiable")
    assert "3 more group(s) not checked (at most 2, sampled)" in note.message


def _shares(a, b):
    """Two supports share an output (``None``: dense, every output; empty: none)."""
    if a is None or b is None:
        return (a is None or len(a) > 0) and (b is None or len(b) > 0)
    return bool(set(a) & set(b))


@given(st.dictionaries(st.integers(0, 40), st.one_of(
    st.none(), st.lists(st.integers(0, 15), max_size=3, unique=True)), max_size=12))
def test_tie_groups_are_the_components_of_shared_outputs(supports):
    """Elements sharing an output are grouped transitively (a dense support shares one with
    every element that changed any); groups of one are left out."""
    elements, left, expected = sorted(supports), set(supports), []
    while left:  # the reference: connected components by search
        stack, comp = [left.pop()], set()
        while stack:
            e = stack.pop()
            comp.add(e)
            near = {f for f in left if _shares(supports[e], supports[f])}
            left -= near
            stack.extend(near)
        expected.append(sorted(comp))
    expected = sorted(c for c in expected if len(c) >= 2)
    assert [g.tolist() for g in tie_groups(elements, supports)] == expected


def test_projection_at_a_tie_is_no_false_fail_and_its_tie_groups_are_checked():
    """A probe moving a four-way tie by (+, +, +, -) has central difference 0 where the even
    split gives h/2, and every half of it passes: the probe was left failing (margin 3e8).
    Its step search sees the kink; the bisection descends into halves crossing one."""
    report = check_function(pool_forward, pool_backward_split, relu_pooled_input(), POOL,
                            strategy="projection")
    r = report.result("x")
    assert r.verdict == "PASS" and r.margin <= 1.0, str(report)
    assert len({i for i, *_ in r.kinks}) == 20


def two_way_ties():
    """Rows 0 and 2 with their max tied at two places."""
    return np.array([[3.0, 3.0, 1.0, 0.5], [0.1, 2.0, -1.0, 0.7], [1.0, -2.0, 1.0, 0.3]])


def row_max_full_and_half(dout, x):
    """``(dout, dout/2)`` at each two-way tie: the second element's value is its own central
    difference (never found at a kink), the sum 1.5 dout."""
    dx = row_max_all_ties(dout, x)
    dx[0, 1] *= 0.5
    dx[2, 2] *= 0.5
    return dx


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_partner_at_its_own_central_difference_joins_its_group(strategy):
    report = check_function(row_max, row_max_full_and_half, two_way_ties(), strategy=strategy)
    assert report.result("x").verdict == "FAIL", str(report)
    failed = finding(report, "tie-gradient")
    assert len(failed) == 2 and all("at a tie of 2 elements" in f.message for f in failed)
    (note,) = finding(report, "nondifferentiable")
    assert "2 element(s) whose central difference lies mid-hull" in note.message
    for backward in (row_max_split, row_max_first):
        report = check_function(row_max, backward, two_way_ties(), strategy=strategy)
        assert report.result("x").verdict == "PASS", str(report)


def test_partners_beyond_max_joined_are_sampled_and_said(monkeypatch):
    """Two partners to look at, one measured: its group fails, the other's is not checked
    and the note says so."""
    monkeypatch.setattr(ties, "MAX_JOINED", 1)
    report = check_function(row_max, row_max_full_and_half, two_way_ties(),
                            strategy="elementwise")
    assert report.result("x").verdict == "FAIL", str(report)
    assert len(finding(report, "tie-gradient")) == 1
    (note,) = finding(report, "nondifferentiable")
    assert ("1 element(s) sharing an output with a kink not looked at as tied partners (at "
            "most 1, sampled)") in note.message


@pytest.mark.parametrize("strategy", ["elementwise", "projection", "jacobian"])
def test_verified_tie_groups_count_as_checked_for_the_kink_fraction(strategy):
    """Half the elements tied in windows (48 four-way ties of 384): every one in a group
    verified along its direction, so not at a kink for the 20 % rule (it was INCONCLUSIVE);
    the double-counting backward still FAILs."""
    x = np.maximum(0, np.random.default_rng(0).normal(size=(2, 3, 8, 8)) - 1.0)
    report = check_function(pool_forward, pool_backward_split, x, POOL, strategy=strategy)
    assert report.result("x").verdict == "PASS", str(report)
    (note,) = finding(report, "nondifferentiable")
    assert "the 192 element(s) of the passing groups count as checked" in note.message
    bad = check_function(pool_forward, pool_backward_all_ties, x, POOL, strategy=strategy)
    assert bad.result("x").verdict == "FAIL", str(bad)


def test_lone_kinks_and_groups_not_smooth_still_count_at_kinks():
    """ReLUs at 0 (alone, or two feeding one row sum: not smooth along the pair) above 20 %
    of the elements leave the target INCONCLUSIVE, as before."""
    x = np.random.default_rng(4).normal(size=(5, 4))
    x[0, 0] = x[1, 1] = x[2, 3] = 0.0  # lone ReLU kinks
    x[3, 0] = x[3, 2] = 0.0  # a pair feeding one output of the sum
    report = check_function(relu, relu_backward, x, strategy="elementwise")
    assert report.result("x").verdict == "INCONCLUSIVE", str(report)

    def forward(x):
        return np.maximum(x, 0).sum(axis=1), x

    def backward(dout, x):
        return (x > 0) * dout[:, None]

    report = check_function(forward, backward, x, strategy="elementwise")
    assert report.result("x").verdict == "INCONCLUSIVE", str(report)
    assert "count as checked" not in str(report)


class Median:
    """Median over the last axis (odd count); backward to the element ``argsort`` picks, as
    torch does."""

    def forward(self, x):
        self.x = x
        return np.median(x, axis=-1)

    def backward(self, dout):
        pick = np.argsort(self.x, axis=-1)[..., self.x.shape[-1] // 2]
        dx = np.zeros_like(self.x)
        np.put_along_axis(dx, pick[..., None], dout[..., None], axis=-1)
        return dx


class MedianSplit(Median):
    """``dout / k`` to each of the ``k`` elements equal to the median."""

    def backward(self, dout):
        mask = self.x == np.median(self.x, axis=-1, keepdims=True)
        return mask * (dout[..., None] / mask.sum(axis=-1, keepdims=True))


class MedianAllTied(Median):
    """Wrong: the whole dout to every element equal to the median (3 dout in all)."""

    def backward(self, dout):
        return (self.x == np.median(self.x, axis=-1, keepdims=True)) * dout[..., None]


class MedianTwoMinusOne(Median):
    """Wrong: ``2 dout`` and ``-dout`` to two of three tied elements (the sum is right)."""

    def backward(self, dout):
        dx = Median.backward(self, dout)
        for r, row in enumerate(self.x):
            tied = np.flatnonzero(row == np.median(row))
            if len(tied) == 3:
                dx[r] = 0.0
                dx[r, tied[0]], dx[r, tied[1]] = 2 * dout[r], -dout[r]
        return dx


def median_tie(seed=0):
    """(4, 5), row 1 ``[-1, 0.3, 1, 0.3, 0.3]``: the median a three-way tie inside the tied
    block (moving one tied element alone leaves it at 0.3 on both sides)."""
    x = np.random.default_rng(seed).standard_normal((4, 5))
    x[1] = [-1.0, 0.3, 1.0, 0.3, 0.3]
    return x


def text(report):
    return " ".join(str(report).split())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("layer", [Median, MedianSplit])
def test_a_median_tie_no_single_element_shows_passes_a_valid_subgradient(layer, seed):
    """Both were a false FAIL (numerical 0 against dout, dout/3): found along pairs of equal
    elements, each within its pair's hull [0, dout], the group of three verified along its
    direction."""
    report = check_layer(layer(), median_tie(seed), seed=seed)
    assert report.result("x").verdict == "PASS", str(report)
    said = text(report)
    assert "3 element(s) at a tie no single element shows" in said
    assert "1 tie group(s) of 3 elements checked along their common direction" in said
    assert "the 3 element(s) of the passing groups count as checked" in said


def test_a_median_tie_counted_once_per_tied_element_fails_at_its_group():
    report = check_layer(MedianAllTied(), median_tie())
    assert report.result("x").verdict == "FAIL", str(report)
    (failed,) = finding(report, "tie-gradient")
    assert "at a tie of 3 elements ((1, 1), (1, 3), (1, 4))" in failed.message
    assert "3 times as much: a gradient counted once per tied element?" in failed.message


def test_a_median_tie_split_outside_the_pair_hulls_fails():
    """2 dout and -dout: the sum is dout, but neither lies in [0, dout]."""
    report = check_layer(MedianTwoMinusOne(), median_tie())
    r = report.result("x")
    assert r.verdict == "FAIL" and r.worst_index in {(1, 1), (1, 3)}, str(report)


def test_equal_elements_of_a_smooth_layer_are_not_taken_for_a_tie():
    """A wrong gradient at exactly equal inputs of a smooth function: each pair's derivative
    is the sum of its elements' own (its excess shrinks with the step), so nothing is
    excused."""
    x = np.random.default_rng(5).normal(size=(3, 4))
    x[0, 1] = x[2, 2] = x[1, 3] = 0.7

    def backward(dout, x):
        return smooth_backward(dout, x) + (x == 0.7) * dout

    report = check_function(smooth, backward, x, strategy="elementwise")
    assert report.result("x").verdict == "FAIL", str(report)
    assert "no single element shows" not in text(report)


def test_pairs_beyond_max_pairs_are_not_probed_and_said(monkeypatch):
    """One pair probed of the three: its two elements are found, the third still fails."""
    monkeypatch.setattr(ties, "MAX_PAIRS", 1)
    report = check_layer(MedianSplit(), median_tie())
    assert report.result("x").verdict == "FAIL", str(report)
    assert "2 pair(s) of exactly equal elements not probed (at most 1 a target)" in text(
        report)


def _affine():
    from gradcheck.layers import Affine
    rng = np.random.default_rng(6)
    return Affine(rng.normal(size=(6, 5)), rng.normal(size=5))


def _relu_at_zero():
    from gradcheck.layers import Relu
    x = np.random.default_rng(7).normal(size=(4, 6))
    x[1, 2] = x[3, 3] = 0.0
    return Relu(), x


class WrongRelu:
    """Fails, with no two inputs equal."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout):
        return 1.5 * dout * (self.x > 0)


@pytest.mark.parametrize("case", ["relu", "maxpool", "affine", "wrong_relu"])
def test_no_forward_call_more_without_failing_elements_of_equal_value(monkeypatch, case):
    """A ReLU at 0, max pooling over ties, an affine layer, a failing layer without equal
    inputs: no pair is probed and the calls are those made without the pair lookup."""
    from gradcheck.engine import verdict
    from gradcheck.layers import Pooling
    layer, x = {"relu": _relu_at_zero,
                "maxpool": lambda: (Pooling(2, 2, 2), relu_pooled_input()),
                "affine": lambda: (_affine(), np.random.default_rng(8).normal(size=(4, 6))),
                "wrong_relu": lambda: (WrongRelu(),
                                       np.random.default_rng(9).normal(size=(4, 6)))}[case]()
    with monkeypatch.context() as m:
        m.setattr(ties.TieCheck, "_probe", never)
        report = check_layer(layer, x)
    monkeypatch.setattr(verdict, "_unseen_ties", lambda comp, st: None)
    without = check_layer(layer, x)
    assert report.result("x").verdict == without.result("x").verdict
    assert report.forward_calls == without.forward_calls, str(report)
    assert report.backward_calls == without.backward_calls


class StableSort:
    """Sorts each row; backward scatters ``dout`` back through the stable argsort (every
    numpy sort or top-k layer's backward); ``scale`` multiplies one column's gradient."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def forward(self, x):
        self.order = np.argsort(x, axis=1, kind="stable")
        return np.take_along_axis(x, self.order, 1)

    def backward(self, dout):
        dx = np.zeros_like(dout)
        np.put_along_axis(dx, self.order, dout, 1)
        dx[:, 1] *= self.scale
        return dx


def _three_way_ties():
    x = np.random.default_rng(10).normal(size=(10, 8))
    x[:, 1:3] = x[:, [0]]
    return x


@pytest.mark.parametrize("strategy", ["auto", "elementwise"])
def test_a_sorts_middle_tied_slot_is_a_valid_subgradient(strategy):
    """At a three-way tie of a sort, the stable argsort gives the middle element the middle
    slot's dout, which moving it alone never reaches (its one-sided derivatives are the
    bottom and top slots'): the pairs with its equal partners give it that value, so it
    passes; doubling that element's gradient still fails."""
    x = _three_way_ties()
    assert check_layer(StableSort(), x, strategy=strategy).passed
    assert check_layer(StableSort(scale=2.0), x, strategy=strategy).result("x").verdict == "FAIL"


def test_the_pair_budget_goes_round_robin_over_the_failing_elements():
    """Ten rows of a median's three-way tie: every row's failing pick gets its nearest
    partner before any gets a second, so all pass (the first rows took the whole budget
    before)."""
    rng = np.random.default_rng(0)
    rows = []
    for ties in [3] * 10 + [1, 1]:  # 27 values a row, 3 equal to its median; 2 rows untied
        below = -np.cumsum(rng.uniform(0.1, 1, (27 - ties) // 2))
        above = np.cumsum(rng.uniform(0.1, 1, 27 - ties - len(below)))
        rows.append(rng.permutation(np.concatenate([np.zeros(ties), below, above])
                                    + rng.normal()))
    report = check_layer(Median(), np.array(rows))
    assert report.passed, str(report)


def test_a_median_tied_in_every_row_passes_on_its_verified_groups():
    """Every untied element's gradient is zero: the tie groups' verified sums are what the
    check saw move, so the verdict is a PASS (not 'indistinguishable from zero'), and the
    scale its resolution is stated against is theirs."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(4):
        below, above = -np.cumsum(rng.uniform(0.1, 1, 12)), np.cumsum(rng.uniform(0.1, 1, 12))
        rows.append(rng.permutation(np.concatenate([np.zeros(3), below, above]) + rng.normal()))
    report = check_layer(Median(), np.array(rows))
    assert report.passed, str(report)
    assert check_layer(MedianAllTied(), np.array(rows)).result("x").verdict == "FAIL"


def test_an_element_excused_by_its_tie_group_outside_its_one_sided_values_says_so():
    x = np.array([[0.1, 0.5, 0.5, 0.5, 0.9]])
    report = check_layer(StableSort(), x, dout=np.array([[1.0, -0.5, 2.0, 0.7, 0.3]]))
    assert report.passed, str(report)
    assert "(analytic 2 outside them: its tie group's sum verified)" in text(report)
