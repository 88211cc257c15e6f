"""Bad input and the known traps of gradient checkers."""

import numpy as np
import pytest

from gradcheck import (GradCheckInputError, GradientCheckError, LayerCallError,
                       LayerProtocolError, check_layer)
from hostile_layers import TANH, Pointwise
from layers import BatchNormalization


class Scale:
    """``out = w * x``: a minimal correct layer with one parameter."""

    def __init__(self, D=3):
        self.w = np.linspace(0.5, 1.5, D)
        self.dw = None

    def forward(self, x, train_flg=True):
        self.x = x
        return self.w * x

    def backward(self, dout):
        self.dw = np.sum(dout * self.x, axis=0)
        return dout * self.w


X = np.random.default_rng(0).normal(size=(4, 3))


def test_minimal_layer_passes_and_report_renders():
    report = check_layer(Scale(), X)
    assert report.passed
    text = str(report)
    assert "Scale" in text and "PASS" in text and "rtol" in text
    d = report.to_dict()
    assert d["passed"] and {r["name"] for r in d["results"]} == {"x", "w"}
    import json
    json.dumps(d)
    assert report.raise_if_failed() is report


def test_raise_if_failed_carries_the_table():
    class Bad(Scale):
        def backward(self, dout):
            super().backward(dout)
            return dout  # forgot the w
    report = check_layer(Bad(), X)
    with pytest.raises(GradientCheckError, match="FAIL") as info:
        report.raise_if_failed()
    assert isinstance(info.value, AssertionError) and info.value.report is report


class NoBackward:
    def forward(self, x):
        return x


@pytest.mark.parametrize("layer, match", [
    (NoBackward(), "NoBackward.*no callable backward"),
    (object(), "no callable forward"),
])
def test_layer_without_protocol_methods(layer, match):
    with pytest.raises(LayerProtocolError, match=match):
        check_layer(layer, X)


def _with_backward(fn):
    class L(Scale):
        def backward(self, dout):
            super().backward(dout)
            return fn(dout)
    return L()


@pytest.mark.parametrize("fn, match", [
    (lambda d: None, "returned None"),
    (lambda d: d[:, :2], r"shape \(4, 2\).*\(4, 3\)"),
    (lambda d: d.tolist(), "returned list"),
    (lambda d: (d > 0), "dtype bool"),
])
def test_bad_backward_return(fn, match):
    with pytest.raises(LayerProtocolError, match=match) as info:
        check_layer(_with_backward(fn), X)
    assert info.value.target == "x" and "L" in str(info.value)


@pytest.mark.parametrize("bad, match", [
    (np.array([[np.nan, 1.0]]), "NaN or inf"),
    (np.array([[np.inf, 1.0]]), "NaN or inf"),
    (np.array([[True, False]]), "boolean"),
    (np.array([[1 + 2j, 1.0]]), "complex"),
    (np.array([[object(), 1.0]], dtype=object), "dtype object"),
    (np.zeros((0, 2)), "empty"),
    ("abc", "must be a numpy array"),
])
def test_bad_x(bad, match):
    with pytest.raises(GradCheckInputError, match=match) as info:
        check_layer(Scale(2), bad)
    assert "Scale" in str(info.value) and info.value.target == "x"


def test_nan_in_dout_and_in_a_parameter():
    with pytest.raises(GradCheckInputError, match="dout contains NaN"):
        check_layer(Scale(), X, dout=np.full(X.shape, np.nan))
    layer = Scale()
    layer.w[1] = np.inf
    with pytest.raises(GradCheckInputError, match="'w'.*NaN or inf"):
        check_layer(layer, X)


def test_dout_of_the_wrong_shape():
    with pytest.raises(GradCheckInputError, match=r"dout has shape \(2, 2\)"):
        check_layer(Scale(), X, dout=np.ones((2, 2)))


def test_integer_x_is_converted_and_reported():
    report = check_layer(Scale(), np.arange(12).reshape(4, 3))
    assert report.passed and report.dtype == "float64"
    assert any("integer" in w for w in report.warnings)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "simpson"}, "method must be one of"),
    ({"strategy": "magic"}, "strategy must be one of"),
    ({"eps": 0.0}, "eps must be"),
    ({"eps": -1e-3}, "eps must be"),
    ({"atol": -1.0}, "atol must be"),
    ({"rtol": float("nan")}, "rtol must be"),
    ({"seed": -1}, "seed must be"),
    ({"wrt": ["nope"]}, "wrt names 'nope'"),
    ({"wrt": []}, "wrt must be"),
    ({"train_flg": "yes"}, "train_flg must be"),
    ({"params": {"w": 3}}, "params must be a dict"),
    ({"params": {"nope": "dnope"}}, "'nope'.*missing"),
])
def test_invalid_options_raise_before_any_work(kwargs, match):
    layer = Scale()
    calls = []
    layer.forward = lambda x, train_flg=True: calls.append(1) or x
    with pytest.raises(GradCheckInputError, match=match):
        check_layer(layer, X, **kwargs)
    assert not calls


def test_parameter_gradient_that_never_appears():
    class NoGrad(Scale):
        def backward(self, dout):
            return dout * self.w
    with pytest.raises(LayerProtocolError, match="'dw' does not exist"):
        check_layer(NoGrad(), X, params={"w": "dw"})


def test_parameter_gradient_of_the_wrong_shape():
    class WrongShape(Scale):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dw = self.dw[:2]
            return dx
    with pytest.raises(LayerProtocolError, match=r"dw has shape \(2,\).*w has shape \(3,\)"):
        check_layer(WrongShape(), X)


def test_stale_parameter_gradient_is_caught():
    class Stale(Scale):
        calls = 0

        def backward(self, dout):
            Stale.calls += 1
            if self.dw is None:  # computes dW once, then never again
                self.dw = np.sum(dout * self.x, axis=0)
            return dout * self.w
    layer = Stale()
    layer.forward(X)
    layer.backward(np.ones_like(X))  # an earlier training step left dw behind
    with pytest.raises(LayerProtocolError, match="did not refresh dw.*stale"):
        check_layer(layer, X)


def test_accumulated_parameter_gradient_is_caught():
    class Accumulates(Scale):
        def backward(self, dout):
            if self.dw is None:
                self.dw = np.zeros_like(self.w)
            self.dw += np.sum(dout * self.x, axis=0)
            return dout * self.w
    with pytest.raises(LayerProtocolError, match="did not refresh dw.*accumulated"):
        check_layer(Accumulates(), X)


def test_backward_that_zeroes_dout_in_place_is_a_warning_not_a_mismatch():
    class BookRelu:
        """The book's Relu: backward sets dout[mask] = 0 in place."""

        def forward(self, x, train_flg=True):
            self.mask = x <= 0
            out = x.copy()
            out[self.mask] = 0
            return out

        def backward(self, dout):
            dout[self.mask] = 0
            return dout
    x = np.array([[0.5, -0.7, 1.2], [-0.3, 0.8, -1.1]])
    dout = np.ones_like(x) * 0.5
    report = check_layer(BookRelu(), x, dout=dout)
    assert report.passed, str(report)
    assert any("modifies dout" in w for w in report.warnings)
    assert np.all(dout == 0.5)


def test_forward_that_modifies_x_fails_as_its_own_finding():
    class InPlace(Scale):
        def forward(self, x, train_flg=True):
            self.x = x.copy()
            x *= self.w  # modifies the caller's array
            return x
    x = X.copy()
    report = check_layer(InPlace(), x)
    assert not report.passed
    assert any("modifies its input 'x'" in m for m in report.failures)
    assert all(r.passed for r in report.results)  # not a gradient mismatch
    assert np.array_equal(x, X)


def test_forward_that_modifies_x_and_keeps_it_fails_only_as_its_own_finding():
    """``np.maximum(x, 0, out=x); self.x = x``: the layer keeps the buffer it modified; the
    check must not put the caller's values back into it before backward reads it (that
    made a spurious FAIL on W)."""
    class InPlaceRelu:
        def __init__(self):
            self.W = np.random.default_rng(0).normal(size=(3, 2))

        def forward(self, x):
            np.maximum(x, 0, out=x)
            self.x = x
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return (dout @ self.W.T) * (self.x > 0)

    x = np.random.default_rng(1).normal(size=(4, 3)) + 0.1
    before = x.copy()
    report = check_layer(InPlaceRelu(), x)
    assert {r.name: r.verdict for r in report.results} == {"x": "PASS", "W": "PASS"}, str(report)
    assert any("modifies its input 'x'" in m for m in report.failures)
    assert np.array_equal(x, before)


def test_backward_that_modifies_the_kept_input_fails_as_its_own_finding_naming_backward():
    """``self.x *= 2`` in backward changes the caller's array (forward kept it): the
    finding names backward (it was "forward() modifies its input", and the CI annotation
    pointed at forward's line); the caller's x is unchanged."""
    class Doubling(Scale):
        def backward(self, dout):
            dx = super().backward(dout)
            self.x *= 2.0
            return dx

    x = X.copy()
    report = check_layer(Doubling(), x)
    kinds = {f.kind for f in report.findings if f.failure}
    assert "backward-modifies-input" in kinds and "forward-modifies-input" not in kinds
    assert np.array_equal(x, X)


def test_forward_that_modifies_a_parameter_or_a_list_member_names_it():
    """A forward that moves its own weight in place, or a member of a list input (numpy-ml's
    ``forward(X)``), fails as its own finding naming that array (was: "a parameter array",
    and "its input x" for the list's first member)."""
    class Drifting(Scale):
        def forward(self, x, train_flg=True):
            self.w += 1e-3  # an "update" inside forward
            return super().forward(x, train_flg)

    report = check_layer(Drifting(), X)
    found = [f for f in report.findings if f.kind == "forward-modifies-parameter"]
    assert found and found[0].failure and found[0].target == "w" and "'w'" in found[0].message

    class AddInPlace:
        def __init__(self, member):
            self.member = member

        def forward(self, X):
            X[self.member] += 1e-3
            return X[0] + X[1]

        def backward(self, dY):
            return [dY, dY]

    for member in (0, 1):
        a, b = X.copy(), 2.0 * X
        report = check_layer(AddInPlace(member), [a, b])
        assert not report.passed
        assert any(f"'X[{member}]'" in m and "in place" in m for m in report.failures), \
            report.failures
        assert np.array_equal(a, X) and np.array_equal(b, 2.0 * X)


def test_forward_returning_a_view_of_its_input():
    class Identity:
        def forward(self, x, train_flg=True):
            return x  # a view of x: perturbing x changes earlier outputs

        def backward(self, dout):
            return dout.copy()
    assert check_layer(Identity(), X).passed

    class WrongIdentity(Identity):
        def backward(self, dout):
            return 2 * dout
    assert not check_layer(WrongIdentity(), X).passed


def test_forward_reusing_an_output_buffer():
    class Buffered(Scale):
        def forward(self, x, train_flg=True):
            self.x = x
            if getattr(self, "buf", None) is None or self.buf.shape != x.shape:
                self.buf = np.empty_like(x)
            np.multiply(self.w, x, out=self.buf)
            return self.buf
    assert check_layer(Buffered(), X).passed


def test_forward_that_raises_names_target_and_index():
    class Fragile(Scale):
        def forward(self, x, train_flg=True):
            if x[1, 2] > X[1, 2]:
                raise FloatingPointError("overflow in my layer")
            return super().forward(x)
    with pytest.raises(LayerCallError, match=r"target 'x'.*FloatingPointError.*element \(1, 2\)") \
            as info:
        check_layer(Fragile(), X)
    assert isinstance(info.value.__cause__, FloatingPointError)


_FORWARD_CALLS = [0]


class RaisesOnce(Scale):
    """Raises on one forward call of the check only (counted outside the layer's state,
    which the check restores), the ``fail_at``-th; ``None`` counts without raising."""

    fail_at = None

    def forward(self, x, train_flg=True):
        _FORWARD_CALLS[0] += 1
        if _FORWARD_CALLS[0] == self.fail_at:
            raise RuntimeError(f"flaky on call {self.fail_at}")
        return super().forward(x)


@pytest.mark.parametrize("options", [{}, {"strategy": "projection"}, {"params": {"w": "dw"}},
                                     {"method": "complex"}, {"train_flg": False}])
def test_a_forward_that_raises_once_is_never_retried_into_a_verdict(options):
    """Whichever call it is -- discovery, the noise table, the step probe, the structure
    probes, the differences, the sequence check (in eval mode its train-mode first call,
    whose error is otherwise taken for a train mode that cannot run) -- a forward raising
    once raises
    LayerCallError naming forward and its error: the noise and step searches take an error
    for the edge of forward's domain only when the same call raises again."""
    _FORWARD_CALLS[0] = 0
    assert check_layer(RaisesOnce(), X, **options).passed
    total = _FORWARD_CALLS[0]
    for n in range(1, total + 1):
        _FORWARD_CALLS[0], layer = 0, RaisesOnce()
        layer.fail_at = n
        with pytest.raises(LayerCallError, match=f"forward\\(\\) raised RuntimeError: flaky on "
                           f"call {n}"):
            check_layer(layer, X, **options)


def test_a_noise_table_call_raising_once_names_the_call_and_says_it_did_not_repeat():
    _FORWARD_CALLS[0], layer = 0, RaisesOnce()
    layer.fail_at = 5  # in the noise table of 'x' (the retry with a smaller spacing ate it)
    with pytest.raises(LayerCallError, match=(
            r"target 'x': forward\(\) raised RuntimeError: flaky on call 5 \(while perturbing "
            r"the target along a direction\), but returned when called again on the same input "
            r"and state: an intermittent error")) as info:
        check_layer(layer, X)
    assert info.value.intermittent and isinstance(info.value.__cause__, RuntimeError)


class TwoInputs:
    """``w * x * y`` with a sub-layer named ``layer`` (its ``v`` a parameter) and an array
    ``c`` with no gradient."""

    class Inner:
        def __init__(self):
            self.v = np.full(3, 2.0)

        def forward(self, x):
            return self.v * x

        def backward(self, d):
            return d * self.v

    def __init__(self):
        self.w, self.c, self.layer = np.linspace(0.5, 1.5, 3), np.ones(3), self.Inner()

    def forward(self, x, y):
        self.x, self.y = x, y
        return self.w * self.layer.v * x * y

    def backward(self, d):
        self.dw = np.sum(d * self.layer.v * self.x * self.y, axis=0)
        self.layer.dv = np.sum(d * self.w * self.x * self.y, axis=0)
        g = d * self.w * self.layer.v
        return g * self.y, g * self.x


@pytest.mark.parametrize("inputs, shown", [((X, X + 2), "'x', 'y'"),
                                           ({"y": X + 2, "x": X}, "'x', 'y'")])
@pytest.mark.parametrize("wrt, match", [
    (["z"], r"target 'z': wrt names 'z', which is neither an input \({inputs}\) nor an "
            r"ndarray parameter of the layer$"),
    (["layer.nope"], r"target 'layer.nope': wrt names 'layer.nope', which is neither an input "
                     r"\({inputs}\)"),
    (["y", "c"], r"target 'c': wrt names \['c'\], but backward\(\) stores no gradient for it; "
                 r"targets: \[{inputs}, 'w', 'layer.v'\]$"),
])
def test_wrt_errors_of_a_layer_with_several_inputs_use_the_users_names(inputs, shown, wrt,
                                                                       match):
    """No internal name (``layer.``, ``inputs[...]``) leaks, the inputs are listed as the
    user named them (in forward's order), and a sub-layer the user called ``layer`` keeps
    its name."""
    with pytest.raises(GradCheckInputError, match=match.format(inputs=shown)):
        check_layer(TwoInputs(), inputs, wrt=wrt)
    report = check_layer(TwoInputs(), inputs, wrt=["y", "layer.v"])
    assert report.passed and [r.name for r in report.results] == ["y", "layer.v"]


def test_keyword_inputs_in_another_order_than_forwards_take_backwards_gradients_in_its():
    """``{"y": ..., "x": ...}`` for ``forward(x, y)``, whose backward returns ``(dx, dy)``:
    each gradient is compared with its own input (they were taken in the dict's order, and
    a correct layer FAILed on both)."""
    report = check_layer(TwoInputs(), {"y": X + 2, "x": X})
    assert report.passed, str(report)
    assert [r.name for r in report.results][:2] == ["x", "y"]


def test_a_params_error_of_a_layer_with_several_inputs_uses_the_users_names():
    with pytest.raises(GradCheckInputError, match=r"target 'q': params names attribute 'q',"):
        check_layer(TwoInputs(), (X, X + 2), params={"w": "dw", "q": "dq"})


def test_forward_producing_nan_under_perturbation():
    """A forward NaN at any step of an element (smaller steps do not help, unlike ``log``
    near 0: tests/test_false_failures.py) names it."""
    x = np.array([[1.0, 2.0], [1e-9, 3.0]])

    class Log(Scale):
        def forward(self, x_, train_flg=True):
            self.x = x_
            out = np.log(x_)
            if x_[1, 0] != x[1, 0]:
                out[1, 0] = np.nan
            return out

        def backward(self, dout):
            return dout / self.x
    with pytest.raises(LayerCallError, match="NaN or inf"):
        check_layer(Log(), x, wrt=["x"])


@pytest.mark.parametrize("out, match", [((1, 2), r"returned a tuple \(int, int\)"),
                                        (None, "returned NoneType")])
def test_forward_returning_a_non_array(out, match):
    class Odd(Scale):
        def forward(self, x, train_flg=True):
            return out
    with pytest.raises(LayerProtocolError, match=match):
        check_layer(Odd(), X)


def test_layer_whose_forward_takes_only_x():
    class OnlyX:
        def __init__(self):
            self.w = np.array([2.0, -1.0, 0.5])

        def forward(self, x):
            self.x = x
            return self.w * x

        def backward(self, dout):
            self.dw = (dout * self.x).sum(0)
            return dout * self.w
    assert check_layer(OnlyX(), X, train_flg=False).passed


def test_params_mapping_for_another_convention():
    class Torchish:
        def __init__(self):
            self.weight = np.array([2.0, -1.0, 0.5])

        def forward(self, x):
            self.x = x
            return self.weight * x

        def backward(self, dout):
            self.weight_grad = (dout * self.x).sum(0)
            return dout * self.weight
    report = check_layer(Torchish(), X, params={"weight": "weight_grad"})
    assert report.passed and [r.name for r in report.results] == ["x", "weight"]


def test_dropout_style_randomness_is_replayed_and_restored():
    class Dropout:
        def __init__(self):
            self.rng = np.random.default_rng(42)

        def forward(self, x, train_flg=True):
            self.mask = self.rng.random(x.shape) > 0.5
            return x * self.mask

        def backward(self, dout):
            return dout * self.mask
    layer = Dropout()
    state = layer.rng.bit_generator.state
    g_state = np.random.get_state()[1].copy()
    assert check_layer(layer, X).passed
    assert layer.rng.bit_generator.state == state
    assert np.array_equal(np.random.get_state()[1], g_state)

    class GlobalDropout(Dropout):
        def forward(self, x, train_flg=True):
            self.mask = np.random.rand(*x.shape) > 0.5
            return x * self.mask
    np.random.seed(3)
    before = np.random.get_state()[1].copy()
    assert check_layer(GlobalDropout(), X).passed
    assert np.array_equal(np.random.get_state()[1], before)


def test_unreplayable_randomness_is_reported():
    class Noisy(Scale):
        def forward(self, x, train_flg=True):
            return super().forward(x) * np.random.default_rng().uniform(0.9, 1.1)
    report = check_layer(Noisy(), X)
    assert not report.passed
    assert any("different outputs for identical input" in m for m in report.failures)


def test_state_restored_after_an_error_and_after_keyboard_interrupt():
    bn = BatchNormalization(np.ones(3), np.zeros(3), 0.9, np.zeros(3), np.ones(3))
    rm = bn.running_mean
    calls = {"n": 0}
    original = bn.forward

    def interrupted(x, train_flg=True):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(x, train_flg)
    bn.forward = interrupted
    with pytest.raises(KeyboardInterrupt):
        check_layer(bn, X)
    assert bn.running_mean is rm and np.array_equal(rm, np.zeros(3))
    assert bn.xc is None and bn.dgamma is None


def test_non_contiguous_parameter_view_is_perturbed_in_place_and_restored():
    class ViewParam(Scale):
        def __init__(self):
            self.storage = np.arange(1.0, 7.0)
            self.w = self.storage[::2]  # a strided view into a larger array
            self.dw = None
    layer = ViewParam()
    before = layer.storage.copy()
    report = check_layer(layer, X, wrt=["x", "w"])
    assert report.passed, str(report)
    assert layer.storage.tobytes() == before.tobytes()
    assert np.shares_memory(layer.w, layer.storage)


def test_non_contiguous_and_fortran_x():
    base = np.random.default_rng(1).normal(size=(4, 6))
    for x in (base[:, ::2], np.asfortranarray(base[:, :3])):
        before = x.copy()
        assert check_layer(Scale(), x).passed
        assert np.array_equal(x, before)


class TwoLayerNetLike:
    """Parameters in ``self.params``, gradients in ``self.grads``, as the book's networks."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = {"W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=4)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        self.h = np.tanh(x @ self.params["W1"] + self.params["b1"])
        return self.h

    def backward(self, dout):
        dz = dout * (1 - self.h ** 2)
        self.grads["W1"] = self.x.T @ dz
        self.grads["b1"] = dz.sum(axis=0)
        return dz @ self.params["W1"].T


def test_book_style_params_and_grads_dicts_are_discovered():
    net = TwoLayerNetLike()
    W1 = net.params["W1"]
    report = check_layer(net, X)
    assert [r.name for r in report.results] == ["x", "params['W1']", "params['b1']"]
    assert report.passed, str(report)
    assert net.params["W1"] is W1 and net.grads == {}

    class WrongBias(TwoLayerNetLike):
        def backward(self, dout):
            dx = super().backward(dout)
            self.grads["b1"] = -self.grads["b1"]
            return dx
    report = check_layer(WrongBias(), X)
    assert not report.result("params['b1']").passed and report.result("params['W1']").passed
    explicit = check_layer(TwoLayerNetLike(), X, params={"params['W1']": "grads['W1']"})
    assert [r.name for r in explicit.results] == ["x", "params['W1']"]


def test_a_0d_input_whose_backward_returns_a_numpy_scalar_is_checked():
    """``dout * (1 - y**2)`` on 0-d arrays is an ``np.float64``, not an ndarray: an ordinary
    layer (it was refused as a protocol error)."""
    class Tanh:
        def forward(self, x):
            self.y = np.tanh(x)
            return self.y

        def backward(self, dout):
            return dout * (1 - self.y ** 2)

    class Wrong(Tanh):
        def backward(self, dout):
            return 1.001 * super().backward(dout)

    assert check_layer(Tanh(), np.array(0.3)).passed
    assert not check_layer(Wrong(), np.array(0.3)).passed


def test_a_forward_that_is_no_function_of_its_input_gets_no_numerical_artefacts():
    """An unreplayable random mask, or a weight forward nudges in place: the failing
    finding says why; every target is INCONCLUSIVE for that reason, and no step-underflow
    ("pass a larger eps") or vacuous-gradient advice follows (artefacts of the first)."""
    class Unreplayable:  # a generator seeded from the OS anew per call (a closure's is replayed)
        def forward(self, x, train_flg=True):
            self.mask = np.random.default_rng().random(x.shape) > 0.5
            return x * self.mask

        def backward(self, dout):
            return dout * self.mask

    class Nudging(Scale):
        def forward(self, x, train_flg=True):
            self.w[0] += 1e-3
            return super().forward(x, train_flg)

    for layer, kind in ((Unreplayable(), "forward-nondeterministic"),
                        (Nudging(), "forward-modifies-parameter")):
        report = check_layer(layer, np.random.default_rng(1).normal(size=(6, 3)))
        assert not report.passed and kind in {f.kind for f in report.findings if f.failure}
        assert {r.verdict for r in report.results} == {"INCONCLUSIVE"}
        assert all("not judged" in r.inconclusive for r in report.results)
        assert not {"step-underflow", "inconclusive"} & {f.kind for f in report.findings}


def test_complex_step_refuses_a_forward_not_analytic_at_any_element():
    """A Huber loss's ``abs`` branch outside the first elements: the complex step drops
    its derivative there (0 for ``sign(x)``), so a wrong backward omitting it PASSed and
    the correct one FAILed; the trial projects every element on random directions."""
    class Huber:
        def __init__(self, ok):
            self.ok = ok

        def forward(self, x):
            self.x = x
            return np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5)

        def backward(self, dout):
            big = np.sign(self.x) if self.ok else 0 * self.x
            return dout * np.where(np.abs(self.x) < 1, self.x, big)

    x = np.random.default_rng(0).normal(size=(3, 4)) * 1.5
    assert np.all(np.abs(x.reshape(-1)[:3]) < 1) and np.any(np.abs(x) > 1)
    for ok in (True, False):
        with pytest.raises(GradCheckInputError, match="not complex-analytic"):
            check_layer(Huber(ok), x, method="complex")

    class Partial:  # |x| added at one late element only
        def forward(self, x):
            self.x = x
            out = x ** 2
            out[-1, -1] = out[-1, -1] + np.abs(x[-1, -1])
            return out

        def backward(self, dout):
            return 2 * self.x * dout

    with pytest.raises(GradCheckInputError, match="not complex-analytic"):
        check_layer(Partial(), np.random.default_rng(1).normal(size=(20, 30)),
                    method="complex")


@pytest.mark.parametrize("misuse", [lambda g, d: g * d ** 2, lambda g, d: g / d,
                                    lambda g, d: g * (d + 1) / 2],
                         ids=["g*dout**2", "g/dout", "g*(dout+1)/2"])
def test_a_scalar_loss_whose_backward_misuses_dout_fails(misuse):
    """Right at dout = 1 only (the check's dout for a scalar output): PASSed with a note,
    the leniency meant for a terminal loss whose backward ignores dout."""
    class MSE:
        def __init__(self, use):
            self.use = use

        def forward(self, x, t):
            self.x, self.t = x, t
            return 0.5 * np.sum((x - t) ** 2)

        def backward(self, dout=1.0):
            return self.use(self.x - self.t, dout)

    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    for options in ({}, {"sequence": False},  # judged by the check, not only the sequence
                    {"sequence": False, "dout": np.array(1.0)}):
        report = check_layer(MSE(misuse), (x, t), **options)
        assert not report.passed, str(report)
        assert [f.failure for f in report.findings
                if f.kind == "backward-nonlinear"] == [True], str(report)
    ignoring = check_layer(MSE(lambda g, d: g), (x, t))
    assert ignoring.passed and "scalar-output" in {f.kind for f in ignoring.findings}
    assert check_layer(MSE(lambda g, d: g * d), (x, t)).passed


def test_a_history_bug_in_one_element_of_a_large_parameter_fails():
    """``dW[i, j] *= calls``: from the second call on one element of 600 is wrong, with the
    output unchanged. The second call was verified at 8 random elements, and PASSed; the
    elements where its gradient moved from the verified one are among those checked."""
    class Counting:
        def __init__(self, bug):
            self.W = np.random.default_rng(3).normal(size=(20, 30))
            self.calls, self.bug = 0, bug

        def forward(self, x):
            self.x = x
            self.calls += 1
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            if self.bug:
                self.dW[7, 11] *= self.calls
            return dout @ self.W.T

    x = np.random.default_rng(0).normal(size=(4, 20))
    assert check_layer(Counting(False), x).passed
    report = check_layer(Counting(True), x)
    assert not report.passed
    assert [f.target for f in report.findings if f.kind == "backward-history"] == ["W"]


def test_a_sampled_check_that_missed_the_wrong_element_is_no_pass():
    """``strategy="sampled"`` checks 8 of 48 elements; the one wrong element is not among
    them (``tanh``, wrong by 10 % there). That PASSed stating the resolution of the 8 for the whole tensor: an error in
    any other element is not caught, so INCONCLUSIVE, saying what fraction was checked."""
    x = np.random.default_rng(0).normal(size=(6, 8))
    probe = check_layer(Pointwise(*TANH, wrong=1.1, at=0), x, strategy="sampled", samples=8)
    r = probe.result("x")
    seen = {i for i in np.ndindex(x.shape) if not np.isnan(r.numerical[i])}
    k = next(j for j in range(x.size) if np.unravel_index(j, x.shape) not in seen)
    report = check_layer(Pointwise(*TANH, wrong=1.1, at=k), x, strategy="sampled", samples=8)
    r = report.result("x")
    assert r.verdict == "INCONCLUSIVE" and not report.passed, str(report)
    assert r.checked_fraction == 8 / 48 and "only 8 of 48 elements were checked" in \
        r.inconclusive
    assert check_layer(Pointwise(*TANH, wrong=1.1, at=k), x).result("x").verdict == "FAIL"
