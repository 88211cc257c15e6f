"""One-sided methods (``method="forward"``) at kinks they cannot see.

Forward differences take every element's derivative from the right: a max-pool (or row
max) backward that gives every tied element the whole ``dout`` matches each element's
right-hand derivative, so nothing failed, nothing was refined and the ties were never
looked at. The left-hand screen (:func:`gradcheck.engine.projection.left_screen`) finds
those elements; they are then judged as at any kink.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gradcheck.engine.methods as methods
import gradcheck.engine.projection as projection
from gradcheck import check_function
from gradcheck.engine.projection import LEFT_PROBES

from tests.test_ties import (POOL, finding, pool_backward_all_ties, pool_backward_first,
                             pool_backward_split, pool_forward, relu, relu_pooled_input,
                             row_max, row_max_all_ties, row_max_first, row_max_split, smooth,
                             smooth_backward)

STRATEGIES = ["auto", "elementwise", "grouped", "projection", "jacobian"]


def text(report):
    return " ".join(str(report).split())


def test_only_forward_is_one_sided():
    assert {m.name for m in methods.METHODS.values() if m.one_sided} == {"forward"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_double_counted_maxpool_ties_fail_under_forward_differences(strategy):
    report = check_function(pool_forward, pool_backward_all_ties, relu_pooled_input(), POOL,
                            method="forward", strategy=strategy)
    assert report.result("x").verdict == "FAIL", str(report)
    failed = finding(report, "tie-gradient")
    assert failed and all(f.failure for f in failed)
    assert "a gradient counted once per tied element" in failed[0].message


@pytest.mark.parametrize("backward", [pool_backward_split, pool_backward_first])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_correct_maxpool_ties_pass_under_forward_differences(backward, strategy):
    report = check_function(pool_forward, backward, relu_pooled_input(), POOL,
                            method="forward", strategy=strategy)
    assert report.result("x").verdict == "PASS", str(report)


@pytest.mark.parametrize("strategy", ["auto", "elementwise", "jacobian"])
def test_the_screen_says_what_it_found(strategy):
    report = check_function(pool_forward, pool_backward_all_ties, relu_pooled_input(), POOL,
                            method="forward", strategy=strategy)
    assert ("method 'forward' is one-sided: 2 random projections moving every element to the "
            "left (x - h v) screened for kinks it cannot see; they disagreed: ") in text(report)
    assert finding(report, "nondifferentiable")


def test_a_row_max_counting_every_tie_fails_under_forward_differences():
    x = np.random.default_rng(5).normal(size=(8, 5))
    x[0, 1] = x[0, 3] = x[0].max() + 0.5
    x[4, [0, 2, 4]] = x[4].max() + 0.25
    for strategy in ("auto", "elementwise"):
        bad = check_function(row_max, row_max_all_ties, x, method="forward", strategy=strategy)
        assert bad.result("x").verdict == "FAIL", str(bad)
        assert len(finding(bad, "tie-gradient")) == 2
        for backward in (row_max_first, row_max_split):
            report = check_function(row_max, backward, x, method="forward", strategy=strategy)
            assert report.result("x").verdict == "PASS", str(report)


def relu_right(dout, x):
    """``relu'(0) = 1``: the right-hand derivative, which forward differences agree with."""
    return dout * (x >= 0)


def test_a_relu_at_zero_is_listed_as_a_kink_under_forward_differences():
    x = np.random.default_rng(1).normal(size=(6, 7))
    x[1, 2] = x[4, 5] = 0.0
    report = check_function(relu, relu_right, x, method="forward", strategy="elementwise")
    r = report.result("x")
    assert r.verdict == "PASS" and set(r.excluded) == {(1, 2), (4, 5)}, str(report)


def test_a_wrong_element_still_fails_under_forward_differences():
    x = np.random.default_rng(2).normal(size=(6, 7))

    def wrong(dout, x):
        g = smooth_backward(dout, x)
        g[2, 3] += 0.1
        return g

    report = check_function(smooth, wrong, x, method="forward")
    assert report.result("x").verdict == "FAIL" and report.result("x").worst_index == (2, 3)


def never(*args, **kwargs):
    raise AssertionError("refined without a kink")


def two_sided(monkeypatch):
    monkeypatch.setattr(methods.Method, "one_sided", property(lambda self: False))


@pytest.mark.parametrize("strategy", ["auto", "elementwise", "grouped", "jacobian"])
def test_smooth_layers_cost_the_screen_s_calls_only(monkeypatch, strategy):
    """One forward call per probe; no refinement; the same verdict and numbers."""
    x = np.random.default_rng(3).normal(size=(6, 9))
    with monkeypatch.context() as m:
        m.setattr(projection._ProbeRefiner, "refine", never)
        report = check_function(smooth, smooth_backward, x, method="forward",
                                strategy=strategy)
    assert "they agreed" in text(report)
    two_sided(monkeypatch)
    without = check_function(smooth, smooth_backward, x, method="forward", strategy=strategy)
    assert report.forward_calls - without.forward_calls == LEFT_PROBES
    assert report.backward_calls == without.backward_calls
    r, w = report.result("x"), without.result("x")
    assert r.verdict == w.verdict == "PASS" and r.max_abs_error == w.max_abs_error


def test_two_sided_methods_are_not_screened(monkeypatch):
    x = np.random.default_rng(3).normal(size=(6, 9))
    with monkeypatch.context() as m:
        m.setattr(projection, "left_screen", never)
        for method in ("central", "central4", "richardson"):
            assert check_function(smooth, smooth_backward, x, method=method).passed


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), shift=st.sampled_from([0.0, 0.5, 1.0]),
       strategy=st.sampled_from(STRATEGIES))
def test_maxpool_over_relu_outputs_under_forward_differences(seed, shift, strategy):
    """As under central differences (``tests/test_ties.py``): the double-counting backward
    FAILs whenever a window is tied; the split and the first argmax never FAIL."""
    x = np.maximum(0, np.random.default_rng(seed).normal(size=(2, 2, 6, 6)) - shift)
    xr = x.reshape(2, 2, 3, 2, 3, 2)
    tied = int(np.sum(np.sum(xr == xr.max(axis=(3, 5), keepdims=True), axis=(3, 5)) > 1))
    bad = check_function(pool_forward, pool_backward_all_ties, x, POOL, method="forward",
                         strategy=strategy)
    assert (bad.result("x").verdict == "FAIL") == (tied > 0), str(bad)
    for backward in (pool_backward_split, pool_backward_first):
        report = check_function(pool_forward, backward, x, POOL, method="forward",
                                strategy=strategy)
        assert report.result("x").verdict != "FAIL", str(report)


def test_every_suspect_of_the_left_screen_is_refined_past_the_refinement_cap():
    """300 ReLU elements at 0 (``relu'(0) = 1``: they pass forward differences) and, past
    them in flat order, 10 two-way max ties whose backward gives each tied element the
    whole dout: more suspects than MAX_REFINED; the ties among the last are grouped and
    FAIL (they were left unrefined and counted as checked)."""
    from gradcheck import check_function
    from gradcheck.engine.verdict import MAX_REFINED

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 16)) + 3.0
    x[:, :3] = 0.0
    x[90:, 4] = x[90:, 3]

    def forward(x):
        out = np.concatenate([np.maximum(x[:, :3], 0), x[:, 3:5].max(1, keepdims=True),
                              x[:, 5:] ** 2], 1)
        return out, x

    def backward(dout, x):
        dx = np.zeros_like(x)
        dx[:, :3] = dout[:, :3] * (x[:, :3] >= 0)
        tied = x[:, 3:5] == x[:, 3:5].max(1, keepdims=True)
        dx[:, 3:5] = tied * dout[:, 3:4]
        dx[:, 5:] = 2 * x[:, 5:] * dout[:, 4:]
        return dx

    assert 3 * 100 > MAX_REFINED
    report = check_function(forward, backward, x, method="forward", strategy="elementwise",
                            sequence=False)
    assert report.result("x").verdict == "FAIL", str(report)
    assert sum(f.kind == "tie-gradient" for f in report.findings) == 10
