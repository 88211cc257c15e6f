"""Every layer convention of ``tests/conventions_layers.py``, checked without an adapter.

For each convention: the correct layer PASSes with exactly the expected
targets, and its broken look-alike FAILs on the right target (and only
there), under every strategy. Then what the report says about what was *not*
checked, and the "no parameter found" warning.
"""

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.protocol.discovery import assign, resolve

from conventions_layers import CASES, AccumulatingDense, RecurrentStep, Swish, TiedAutoencoder

X = np.random.default_rng(1).normal(size=(3, 3))
STRATEGIES = ["elementwise", "sampled", "jacobian", "projection"]


def _check(layer, strategy, **kw):
    return check_layer(layer, X, strategy=strategy, samples=16, **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("convention", sorted(CASES))
def test_correct_layer_passes_with_every_target(convention, strategy):
    good, _, _, targets = CASES[convention]
    report = _check(good(), strategy)
    assert [r.name for r in report.results] == targets
    assert report.passed, str(report)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("convention", sorted(CASES))
def test_broken_look_alike_fails_on_the_right_target(convention, strategy):
    _, bad, target, targets = CASES[convention]
    report = _check(bad(), strategy)
    assert [r.name for r in report.results] == targets
    verdicts = {r.name: r.verdict for r in report.results}
    assert verdicts.pop(target) == "FAIL", str(report)
    assert set(verdicts.values()) == {"PASS"}, str(report)


def test_state_written_by_forward_is_listed_not_a_phantom_target():
    layer = RecurrentStep()
    report = check_layer(layer, X)
    assert "h" not in [r.name for r in report.results]
    assert ("h", "written by forward -> state, not a parameter") in report.not_checked
    text = str(report)
    assert "checked: x, Wx, b" in text and "h: written by forward -> state" in text
    assert report.to_dict()["not_checked"][0]["name"] in {n for n, _ in report.not_checked}


def test_integer_and_boolean_attributes_are_listed_with_the_reason():
    class Masked(RecurrentStep):
        def __init__(self):
            super().__init__()
            self.mask = np.array([1, 0], dtype=np.int64)
            self.keep = np.array([True, False])

    report = check_layer(Masked(), X)
    reasons = dict(report.not_checked)
    assert reasons["mask"] == "integer" and reasons["keep"] == "boolean"


def test_floating_arrays_without_a_found_gradient_warn_and_say_how_to_name_them():
    class OwnNames:
        def __init__(self):
            self.kernel = np.eye(3) * 1.5
            self.kernel_gradient = None

        def forward(self, x):
            self.x = x
            return x @ self.kernel

        def backward(self, dout):
            self.kernel_gradient = 2.0 * self.x.T @ dout  # wrong, and never found
            return dout @ self.kernel.T

    report = check_layer(OwnNames(), X)
    assert [r.name for r in report.results] == ["x"]
    warning = [f for f in report.findings if f.kind == "no-parameters-found"]
    assert warning and not warning[0].failure
    assert "params={'kernel'" in warning[0].message and "kernel" in str(report)
    named = check_layer(OwnNames(), X, params={"kernel": "kernel_gradient"})
    assert named.result("kernel").verdict == "FAIL"


def test_a_layer_with_only_state_gives_no_warning():
    report = check_layer(CASES["sub-layers"][0]().blocks[1], X)
    assert not any(f.kind == "no-parameters-found" for f in report.findings)


def test_tied_weight_is_one_target_and_the_report_says_so():
    layer = TiedAutoencoder()
    W = layer.params[0]
    report = check_layer(layer, X)
    assert report.passed
    assert any(f.kind == "tied-parameter" and "grads[0]+grads[2]" in f.message
               for f in report.findings)
    assert layer.params[0] is W and layer.params[2] is W


def test_accumulating_buffers_are_left_as_found():
    layer = AccumulatingDense()
    before = {k: v.copy() for k, v in layer.gradients.items()}
    before["W"] += 3.0  # a stale accumulation from an earlier step
    layer.gradients["W"][...] = before["W"]
    objects = dict(layer.gradients)
    report = check_layer(layer, X)
    assert report.passed, str(report)
    assert all(layer.gradients[k] is objects[k] for k in objects)
    assert np.array_equal(layer.gradients["W"], before["W"]) and layer.X == []


def test_scalar_parameter_is_put_back_as_a_python_float():
    layer = Swish()
    report = check_layer(layer, X)
    assert report.passed
    assert type(layer.beta) is float and layer.beta == 1.3


def test_plain_accumulation_into_dp_is_still_refused():
    """The poisoning test: outside the accumulating convention, ``dW +=`` is stale."""
    from gradcheck import LayerProtocolError

    class Accumulates(RecurrentStep):
        def backward(self, dout):
            dWx = self.dWx
            dx = super().backward(dout)
            if dWx is not None:
                self.dWx = dWx + self.dWx
            return dx

    with pytest.raises(LayerProtocolError, match="refresh"):
        check_layer(Accumulates(), X)


def test_paths_resolve_and_assign():
    layer = CASES["sub-layers"][0]()
    assert resolve(layer, "blocks.0.W") is layer.blocks[0].W
    assert resolve(layer, "heads.out.b") is layer.heads["out"].b
    assert resolve(layer, "blocks.9.W") is None
    tied = TiedAutoencoder()
    assert resolve(tied, "params[0]") is tied.params[0]
    total = resolve(tied, "grads[0]+grads[2]")
    assert np.array_equal(total, tied.grads[0] + tied.grads[2])
    assign(tied, "grads[0]+grads[2]", np.ones((3, 2)))
    assert tied.grads[0] is not tied.grads[2] and np.all(tied.grads[2] == 1)


# -- several inputs, labels, indices, loss layers, backward returning None ---------------------
from conventions_layers import CALL_CASES, FUNCTION_CASES  # noqa: E402

from gradcheck import check_function  # noqa: E402


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("convention", sorted(CALL_CASES))
def test_call_convention_correct_passes_broken_fails(convention, strategy):
    good, bad, inputs, target, targets = CALL_CASES[convention]
    report = check_layer(good(), inputs(), strategy=strategy, samples=16)
    assert [r.name for r in report.results] == targets
    assert report.passed, str(report)
    broken = check_layer(bad(), inputs(), strategy=strategy, samples=16)
    verdicts = {r.name: r.verdict for r in broken.results}
    assert verdicts.pop(target) == "FAIL", str(broken)
    assert set(verdicts.values()) <= {"PASS"}, str(broken)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("convention", sorted(FUNCTION_CASES))
def test_function_pair_correct_passes_broken_fails(convention, strategy):
    forward, backward, broken, inputs, target, targets = FUNCTION_CASES[convention]
    report = check_function(forward, backward, *inputs(), strategy=strategy, samples=16)
    assert [r.name for r in report.results] == targets
    assert report.passed, str(report)
    bad = check_function(*broken, *inputs(), strategy=strategy, samples=16)
    verdicts = {r.name: r.verdict for r in bad.results}
    assert verdicts.pop(target) == "FAIL", str(bad)
    assert set(verdicts.values()) <= {"PASS"}, str(bad)
