"""Every built-in layer configuration under every strategy and every method.

Under every strategy, the sequence check finds nothing either (no history,
stale-state, twice, linearity or non-finite-state finding, not even a note).

(The digits networks, thousands of elements each, run every method in the
slow sweep of tests/test_digits_networks.py.)"""

import pytest

from gradcheck import GradCheckInputError, check_layer
from gradcheck.validate import METHODS, STRATEGIES
from gradcheck.gate.suite import builtin_cases
from gradcheck.protocol.history import FINDING_KINDS

CASES = {}
for _case in builtin_cases():
    CASES.setdefault((_case.spec.name, _case.train_flg), _case)  # first shape of each spec/mode
IDS = [f"{name}-{'train' if flg else 'eval'}" for name, flg in CASES]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", list(CASES.values()), ids=IDS)
def test_every_builtin_layer_passes_every_strategy(case, strategy):
    """Every strategy passes every built-in layer; ``sampled`` (16 elements) is INCONCLUSIVE
    where it left elements unchecked, for that reason alone."""
    layer, x = case.build()
    sampled = {"inconclusive": "pass"} if strategy == "sampled" else {}
    report = check_layer(layer, x, train_flg=case.train_flg, strategy=strategy, probes=4,
                         samples=16, **case.spec.options_for(case.train_flg), **sampled)
    assert report.passed, str(report)
    assert all(r.verdict == "PASS" or "elements were checked (sampled" in r.inconclusive
               for r in report.results), str(report)
    assert not [f for f in report.findings if f.kind in FINDING_KINDS], str(report)


SMALL = {k: c for k, c in CASES.items() if not k[0].startswith("Digits-")}
SMALL_IDS = [f"{name}-{'train' if flg else 'eval'}" for name, flg in SMALL]


@pytest.mark.parametrize("method", [m for m in METHODS if m != "central"])
@pytest.mark.parametrize("case", list(SMALL.values()), ids=SMALL_IDS)
def test_every_builtin_layer_passes_every_method(case, method):
    layer, x = case.build()
    try:
        report = check_layer(layer, x, train_flg=case.train_flg, method=method)
    except GradCheckInputError as exc:
        assert method == "complex" and "complex-analytic" in str(exc) or "complex input" \
            in str(exc)
        return
    assert report.passed, str(report)
