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
    layer, x = case.build()
    report = check_layer(layer, x, train_flg=case.train_flg, strategy=strategy, probes=4,
                         samples=16, **case.spec.options_for(case.train_flg))
    assert report.passed, str(report)
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
