"""Every mutant of the corpus fails on its target; the correct layer passes.

The fast subset (central differences, elementwise) runs every mutant in every
mode where its bug lives; the sweep over every method and every strategy
that ``check_layer`` accepts (read from ``gradcheck.validate``, so a new
strategy is covered as soon as it exists) is marked ``slow``.

For ``strategy="sampled"`` a bug confined to ``k`` of the target's ``n``
elements is found with probability ``1 - C(n-k, m) / C(n, m)`` when ``m``
elements are sampled: a sampled check that passes a mutant is accepted only
when that probability is below one (the test is then skipped with the
probability in its reason).
"""

import inspect
from math import comb

import numpy as np
import pytest

from gradcheck import GradCheckInputError, check_layer
from gradcheck.validate import METHODS, STRATEGIES
from mutants.corpus import MUTANTS

FAST = ("central", "elementwise")
#: Finite-difference methods: every strategy applies. ``"complex"`` (complex step, for
#: complex-analytic forwards only, elementwise only) has its own test.
FD_METHODS = tuple(m for m in METHODS if m != "complex")

#: (mutant, strategy) -> reason: known blind spots of the engine (strict xfail).
#: (none left: the jacobian strategy now scales each unit upstream gradient by a random
#: factor, so a backward that ignores dout fails there too)
ENGINE_GAPS = {}

CASES = [(name, mode) for name, m in MUTANTS.items() for mode in m.modes]


def _sweep_param(name, mode, method, strategy):
    gap = ENGINE_GAPS.get((name, strategy))
    marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
    return pytest.param(name, mode, method, strategy, marks=marks,
                        id=f"{name}-{'train' if mode else 'eval'}-{method}-{strategy}")


#: Run outside the sweep: ``FAST`` here, central x grouped in ``tests/test_grouped.py``.
#: ``"auto"`` is not swept: it sends each target to ``grouped`` or ``elementwise``, both swept.
UNSWEPT = {FAST, ("central", "grouped")}

SWEEP = [_sweep_param(name, mode, method, strategy)
         for name, mode in CASES for method in FD_METHODS for strategy in STRATEGIES
         if (method, strategy) not in UNSWEPT and strategy != "auto"]


def _case_id(name, mode):
    return f"{name}-{'train' if mode else 'eval'}"


def affected_elements(mutant, train_flg, seed=0):
    """``(k, n)``: elements of the target whose analytic gradient the bug changes, and size.

    Both layers get the same input and the same ``dout`` (the check's own:
    standard normal from ``seed``).
    """
    grads = []
    for correct in (False, True):
        layer, x = mutant.build(train_flg, correct=correct)
        out = np.asarray(layer.forward(x, train_flg) if _takes_flag(layer) else layer.forward(x))
        dout = np.random.default_rng(seed).standard_normal(out.shape)
        dx = layer.backward(dout)
        g = dx if mutant.target == "x" else getattr(layer, "d" + mutant.target)
        grads.append(np.asarray(g, dtype=np.float64))
    bad, good = grads
    scale = np.max(np.abs(good))
    return int(np.sum(np.abs(bad - good) > 1e-12 * scale)), good.size


def detection_probability(n, k, m):
    """Probability that a uniform sample of ``m`` of ``n`` elements hits one of ``k``."""
    if m >= n:
        return 1.0 if k else 0.0
    return 1.0 - comb(n - k, m) / comb(n, m)


def _takes_flag(layer):
    return "train_flg" in inspect.signature(layer.forward).parameters


def check_mutant(name, train_flg, method, strategy):
    m = MUTANTS[name]
    layer, x = m.build(train_flg)
    # a sampled check leaving elements unchecked is INCONCLUSIVE for that reason; accepted
    # here, where the detection probability of the sample is judged below
    accept = {"inconclusive": "pass"} if strategy == "sampled" else {}
    try:
        report = check_layer(layer, x, train_flg=train_flg, method=method, strategy=strategy,
                             **accept)
    except GradCheckInputError as exc:
        if method == "complex" and "complex" in str(exc):
            pytest.skip(f"the layer's forward is not complex-analytic: {exc}")
        raise
    result = report.result(m.target)
    if result.passed and strategy == "sampled":
        k, n = affected_elements(m, train_flg)
        p = detection_probability(n, k, result.n_checked)
        if p < 1.0:
            pytest.skip(f"sampled {result.n_checked} of {n} elements; the bug changes {k}: "
                        f"detection probability {p:.2f}")
    assert not result.passed, f"mutant {name} ({m.bug}) passed:\n{report}"
    assert result.verdict == "FAIL" and not report.passed

    layer, x = m.build(train_flg, correct=True)
    report = check_layer(layer, x, train_flg=train_flg, method=method, strategy=strategy,
                         **accept)
    assert report.passed, f"the correct layer of {name} failed (a false failure):\n{report}"
    assert not any(r.vacuous for r in report.results), str(report)


@pytest.mark.parametrize("name, train_flg", [pytest.param(*c, id=_case_id(*c)) for c in CASES])
def test_mutant_fails_and_correct_layer_passes(name, train_flg):
    check_mutant(name, train_flg, *FAST)


@pytest.mark.slow
@pytest.mark.parametrize("name, train_flg, method, strategy", SWEEP)
def test_sweep_every_method_and_strategy(name, train_flg, method, strategy):
    check_mutant(name, train_flg, method, strategy)


@pytest.mark.parametrize("name, train_flg", [pytest.param(*c, id=_case_id(*c)) for c in CASES])
def test_complex_step(name, train_flg):
    """``method="complex"`` where the layer's forward is complex-analytic (skipped otherwise)."""
    if "complex" not in METHODS:
        pytest.skip("no complex-step method")
    check_mutant(name, train_flg, "complex", "elementwise")


def test_corpus_size_and_single_overrides():
    assert len(MUTANTS) >= 30
    allowed = {"backward", "_backward", "__module__", "__doc__", "__qualname__",
               "__firstlineno__", "__static_attributes__", "_eval", "_grads", "_dx", "_fold"}
    for name, m in MUTANTS.items():
        for klass in m.cls.__mro__:
            if klass.__module__.startswith("layers"):
                break
            extra = set(vars(klass)) - allowed
            assert not extra, f"{name}: {klass.__name__} overrides more than backward: {extra}"
        assert m.bug, name


ONE_MODE = [n for n, m in MUTANTS.items()
            if len(m.modes) == 1 and _takes_flag(m.build(m.modes[0])[0])]


@pytest.mark.parametrize("name", ONE_MODE)
def test_mutant_is_correct_in_the_mode_without_the_bug(name):
    """The ``modes`` column is exact: in the other mode the mutant passes."""
    m = MUTANTS[name]
    other = not m.modes[0]
    layer, x = m.build(other)
    report = check_layer(layer, x, train_flg=other)
    assert report.passed, str(report)


@pytest.mark.parametrize("name, train_flg", [pytest.param(*c, id=_case_id(*c)) for c in CASES])
def test_bug_changes_the_target_gradient(name, train_flg):
    """Independently of the engine: the mutant's analytic gradient differs from the correct one."""
    k, n = affected_elements(MUTANTS[name], train_flg)
    assert 1 <= k <= n


def test_detection_probability():
    assert detection_probability(10, 1, 10) == 1.0
    assert detection_probability(10, 1, 1) == pytest.approx(0.1)
    assert detection_probability(10, 0, 5) == 0.0
    assert detection_probability(100, 2, 10) == pytest.approx(1 - comb(98, 10) / comb(100, 10))
