"""Every layer convention of ``tests/conventions_layers.py``, checked without an adapter.

For each convention: the correct layer PASSes with exactly the expected
targets, and its broken look-alike FAILs on the right target (and only
there), under every strategy. Then what the report says about what was *not*
checked, and the "no parameter found" warning.
"""

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.protocol.paths import assign, resolve

from conventions_layers import (CASES, AccumulatingDense, ListWeights, RecurrentStep, Swish,
                               MisnamedDense, TiedAttributes, TiedAutoencoder,
                               ZeroedInForward, ZeroedInPlaceInForward)

X = np.random.default_rng(1).normal(size=(3, 3))
STRATEGIES = ["elementwise", "sampled", "jacobian", "projection"]
#: every element of these small layers (a sample of fewer leaves the others unchecked:
#: INCONCLUSIVE); the sampled strategy still draws its elements at random
SAMPLES = 128


def _check(layer, strategy, **kw):
    return check_layer(layer, X, strategy=strategy, samples=SAMPLES, **kw)


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
    """An array backward writes of no parameter's shape (a list of them here) is no
    gradient found: a warning saying how to name it; named, it is checked."""
    class OwnNames:
        def __init__(self):
            self.kernel = np.eye(3) * 1.5
            self.kernel_updates = None

        def forward(self, x):
            self.x = x
            return x @ self.kernel

        def backward(self, dout):
            self.kernel_updates = [2.0 * self.x.T @ dout]  # wrong, and never found
            return dout @ self.kernel.T

    report = check_layer(OwnNames(), X)
    assert [r.name for r in report.results] == ["x"]
    warning = [f for f in report.findings if f.kind == "no-parameters-found"]
    assert warning and not warning[0].failure
    assert "params={'kernel': '<attribute holding its gradient>'}" in warning[0].message
    named = check_layer(OwnNames(), X, params={"kernel": "kernel_updates[0]"})
    assert named.result("kernel").verdict == "FAIL"


class _KernelGradient:
    """``kernel_gradient``: a spelling of the name rule (grad_candidates)."""

    factor = 1.0

    def __init__(self):
        self.kernel = np.eye(3) * 1.5
        self.kernel_gradient = None

    def forward(self, x):
        self.x = x
        return x @ self.kernel

    def backward(self, dout):
        self.kernel_gradient = self.factor * self.x.T @ dout
        return dout @ self.kernel.T


def test_a_gradient_spelled_kernel_gradient_is_found_by_name():
    assert check_layer(_KernelGradient(), X).passed
    broken = _KernelGradient()
    broken.factor = 2.0
    report = check_layer(broken, X)
    assert {r.name: r.verdict for r in report.results} == {"x": "PASS", "kernel": "FAIL"}


class _UnwrittenDense(MisnamedDense):
    """``W`` whose gradient backward never writes (``b``/``db`` found)."""

    def backward(self, dout):
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


def test_a_floating_array_without_gradient_warns_though_other_parameters_were_found():
    report = check_layer(_UnwrittenDense(), X)
    assert [r.name for r in report.results] == ["x", "b"]
    warning = [f for f in report.findings if f.kind == "no-gradient-found"]
    assert len(warning) == 1 and warning[0].target == "W" and not warning[0].failure
    assert "params={'W': '<attribute holding its gradient>', ...}" in warning[0].message
    assert warning[0].message in report.warnings


def test_a_misnamed_gradient_of_the_parameter_s_shape_is_taken_by_shape_and_said():
    """``dw`` for ``W`` (no name rule): the one floating array backward writes of W's
    shape, with no other parameter of that shape, is its gradient: checked (1.5x wrong:
    FAIL), and the note says so and how to name it."""
    report = check_layer(MisnamedDense(), X)
    assert {r.name: r.verdict for r in report.results} == {"x": "PASS", "W": "FAIL", "b": "PASS"}
    note = [f for f in report.findings if f.kind == "gradient-by-shape"]
    assert len(note) == 1 and not note[0].failure, str(report)
    assert "backward wrote dw, the only floating array of its shape (3, 3)" in note[0].message
    assert "params={'W': 'dw'}" in note[0].message
    assert check_layer(MisnamedDense(), X, params={"W": "dw", "b": "db"}).result("W").verdict \
        == "FAIL"


def test_gate_warns_in_the_summary_for_a_floating_array_without_gradient(tmp_path, capsys):
    src = tmp_path / "misnamed.py"
    src.write_text("import numpy as np\nfrom conventions_layers import MisnamedDense\n"
                   "class Unwritten(MisnamedDense):\n"
                   "    def backward(self, dout):\n"
                   "        self.db = dout.sum(axis=0)\n"
                   "        return dout @ self.W.T\n"
                   "def make():\n    return Unwritten(), np.ones((2, 3))\n"
                   "def make_misnamed():\n    return MisnamedDense(), np.ones((2, 3))\n")
    assert main([f"{src}:make", "-q"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # wrapped at the terminal's width
    assert "warning" in out and "W is a floating array with no gradient found" in out
    assert main([f"{src}:make_misnamed", "-q"]) == 1  # dw taken by shape: W FAILs


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


def test_tied_weight_in_two_attributes_is_one_target_against_the_sum():
    layer = TiedAttributes()
    report = check_layer(layer, X)
    assert report.passed, str(report)
    assert any(f.kind == "tied-parameter" and "dW_in+dW_out" in f.message
               for f in report.findings)
    assert layer.W_in is layer.W_out


def test_two_gradient_names_warn_and_say_which_was_checked():
    class TwoNames(MisnamedDense):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dW = self.x.T @ dout
            self.W_grad = 1.5 * self.dW  # wrong: not the one checked
            return dx

    report = check_layer(TwoNames(), X)
    assert report.passed and [r.name for r in report.results] == ["x", "W", "b"]
    note = [f for f in report.findings if f.kind == "several-gradient-names"]
    assert note and not note[0].failure
    assert "dW (checked) and W_grad (not checked)" in note[0].message
    assert note[0].message in report.warnings
    assert check_layer(TwoNames(), X, params={"W": "W_grad"}).result("W").verdict == "FAIL"


def test_a_view_parameter_is_mapped_back_onto_its_base():
    from conventions_layers import TiedTranspose

    layer = TiedTranspose()
    report = check_layer(layer, X)
    assert report.passed, str(report)
    assert any(f.kind == "tied-parameter" and "dW+dWt@Wt@W" in f.message
               for f in report.findings)
    assert layer.Wt.base is layer.W
    layer.backward(layer.forward(X))
    assert np.array_equal(resolve(layer, "dWt@Wt@W"), layer.dWt.T)
    assign(layer, "dWt@Wt@W", np.arange(6.0).reshape(3, 2))
    assert np.array_equal(layer.dWt, np.arange(6.0).reshape(3, 2).T)


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


def test_floating_arrays_in_an_unpaired_container_are_listed_and_warned():
    class Unpaired(ListWeights):
        def backward(self, dout):
            dx = super().backward(dout)
            self.weight_updates = self.__dict__.pop("dweights")  # a name never found
            return dx

    report = check_layer(Unpaired(), X)
    assert [r.name for r in report.results] == ["x"]
    reasons = dict(report.not_checked)
    assert reasons["weights[0]"].startswith("no gradient (looked for dweights[0]")
    assert reasons["weights[1]"].startswith("no gradient")
    assert any(f.kind == "no-parameters-found" for f in report.findings)


@pytest.mark.parametrize("cls", [ZeroedInForward, ZeroedInPlaceInForward])
def test_a_gradient_zeroed_in_forward_is_fine_a_second_backward_is_a_note(cls):
    report = check_layer(cls(), X)
    assert report.passed, str(report)
    twice = [f for f in report.findings if f.kind == "backward-twice"]
    assert twice and not twice[0].failure and "forward refreshes dW" in twice[0].message


def test_a_buffer_forward_does_not_reset_is_still_refused():
    class Accumulates(ZeroedInPlaceInForward):
        def forward(self, x):
            self.x = x
            return x @ self.W

    from gradcheck import LayerProtocolError

    with pytest.raises(LayerProtocolError, match="did not refresh dW"):
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
    report = check_layer(good(), inputs(), strategy=strategy, samples=SAMPLES)
    assert [r.name for r in report.results] == targets
    assert report.passed, str(report)
    broken = check_layer(bad(), inputs(), strategy=strategy, samples=SAMPLES)
    verdicts = {r.name: r.verdict for r in broken.results}
    assert verdicts.pop(target) == "FAIL", str(broken)
    assert set(verdicts.values()) <= {"PASS"}, str(broken)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("convention", sorted(FUNCTION_CASES))
def test_function_pair_correct_passes_broken_fails(convention, strategy):
    forward, backward, broken, inputs, target, targets = FUNCTION_CASES[convention]
    report = check_function(forward, backward, *inputs(), strategy=strategy, samples=SAMPLES)
    assert [r.name for r in report.results] == targets
    assert report.passed, str(report)
    bad = check_function(*broken, *inputs(), strategy=strategy, samples=SAMPLES)
    verdicts = {r.name: r.verdict for r in bad.results}
    assert verdicts.pop(target) == "FAIL", str(bad)
    assert set(verdicts.values()) <= {"PASS"}, str(bad)


def test_loss_whose_backward_ignores_dout_passes_with_a_note():
    from conventions_layers import IgnoresDout

    report = check_layer(IgnoresDout(), (X, np.array([0, 2, 1])))
    assert report.passed, str(report)
    kinds = {f.kind for f in report.findings}
    assert "scalar-output" in kinds
    assert dict(report.not_checked)["t"].startswith("not differentiated: integer")


def test_a_one_input_loss_whose_backward_ignores_dout_passes_with_the_same_note():
    """The labels held by the layer, ``forward(y)`` alone: the scalar output gets ``dout =
    1`` as with the labels passed in (it drew a random dout and FAILed the correct loss)."""
    t = np.random.default_rng(7).normal(size=X.shape)

    class MSELoss:
        def __init__(self, target):
            self.target = target

        def forward(self, y):
            self.y = y
            return 0.5 * np.mean((y - self.target) ** 2)

        def backward(self, dout=1):
            return (self.y - self.target) / self.y.size

    report = check_layer(MSELoss(t), X)
    assert report.passed, str(report)
    assert "scalar-output" in {f.kind for f in report.findings}

    class Wrong(MSELoss):
        def backward(self, dout=1):
            return 1.001 * super().backward(dout)

    assert not check_layer(Wrong(t), X).passed


@pytest.mark.parametrize("strategy", STRATEGIES + ["auto", "grouped"])
def test_the_books_softmax_loss_ignoring_dout_passes_with_warnings_under_every_strategy(
        strategy):
    """``backward(dout=1)`` returning ``(y - t) / N`` whatever ``dout`` is (the book's): a
    terminal loss, checked with ``dout = 1`` as every loss is, PASSes with the
    ``scalar-output`` and ``backward-nonlinear`` warnings (jacobian too: its random row
    factors are 1 there); the built-in loss, which scales by dout, gets neither; a dout
    passed in FAILs the one that ignores it."""
    from gradcheck.gate.suite import make_softmax_loss
    from mutants.corpus import SoftmaxIgnoresDout

    loss, x = make_softmax_loss((4, 5), np.random.default_rng(0))
    ignoring = SoftmaxIgnoresDout(loss.t)
    report = check_layer(ignoring, x, strategy=strategy)
    assert report.passed, str(report)
    assert {"scalar-output", "backward-nonlinear"} <= {f.kind for f in report.findings}
    assert not check_layer(loss, x, strategy=strategy).warnings
    assert not check_layer(ignoring, x, strategy=strategy, dout=np.array(0.7)).passed


def test_integer_indices_are_not_cast_and_the_report_says_so():
    from conventions_layers import Embedding

    idx = np.array([0, 3, 3, 1])
    report = check_layer(Embedding(), idx)
    assert [r.name for r in report.results] == ["params[0]"] and report.passed
    note = [f.message for f in report.findings if f.kind == "integer-input"]
    assert note and "not cast" in note[0] and "idx" in note[0]
    assert idx.dtype.kind == "i"


def test_integer_values_are_still_cast_with_a_note():
    report = check_layer(CASES["scalar-float"][0](), np.arange(6).reshape(2, 3))
    assert [r.name for r in report.results] == ["x", "beta"]
    assert any("checked as float64" in f.message for f in report.findings)


def test_inputs_of_several_layers_are_left_untouched():
    from conventions_layers import LSTMCell

    x, h, c = (np.random.default_rng(5).normal(size=s) for s in ((3, 3), (3, 2), (3, 2)))
    copies = [a.copy() for a in (x, h, c)]
    check_layer(LSTMCell(), (x, h, c))
    assert all(np.array_equal(a, b) for a, b in zip((x, h, c), copies))


def test_tuple_dout_is_split_per_output():
    from conventions_layers import LSTMCell

    x, h, c = (np.random.default_rng(5).normal(size=s) for s in ((3, 3), (3, 2), (3, 2)))
    dh, dc = np.ones((3, 2)), np.zeros((3, 2))
    report = check_layer(LSTMCell(), (x, h, c), dout=(dh, dc))
    assert report.passed


def test_wrt_and_params_use_the_reports_names():
    from conventions_layers import LSTMCell

    x, h, c = (np.random.default_rng(5).normal(size=s) for s in ((3, 3), (3, 2), (3, 2)))
    report = check_layer(LSTMCell(), (x, h, c), wrt=["c_prev", "params[1]"])
    assert [r.name for r in report.results] == ["c_prev", "params[1]"]
    named = check_layer(LSTMCell(), (x, h, c), params={"params[2]": "grads[2]"})
    assert [r.name for r in named.results] == ["x", "h_prev", "c_prev", "params[2]"]


def test_batchnorm_param_dict_is_state_restored():
    from conventions_layers import FUNCTION_CASES

    forward, backward, _, inputs, _, _ = FUNCTION_CASES["batchnorm-pair"]
    args = inputs()
    bn_param = args[-1]
    report = check_function(forward, backward, *args)
    assert report.passed and bn_param == {"mode": "train"}
    assert dict(report.not_checked)["bn_param"].startswith("not differentiated: a dict")


# -- the gate and pytest reach all of it --------------------------------------------------------
from pathlib import Path  # noqa: E402

from gradcheck.gate.cli import main  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conventions.py"


@pytest.mark.parametrize("factory", ["make_rnn_cell", "make_loss", "make_embedding",
                                     "make_affine_pair", "make_softmax_loss", "make_swish",
                                     "make_optimizer_dense", "make_practical_dl_dense",
                                     "make_dlai_pair",
                                     "make_torch7_linear", "make_returns_gradients",
                                     "make_call_keeps_input", "make_params_by_getattr",
                                     "make_embedding_grad_w"])
def test_gate_checks_every_example_convention(factory):
    assert main([f"{EXAMPLE}:{factory}", "-q"]) == 0


def test_gate_broken_rnn_cell_fails_on_dh_prev(capsys):
    assert main([f"{EXAMPLE}:make_broken_rnn_cell"]) == 1
    out = capsys.readouterr().out
    assert "target 'h_prev'" in out


def test_gate_wrt_and_params_options(tmp_path, capsys):
    assert main([f"{EXAMPLE}:make_rnn_cell", "--wrt", "h_prev", "--json",
                 str(tmp_path / "r.json")]) == 0
    import json
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in doc["checks"][0]["results"]] == ["h_prev"]
    assert main([f"{EXAMPLE}:make_matmul", "-q", "--params", "params[0]=grads[0]"]) == 0


def test_gate_warns_in_the_summary_when_no_parameter_is_found(tmp_path, capsys):
    src = tmp_path / "own.py"
    src.write_text(
        "import numpy as np\n"
        "class Own:\n"
        "    def __init__(self):\n"
        "        self.kernel = np.eye(3)\n"
        "    def forward(self, x):\n"
        "        self.x = x\n"
        "        return x @ self.kernel\n"
        "    def backward(self, dout):\n"
        "        self.kernel_updates = [self.x.T @ dout]\n"
        "        return dout @ self.kernel.T\n"
        "def make():\n"
        "    return Own(), np.ones((2, 3))\n")
    assert main([f"{src}:make", "-q"]) == 0
    out = capsys.readouterr().out
    assert "warning" in out and "no parameter found" in out and "--params" in out
    assert main([f"{src}:make", "-q", "--params", "kernel=kernel_updates[0]"]) == 0
    assert "no parameter found" not in capsys.readouterr().out


def test_params_option_parser():
    from gradcheck.gate.options import OptionError, parse_params

    assert parse_params("W=dW, gamma=gamma_grad") == {"W": "dW", "gamma": "gamma_grad"}
    assert parse_params({"W": "dW"}) == {"W": "dW"}
    for bad in ("W", "=dW", "W=", ""):
        with pytest.raises(OptionError, match="NAME=GRAD"):
            parse_params(bad)


def test_gate_options_take_the_reports_names_of_odd_keys():
    """A target name copied from the report (``blocks[(0, 'a')].W``, a key holding a comma
    or an equals sign) is one name for ``--wrt`` and ``--params``."""
    from gradcheck.gate.options import OptionError, parse_names, parse_params

    assert parse_names("blocks[(0, 'a')].W,b") == ("blocks[(0, 'a')].W", "b")
    assert parse_names("blocks['encoder.fc'].W") == ("blocks['encoder.fc'].W",)
    assert parse_params("params[('W', 0)]=grads[('W', 0)], p['a=b']=g['a=b']") == {
        "params[('W', 0)]": "grads[('W', 0)]", "p['a=b']": "g['a=b']"}
    for bad in ("a b", "W-1", "."):
        with pytest.raises(OptionError, match="target names"):
            parse_names(bad)


def test_assert_gradients_takes_tuple_inputs():
    from gradcheck import assert_gradients, GradientCheckError
    from conventions_layers import Attention, AttentionBroken

    inputs = CALL_CASES["attention-inputs"][2]
    assert assert_gradients(Attention(), inputs()).passed
    with pytest.raises(GradientCheckError, match="target 'h'"):
        assert_gradients(AttentionBroken(), inputs())


# -- properties ---------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(1, 3), min_size=0, max_size=3), min_size=1, max_size=4))
def test_packing_a_tuple_dout_and_splitting_it_back_is_the_identity(shapes):
    """split(pack(d)) == d for any output shapes: each output gets its own upstream gradient."""
    from gradcheck.protocol.calling import CallLayer

    shapes = [tuple(s) for s in shapes]
    rng = np.random.default_rng(len(shapes))
    douts = tuple(rng.normal(size=s) for s in shapes)
    call = CallLayer(CASES["list-params"][0](), (X,), "L")
    call.out_shapes = shapes
    parts = call.split(call.pack(douts))
    assert len(parts) == len(douts)
    assert all(p.shape == d.shape and np.array_equal(p, d) for p, d in zip(parts, douts))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from(["W", "b", "0", "1", "params['W1']", "grads[0]"]), min_size=1,
                max_size=3))
def test_assign_then_resolve_returns_what_was_assigned(parts):
    """resolve(root, p) is the object assign(root, p, v) put there, for any reachable path."""
    path = ".".join(p for p in parts[:-1] if not p.startswith(("params", "grads")))
    path = (path + "." if path else "") + parts[-1]

    class Node:
        pass

    root = Node()
    obj = root
    steps = path.split(".")
    for step in steps[:-1]:
        child = Node()
        setattr(obj, step, child)
        obj = child
    last = steps[-1]
    if last.startswith("params"):
        obj.params = {"W1": None}
    elif last.startswith("grads"):
        obj.grads = [None]
    value = np.arange(3.0)
    assign(root, path, value)
    assert resolve(root, path) is value


def test_config_params_and_wrt_keys(tmp_path):
    from gradcheck.gate.config import read_config

    ini = tmp_path / "setup.cfg"
    ini.write_text("[gradcheck]\ntargets = own.py:make\nparams = kernel=kernel_gradient, "
                   "b=db\nwrt = kernel\n")
    assert read_config(ini).options["params"] == {"kernel": "kernel_gradient", "b": "db"}
    assert read_config(ini).options["wrt"] == ("kernel",)
    toml = tmp_path / "pyproject.toml"
    toml.write_text('[tool.gradcheck]\ntargets = ["own.py:make"]\n'
                    'params = {kernel = "kernel_gradient"}\n')
    assert read_config(toml).options["params"] == {"kernel": "kernel_gradient"}


def test_every_example_in_examples_conventions_passes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("conventions_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for factory in module.FACTORIES:
        made = factory()
        report = (check_function(made[0], made[1], *made[2]) if len(made) == 3
                  else check_layer(*made))
        assert report.passed, f"{factory.__name__}: {report}"


def test_stale_accumulator_is_told_apart_from_accumulation():
    from conventions_layers import AccumulatingDenseStale

    stale = check_layer(AccumulatingDenseStale(), X)
    assert stale.result("parameters['b']").verdict == "FAIL"
    notes = [f for f in stale.findings if f.kind == "accumulator-untouched"]
    assert [f.target for f in notes] == ["parameters['b']"]
    good = check_layer(AccumulatingDense(), X)
    assert good.passed and not any(f.kind == "accumulator-untouched" for f in good.findings)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["W", "h", "c", "gamma", "state"]),
                          st.booleans()), min_size=1, max_size=4, unique_by=lambda t: t[0]))
def test_an_attribute_forward_rebinds_is_never_a_target(attrs):
    """Every attribute with a ``d`` + name gradient is a target exactly when forward does not
    rebind it; the rebound ones are listed as state."""

    class Layer:
        def __init__(self):
            for name, _ in attrs:
                setattr(self, name, np.linspace(0.5, 1.5, 3))

        def forward(self, x):
            self.x = x
            for name, rebound in attrs:
                if rebound:
                    setattr(self, name, np.tanh(x).sum(axis=0))
            return x * sum(getattr(self, n) for n, r in attrs if not r) if any(
                not r for _, r in attrs) else x * 1.0

        def backward(self, dout):
            for name, _ in attrs:
                setattr(self, "d" + name, np.sum(dout * self.x, axis=0))
            fixed = [n for n, r in attrs if not r]
            return dout * sum(getattr(self, n) for n in fixed) if fixed else dout * 1.0

    report = check_layer(Layer(), X)
    targets = [r.name for r in report.results]
    assert targets == ["x"] + [n for n, r in attrs if not r]
    state = {n for n, why in report.not_checked if why.startswith("written by forward")}
    assert {n for n, r in attrs if r} <= state
    assert report.passed, str(report)


def test_errors_name_targets_as_the_report_does():
    from gradcheck import LayerProtocolError
    from conventions_layers import Gate

    class WrongShape(Gate):
        def backward(self, dout):
            dx, dgate = super().backward(dout)
            return dx, dgate[:, :1]

    inputs = dict(zip(("x", "gate"), np.random.default_rng(0).normal(size=(2, 3, 2))))
    with pytest.raises(LayerProtocolError) as info:
        check_layer(WrongShape(), inputs)
    assert info.value.target == "gate" and "inputs[" not in str(info.value)
    assert "input_grads" not in str(info.value)


def test_readme_gate_lines_for_conventions_run_as_written(monkeypatch):
    import shlex

    root = EXAMPLE.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in readme.splitlines()
             if line.startswith("gradcheck examples/conventions.py")]
    assert len(lines) >= 2
    monkeypatch.chdir(root)
    for line in lines:
        assert main(shlex.split(line)[1:] + ["-q"]) == 0, line


def test_a_backward_that_steps_its_weights_is_read_from_its_step_and_left_as_found():
    from conventions_layers import SGDDense

    layer = SGDDense()
    before = (layer.weights.copy(), layer.bias.copy(), layer.weights, layer.bias)
    x = np.random.default_rng(0).normal(size=(3, 1))
    report = check_layer(layer, x)
    assert report.passed, str(report)
    assert [r.name for r in report.results] == ["input", "weights", "bias"]
    note = [f.message for f in report.findings if f.kind == "learning-rate"]
    assert note and "steps weights, bias itself" in note[0] and "(before - after)" in note[0]
    assert not [f for f in report.findings if f.kind in ("no-parameters-found",
                                                           "no-gradient-found")]
    assert not [n for n, _ in report.not_checked if "step_grads" in n]
    assert layer.weights is before[2] and layer.bias is before[3]
    assert np.array_equal(layer.weights, before[0]) and np.array_equal(layer.bias, before[1])
    assert report.discovery_calls[1] >= 2  # the two learning rates of the step search


def test_a_momentum_step_in_backward_is_not_the_gradient_and_never_passes():
    from conventions_layers import SGDDense

    class MomentumDense(SGDDense):
        def __init__(self):
            super().__init__()
            self.velocity = np.ones_like(self.weights)

        def backward(self, output_gradient, learning_rate):
            weights_gradient = np.dot(output_gradient, self.input.T)
            input_gradient = np.dot(self.weights.T, output_gradient)
            self.velocity = 0.9 * self.velocity + weights_gradient
            self.weights -= learning_rate * self.velocity
            self.bias -= learning_rate * output_gradient
            return input_gradient

    report = check_layer(MomentumDense(), np.random.default_rng(0).normal(size=(3, 1)))
    verdicts = {r.name: r.verdict for r in report.results}
    # the step is 0.9 * velocity + gradient: not the gradient, and not even linear in dout
    assert verdicts["input"] == verdicts["bias"] == "PASS", str(report)
    assert verdicts["weights"] != "PASS" and not report.passed, str(report)
    assert any("momentum or Adam" in f.message for f in report.findings)


def test_a_backward_taking_a_learning_rate_without_parameters_gets_it_passed():
    class Tanh:
        def forward(self, input):
            self.input = input
            return np.tanh(input)

        def backward(self, output_gradient, learning_rate):
            return output_gradient * (1 - np.tanh(self.input) ** 2)

    report = check_layer(Tanh(), np.random.default_rng(0).normal(size=(4, 1)))
    assert report.passed and [r.name for r in report.results] == ["input"]
    assert any("stepped no array" in f.message for f in report.findings)


def test_parameters_created_by_the_first_forward_are_checked_and_the_layer_left_as_given():
    from conventions_layers import LazyDense, LazyFullyConnected

    for layer, created in ((LazyDense(), "W, b"),
                           (LazyFullyConnected(), "parameters['W'], parameters['b']")):
        before = {k: v for k, v in vars(layer).items()}
        report = check_layer(layer, X)
        assert report.passed, str(report)
        note = [f.message for f in report.findings if f.kind == "created-by-forward"]
        assert note and note[0].startswith(created + " do not exist before the first forward")
        assert vars(layer).keys() == before.keys()
        assert all(getattr(layer, k) is v for k, v in before.items())
    assert LazyDense().W is None and LazyFullyConnected().parameters["W"] is None


@pytest.mark.parametrize("train_flg", [True, False])
def test_a_second_forward_parameter_that_is_not_the_switch_gets_no_boolean(train_flg):
    """numpy-ml's ``forward(X, retain_derived=True)`` is not a train/eval switch: an
    eval-mode check passing ``False`` there dropped the cached input (IndexError)."""
    class Masked:
        def __init__(self):
            self.W = np.random.default_rng(4).normal(size=(3, 2))

        def forward(self, x, mask=None):
            self.x = x if mask is None else x * mask
            return self.x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    assert check_layer(AccumulatingDense(), X, train_flg=train_flg).passed
    assert check_layer(Masked(), X, train_flg=train_flg).passed


def test_the_switch_is_passed_under_its_own_name():
    seen = []

    class KerasLike:
        def forward(self, x, *, training=False):
            seen.append(training)
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    check_layer(KerasLike(), X, train_flg=False, sequence=False)
    # an eval-mode check: one train-mode forward in the discovery (what it writes is
    # state), every other call in eval mode
    assert seen[0] is True and len(seen) > 3 and set(seen[1:]) == {False}
    seen.clear()
    check_layer(KerasLike(), X, train_flg=True, sequence=False)
    assert set(seen) == {True}


def test_a_models_loss_over_its_params_is_checked_parameter_by_parameter():
    """CS231n's models: ``loss, grads = model.loss(X, y)``, ``grads`` over ``model.params``."""
    from conventions_layers import LABELS, TwoLayerNet, TwoLayerNetBroken

    X5 = np.random.default_rng(2).normal(size=(3, 5))
    for strategy in STRATEGIES:
        model = TwoLayerNet()
        saved = {k: v.copy() for k, v in model.params.items()}
        report = check_function(model.loss, None, X5, LABELS, strategy=strategy, samples=SAMPLES)
        assert [r.name for r in report.results] == ["W1", "b1", "W2", "b2"], str(report)
        assert report.passed, str(report)
        assert dict(report.not_checked)["X"].startswith("not differentiated: the model's input")
        assert all(np.array_equal(model.params[k], v) for k, v in saved.items())
        broken = check_function(TwoLayerNetBroken().loss, None, X5, LABELS, strategy=strategy,
                                samples=SAMPLES)
        assert {r.name: r.verdict for r in broken.results} == {
            "W1": "FAIL", "b1": "PASS", "W2": "PASS", "b2": "PASS"}, str(broken)
    only = check_function(TwoLayerNet().loss, None, X5, LABELS, wrt=["W2"])
    assert [r.name for r in only.results] == ["W2"]


class BatchNormNet:
    """CS231n's ``FullyConnectedNet`` with batch normalisation, one hidden layer: its
    running statistics live in ``self.bn_params`` (a list of dicts), not in ``params``."""

    def __init__(self, D=5, H=4, C=3):
        rng = np.random.default_rng(0)
        self.params = {"W1": rng.normal(size=(D, H)) * 0.5, "b1": np.zeros(H),
                       "gamma1": np.ones(H), "beta1": np.zeros(H),
                       "W2": rng.normal(size=(H, C)) * 0.5, "b2": np.zeros(C)}
        self.bn_params = [{"mode": "train", "running_mean": np.zeros(H),
                           "running_var": np.zeros(H)}]
        self.class_weights = np.ones(C)  # an array the model keeps and loss does not use

    def loss(self, X, y):
        p, bn = self.params, self.bn_params[0]
        a = X @ p["W1"] + p["b1"]
        mu, var = a.mean(0), a.var(0)
        bn["running_mean"] = 0.9 * bn["running_mean"] + 0.1 * mu
        bn["running_var"] = 0.9 * bn["running_var"] + 0.1 * var
        std = np.sqrt(var + 1e-5)
        an = (a - mu) / std
        z = p["gamma1"] * an + p["beta1"]
        h = np.maximum(0, z)
        s = h @ p["W2"] + p["b2"]
        e = np.exp(s - s.max(1, keepdims=True))
        pr = e / e.sum(1, keepdims=True)
        N = len(X)
        ds = pr.copy()
        ds[np.arange(N), y] -= 1
        ds /= N
        g = {"W2": h.T @ ds, "b2": ds.sum(0)}
        dz = ds @ p["W2"].T
        dz[z <= 0] = 0
        g["gamma1"], g["beta1"] = (dz * an).sum(0), dz.sum(0)
        dan = dz * p["gamma1"]
        da = (dan - dan.mean(0) - an * (dan * an).mean(0)) / std
        g["W1"], g["b1"] = X.T @ da, da.sum(0)
        return -np.log(pr[np.arange(N), y]).mean(), g


def test_a_models_other_arrays_are_listed_and_its_findings_use_the_parameter_names():
    X = np.random.default_rng(1).normal(size=(6, 5))
    y = np.array([0, 1, 2, 0, 1, 2])
    model = BatchNormNet()
    report = check_function(model.loss, None, X, y)
    why = dict(report.not_checked)
    assert why["model.bn_params[0]['running_mean']"].startswith("written by forward")
    assert why["model.bn_params[0]['running_var']"].startswith("written by forward")
    assert why["model.class_weights"].startswith("no gradient found")
    assert not [n for n in why if "params[" in n and "bn_params" not in n]
    # b1 feeds a batch norm: its gradient is zero by structure, and the finding says so
    # under the model's own name for it
    (note,) = [f for f in report.findings if f.kind == "inconclusive"]
    assert note.target == "b1" and "'b1' is inconclusive" in note.message
    assert "layer." not in note.message
    assert report.result("W1").passed and report.result("gamma1").passed


class CacheDict:
    """``w * relu(x)`` keeping a cache for backward: rebuilt (``self.cache = {...}``) or,
    with ``in_place``, written entry by entry into a dict (and a list) made once."""

    def __init__(self, in_place=False):
        self.w, self.in_place = np.linspace(0.5, 1.5, 3), in_place
        self.cache, self.slots = {}, [None, None]

    def forward(self, x):
        m = (x > 0).astype(float)
        if self.in_place:
            self.cache["x"], self.cache["mask"] = x, m
            self.slots[0], self.slots[1] = m * 2, m * 3
        else:
            self.cache = {"x": x, "mask": m, "wm": self.w * m}
        return self.w * x * m

    def backward(self, dout):
        x, m = self.cache["x"], self.cache["mask"]
        self.dw = np.sum(dout * x * m, axis=0)
        return dout * self.w * m


def test_a_cache_dict_rebuilt_by_forward_is_one_not_checked_line_not_one_per_entry():
    report = check_layer(CacheDict(), X + 0.01)
    assert report.passed
    assert [n for n, _ in report.not_checked] == ["cache"], report.not_checked
    assert dict(report.not_checked)["cache"] == (
        "rebuilt by every forward ('x', 'mask', 'wm') -> state, not a parameter")
    assert "cache['mask']" not in str(report)


def test_cache_entries_written_in_place_are_listed_never_dropped_and_grouped_when_all_are():
    """A dict made once whose entries forward writes, one of them the input: the input
    entry is the input, the other one is listed (it used to vanish with the input's); a list
    whose slots forward all writes is one line."""
    why = dict(check_layer(CacheDict(in_place=True), X + 0.01).not_checked)
    assert why == {"cache['mask']": "written by forward -> state, not a parameter",
                   "slots": "its entries 0, 1 written by forward -> state, not a parameter"}


def test_arrays_nested_below_an_attribute_are_listed_as_not_checked():
    class Nested:
        def __init__(self):
            self.W = np.ones((3, 3))
            self.stats = [{"running_mean": np.zeros(3), "count": 0}]
            self.optimizer = type("Adam", (), {})()
            self.optimizer.m = np.zeros((3, 3))
            self.optimizer.params = [self.W]  # the parameter itself: checked, not listed
            self.registry = [{"head": Swish()}]  # a layer nested deeper than the walk goes

        def forward(self, x):
            self.x = x
            self.stats[0]["running_mean"] = 0.9 * self.stats[0]["running_mean"] + x.mean(0)
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    report = check_layer(Nested(), np.random.default_rng(0).normal(size=(4, 3)))
    assert report.passed and [r.name for r in report.results] == ["x", "W"]
    why = dict(report.not_checked)
    assert why["stats[0]['running_mean']"].startswith("written by forward")
    assert why["optimizer.m"].startswith("no gradient found")
    assert "optimizer.params[0]" not in why
    assert why["registry[0]['head']"].startswith("a layer inside a nested container")


def test_a_models_loss_missing_a_gradient_and_a_model_passed_as_a_layer_say_what_to_do():
    from conventions_layers import LABELS, TwoLayerNet
    from gradcheck import GradCheckInputError

    class Forgets(TwoLayerNet):
        def loss(self, X, y=None):
            loss, grads = super().loss(X, y)
            del grads["b2"]
            return loss, grads

    X5 = np.random.default_rng(2).normal(size=(3, 5))
    with pytest.raises(GradCheckInputError, match="no gradient for b2"):
        check_function(Forgets().loss, None, X5, LABELS)
    with pytest.raises(GradCheckInputError, match=r"check_function\(model.loss, None, X, y\)"):
        check_layer(TwoLayerNet(), (X5, LABELS))


def test_a_gradient_attribute_backward_leaves_none_fails_and_names_a_typo():
    """The book's ``self.dW = None`` in ``__init__``: a backward that never sets it (or sets
    ``self.dw``) is a failure, not a parameter quietly left out."""

    class Affine:
        def __init__(self):
            rng = np.random.default_rng(1)
            self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)
            self.x = self.dW = self.db = None

        def forward(self, x):
            self.x = x
            return x @ self.W + self.b

        def backward(self, dout):
            self.dW = self.x.T @ dout
            self.db = dout.sum(axis=0)
            return dout @ self.W.T

    class Forgets(Affine):
        def backward(self, dout):
            self.db = dout.sum(axis=0)
            return dout @ self.W.T

    class Typo(Affine):
        def backward(self, dout):
            self.dw = self.x.T @ dout
            return Forgets.backward(self, dout)

    x = np.random.default_rng(2).normal(size=(6, 4))
    assert check_layer(Affine(), x).passed
    for cls, hint in ((Forgets, None), (Typo, "params={'W': 'dw'}")):
        report = check_layer(cls(), x)
        (f,) = [f for f in report.findings if f.kind == "gradient-not-set"]
        assert not report.passed and f.failure and f.target == "W"
        assert "dW is None after backward" in f.message
        assert (hint in f.message) if hint else "typo" not in f.message


def test_a_parameter_left_out_of_params_is_listed_and_warned_about():
    from layers import Affine

    rng = np.random.default_rng(0)
    layer = Affine(rng.normal(size=(4, 3)), rng.normal(size=3))
    x = rng.normal(size=(5, 4))
    report = check_layer(layer, x, params={"W": "dW"})
    assert [r.name for r in report.results] == ["x", "W"]
    assert dict(report.not_checked)["b"] == "not in params= (its gradient db was found)"
    (note,) = [f for f in report.findings if f.kind == "not-in-params"]
    assert note.target == "b" and not note.failure and "(db)" in note.message
    full = check_layer(layer, x, params={"W": "dW", "b": "db"})
    assert not [f for f in full.findings if f.kind == "not-in-params"]
    assert "b" not in dict(full.not_checked)


def test_a_loss_whose_backward_returns_no_gradient_for_its_float_labels():
    """The book's ``SoftmaxWithLoss`` with one-hot (float) labels ``t``: ``backward(dout=1)``
    returns ``dx`` only; ``t`` is taken as labels, not a failure of the protocol."""

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    class SoftmaxWithLoss:
        def forward(self, x, t):
            self.t, self.y = t, softmax(x)
            return -np.sum(t * np.log(self.y)) / x.shape[0]

        def backward(self, dout=1):
            return dout * (self.y - self.t) / self.t.shape[0]

    class Broken(SoftmaxWithLoss):
        def backward(self, dout=1):
            return dout * (self.y - self.t)

    rng = np.random.default_rng(14)
    x, t = rng.normal(size=(5, 4)), np.eye(4)[[0, 3, 1, 1, 2]]
    for kw in ({}, {"wrt": ["x"]}):
        report = check_layer(SoftmaxWithLoss(), (x, t), **kw)
        assert report.passed and [r.name for r in report.results] == ["x"], str(report)
        assert dict(report.not_checked)["t"].startswith("not differentiated: labels")
        assert not any("input_grads" in n or "inputs[" in n for n, _ in report.not_checked)
        assert not check_layer(Broken(), (x, t), **kw).passed


class AttributeModeDropout:
    """PyTorch-style: ``forward(x)`` reads the mode from ``self.training``."""

    def __init__(self, eval_scale=1.0):
        self.rng, self.training, self.eval_scale = np.random.default_rng(0), True, eval_scale

    def forward(self, x):
        if self.training:
            self.mask = (self.rng.random(x.shape) > 0.5) * 2.0
            return x * self.mask
        return x

    def backward(self, dout):
        return dout * self.mask if self.training else dout * self.eval_scale


def test_a_mode_held_as_an_attribute_is_set_for_the_check_and_put_back():
    x = np.random.default_rng(13).normal(size=(4, 5))
    layer = AttributeModeDropout()
    report = check_layer(layer, x, train_flg=False)
    assert report.passed and layer.training is True
    (note,) = [f for f in report.findings if f.kind == "mode-switch"]
    assert "`training`, set to False" in note.message
    wrong = AttributeModeDropout(eval_scale=0.5)  # the eval-mode backward is wrong
    assert not check_layer(wrong, x, train_flg=False).passed and wrong.training is True
    assert check_layer(wrong, x).passed  # train mode is right


class _EvalSwitch:
    """``forward(x, eval=False)`` (CMU 11-785): eval mode scales by 0.5, train mode by 2;
    ``eval_scale`` is what the eval-mode backward uses."""

    def __init__(self, eval_scale=0.5):
        self.eval_scale = eval_scale

    def forward(self, x, eval=False):
        self.eval_ = eval
        return (0.5 if eval else 2.0) * x

    def backward(self, dout):
        return (self.eval_scale if self.eval_ else 2.0) * dout


def test_a_switch_named_the_other_way_round_is_given_not_train_flg():
    """``forward(x, eval=False)``, ``deterministic=...``, a held ``self.is_test``: eval mode
    reaches the eval branch (it was given eval=True in train mode and the reverse)."""
    x = np.random.default_rng(2).normal(size=(3, 4))
    assert check_layer(_EvalSwitch(), x, train_flg=False).passed
    assert check_layer(_EvalSwitch(), x).passed
    wrong = _EvalSwitch(eval_scale=0.6)
    assert not check_layer(wrong, x, train_flg=False).passed and check_layer(wrong, x).passed

    class Deterministic(_EvalSwitch):
        def forward(self, x, *, deterministic=False):
            return super().forward(x, deterministic)

    assert not check_layer(Deterministic(eval_scale=0.6), x, train_flg=False).passed

    class HeldIsTest(_EvalSwitch):
        is_test = False

        def forward(self, x):
            return super().forward(x, self.is_test)

    layer = HeldIsTest(eval_scale=0.6)
    report = check_layer(layer, x, train_flg=False)
    assert not report.passed and layer.is_test is False
    assert any("`is_test`, set to True" in f.message for f in report.findings)


def test_eval_mode_asked_of_a_layer_without_a_switch_is_a_warning():
    class ModeParam:  # CS231n style: forward(x, mode='train') is not a train_flg
        def forward(self, x, mode="train"):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    x = np.random.default_rng(1).normal(size=(3, 4))
    report = check_layer(ModeParam(), x, train_flg=False)
    (note,) = [f for f in report.findings if f.kind == "mode-switch"]
    assert "takes no train/eval switch" in note.message and "`mode` parameter" in note.message
    assert not [f for f in check_layer(ModeParam(), x).findings if f.kind == "mode-switch"]


def test_the_precision_note_says_which_arrays_are_low_precision():
    class Lin32:
        def __init__(self):
            self.W = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)

        def forward(self, x):
            self.x = x
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    x = np.random.default_rng(30).normal(size=(5, 4))
    for xin, says in ((x, "holds float32 parameters or state (its input is float64)"),
                      (x.astype(np.float32), "computes in its input's dtype (float32)")):
        (note,) = [f for f in check_layer(Lin32(), xin).findings if f.kind == "precision"]
        assert says in note.message


def test_a_params_dict_holding_the_layers_own_arrays_is_not_warned_about():
    """The book's ``TwoLayerNet``: ``self.params['W1']`` is the very array ``Affine1.W``."""
    from layers import Affine

    class Net:
        def __init__(self):
            rng = np.random.default_rng(0)
            self.params = {"W1": rng.normal(size=(4, 3)), "b1": np.zeros(3)}
            self.layers = {"Affine1": Affine(self.params["W1"], self.params["b1"])}

        def forward(self, x):
            return self.layers["Affine1"].forward(x)

        def backward(self, dout):
            return self.layers["Affine1"].backward(dout)

    report = check_layer(Net(), np.random.default_rng(1).normal(size=(5, 4)))
    assert report.passed and not report.warnings, report.warnings
    assert [r.name for r in report.results] == ["x", "layers.Affine1.W", "layers.Affine1.b"]
    assert dict(report.not_checked)["params['W1']"] == (
        "the same array as layers.Affine1.W: checked as that")


def test_a_keepdims_gradient_is_read_in_its_parameters_shape_with_a_note():
    """``dgamma`` of shape (1, D) for a (D,) ``gamma`` is the same elements: checked, and the
    report says it was reshaped; a gradient of another size is still refused."""
    from conventions_layers import KeepdimsLayerNorm

    from gradcheck.errors import LayerProtocolError

    report = check_layer(KeepdimsLayerNorm(), X)
    assert report.passed, str(report)
    notes = [f for f in report.findings if f.kind == "gradient-reshaped"]
    assert {f.target for f in notes} == {"gamma", "beta"} and not any(f.failure for f in notes)

    class WrongSize(KeepdimsLayerNorm):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dbeta = np.zeros((1, 4))
            return dx

    with pytest.raises(LayerProtocolError, match="dbeta has shape"):
        check_layer(WrongSize(), X)


def test_a_layer_holding_inputs_of_earlier_forwards_is_flushed_for_the_check_and_put_back():
    """numpy-ml: a layer forwarded before the check keeps that input in ``self.X`` (its
    backward would return a list); the check flushes it, as ``update()`` would, says so,
    and puts the kept input back."""
    layer = AccumulatingDense()
    kept = np.ones((3, 3))
    layer.forward(kept)
    report = check_layer(layer, X)
    assert report.passed, str(report)
    assert "flushed" in {f.kind for f in report.findings}
    assert len(layer.X) == 1 and layer.X[0] is kept
    from conventions_layers import AccumulatingDenseBroken

    broken = AccumulatingDenseBroken()
    broken.forward(kept)
    assert check_layer(broken, X).result("parameters['b']").verdict == "FAIL"


def test_a_flush_that_breaks_backward_is_not_used_and_the_report_says_so():
    from conventions_layers import CarriedCell

    layer = CarriedCell()
    layer.forward(np.ones((3, 3)))
    report = check_layer(layer, X)
    assert report.passed, str(report)
    kinds = {f.kind for f in report.findings}
    assert {"flush-breaks-backward", "sequence-skipped"} <= kinds and "flushed" not in kinds
    assert len(layer.X) == 1 and layer.derived_variables["dLdA_accumulator"] is None


# -- ML-From-Scratch: forward_pass / backward_pass, optimizer objects stepped in backward ------
def _held(layer):
    """Every attribute of ``layer`` (the objects themselves) and a deep copy of each."""
    import copy

    return dict(vars(layer)), copy.deepcopy(vars(layer))


def _as_found(layer, held):
    """Whether every attribute is the same object as in ``held`` and bit-identical."""
    objects, copies = held
    if vars(layer).keys() != objects.keys():
        return False
    for name, obj in objects.items():
        if getattr(layer, name) is not obj:
            return False
        saved = copies[name]
        now = vars(obj) if hasattr(obj, "__dict__") else obj
        saved = vars(saved) if hasattr(saved, "__dict__") else saved
        if isinstance(now, dict):
            if now.keys() != saved.keys() or not all(
                    np.array_equal(now[k], saved[k]) if isinstance(now[k], np.ndarray)
                    else now[k] == saved[k] for k in now):
                return False
        elif isinstance(now, np.ndarray) and not np.array_equal(now, saved):
            return False
    return True


def _warm(layer, x):
    """One training step through the layer's own optimizers: their state is not None."""
    out = layer.forward_pass(x)
    layer.backward_pass(np.ones_like(out))
    return layer


def test_an_mlfs_layer_reads_its_gradients_from_the_optimizer_update_calls():
    from conventions_layers import MLFSDense

    x = np.random.default_rng(4).normal(size=(4, 3))
    layer = _warm(MLFSDense(), x)
    held = _held(layer)
    report = check_layer(layer, x)
    assert report.passed, str(report)
    assert [r.name for r in report.results] == ["X", "W", "w0"]
    assert report.results[2].shape == (1, 2)
    note = [f.message for f in report.findings if f.kind == "optimizer-update"]
    assert note and "backward updates W, w0" in note[0] and "(W_opt, w0_opt)" in note[0]
    assert "read from the optimizer's update(w, grad) call" in note[0]
    assert not [f for f in report.findings if f.failure], str(report)
    assert not [n for n, _ in report.not_checked if n in ("W", "w0") or "step_grads" in n]
    assert _as_found(layer, held)


def test_an_mlfs_layer_is_left_as_found_after_a_fail_and_a_raising_backward():
    from gradcheck.errors import LayerCallError
    from conventions_layers import MLFSDense, MLFSDenseBroken

    class Raising(MLFSDense):
        def input_gradient(self, accum_grad, W):
            raise RuntimeError("no dx today")

    x = np.random.default_rng(4).normal(size=(4, 3))
    bad = _warm(MLFSDenseBroken(), x)
    held = _held(bad)
    report = check_layer(bad, x)
    assert {r.name: r.verdict for r in report.results} == {"X": "PASS", "W": "FAIL",
                                                          "w0": "PASS"}, str(report)
    assert report.results[1].worst_index == (1, 0)
    assert _as_found(bad, held)
    raising = Raising()  # raises after both update calls
    raising.W_opt.velocity = np.ones_like(raising.W)
    raising.w0_opt.velocity = np.ones_like(raising.w0)
    held = _held(raising)
    with pytest.raises(LayerCallError, match="no dx today"):
        check_layer(raising, x)
    assert _as_found(raising, held)


def test_mlfs_batchnorm_updates_gamma_and_beta_through_its_optimizers_in_both_modes():
    from conventions_layers import MLFSBatchNorm

    x = np.random.default_rng(5).normal(size=(6, 3))
    for train_flg in (True, False):
        layer = _warm(MLFSBatchNorm(), x[::-1])
        held = _held(layer)
        report = check_layer(layer, x, train_flg=train_flg)
        assert report.passed, str(report)
        assert [r.name for r in report.results] == ["X", "gamma", "beta"]
        assert any(f.kind == "optimizer-update" and "gamma_opt" in f.message
                   for f in report.findings)
        assert _as_found(layer, held)


def test_optimizers_of_mlfs_sub_layers_are_found_and_put_back():
    from conventions_layers import MLFSNetwork

    net = MLFSNetwork()
    optimizers = [(d.W_opt, d.w0_opt) for d in net.layers[::2]]
    report = check_layer(net, np.random.default_rng(6).normal(size=(5, 3)))
    assert report.passed, str(report)
    assert [r.name for r in report.results] == ["X", "layers.0.W", "layers.0.w0", "layers.2.W",
                                                "layers.2.w0"]
    assert [(d.W_opt, d.w0_opt) for d in net.layers[::2]] == optimizers
    assert all(o.velocity is None for pair in optimizers for o in pair)


def test_an_mlfs_layer_without_optimizers_is_checked_as_before():
    from conventions_layers import MLFSTanh

    report = check_layer(MLFSTanh(), X, train_flg=False)
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    assert not [f for f in report.findings if f.kind == "optimizer-update"]


def test_optimizer_duck_typing():
    from gradcheck.protocol.update import optimizer_paths
    from conventions_layers import MLFSDense, MomentumSGD

    class NotOne:
        def update(self, lr):  # one positional parameter: a step, not an optimizer
            return lr

    layer = MLFSDense()
    layer.options = {"a": 1}  # dict.update is no optimizer
    layer.scheduler, layer.kind = NotOne(), MomentumSGD  # nor is a class
    assert optimizer_paths(layer) == ("W_opt", "w0_opt")


def test_a_layer_with_neither_method_name_says_both_conventions():
    from gradcheck.errors import LayerProtocolError

    class Nothing:
        def forward_pass(self, X):
            return X

    with pytest.raises(LayerProtocolError, match=r"no callable backward\(\).*backward_pass"):
        check_layer(Nothing(), X)


def test_outputs_backward_takes_no_gradient_for_are_left_out_and_listed():
    """``forward -> (A, Z)``, ``backward(dLdA)``: the check is of ``A``, and says ``Z`` is not
    checked; every strategy agrees (jacobian and projection included)."""
    from conventions_layers import TwoOutputsOneGradient

    x = np.random.default_rng(4).normal(size=(3, 3))
    report = check_layer(TwoOutputsOneGradient(), (x,))
    assert report.passed, str(report)
    note = next(f for f in report.findings if f.kind == "outputs-without-gradient")
    assert "output 1 (3, 2) not checked" in note.message and not note.failure


def test_caches_a_train_mode_forward_writes_are_state_in_an_eval_mode_check():
    """The book's batch norm after a training step holds ``xc``, ``xn``, ``std`` that its
    eval-mode forward does not write: listed as state, never "no gradient found"."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from seed_batchnorm import BatchNormalization  # the book's class, as the seed has it

    rng = np.random.default_rng(5)
    layer = BatchNormalization(rng.uniform(0.5, 1.5, 4), rng.normal(size=4))
    layer.forward(rng.normal(size=(6, 4)), True)
    report = check_layer(layer, rng.normal(size=(6, 4)), train_flg=False)
    assert not [f for f in report.findings if f.kind == "no-gradient-found"], str(report)
    reasons = dict(report.not_checked)
    assert all("state" in reasons[n] for n in ("xc", "xn", "std")), reasons
    assert "stale-state" in {f.kind for f in report.findings}  # its own bug, named


# -- what a breaker found in the conventions above ---------------------------------------------
def test_a_keepdims_gradient_buffer_written_in_place_is_poisoned_in_its_own_shape():
    class Bias:
        def __init__(self):
            self.b, self.db = np.zeros(3), np.zeros((1, 3))

        def forward(self, x):
            return x + self.b

        def backward(self, dout):
            self.db[:, :] = dout.sum(0, keepdims=True)
            return dout

    class Stale(Bias):
        def backward(self, dout):
            self.db += dout.sum(0, keepdims=True)
            return dout

    from gradcheck.errors import LayerProtocolError

    assert check_layer(Bias(), X).passed
    with pytest.raises(LayerProtocolError, match="did not refresh db"):
        check_layer(Stale(), X)


def test_a_fresh_accumulating_layer_is_not_flushed_and_a_flush_that_breaks_skips_the_sequence():
    from conventions_layers import CarriedCell

    report = check_layer(CarriedCell(), X)
    assert report.passed, str(report)
    assert "flushed" not in {f.kind for f in report.findings}


def test_positional_inputs_given_as_a_list_with_a_none_default_stay_positional():
    class Cell:
        def __init__(self):
            self.W = np.random.default_rng(2).normal(size=(3, 3))

        def forward(self, x, h_prev=None):
            self.a = np.tanh(x + h_prev @ self.W)
            self.h = h_prev
            return self.a

        def backward(self, da):
            dz = da * (1 - self.a ** 2)
            self.dW = self.h.T @ dz
            return dz, dz @ self.W.T

    rng = np.random.default_rng(3)
    report = check_layer(Cell(), [rng.normal(size=(2, 3)), rng.normal(size=(2, 3))])
    assert [r.name for r in report.results] == ["x", "h_prev", "W"] and report.passed


def test_a_list_input_with_an_integer_member_is_refused_naming_the_member():
    from conventions_layers import ListMultiply

    from gradcheck.errors import GradCheckInputError

    with pytest.raises(GradCheckInputError, match=r"X\[1\] has dtype int64"):
        check_layer(ListMultiply(), [np.ones((2, 3)), np.arange(6).reshape(2, 3)])


def test_a_defaulted_flag_of_backward_is_no_upstream_gradient():
    """``backward(dLdA, retain_grads=True)`` beside two outputs takes one gradient."""
    from conventions_layers import TwoOutputsOneGradient

    class Flagged(TwoOutputsOneGradient):
        def backward(self, dLdA, retain_grads=True):
            assert retain_grads is True
            return super().backward(dLdA)

    x = np.random.default_rng(4).normal(size=(3, 3))
    report = check_layer(Flagged(), (x,))
    assert report.passed, str(report)
    assert "outputs-without-gradient" in {f.kind for f in report.findings}
    dA, dZ = np.ones((3, 2)), np.ones((3, 2))
    assert check_layer(Flagged(), (x,), dout=(dA, dZ)).passed  # the second one not taken


@pytest.mark.parametrize("how", ["list", "copy"])
def test_mlfs_optimizers_in_a_list_or_updated_on_a_copy_are_read(how):
    from conventions_layers import MLFSDense, MLFSDenseBroken, MomentumSGD

    def make(cls):
        class Variant(cls):
            def __init__(self):
                super().__init__()
                self.opts = [self.W_opt, self.w0_opt]
                del self.W_opt, self.w0_opt

            def backward_pass(self, accum_grad):
                W_before = self.W
                gw = self.weight_gradient(accum_grad)
                gb = accum_grad.sum(axis=0, keepdims=True)
                if how == "list":
                    self.W = self.opts[0].update(self.W, gw)
                    self.w0 = self.opts[1].update(self.w0, gb)
                else:
                    self.W = self.opts[0].update(self.W.copy(), gw)
                    self.w0 = self.opts[1].update(self.w0.copy(), gb)
                return self.input_gradient(accum_grad, W_before)
        return Variant()

    assert isinstance(make(MLFSDense).opts[0], MomentumSGD)
    good = check_layer(make(MLFSDense), X)
    assert {r.name: r.verdict for r in good.results} == {"X": "PASS", "W": "PASS",
                                                          "w0": "PASS"}, str(good)
    assert good.passed, str(good)
    assert check_layer(make(MLFSDenseBroken), X).result("W").verdict == "FAIL"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sub_layers_made_by_every_forward_are_state_not_tied_copies(strategy):
    """The second book's TimeRNN and TimeBiLSTM: per-step sub-layers over the layer's own
    arrays (made anew by forward) are listed as state, the layer's own grads (their sum)
    are checked once; children's lists joined into the parent's stay one array each."""
    from conventions_layers import JoinedChildren, TimeSteps, TimeStepsBroken

    xs = np.random.default_rng(6).normal(size=(2, 3, 3))
    good = check_layer(TimeSteps(), xs, strategy=strategy, samples=SAMPLES)
    assert [r.name for r in good.results] == ["x", "params[0]", "params[1]", "params[2]"]
    assert good.passed, str(good)
    assert dict(good.not_checked)["layers"].startswith("sub-layers made anew by forward")
    bad = check_layer(TimeStepsBroken(), xs, strategy=strategy, samples=SAMPLES)
    assert {r.name: r.verdict for r in bad.results}["params[1]"] == "FAIL", str(bad)
    joined = check_layer(JoinedChildren(), xs, strategy=strategy, samples=SAMPLES)
    assert joined.passed and len(joined.results) == 7, str(joined)
    broken = check_layer(JoinedChildren(TimeStepsBroken), xs, strategy=strategy, samples=SAMPLES)
    verdicts = {r.name: r.verdict for r in broken.results}
    assert verdicts["params[1]"] == verdicts["params[4]"] == "FAIL", str(broken)


def _cell_forward(x, h, Wx, Wh):
    """CS231n's ``lstm_step_forward`` shape: several outputs, the cache last."""
    a = x @ Wx + h @ Wh
    nh, nc = np.tanh(a), a ** 2
    return nh, nc, (x, h, Wx, Wh, a, nh)


def _cell_backward(dnh, dnc, cache, wrong=1.0):
    x, h, Wx, Wh, a, nh = cache
    da = dnh * (1 - nh ** 2) + dnc * 2 * a
    dWh = h.T @ da
    dWh[0, 0] *= wrong
    return da @ Wx.T, da @ Wh.T, x.T @ da, dWh


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_function_pair_with_several_outputs_and_the_cache_last(strategy):
    rng = np.random.default_rng(7)
    args = [rng.normal(size=s) for s in [(3, 4), (3, 2), (4, 2), (2, 2)]]
    good = check_function(_cell_forward, _cell_backward, *args, strategy=strategy, samples=SAMPLES)
    assert good.passed and len(good.results) == 4, str(good)
    bad = check_function(_cell_forward, lambda *a: _cell_backward(*a, wrong=1.01), *args,
                         strategy=strategy, samples=SAMPLES)
    assert {r.name: r.verdict for r in bad.results}["Wh"] == "FAIL", str(bad)


def test_a_loss_whose_backward_takes_no_argument():
    class Loss:
        def __init__(self, wrong=1.0):
            self.wrong = wrong

        def forward(self, x, t):
            self.x, self.t = x, t
            return 0.5 * float(np.sum((x - t) ** 2))

        def backward(self):
            dx = self.x - self.t
            dx[0, 0] *= self.wrong
            return dx

    rng = np.random.default_rng(8)
    x, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    assert check_layer(Loss(), (x, t)).passed
    assert check_layer(Loss(wrong=1.01), (x, t)).result("x").verdict == "FAIL"


def test_a_function_returning_more_than_value_and_grads_is_told_what_is_expected():
    from gradcheck.errors import LayerProtocolError

    def loss_fun(x):  # karpathy's lossFun: loss, five gradients, the last hidden state
        return float(np.sum(x ** 2)), 2 * x, None, None, None, None, x

    with pytest.raises(LayerProtocolError, match="returned 7 values.*\\(value, grads\\)"):
        check_function(loss_fun, None, np.ones((2, 2)))


def test_a_list_slot_rebound_by_backward_is_a_note_writing_into_it_is_not():
    """``self.grads[0] = dW`` (where the second book writes ``grads[0][...] = dW``): the
    gradient is right, so it PASSes, but a model that gathered the lists once would keep the
    old array; the report says so for that slot only. Written in place: no note."""
    from conventions_layers import ListAffine

    class Rebinding(ListAffine):
        def backward(self, dout):
            dx = super().backward(dout)
            self.grads[0] = self.grads[0].copy()  # a new array in the slot
            return dx

    report = check_layer(Rebinding(), X)
    assert report.passed, str(report)
    notes = [f for f in report.findings if f.kind == "gradient-rebound"]
    assert [f.target for f in notes] == ["params[0]"] and not notes[0].failure
    assert "grads[0][...] = " in notes[0].message and "grads[0][...] = " in str(report)
    assert not any(f.kind == "gradient-rebound" for f in check_layer(ListAffine(), X).findings)


# -- what a new user's breaker found in discovery ---------------------------------------------
class _Dense:
    """``x @ W + b``; ``factor`` scales the ``dW`` backward stores (1: correct)."""

    def __init__(self, W, b, factor=1.0):
        self.W, self.b, self.factor = W, b, factor

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.factor * (self.x.T @ dout)
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


def _wb(shape=(3, 2)):
    rng = np.random.default_rng(4)
    return rng.normal(size=shape), rng.normal(size=shape[1])


def test_a_parameter_backward_rebinds_is_still_a_parameter_when_its_gradient_is_there():
    class CopyingDense(_Dense):
        def backward(self, dout):
            dx = super().backward(dout)
            self.W = self.W.copy()  # a defensive copy: rebound by backward
            return dx

    assert check_layer(CopyingDense(*_wb()), X).passed
    report = check_layer(CopyingDense(*_wb(), factor=3.0), X)
    assert {r.name: r.verdict for r in report.results} == {"x": "PASS", "W": "FAIL",
                                                           "b": "PASS"}, str(report)


def test_a_parameter_that_is_an_ndarray_subclass_is_checked_a_matrix_refused(tmp_path):
    from gradcheck.errors import GradCheckInputError

    class MyArray(np.ndarray):
        pass

    W, b = _wb()
    np.save(tmp_path / "W.npy", W)
    for held in (W.copy().view(MyArray), np.load(tmp_path / "W.npy", mmap_mode="r+")):
        report = check_layer(_Dense(held, b, factor=5.0), X)
        assert [r.name for r in report.results] == ["x", "W", "b"], str(report)
        assert report.result("W").verdict == "FAIL"
    with pytest.raises(GradCheckInputError, match="'W' is a numpy.matrix"):
        check_layer(_Dense(np.asmatrix(W), b), X)


def test_the_parameters_of_a_slots_layer_are_found():
    class Slotted:
        __slots__ = ("W", "x", "dW", "factor")

        def __init__(self, factor=1.0):
            self.W, self.factor = _wb()[0], factor

        def forward(self, x):
            self.x = x
            return x @ self.W

        def backward(self, dout):
            self.dW = self.factor * (self.x.T @ dout)
            return dout @ self.W.T

    assert [r.name for r in check_layer(Slotted(), X).results] == ["x", "W"]
    assert check_layer(Slotted(), X).passed
    assert check_layer(Slotted(factor=5.0), X).result("W").verdict == "FAIL"


def test_parameters_that_overlap_in_memory_are_refused_disjoint_slices_are_fine():
    from gradcheck.errors import GradCheckInputError

    buf = np.random.default_rng(5).normal(size=8)
    with pytest.raises(GradCheckInputError, match="'W' and 'b' share memory"):
        check_layer(_Dense(buf[:6].reshape(3, 2), buf[:2]), X)  # b is W's first row's memory
    report = check_layer(_Dense(buf[:6].reshape(3, 2), buf[6:]), X)  # one flat vector
    assert report.passed and [r.name for r in report.results] == ["x", "W", "b"]



def test_a_layer_whose_getattr_raises_keyerror_is_checked():
    """``__getattr__`` returning ``self.params[name]`` raises KeyError for every other name
    the check looks up (its own markers, the train/eval switch attributes, regularization
    coefficients, ``dinputs``): taken as absent."""
    class ViaGetattr:
        def __init__(self, factor=1.0):
            self.__dict__["params"] = {"W": np.random.default_rng(0).normal(size=(3, 2))}
            self.__dict__["factor"] = factor

        def __getattr__(self, name):
            return self.__dict__["params"][name]

        def forward(self, x):
            self.__dict__["x"] = x
            return x @ self.W

        def backward(self, dout):
            self.__dict__["grads"] = {"W": self.factor * (self.x.T @ dout)}
            return dout @ self.W.T

    report = check_layer(ViaGetattr(), X)
    assert report.passed and [r.name for r in report.results] == ["x", "params['W']"]
    assert check_layer(ViaGetattr(2.0), X).result("params['W']").verdict == "FAIL"
    assert check_layer(ViaGetattr(), X, train_flg=False).passed  # switch attributes looked up


def test_a_call_that_keeps_the_input_is_the_forward_pass_and_forward_alone_is_not():
    """``__call__`` keeps ``self.x`` and calls ``forward``: called as ``layer(x)`` (a stale
    ``self.x`` from a training loop's earlier call is not read), with the switch its
    signature takes, or forward's behind a ``__call__(*args, **kwargs)``."""
    from conventions_layers import CallKeepsInput

    layer = CallKeepsInput()
    layer(np.ones((5, 3)))  # a training loop's earlier call: self.x of another shape
    report = check_layer(layer, X)
    assert report.passed and [r.name for r in report.results] == ["x", "W", "b"], str(report)
    assert layer.x.shape == (5, 3)

    seen = set()

    class Switched(CallKeepsInput):
        def __call__(self, x, train_flg=True):
            seen.add(train_flg)
            self.x = x
            return self.forward(x)

    assert check_layer(Switched(), X, train_flg=False).passed and False in seen

    class Forwarding(CallKeepsInput):
        def __call__(self, *args, **kwargs):
            self.x = args[0]
            return self.forward(*args, **kwargs)

        def forward(self, x, train_flg=True):
            seen.add(("forward", train_flg))
            return x @ self.W + self.b

    report = check_layer(Forwarding(), X, train_flg=False)
    assert report.passed and ("forward", False) in seen, str(report)
    assert check_layer(Forwarding(), X).passed


@pytest.mark.parametrize("name", ["Torch7Linear", "PortLinear"])
def test_a_torch7_module_gets_its_input_again_and_its_accumulators_are_left_as_found(name):
    """``updateGradInput(input, gradOutput)`` and ``accGradParameters`` (or a port's
    ``backward(input, gradOutput)``) get the last forward's input; ``gradWeight`` and
    ``gradBias`` (found by name beside ``weight``, ``bias``) are zeroed before every backward
    as ``zeroGradParameters`` does, and hold what they held before afterwards."""
    import conventions_layers

    layer = getattr(conventions_layers, name)()
    layer.gradWeight += 5.0  # a training loop's accumulated gradient
    held, before = layer.gradWeight, layer.gradWeight.copy()
    report = check_layer(layer, X)
    assert report.passed and [r.name for r in report.results] == ["input", "weight", "bias"]
    assert "backward-takes-inputs" in {f.kind for f in report.findings}
    assert layer.gradWeight is held and np.array_equal(held, before)


def test_a_torch7_module_without_parameters_and_a_backward_named_otherwise():
    """A ``Tanh`` with no ``accGradParameters``; a port whose upstream gradient is named
    ``grad_output`` and whose input is named apart from forward's."""
    class Tanh:
        def updateOutput(self, input):
            self.output = np.tanh(input)
            return self.output

        def updateGradInput(self, input, gradOutput):
            return gradOutput * (1 - self.output ** 2)

    class Port:
        def forward(self, x):
            self.out = np.tanh(x)
            return self.out

        def backward(self, inp, grad_output):
            return grad_output * (1 - np.tanh(inp) ** 2) * self.factor

        factor = 1.0

    assert check_layer(Tanh(), X).passed
    assert check_layer(Port(), X).passed
    Port.factor = 1.001
    assert check_layer(Port(), X).result("x").verdict == "FAIL"


def test_gradients_backward_returns_are_matched_by_shape_and_order_and_the_report_says_so():
    """``return dx, dW, db`` of a one-input layer: the note says where the gradients were
    read; two parameters of one shape are matched in definition order and the note says
    that too; a returned gradient of no parameter's shape is refused, naming the shapes."""
    from gradcheck.errors import LayerProtocolError
    from conventions_layers import (ReturnsGradients, ReturnsTwoOfAShape,
                                    ReturnsTwoOfAShapeSwapped)

    report = check_layer(ReturnsGradients(), X)
    note = [f.message for f in report.findings if f.kind == "gradients-returned"]
    assert report.passed and note and "W, b were read from its return value" in note[0]
    assert "order the layer defines" not in note[0]
    two = check_layer(ReturnsTwoOfAShape(), X)
    assert two.passed and [r.name for r in two.results] == ["x", "W1", "W2"], str(two)
    assert "order the layer defines them (W1, W2)" in " ".join(two.warnings)
    swapped = check_layer(ReturnsTwoOfAShapeSwapped(), X)
    assert [r.verdict for r in swapped.results] == ["PASS", "FAIL", "FAIL"], str(swapped)

    class Stray(ReturnsGradients):
        def backward(self, dout):
            return dout @ self.W.T, np.zeros((5, 5))

    with pytest.raises(LayerProtocolError, match=r"shapes \(5, 5\) do not match"):
        check_layer(Stray(), X)


@pytest.mark.parametrize("train_flg", [True, False])
def test_returned_gradients_go_to_the_parameters_they_are_named_for_not_to_state(train_flg):
    """``return dx, dgamma, dbeta`` of a batch norm defining its running statistics (of
    gamma's shape, written in place by a training forward) first: gamma and beta are
    checked (by name; the statistics a training forward writes are state), a wrong dgamma
    FAILs on gamma; the note says the names decided."""
    from conventions_layers import ReturnsBatchNormStateFirst, ReturnsBatchNormStateFirstBroken

    x = np.random.default_rng(2).normal(size=(6, 3))
    good = check_layer(ReturnsBatchNormStateFirst(), x, train_flg=train_flg)
    assert good.passed and [r.name for r in good.results] == ["x", "gamma", "beta"], str(good)
    note = [f.message for f in good.findings if f.kind == "gradients-returned"][0]
    assert "by the names backward returns them under (dgamma -> gamma, dbeta -> beta)" in note
    assert ("running_mean, running_var (written by forward: state)" in note) is train_flg
    bad = check_layer(ReturnsBatchNormStateFirstBroken(), x, train_flg=train_flg)
    assert [(r.name, r.verdict) for r in bad.results] == [
        ("x", "PASS"), ("gamma", "FAIL"), ("beta", "PASS")], str(bad)


def test_returned_gradients_named_by_nothing_skip_the_state_forward_writes():
    """``return dx, *rest`` of the batch norm above: matched by shape and order, but among
    the arrays a training forward does not write (gamma, beta, not the running statistics),
    and the note says how."""
    from conventions_layers import ReturnsBatchNormStateFirstUnnamed

    x = np.random.default_rng(2).normal(size=(6, 3))
    report = check_layer(ReturnsBatchNormStateFirstUnnamed(), x)
    assert report.passed and [r.name for r in report.results] == ["x", "gamma", "beta"], \
        str(report)
    note = [f.message for f in report.findings if f.kind == "gradients-returned"][0]
    assert "by shape and order" in note and "order the layer defines them (gamma, beta)" in note


@pytest.mark.parametrize("keyed", [False, True])
def test_a_fixed_mask_before_w_never_takes_the_returned_dw(keyed):
    """A masked dense layer defining its fixed ``mask`` (W's shape) before ``W``: ``return
    dx, dW, db`` (or ``grads['W'], grads['b']``) is W's and b's gradient by name; the mask
    is not checked, a wrong dW FAILs on W."""
    from conventions_layers import (ReturnsMaskedLinear, ReturnsMaskedLinearBroken,
                                    ReturnsMaskedLinearKeyed, ReturnsMaskedLinearKeyedBroken)

    good, broken = ((ReturnsMaskedLinearKeyed, ReturnsMaskedLinearKeyedBroken) if keyed
                    else (ReturnsMaskedLinear, ReturnsMaskedLinearBroken))
    report = check_layer(good(), X)
    assert report.passed and [r.name for r in report.results] == ["x", "W", "b"], str(report)
    assert dict(report.not_checked)["mask"].startswith("a mask (by its name)")
    bad = check_layer(broken(), X)
    assert [(r.name, r.verdict) for r in bad.results] == [
        ("x", "PASS"), ("W", "FAIL"), ("b", "PASS")], str(bad)


def test_an_input_backward_takes_again_by_name_is_given_and_listed():
    """``linear_activation_backward(dA, cache, activation)``: the string ``activation`` is
    given to backward again, listed as not differentiated; the cache's members are the
    pair's own bookkeeping, never listed."""
    from conventions_layers import (_dlai_inputs, linear_activation_backward,
                                    linear_activation_forward)

    report = check_function(linear_activation_forward, linear_activation_backward,
                            *_dlai_inputs("relu"))
    assert report.passed and [r.name for r in report.results] == ["A_prev", "W", "b"]
    assert report.not_checked == (("activation", "not differentiated: str, passed through "
                                   "untouched (and given to backward again by name)"),)


def test_an_embedding_with_grad_w_says_its_indices_were_not_checked():
    from conventions_layers import INDICES, EmbeddingGradName

    report = check_layer(EmbeddingGradName(), INDICES)
    assert report.passed and [r.name for r in report.results] == ["W"]
    assert dict(report.not_checked)["idx"].startswith("not differentiated: integer")
    assert "integer-input" in {f.kind for f in report.findings}
    assert "idx" in str(report) and "integer" in str(report)


def test_a_params_list_beside_one_bare_grads_array_is_checked():
    """``params = [weights]`` beside ``self.grads`` one ndarray of its shape (not a list):
    the weights are checked against it, the classic ``dW[idx] = dout`` FAILs on them; a
    ``grads`` stacking one gradient per parameter is read row by row."""
    from conventions_layers import (INDICES, EmbeddingBareGrads, EmbeddingBareGradsBroken,
                                    StackedGrads, StackedGradsBroken)

    report = check_layer(EmbeddingBareGrads(), INDICES)
    assert report.passed and [r.name for r in report.results] == ["params[0]"], str(report)
    bad = check_layer(EmbeddingBareGradsBroken(), INDICES)
    assert [(r.name, r.verdict) for r in bad.results] == [("params[0]", "FAIL")], str(bad)
    stacked = check_layer(StackedGrads(), X)
    assert stacked.passed and [r.name for r in stacked.results] == [
        "x", "params[0]", "params[1]"], str(stacked)
    wrong = check_layer(StackedGradsBroken(), X)
    assert [(r.name, r.verdict) for r in wrong.results] == [
        ("x", "PASS"), ("params[0]", "PASS"), ("params[1]", "FAIL")], str(wrong)

    class TwoParamsOneGrad(StackedGrads):  # W's gradient alone beside [W, b]: neither
        def __init__(self):
            self.params = [np.ones((3, 3)), np.zeros(3)]

        def forward(self, x):
            self.x = x
            return x @ self.params[0] + self.params[1]

        def backward(self, dout):
            self.grads = self.x.T @ dout
            return dout @ self.params[0].T

    unread = check_layer(TwoParamsOneGrad(), X)
    assert [r.name for r in unread.results] == ["x"]
    assert "grads is one float64 array of shape (3, 3), not a list" in dict(
        unread.not_checked)["params[0]"]


def test_the_courses_batch_mean_parameter_gradients_are_checked_times_m_and_said_so():
    """deeplearning.ai's ``dW = 1./m * dZ @ A_prev.T`` beside ``dA_prev = W.T @ dZ``: checked
    as ``m`` times them with a note; summed gradients get no note; a CS231n
    ``affine_backward`` averaging over its rows (``(N, D)`` input) still FAILs."""
    from conventions_layers import (_dlai_inputs, affine_forward, dlai_linear_backward,
                                    dlai_linear_forward)

    report = check_function(dlai_linear_forward, dlai_linear_backward, *_dlai_inputs())
    notes = [f.message for f in report.findings if f.kind == "batch-mean-gradients"]
    assert report.passed and notes and "m = 4, the columns of A" in notes[0], str(report)

    def summed(dZ, cache):
        dA, dW, db = dlai_linear_backward(dZ, cache)
        return dA, dW * cache[0].shape[1], db * cache[0].shape[1]

    plain = check_function(dlai_linear_forward, summed, *_dlai_inputs())
    assert plain.passed and "batch-mean-gradients" not in {f.kind for f in plain.findings}

    def averaging(dout, cache):
        x, w, b = cache
        return dout @ w.T, x.T @ dout / len(x), dout.sum(axis=0) / len(x)

    rng = np.random.default_rng(4)
    bad = check_function(affine_forward, averaging, rng.normal(size=(5, 3)),
                         rng.normal(size=(3, 2)), rng.normal(size=2))
    assert [r.verdict for r in bad.results] == ["PASS", "FAIL", "FAIL"], str(bad)


def test_the_batch_mean_rule_needs_the_courses_layout_and_an_input_gradient_of_the_sum():
    """Only ``W`` ``(n, n_prev)`` and ``b`` ``(n, 1)`` beside ``A`` ``(n_prev, m)`` at ratio 1
    are ever taken as ``1/m``: a CS231n ``affine_backward`` averaging over the rows of a
    square ``x``, a product whose ``dB`` is divided by ``m`` and a course pair whose
    ``dA_prev`` is averaged too are checked as they are and FAIL."""
    from conventions_layers import (_dlai_inputs, affine_forward,
                                    dlai_linear_backward_broken_dx, dlai_linear_forward)

    def averaging(dout, cache):
        x, w, b = cache
        return dout @ w.T, x.T @ dout / len(x), dout.sum(axis=0) / len(x)

    def mul_forward(A, B):
        return A * B, (A, B)

    def mul_backward_bug(dZ, cache):
        A, B = cache
        return dZ * B, dZ * A / A.shape[1]

    rng = np.random.default_rng(3)
    square = check_function(affine_forward, averaging, rng.normal(size=(4, 4)),
                            rng.normal(size=(4, 3)), rng.normal(size=3))
    mul = check_function(mul_forward, mul_backward_bug, rng.normal(size=(3, 4)),
                         rng.normal(size=(3, 4)))
    dx = check_function(dlai_linear_forward, dlai_linear_backward_broken_dx, *_dlai_inputs())
    for report, failing in [(square, ["w", "b"]), (mul, ["B"]), (dx, ["A", "W", "b"])]:
        assert [r.name for r in report.results if r.verdict == "FAIL"] == failing, str(report)
        notes = [f.message for f in report.findings if f.kind == "batch-mean-gradients"]
        # nothing scaled; the course pair's note says its W, b are exactly 1/m, A to fix
        assert notes == ([] if report is not dx else notes[:1]), str(report)
        assert all("nothing was scaled" in n and "fix A's first" in n for n in notes), notes
    assert len([f for f in dx.findings if f.kind == "batch-mean-gradients"]) == 1


def test_a_torch7_sequential_checks_every_sub_module_and_a_wrong_one_fails_alone():
    from conventions_layers import (Torch7Linear, Torch7LinearBroken, Torch7Sequential,
                                    Torch7Tanh)

    def net(last):
        return Torch7Sequential(Torch7Linear(3, 4), Torch7Tanh(), last(4, 2))

    names = ["input", "modules.0.weight", "modules.0.bias", "modules.2.weight",
             "modules.2.bias"]
    good = check_layer(net(Torch7Linear), X)
    assert good.passed and [r.name for r in good.results] == names, str(good)
    bad = check_layer(net(Torch7LinearBroken), X)
    assert [r.name for r in bad.results if r.verdict == "FAIL"] == ["modules.2.weight"]


def test_a_torch7_criterion_takes_input_and_target_again():
    """``updateOutput(input, target) -> loss``, ``updateGradInput(input, target)``: the
    target is passed to backward again (the loss-with-labels rule), the loss scaled by
    ``dout``."""
    class MSECriterion:
        def __init__(self, factor=1.0):
            self.factor = factor

        def updateOutput(self, input, target):
            self.output = float(np.mean((input - target) ** 2))
            return self.output

        def updateGradInput(self, input, target):
            self.gradInput = self.factor * 2 * (input - target) / input.size
            return self.gradInput

    target = np.random.default_rng(5).normal(size=X.shape)
    report = check_layer(MSECriterion(), (X, target))
    assert report.passed and [r.name for r in report.results] == ["input"], str(report)
    assert dict(report.not_checked)["target"].startswith("not differentiated: labels")
    assert check_layer(MSECriterion(1.01), (X, target)).result("input").verdict == "FAIL"


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.one_of(st.integers(), st.text(max_size=6)),
                    lambda inner: st.tuples(inner, inner), max_leaves=4))
def test_a_key_path_resolves_back_to_its_key(key):
    """Whatever a dict's key (ints, text with dots, brackets, quotes, '+', '@', escapes,
    tuples of them), the path the discovery names it by resolves to its value and assigns
    it, and a sub-layer under it has its own prefix."""
    from gradcheck.protocol.paths import key_path

    class Node:
        pass

    root, value = Node(), np.arange(2.0)
    root.d = {key: value, "other": None}
    path = key_path("d", key)
    assert resolve(root, path) is value
    new = np.ones(3)
    assign(root, path, new)
    assert root.d[key] is new and resolve(root, path) is new


def test_a_user_writes_an_int_keyed_sub_layer_dotted():
    """``params={'blocks.0.W': 'blocks.0.dW'}`` of ``{0: Dense()}``: the int key is found."""
    from conventions_layers import KeyedBlocks

    layer = KeyedBlocks()
    assert resolve(layer, "blocks.0.W") is layer.blocks[0].W
    report = check_layer(layer, X, params={"blocks.0.W": "blocks.0.dW"})
    assert [r.name for r in report.results] == ["x", "blocks.0.W"] and report.passed


@pytest.mark.parametrize("cls", ["FlatBuffer", "FlatBufferCopies"])
def test_views_of_a_flat_buffer_are_aliases_or_the_targets_wrt_names(cls):
    """``W``, ``b`` views of ``theta`` with ``dW``, ``db`` its gradient's: listed as checked
    as ``theta``; ``wrt=['x', 'W', 'b']`` checks them in its place (the broken twin FAILs on
    ``b``), and the layer keeps its views."""
    import conventions_layers as cl

    good, bad = getattr(cl, cls), getattr(cl, cls + "Broken")
    report = check_layer(good(), X)
    assert dict(report.not_checked)["W"].startswith("a view of theta")
    layer = good()
    named = check_layer(layer, X, wrt=["x", "W", "b"])
    assert [r.name for r in named.results] == ["x", "W", "b"] and named.passed, named
    assert np.shares_memory(layer.W, layer.theta) and np.shares_memory(layer.b, layer.theta)
    verdicts = {r.name: r.verdict for r in check_layer(bad(), X, wrt=["x", "W", "b"]).results}
    assert verdicts == {"x": "PASS", "W": "PASS", "b": "FAIL"}
    one = check_layer(good(), X, wrt=["W"])
    assert dict(one.not_checked)["b"] == "a view of theta, not in wrt"


@pytest.mark.parametrize("cls", ["TupleDoutCell", "IndexedDoutCell"])
def test_a_forward_returning_several_is_checked_with_its_one_input_as_an_array(cls):
    """``check_layer(cell, x)``, not ``(x,)``: a forward whose source returns a tuple display
    (``return h, c``) is called as one with several outputs (it raised "forward() returned
    tuple"), the correct cell PASSes and its broken twin FAILs."""
    import conventions_layers as cl

    x = np.random.default_rng(3).normal(size=(2, 3))
    assert check_layer(getattr(cl, cls)(), x).passed
    assert not check_layer(getattr(cl, cls + "Broken")(), x).passed


def test_flat_buffers_of_the_targets_are_listed_as_such_without_a_warning():
    from conventions_layers import FlatBufferUnpaired

    report = check_layer(FlatBufferUnpaired(), X)
    why = dict(report.not_checked)
    assert why["flat"] == ("the buffer the parameters W, b are views of: checked through them "
                           "where they lie")
    assert why["grad"] == "the buffer the gradients dW, db are views of"
    assert "no-gradient-found" not in {f.kind for f in report.findings}


def test_a_dict_of_outputs_takes_its_douts_as_a_dict_and_as_the_user_passes_them():
    """``check_layer(cell, x)`` (its forward returns a dict display) and a ``dout`` given
    as a dict under the outputs' keys: the correct cell PASSes, the broken one FAILs."""
    from conventions_layers import DictOutputCell, DictOutputCellBroken

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3))
    dout = {"c": rng.normal(size=(2, 3)), "h": rng.normal(size=(2, 3))}
    assert check_layer(DictOutputCell(), x).passed
    assert check_layer(DictOutputCell(), x, dout=dout).passed
    assert not check_layer(DictOutputCellBroken(), x, dout=dout).passed


def test_notes_of_a_wrapped_layer_name_its_attributes_as_the_report_does():
    """A layer checked with its inputs as a tuple: the tied-view and flat-buffer notes and
    the not-checked reasons say ``W``, ``theta``, not the wrapper's ``layer.W``; and a
    tied view's summed gradient is no "gradient-reshaped" finding (its shape is W's)."""
    from conventions_layers import FlatBuffer, TiedTranspose

    for layer in (FlatBuffer(), TiedTranspose()):
        report = check_layer(layer, (X,))
        texts = [f.message for f in report.findings] + [w for _, w in report.not_checked]
        assert texts and not any("layer." in t for t in texts), texts
        assert "gradient-reshaped" not in {f.kind for f in report.findings}


def test_a_backward_failing_on_fewer_douts_than_outputs_says_what_it_was_given():
    """The tuple unpacked where the check cannot see it (in a helper): the layer's error
    says backward got the first output's upstream gradient only, and how to take all."""
    from gradcheck.errors import LayerCallError

    class HelperUnpack:
        def forward(self, x):
            self.x = x
            return np.tanh(x), x ** 2

        def _split(self, grads):
            return grads

        def backward(self, grads):
            dh, dc = self._split(grads)
            return dh * (1 - np.tanh(self.x) ** 2) + dc * 2 * self.x

    with pytest.raises(LayerCallError, match="first 1, one per parameter it takes") as info:
        check_layer(HelperUnpack(), np.ones((4, 3)))
    assert isinstance(info.value.__cause__, ValueError)


def test_dotted_attribute_names_round_trip_through_a_wrapper_and_wrt():
    from conventions_layers import DottedAttributeBlocks

    layer = DottedAttributeBlocks(broken=True)
    report = check_layer(layer, (X,), wrt=["['dec.fc'].b"])
    assert [(r.name, r.verdict) for r in report.results] == [("['dec.fc'].b", "FAIL")]
    assert resolve(layer, "['enc.fc'].W") is getattr(layer, "enc.fc").W


def test_a_decorated_forward_without_wraps_is_read_through_its_closure():
    """``wrapper(*args, **kwargs)`` closing over ``forward(self, x)``: its signature is
    read there, so no flag is tried (no note), and the check passes."""
    from conventions_layers import DecoratedDense

    report = check_layer(DecoratedDense(), X)
    assert report.passed, str(report)
    assert not [f for f in report.findings if f.kind == "flag-refused"]


def test_a_decorated_forward_refusing_the_flag_is_called_without_it_with_a_note():
    """A wrapper whose closure does not tell which function it calls (two of them): the
    flag is tried positionally, and its refusal is a note."""
    from conventions_layers import DecoratedDense, _opaque

    class Opaque(DecoratedDense):
        forward = _opaque(DecoratedDense.forward.__closure__[0].cell_contents)

    report = check_layer(Opaque(), X)
    assert report.passed, str(report)
    notes = [f.message for f in report.findings if f.kind == "flag-refused"]
    assert notes and "called as forward(x)" in notes[0] and "functools.wraps" in notes[0]


def test_a_decorated_forward_whose_own_body_raises_a_positional_typeerror_is_not_retried():
    """The probe takes a refused call of forward itself, never a TypeError of the layer's
    own code (a sub-layer called with too many arguments)."""
    from conventions_layers import DecoratedDense, _logged
    from gradcheck.errors import LayerCallError

    class Inner:
        def forward(self, x):
            return x

    class CallsInnerWrongly(DecoratedDense):
        @_logged
        def forward(self, x, *rest):
            self.x = x
            return Inner().forward(x, *rest) @ self.W  # raises when given the flag

    with pytest.raises(LayerCallError, match="takes 2 positional arguments but 3"):
        check_layer(CallsInnerWrongly(), X)


def test_a_backward_taking_the_input_and_output_again_says_so():
    from conventions_layers import CALL_CASES

    good, _, inputs, _, _ = CALL_CASES["backward-takes-input-output"]
    report = check_layer(good(), inputs())
    notes = [f.message for f in report.findings if f.kind == "backward-takes-inputs"]
    assert notes and "forward's input 'x', forward's output again" in notes[0], str(report)
    assert [n for n, _ in report.not_checked] == ["maxpos"]


def test_a_read_only_property_parameter_is_written_to_the_attribute_it_returns():
    from conventions_layers import ReadOnlyPropertyDense

    layer = ReadOnlyPropertyDense()
    new = np.linspace(-1, 1, 6).reshape(3, 2)
    assign(layer, "W", new)
    assert layer._weights is new and layer.W is new
    report = check_layer(layer, X, precision="float64")
    assert report.passed and [r.name for r in report.results] == ["x", "W"], str(report)
    assert layer._weights is new


def test_an_integer_x_forward_indexes_with_is_passed_through_as_in_a_tuple():
    """Alone it was cast to float64 (forward then raised IndexError), in a tuple passed
    through: the same integer input is now passed through in both."""
    from conventions_layers import CharEncoder

    ids = np.array([0, 3, 5, 3])
    alone = check_layer(CharEncoder(), ids)
    in_tuple = check_layer(CharEncoder(), (ids,))
    assert [r.name for r in alone.results] == [r.name for r in in_tuple.results] == ["E"]
    assert dict(alone.not_checked)["x"] == dict(in_tuple.not_checked)["x"]
    note = [f.message for f in alone.findings if f.kind == "integer-input"]
    assert note and "indexes with it" in note[0] and "not cast" in note[0]


def test_a_backward_whose_dx_depends_on_its_learning_rate_fails_naming_it():
    """``return learning_rate * input_gradient`` PASSed: the check called backward with
    learning_rate=1 only; the two rates of the step search must return the same dx."""
    from conventions_layers import SGDDense, SGDDenseLrScaledDx

    x = np.random.default_rng(0).normal(size=(3, 1))
    assert not [f for f in check_layer(SGDDense(), x).findings
                if f.kind == "backward-learning-rate"]
    report = check_layer(SGDDenseLrScaledDx(), x)
    assert not report.passed, str(report)
    found = [f for f in report.findings if f.kind == "backward-learning-rate"]
    assert found and found[0].failure
    assert "backward" in found[0].message and "learning_rate" in found[0].message


@pytest.mark.parametrize("how", ["in-place", "twice", "slice"])
def test_mlfs_updates_in_place_twice_or_on_a_slice_leave_the_weights_as_found(how):
    """The optimizer stand-in returns a moved copy of ``w``: written into the weights in
    place, updated again, or a slice no parameter is (given back unmoved), the weights are
    the same object with the same contents afterwards, and a correct layer PASSes."""
    from conventions_layers import MLFSDense

    class Variant(MLFSDense):
        def backward_pass(self, accum_grad):
            W_before = self.W.copy()
            gw = self.weight_gradient(accum_grad)
            if how == "in-place":
                self.W[...] = self.W_opt.update(self.W, gw)
            elif how == "twice":
                self.W = self.W_opt.update(self.W, gw / 2)
                self.W = self.W_opt.update(self.W, gw / 2)
            else:
                self.W[:, :1] = self.W_opt.update(self.W[:, :1], gw[:, :1])
                self.W[:, 1:] = self.W_opt.update(self.W[:, 1:], gw[:, 1:])
            self.w0 = self.w0_opt.update(self.w0, accum_grad.sum(axis=0, keepdims=True))
            return self.input_gradient(accum_grad, W_before)

    layer = Variant()
    W, saved = layer.W, layer.W.copy()
    report = check_layer(layer, X)
    assert layer.W is W and np.array_equal(layer.W, saved)
    assert report.passed, str(report)
    names = [r.name for r in report.results]
    assert names == (["X", "w0"] if how == "slice" else ["X", "W", "w0"]), str(report)


def test_a_backward_stepping_out_of_proportion_to_its_learning_rate_fails():
    """``self.bias -= learning_rate**2 * grad`` or ``self.bias -= grad``: at the check's
    rate 1 a plain step, but not in proportion to the rate, so taken for no step at all
    and the bias left unchecked: it PASSed. The gradient read at the two rates must be
    the same."""
    class Bias:
        def __init__(self, power):
            self.bias, self.power = np.random.default_rng(1).normal(size=(3, 1)), power

        def forward(self, input):
            self.input = input
            return self.input + self.bias

        def backward(self, output_gradient, learning_rate):
            self.bias -= learning_rate ** self.power * output_gradient
            return output_gradient

    x = np.random.default_rng(0).normal(size=(3, 1))
    assert check_layer(Bias(1), x).passed
    for power in (2, 0):  # lr**2, and a step that ignores the rate (told from a cache
        report = check_layer(Bias(power), x)  # backward rewrites: forward reads it)
        assert not report.passed, str(report)
        found = [f for f in report.findings if f.kind == "backward-learning-rate"]
        assert found and found[0].failure and "bias" in found[0].message


def test_a_backward_parameter_named_like_a_rate_that_steps_nothing_may_change_dx():
    """An ELU's ``backward(dout, alpha=1.0)``: ``alpha`` is one of the learning-rate names,
    but nothing is stepped with it, so dx depending on it is no learning-rate finding."""
    class ELU:
        def __init__(self):
            self.dx = np.zeros(X.shape)

        def forward(self, x, alpha=1.0):
            self.x = x
            return np.where(x > 0, x, alpha * (np.exp(x) - 1))

        def backward(self, dout, alpha=1.0):  # and keeps it: a cache that depends on alpha
            self.dx = dout * np.where(self.x > 0, 1.0, alpha * np.exp(self.x))
            return self.dx

    report = check_layer(ELU(), X)
    assert report.passed, str(report)
    assert "backward-learning-rate" not in {f.kind for f in report.findings}


class _LeakyRelu:
    """A leaky ReLU whose backward takes its slope ``alpha=0.01`` (a learning-rate name)."""

    slope = 1.0  # backward's slope as a multiple of alpha (1: correct)

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, 0.01 * x)

    def backward(self, dout, alpha=0.01):
        return dout * np.where(self.x > 0, 1.0, self.slope * alpha)


def test_a_backward_parameter_named_like_a_rate_that_steps_nothing_gets_its_default():
    """``backward(dout, alpha=0.01)`` of a leaky ReLU was called with alpha=1 (a false FAIL):
    a parameter that steps no array is no learning rate, and backward gets its default."""
    report = check_layer(_LeakyRelu(), X)
    assert report.passed, str(report)
    note = [f.message for f in report.findings if f.kind == "learning-rate"]
    assert note and "alpha=0.01 (its default" in note[0]
    wrong = _LeakyRelu()
    wrong.slope = 2.0
    assert check_layer(wrong, X).result("x").verdict == "FAIL"


def test_an_activation_scaling_dx_by_its_default_rate_fails():
    """``backward(dout, learning_rate=0.1)`` returning ``learning_rate * dx`` and stepping
    nothing: called with its default, the scaled dx FAILs (at a rate of 1 it PASSed)."""
    class Scaled:
        def forward(self, x):
            self.x = x
            return np.tanh(x)

        def backward(self, dout, learning_rate=0.1):
            return learning_rate * dout * (1 - np.tanh(self.x) ** 2)

    assert check_layer(Scaled(), X).result("x").verdict == "FAIL"


def test_the_note_of_an_input_taken_again_names_it_once_as_forwards_input():
    """``backward(grad_output, input)``: the note says "forward's input 'input'", not "the
    input input"."""

    class TakesInput:
        def forward(self, input):
            return np.tanh(input)

        def backward(self, grad_output, input):
            return grad_output * (1 - np.tanh(input) ** 2)

    report = check_layer(TakesInput(), X)
    notes = " ".join(f.message for f in report.findings if f.kind == "backward-takes-inputs")
    assert report.passed and "forward's input 'input' again" in notes, str(report)
    assert "the input input" not in notes


def test_a_call_returning_something_else_than_forward_is_not_the_forward_pass():
    """A ``__call__`` that calls ``forward`` but returns ``2 * forward(x)``, probabilities of
    forward's logits, an eval-mode forward or an ``argmax`` is a helper: forward itself is
    checked, no ``call-forward`` note."""

    from conventions_layers import CallArgmax, CallDoubled, CallEval, CallLogits

    assert check_layer(CallDoubled(), X).result("x").verdict == "FAIL"
    for layer in (CallLogits(), CallArgmax(), CallEval()):
        report = check_layer(layer, X)
        assert report.passed, str(report)
        assert "call-forward" not in {f.kind for f in report.findings}
    assert "mask" in {n for n, _ in check_layer(CallEval(), X).not_checked}  # train mode ran


def test_a_call_that_is_the_forward_pass_says_so():
    """``__call__`` keeping ``self.x`` and returning forward's output: a ``call-forward``
    note names what it keeps."""
    from conventions_layers import CallKeepsInput

    report = check_layer(CallKeepsInput(), X)
    notes = [f.message for f in report.findings if f.kind == "call-forward"]
    assert report.passed and len(notes) == 1 and "keeps x" in notes[0], str(report)


def test_the_calls_deciding_the_forward_pass_are_counted():
    """Deciding whether ``__call__`` is the forward pass calls both once: counted with the
    discovery's calls (never silent), for a ``__call__`` taken and for one left."""
    from conventions_layers import CallDoubled, CallKeepsInput
    from gradcheck.protocol.discovery import method_name

    for cls in (CallKeepsInput, CallDoubled):
        counted = []
        original = cls.forward

        def forward(self, *args, **kwargs):
            counted.append(1)
            return original(self, *args, **kwargs)

        layer = type(cls.__name__, (cls,), {"forward": forward})()
        assert method_name(layer, "forward") == "__call__"
        report = check_layer(layer, X, sequence=False)
        assert report.forward_calls + report.discovery_calls[0] == len(counted), str(report)


def test_a_check_inside_another_leaves_the_outer_ones_forward_pass():
    """Each check settles a ``__call__`` helper once and releases its own: the outer check
    still calls forward when an inner one (of the same layer, or in another thread) ends."""
    from conventions_layers import CallDoubled
    from gradcheck.protocol.adapter import settle_call
    from gradcheck.protocol.discovery import method_name, release_forward

    layer = CallDoubled()
    assert method_name(layer, "forward") == "__call__"  # a candidate, by its bytecode
    assert settle_call(layer, X, True).note is None and settle_call(layer, X, True).note is None
    release_forward(layer)
    assert method_name(layer, "forward") == "forward"
    release_forward(layer)
    assert method_name(layer, "forward") == "__call__"


def _helper_call():
    """A ``Dense`` whose ``__call__`` is a helper (twice forward's output)."""
    from conventions_layers import Dense

    class HelperCall(Dense):
        def __call__(self, x):
            return 2 * self.forward(x)

    return HelperCall


@pytest.mark.parametrize("form", ["list", "int", "tuple"])
def test_a_helper_call_is_not_taken_for_forward_whatever_the_input_form(form):
    """``__call__`` returning ``2 * forward(x)`` was taken for the forward pass (a false
    FAIL) when ``x`` was no float ndarray: a list, integers, a one-input tuple."""
    x = np.arange(12).reshape(4, 3) % 5 - 2
    given = {"list": x.tolist(), "int": x, "tuple": (x.astype(float),)}[form]
    report = check_layer(_helper_call()(3, 2), given)
    assert report.passed, str(report)
    assert "call-forward" not in {f.kind for f in report.findings}


def test_an_eval_mode_check_does_not_take_a_call_that_cannot_pass_the_switch():
    """``__call__(x)`` keeping ``x`` and calling ``forward(x)`` of ``forward(x,
    train_flg=True)`` runs the train pass only: an eval-mode check took it and checked the
    train branch (a backward wrong after an eval-mode forward PASSed); now forward itself
    runs in eval mode, which keeps no ``x``, and the check says so."""
    from gradcheck.errors import LayerCallError

    from conventions_layers import Dense

    class Mode(Dense):
        def __call__(self, x):
            self.x = x
            return self.forward(x)

        def forward(self, x, train_flg=True):
            self.mode = train_flg
            return x @ self.W + self.b

        def backward(self, dout):  # wrong after an eval-mode forward only
            dx = super().backward(dout)
            return dx * (1.0 if self.mode else 1.01)

    x = np.random.default_rng(0).normal(size=(4, 3))
    assert check_layer(Mode(3, 2), x).passed
    with pytest.raises(LayerCallError, match="eval-mode forward does not write"):
        check_layer(Mode(3, 2), x, train_flg=False)


def test_the_batch_mean_note_names_the_gradients_found_at_one_over_m():
    """dW missing the course's 1/m, db with it: W FAILs (checked m times too large) and the
    note names b as the gradient found at 1/m, not "W, b"."""
    from conventions_layers import dlai_linear_forward

    def linear_backward(dZ, cache):
        A_prev, W, b = cache
        m = A_prev.shape[1]
        return W.T @ dZ, dZ @ A_prev.T, 1. / m * np.sum(dZ, axis=1, keepdims=True)

    rs = np.random.RandomState(0)
    report = check_function(dlai_linear_forward, linear_backward, rs.randn(3, 5), rs.randn(4, 3),
                            rs.randn(4, 1))
    assert {r.name: r.verdict for r in report.results} == {"A": "PASS", "W": "FAIL",
                                                           "b": "PASS"}, str(report)
    note = [f.message for f in report.findings if f.kind == "batch-mean-gradients"]
    assert note and note[0].startswith("the gradient of b is 1/m"), note


def test_a_wrong_dA_prev_says_the_course_scaled_dW_and_db_may_be_right():
    """A course pair whose dW and db are the course's (1/m) but whose dA_prev is wrong: the
    rule does not apply (A is not of the sum), so W and b FAIL by exactly 1/m; a note says
    so, and that A is the one to fix (the report blamed all three alike)."""
    from conventions_layers import dlai_linear_forward

    def linear_backward(dZ, cache):
        A_prev, W, b = cache
        m = A_prev.shape[1]
        return 1.5 * W.T @ dZ, 1. / m * dZ @ A_prev.T, 1. / m * np.sum(dZ, axis=1, keepdims=True)

    rs = np.random.RandomState(0)
    report = check_function(dlai_linear_forward, linear_backward, rs.randn(3, 5), rs.randn(4, 3),
                            rs.randn(4, 1))
    assert [r.verdict for r in report.results] == ["FAIL"] * 3, str(report)
    note = [f.message for f in report.findings if f.kind == "batch-mean-gradients"]
    assert note and note[0].startswith("W, b: exactly 1/m") and "fix A's first" in note[0]


def test_values_forward_returns_besides_output_and_cache_are_listed():
    """hipsternet's ``bn_forward -> (out, cache, running_mean, running_var)`` beside
    ``bn_backward(dout, cache)``: the cache is the value the return statement names as
    backward's parameter is named, the running statistics are listed as not
    differentiated; forward's own input named ``cache`` is not given to backward again."""
    from conventions_layers import _xs, hip_bn_backward, hip_bn_forward

    report = check_function(hip_bn_forward, hip_bn_backward,
                            *_xs((6, 5), (5,), (5,)), (np.zeros(5), np.ones(5)))
    assert report.passed, str(report)
    why = dict(report.not_checked)
    assert "backward takes no gradient of it" in why["running_mean"]
    assert "backward takes no gradient of it" in why["running_var"]


def test_a_tuple_holding_the_switch_says_the_switch_is_no_input():
    from conventions_layers import _xs, hip_bn_backward, hip_bn_forward
    from gradcheck.errors import GradCheckInputError

    with pytest.raises(GradCheckInputError, match="besides its train/eval switch 'train' "
                                                   r"\(set by train_flg="):
        check_function(hip_bn_forward, hip_bn_backward, *_xs((6, 5), (5,), (5,)),
                       (np.zeros(5), np.ones(5)), 0.9, True)


class _LeakyReLUTakingAlpha:
    """A leaky ReLU whose backward takes its slope again, with no default."""

    def __init__(self, alpha=0.1):
        self.alpha = alpha

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.alpha * x)

    def backward(self, dout, alpha):
        return dout * np.where(self.x > 0, 1.0, alpha)


def test_a_required_backward_alpha_that_steps_nothing_is_no_guess_but_a_clear_error():
    """``backward(dout, alpha)``, alpha required, steps no array and the returned gradient
    depends on it: the check cannot know it, so it raises naming the layer, backward, the
    parameter and backward_kwargs (it called it with alpha=1 and reported the result)."""
    from gradcheck import GradCheckInputError

    with pytest.raises(GradCheckInputError) as info:
        check_layer(_LeakyReLUTakingAlpha(), X)
    text = str(info.value)
    assert info.value.layer == "_LeakyReLUTakingAlpha" and info.value.target == "alpha"
    assert "backward takes 'alpha' (no default)" in text
    assert "backward_kwargs={'alpha': ...}" in text, text


def test_backward_kwargs_gives_a_required_backward_parameter_its_value():
    """The value given is the one every backward call gets: the right slope PASSes, a
    wrong one FAILs on the input, and the report says where the value came from."""
    report = check_layer(_LeakyReLUTakingAlpha(0.1), X, backward_kwargs={"alpha": 0.1})
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    assert any("alpha=0.1 (from backward_kwargs)" in f.message for f in report.findings)
    wrong = check_layer(_LeakyReLUTakingAlpha(0.1), X, backward_kwargs={"alpha": 0.3})
    assert {r.name: r.verdict for r in wrong.results} == {"x": "FAIL"}, str(wrong)


def test_an_extra_required_backward_parameter_is_a_clear_error_naming_it():
    """``backward(dout, scale)``: not a learning rate, not an input given again; the raw
    TypeError of the call was the report (no word on how to pass it)."""
    from gradcheck import GradCheckInputError

    class Scaled:
        def __init__(self):
            self.W = np.random.default_rng(0).normal(size=(3, 2))

        def forward(self, x):
            self.x = x
            return 2.0 * x @ self.W

        def backward(self, dout, scale):
            self.dW = scale * self.x.T @ dout
            return scale * dout @ self.W.T

    with pytest.raises(GradCheckInputError) as info:
        check_layer(Scaled(), X)
    assert info.value.layer == "Scaled" and info.value.target == "scale"
    assert "backward_kwargs={'scale': ...}" in str(info.value), str(info.value)
    report = check_layer(Scaled(), X, backward_kwargs={"scale": 2.0})
    assert report.passed and [r.name for r in report.results] == ["x", "W"], str(report)
    with pytest.raises(GradCheckInputError, match=r"backward_kwargs names \['rate'\]"):
        check_layer(Scaled(), X, backward_kwargs={"rate": 2.0})


def test_backward_kwargs_naming_the_learning_rate_sets_the_rate_its_step_is_read_with():
    """An SGD backward called with the user's rate: the step is still read as the gradient
    (divided by that rate) and undone, so the parameters PASS."""
    from conventions_layers import SGDDense

    report = check_layer(SGDDense(), np.random.default_rng(0).normal(size=(3, 1)),
                         backward_kwargs={"learning_rate": 0.25})
    assert report.passed, str(report)
    assert any("learning_rate=0.25 (from backward_kwargs)" in f.message
               and "steps" in f.message for f in report.findings), report.findings


class _MaskedDense:
    """``forward(self, inputs)`` reading ``inputs["x"]`` and ``inputs["mask"]``; ``wrong``:
    backward forgets the mask in dx."""

    def __init__(self, wrong=False):
        self.W = np.random.default_rng(0).normal(size=(3, 2))
        self.wrong = wrong

    def forward(self, inputs):
        self.x, self.mask = inputs["x"], inputs["mask"]
        return (self.x * self.mask) @ self.W

    def backward(self, dout):
        self.dW = (self.x * self.mask).T @ dout
        dx = dout @ self.W.T
        return {"x": dx if self.wrong else dx * self.mask}


def test_a_dict_taken_whole_by_forward_has_its_floating_arrays_checked_by_key():
    """``check_layer(layer, {"x": x, "mask": m})`` for ``forward(self, inputs)``: refused
    before (the dict was read as keyword inputs forward does not take). The floating array
    is the target ``x``, the boolean mask passes through, the caller's arrays are left as
    given, and backward forgetting the mask FAILs on x only."""
    rng = np.random.default_rng(1)
    x, mask = rng.normal(size=(4, 3)), rng.random((4, 3)) > 0.3
    inputs = {"x": x, "mask": mask}
    kept = x.copy()
    report = check_layer(_MaskedDense(), inputs)
    assert report.passed and [r.name for r in report.results] == ["x", "W"], str(report)
    assert dict(report.not_checked)["mask"].startswith("not differentiated: boolean")
    assert any(f.kind == "dict-input" for f in report.findings)
    assert inputs["x"] is x and np.array_equal(x, kept)
    wrong = check_layer(_MaskedDense(wrong=True), inputs)
    assert {r.name: r.verdict for r in wrong.results} == {"x": "FAIL", "W": "PASS"}, str(wrong)


def test_a_dict_input_with_two_floating_arrays_checks_both_and_names_a_missing_gradient():
    from gradcheck import LayerProtocolError

    class Gated:
        def __init__(self, keep_b=True):
            self.W, self.keep_b = np.random.default_rng(0).normal(size=(3, 2)), keep_b

        def forward(self, inputs):
            self.a, self.b = inputs["a"], inputs["b"]
            return (self.a * self.b) @ self.W

        def backward(self, dout):
            self.dW = (self.a * self.b).T @ dout
            g = dout @ self.W.T
            return {"a": g * self.b, "b": g * self.a} if self.keep_b else {"a": g * self.b}

    rng = np.random.default_rng(2)
    inputs = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=(4, 3))}
    report = check_layer(Gated(), inputs)
    assert report.passed and [r.name for r in report.results] == ["a", "b", "W"], str(report)
    with pytest.raises(LayerProtocolError, match=r"without the gradient of the floating "
                                                 r"input\(s\) \['b'\]") as info:
        check_layer(Gated(keep_b=False), inputs)
    assert info.value.layer == "Gated" and info.value.target == "b"


class _WeightNormDense:
    """Weight normalisation: ``W`` recomputed in place from ``g`` and ``v`` by every
    forward (``self.W[...] = g * v / ||v||``, per output unit); ``keep_dW``: backward also
    keeps ``dW`` (found as W's gradient by name); ``wrong``: ``"g"`` or ``"v"``, that
    gradient scaled by 1.5; ``W`` starts at zeros (``lazy``) or at its value."""

    def __init__(self, keep_dW=False, wrong=None, lazy=False):
        rng = np.random.default_rng(0)
        self.v, self.g = rng.normal(size=(3, 2)), rng.normal(size=2) + 2.0
        self.W = np.zeros((3, 2))
        self.keep_dW, self.wrong = keep_dW, wrong
        if not lazy:
            self._normalise()

    def _normalise(self):
        self.norm = np.linalg.norm(self.v, axis=0)
        self.W[...] = self.g * self.v / self.norm

    def forward(self, x):
        self._normalise()
        self.x = x
        return x @ self.W

    def backward(self, dout):
        dW = self.x.T @ dout
        if self.keep_dW:
            self.dW = dW
        along = np.sum(dW * self.v, axis=0)
        self.dg = along / self.norm * (1.5 if self.wrong == "g" else 1.0)
        self.dv = (self.g / self.norm * dW - self.g * along / self.norm ** 3 * self.v) * (
            1.5 if self.wrong == "v" else 1.0)
        return dout @ self.W.T


class _WeightNormCalled(_WeightNormDense):
    """The same, normalised by ``__call__`` before it calls ``forward`` (PyTorch's hook)."""

    def __call__(self, x):
        self._normalise()
        return self.forward(x)

    def forward(self, x):
        self.x = x
        return x @ self.W


@pytest.mark.parametrize("cls", [_WeightNormDense, _WeightNormCalled])
@pytest.mark.parametrize("keep_dW, lazy", [(False, False), (True, False), (True, True),
                                           (False, True)])
def test_a_weight_norm_layer_passes_on_g_and_v_with_W_reported_derived(cls, keep_dW, lazy):
    """W, rewritten in place by every forward pass, is no parameter: with a dW beside it
    it FAILed (numerical 0) and, starting at zeros, made every target INCONCLUSIVE
    ("forward modifies W in place"); with __call__ normalising before a W of zeros the
    check took forward alone and raised (backward read norm, which forward does not
    write)."""
    report = check_layer(cls(keep_dW=keep_dW, lazy=lazy), X)
    verdicts = {r.name: r.verdict for r in report.results}
    assert verdicts == {"x": "PASS", "v": "PASS", "g": "PASS"}, str(report)
    # found as a parameter beside its dW, and without one an array forward writes over in
    # place with a value that does not depend on what it held: derived either way
    reason = dict(report.not_checked)["W"]
    assert reason.startswith("derived: the forward pass recomputes"), reason
    assert not any(f.kind in ("no-gradient-found", "no-parameters-found")
                   for f in report.findings), str(report)
    if cls is _WeightNormCalled:
        assert any(f.kind == "call-forward" for f in report.findings)


@pytest.mark.parametrize("cls", [_WeightNormDense, _WeightNormCalled])
@pytest.mark.parametrize("wrong", ["g", "v"])
def test_a_weight_norm_layer_with_a_wrong_gradient_fails_on_that_parameter_only(cls, wrong):
    report = check_layer(cls(keep_dW=True, lazy=True, wrong=wrong), X)
    verdicts = {r.name: r.verdict for r in report.results}
    assert verdicts == {"x": "PASS", "v": "PASS", "g": "PASS", wrong: "FAIL"}, str(report)


def test_a_parameter_forward_writes_from_its_own_value_is_not_taken_for_derived():
    """Only a value that does not depend on what the array held is derived: a forward that
    rescales its weight in place (``self.W *= 1``, a no-op here) keeps W a parameter."""
    class Rescaled:
        def __init__(self):
            self.W = np.random.default_rng(0).normal(size=(3, 2))

        def forward(self, x):
            self.W *= 1.0
            self.x = x
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    report = check_layer(Rescaled(), X)
    assert report.passed and [r.name for r in report.results] == ["x", "W"], str(report)


class _TwoSameShape:
    """Two parameters of one shape, their gradients returned in the other order than
    they are defined (``return dx, dc, da``), behind an early return of ``None``s."""

    frozen = False

    def __init__(self):
        rng = np.random.default_rng(3)
        self.a, self.c = rng.standard_normal(3), rng.standard_normal(3)

    def forward(self, x):
        self.x = x
        return x * self.a + np.tanh(x) * self.c

    def backward(self, dout):
        dx = dout * (self.a + self.c * (1 - np.tanh(self.x) ** 2))
        if self.frozen:
            return dx, None, None
        dc = np.sum(dout * np.tanh(self.x), axis=0)
        da = self.wrong * np.sum(dout * self.x, axis=0)
        return dx, dc, da

    wrong = 1.0


def test_returned_gradients_are_named_across_return_statements():
    """An early ``return dx, None, None`` names nothing: the other statement's ``dc``, ``da``
    still map the gradients (they were matched by shape and order: a and c both FAILed);
    a wrong ``da`` FAILs on ``a`` only."""
    report = check_layer(_TwoSameShape(), X)
    assert report.passed and {r.name for r in report.results} == {"x", "a", "c"}, str(report)
    wrong = type("Wrong", (_TwoSameShape,), {"wrong": 1.01})
    verdicts = {r.name: r.verdict for r in check_layer(wrong(), X).results}
    assert verdicts == {"x": "PASS", "c": "PASS", "a": "FAIL"}, verdicts


def test_a_decorated_backward_returning_gradients_is_read_through_its_wrapper():
    """A plain decorator (no functools.wraps) over ``backward`` returning ``dx, dc, da``:
    its return statement is read in the method it wraps (the wrapper's is ``return
    f(*a, **k)``: the tuple was refused)."""
    from conventions_layers import _logged

    layer = type("Decorated", (_TwoSameShape,), {"backward": _logged(_TwoSameShape.backward)})()
    report = check_layer(layer, X)
    assert report.passed and {r.name for r in report.results} == {"x", "a", "c"}, str(report)


def test_a_tuple_from_a_backward_without_source_says_why():
    from gradcheck.errors import LayerProtocolError

    namespace = {"np": np}
    exec("class Affine:\n"
         "    def __init__(self):\n"
         "        self.W, self.b = np.ones((3, 2)), np.zeros(2)\n"
         "    def forward(self, x):\n"
         "        self.x = x\n"
         "        return x @ self.W + self.b\n"
         "    def backward(self, dout):\n"
         "        return dout @ self.W.T, self.x.T @ dout, dout.sum(axis=0)\n", namespace)
    with pytest.raises(LayerProtocolError, match="read from backward's source, which could "
                                                 "not be read here"):
        check_layer(namespace["Affine"](), X)


class _Gate:
    """``forward(inputs)`` taking ``{"x": ..., "g": ...}`` whole; backward returns ``dx, dg``."""

    scale = 1.0

    def forward(self, inputs):
        self.x, self.s = inputs["x"], 1 / (1 + np.exp(-inputs["g"]))
        return self.x * self.s

    def backward(self, dout):
        dx = dout * self.s
        dg = self.scale * dout * self.x * self.s * (1 - self.s)
        return dx, dg


def test_gradients_of_a_dict_input_follow_the_names_backward_returns_them_under():
    """``return dx, dg`` is matched to the keys by its names, in whatever order the caller
    built the dict (by key order, ``{"g": ..., "x": ...}`` FAILed both); a wrong ``dg``
    FAILs on ``g``."""
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    for inputs in ({"x": x, "g": g}, {"g": g, "x": x}):
        report = check_layer(_Gate(), inputs)
        assert report.passed, str(report)
    wrong = type("Wrong", (_Gate,), {"scale": 1.01})
    verdicts = {r.name: r.verdict for r in check_layer(wrong(), {"g": g, "x": x}).results}
    assert verdicts == {"g": "FAIL", "x": "PASS"}, verdicts


def _scaled_forward(x, w, train=True):
    f = 1.0 if train else 0.5
    return x * w * f, (x, w, f)


def _scaled_backward(dout, cache):
    x, w, f = cache
    return dout * w * f, np.sum(dout * x * f, axis=0)


def _scaled_backward_train_only(dout, cache):
    x, w, _ = cache
    return dout * w, np.sum(dout * x, axis=0)


def test_a_function_pairs_switch_is_passed_to_its_forward_function():
    """``forward(x, w, train=True)``: ``train_flg=False`` runs it with ``train=False`` (it
    was left out, with a warning that forward takes no switch), so a backward right in
    train mode only FAILs there."""
    x, w = np.random.default_rng(2).normal(size=(4, 3)), np.random.default_rng(3).normal(size=3)
    report = check_function(_scaled_forward, _scaled_backward, x, w, train_flg=False)
    assert report.passed and "mode-switch" not in {f.kind for f in report.findings}, str(report)
    wrong = check_function(_scaled_forward, _scaled_backward_train_only, x, w, train_flg=False)
    assert {r.name: r.verdict for r in wrong.results} == {"x": "FAIL", "w": "FAIL"}


def test_a_pairs_eval_forward_keeping_no_cache_says_so():
    from conventions_layers import _xs, hip_bn_backward
    from gradcheck.errors import LayerCallError

    def hip_bn_forward_modes(X, gamma, beta, cache, momentum=.9, train=True):
        running_mean, running_var = cache
        if train:
            mu, var = np.mean(X, axis=0), np.var(X, axis=0)
            X_norm = (X - mu) / np.sqrt(var + 1e-8)
            cache = (X, X_norm, mu, var, gamma, beta)
        else:
            X_norm = (X - running_mean) / np.sqrt(running_var + 1e-8)
            cache = None
        out = gamma * X_norm + beta
        return out, cache, running_mean, running_var

    with pytest.raises(LayerCallError, match="forward returned None as the cache backward "
                                             "takes: in this mode"):
        check_function(hip_bn_forward_modes, hip_bn_backward, *_xs((6, 5), (5,), (5,)),
                       (np.zeros(5), np.ones(5)), train_flg=False)


def test_returned_names_that_contradict_their_shapes_are_said():
    """``return dx, db, dW`` with ``db`` holding the weight gradient: matched by shape and
    order (the values are right), and the note says the names do not fit the shapes."""
    class Misnamed:
        def __init__(self):
            rng = np.random.default_rng(0)
            self.W, self.b = rng.normal(size=(3, 2)), rng.normal(size=(2,))

        def forward(self, x):
            self.x = x
            return x @ self.W + self.b

        def backward(self, dout):
            dW = dout.sum(0)
            db = self.x.T @ dout
            return dout @ self.W.T, db, dW

    report = check_layer(Misnamed(), X)
    notes = " ".join(f.message for f in report.findings if f.kind == "gradients-returned")
    assert report.passed, str(report)
    assert "do not fit their shapes: db (W's shape), dW (b's shape)" in notes, notes


def test_gradients_returned_out_of_definition_order_are_said():
    """``return dx, dc, da`` for ``a, c`` of one shape defined in that order: checked as
    the names say (PASS), and the note says a loop zipping parameters with gradients in
    definition order would swap them."""
    report = check_layer(_TwoSameShape(), X)
    notes = " ".join(f.message for f in report.findings if f.kind == "gradients-returned")
    assert report.passed and "returns c's gradient before a's" in notes, notes


# -- EpyNN: gradients from compute_gradients() after backward ----------------------------------
from conventions_layers import (EPYNN_CALLS, EpyNNDense, EpyNNDenseBroken,  # noqa: E402
                                EpyNNDenseNoVerb)
from gradcheck.errors import GradCheckInputError  # noqa: E402
from gradcheck.protocol.discovery import grad_key, gradient_methods  # noqa: E402


RNG_DOUT = np.random.default_rng(11)


def _epynn_state(layer):
    """Every dict of an EpyNN layer, its arrays by identity and by value."""
    return {name: {k: (id(v), np.array(v, copy=True)) if isinstance(v, np.ndarray) else v
                   for k, v in d.items()}
            for name, d in vars(layer).items() if isinstance(d, dict)}


def _same_state(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for k, v in a[name].items():
            w = b[name][k]
            if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], np.ndarray):
                assert v[0] == w[0] and np.array_equal(v[1], w[1]), (name, k)
            else:
                assert v == w, (name, k)


def test_epynn_compute_gradients_is_called_after_backward_and_said():
    EPYNN_CALLS.clear()
    layer = EpyNNDense()
    before, x, dout = _epynn_state(layer), X.copy(), RNG_DOUT.normal(size=(3, 2))
    given = dout.copy()
    report = check_layer(layer, x, dout=dout)
    assert report.passed, str(report)
    assert np.array_equal(x, X) and np.array_equal(dout, given)
    assert [r.name for r in report.results] == ["x", "p['W']", "p['b']"]
    assert "compute_gradients" in EPYNN_CALLS and "update_parameters" not in EPYNN_CALLS
    # once after every backward the check makes (discovery, analytic passes, sequence check)
    assert EPYNN_CALLS.count("compute_gradients") >= report.backward_calls
    text = " ".join(str(report).split())  # wrapped at the terminal's width
    assert ("gradients from compute_gradients() after backward (p['W'] <- g['dW'], "
            "p['b'] <- g['db'])") in text
    assert "no parameter gradient was found" not in text
    _same_state(before, _epynn_state(layer))
    assert layer.g == {} and layer.fc == {} and layer.bc == {}


def test_epynn_broken_gradient_fails_on_p_w_only():
    report = check_layer(EpyNNDenseBroken(), X)
    verdicts = {r.name: r.verdict for r in report.results}
    assert verdicts == {"x": "PASS", "p['W']": "FAIL", "p['b']": "PASS"}, str(report)


def test_a_backward_that_leaves_gradients_itself_never_gets_its_gradient_method_called():
    class FillsInBackward(EpyNNDense):
        def backward(self, dX):
            dX = super().backward(dX)
            EpyNNDense.compute_gradients(self)
            return dX

    layer = FillsInBackward()
    EPYNN_CALLS.clear()
    report = check_layer(layer, X)
    assert report.passed and [r.name for r in report.results] == ["x", "p['W']", "p['b']"]
    assert "gradients from" not in str(report)
    assert EPYNN_CALLS.count("compute_gradients") == report.backward_calls \
        + report.discovery_calls[1]  # backward's own calls only


def test_update_apply_zero_step_and_get_methods_are_never_called_unnamed():
    EPYNN_CALLS.clear()
    layer = EpyNNDenseNoVerb()
    before = _epynn_state(layer)
    report = check_layer(layer, X)
    assert EPYNN_CALLS == []
    assert [r.name for r in report.results] == ["x"]
    assert "gradient_method='get_gradients'" in str(report)
    assert "<dict>['dW']" in str(report)  # the gradient names looked for, a dict entry's
    _same_state(before, _epynn_state(layer))


def test_gradient_methods_name_rule():
    class Names:
        def compute_gradients(self): pass
        def calcGrads(self, scale=1.0): pass
        def calculate_param_gradients(self, *args): pass
        def compute_grad(self): pass
        def compute_gradients_and_update(self): pass
        def update_parameters(self): pass
        def apply_gradients(self): pass
        def zero_grad(self): pass
        def reset_gradients(self): pass
        def compute_step_gradients(self): pass
        def train_compute_gradients(self): pass
        def get_gradients(self): pass
        def param_gradients(self): pass
        def compute_gradients_for(self, x): pass
        def _compute_gradients(self): pass
        compute_grads = staticmethod(lambda: None)

    assert gradient_methods(Names()) == ["compute_gradients", "calcGrads",
                                         "calculate_param_gradients", "compute_grad"]
    assert gradient_methods(Names(), verb=False)[-2:] == ["get_gradients", "param_gradients"]


def test_several_gradient_methods_are_named_and_none_is_called():
    class Two(EpyNNDense):
        def calc_gradients(self):
            EPYNN_CALLS.append("calc_gradients")
            EpyNNDense.compute_gradients(self)

    EPYNN_CALLS.clear()
    report = check_layer(Two(), X)
    assert EPYNN_CALLS == [] and [r.name for r in report.results] == ["x"]
    text = " ".join(str(report).split())
    assert "(calc_gradients(), compute_gradients()): none was called" in text, text
    assert "gradient_method='calc_gradients'" in text and "--gradient-method" in text
    # an ambiguity the user resolves: not a PASS, the parameters listed as not checked
    assert not report.passed
    found = [f for f in report.findings if f.kind == "gradient-method-ambiguous"]
    assert len(found) == 1 and found[0].failure, report.findings
    from gradcheck.protocol.discovery import AMBIGUOUS_REASON
    assert dict(report.not_checked)["p['W']"] == AMBIGUOUS_REASON, report.not_checked
    named = check_layer(Two(), X, gradient_method="calc_gradients")
    assert named.passed and [r.name for r in named.results] == ["x", "p['W']", "p['b']"]
    assert "gradients from calc_gradients() after backward" in str(named)
    assert "named by gradient_method=" in " ".join(str(named).split())


def test_epynn_params_in_dict_entry_form():
    report = check_layer(EpyNNDense(), X, params={"p['W']": "g['dW']", "p['b']": "g['db']"})
    assert report.passed and [r.name for r in report.results] == ["x", "p['W']", "p['b']"]
    assert "gradients from compute_gradients() after backward" in str(report)
    bad = check_layer(EpyNNDenseBroken(), X, params={"p['W']": "g['dW']"})
    assert {r.name: r.verdict for r in bad.results} == {"x": "PASS", "p['W']": "FAIL"}


@pytest.mark.parametrize("value, said", [(3, "must be None or the name"),
                                         ("nope", "no method of that name"),
                                         ("update_shapes", "needs arguments"),
                                         ("trainable", "not callable")])
def test_gradient_method_option_errors_name_the_layer_and_the_option(value, said):
    with pytest.raises(GradCheckInputError, match=said) as info:
        check_layer(EpyNNDense(), X, gradient_method=value)
    assert "EpyNNDense" in str(info.value) and "gradient_method" in str(info.value)


def test_grad_key_pairs_dict_keys_by_the_one_name_rule():
    assert grad_key({"dW": 1}, "W") == "dW"
    assert grad_key({"W_grad": 1, "dW": 2}, "W") == "dW"
    assert grad_key({"W": 1, "dW": 2}, "W") == "W"  # params / grads under the same keys
    assert grad_key({"other": 1}, "W") == "W"


def test_gate_checks_an_epynn_layer(tmp_path, capsys):
    src = tmp_path / "epynn_layers.py"
    src.write_text(
        "import numpy as np\n"
        "from conventions_layers import EpyNNDense, EpyNNDenseBroken\n"
        "def make():\n"
        "    return EpyNNDense(), np.random.default_rng(0).normal(size=(3, 3))\n"
        "def make_broken():\n"
        "    return EpyNNDenseBroken(), np.random.default_rng(0).normal(size=(3, 3))\n")
    assert main([f"{src}:make", "-v"]) == 0
    assert "gradients from compute_gradients() after backward" in capsys.readouterr().out
    assert main([f"{src}:make_broken"]) == 1
    out = capsys.readouterr().out
    assert "p['W']" in out and "FAIL" in out, out


# -- method pairs with a returned cache, ctx pairs, first layers, buffers, input lists -----------
from conventions_layers import (AppendsInput, BufferTanhDense, CacheTanhAffine,  # noqa: E402
                                CtxLinear, CtxLinearBroken, FirstLayerDense,
                                FirstLayerDenseBroken)
from gradcheck import GradCheckInputError, LayerProtocolError  # noqa: E402


def _unchanged(layer, x):
    """A deep copy of ``layer``'s arrays and of ``x``, and a test that they are as they were."""
    import copy

    before, x0 = copy.deepcopy(vars(layer)), np.array(x, copy=True)

    def check():
        assert np.array_equal(x, x0)
        for k, v in before.items():
            now = vars(layer)[k]
            if isinstance(v, np.ndarray):
                assert np.array_equal(now, v), k
            elif isinstance(v, list):
                assert len(now) == len(v) and all(np.array_equal(a, b) for a, b in zip(now, v)), k
    return check


def test_a_method_pair_gets_each_forwards_own_cache_and_the_report_says_so():
    x = np.random.default_rng(4).normal(size=(4, 3))
    layer = CacheTanhAffine()
    unchanged = _unchanged(layer, x)
    report = check_layer(layer, x)
    unchanged()
    assert report.passed and [r.name for r in report.results] == ["x", "W", "b"], str(report)
    text = " ".join(str(report).split())
    assert "each forward's own cache (the last value it returns) was passed as 'cache'" in text
    assert "taken for a cache it returns" not in text  # the cache is no output, nor noise


def test_a_method_pair_given_the_cache_by_name_keeps_it():
    """backward_kwargs={'cache': ...} (the old advice) is the user's choice: not threaded."""
    x = np.random.default_rng(4).normal(size=(4, 3))
    layer = CacheTanhAffine()
    _, cache = layer.forward(x)
    report = check_layer(layer, x, backward_kwargs={"cache": cache})
    assert report.passed
    text = " ".join(str(report).split())
    assert "was passed as 'cache'" not in text
    assert "backward_kwargs gives 'cache', the same value to every backward call" in text


def test_autograd_function_style_pair_gets_a_fresh_context_with_or_without_one_given():
    class Ctx:
        def save_for_backward(self, *t):
            self.saved_tensors = t

    x, w = np.random.default_rng(5).normal(size=(4, 3)), np.random.default_rng(6).normal(
        size=(3, 2))
    given = Ctx()
    for extra in ((), (given,)):
        report = check_function(CtxLinear.forward, CtxLinear.backward, *extra, x, w)
        assert report.passed and [r.name for r in report.results] == ["x", "w"], str(report)
        assert "take ctx first (torch.autograd.Function style)" in " ".join(str(report).split())
        bad = check_function(CtxLinear.forward, CtxLinearBroken.backward, *extra, x, w)
        assert {r.name: r.verdict for r in bad.results} == {"x": "PASS", "w": "FAIL"}
    assert not hasattr(given, "saved_tensors")  # the context given is copied, never used


def test_an_autograd_function_class_given_to_check_layer_says_to_use_check_function():
    with pytest.raises(GradCheckInputError, match=r"check_function\(CtxLinear.forward, "
                                                  r"CtxLinear.backward"):
        check_layer(CtxLinear, X)


def test_a_first_layer_returning_no_dx_is_checked_over_its_parameters_with_wrt():
    layer = FirstLayerDense()
    unchanged = _unchanged(layer, X)
    report = check_layer(layer, X, wrt=["W", "b"])
    unchanged()
    assert report.passed and [r.name for r in report.results] == ["W", "b"], str(report)
    assert any(f.kind == "no-input-gradient" for f in report.findings)
    bad = check_layer(FirstLayerDenseBroken(), X, wrt=["W", "b"])
    assert {r.name: r.verdict for r in bad.results} == {"W": "FAIL", "b": "PASS"}


def test_several_inputs_and_no_input_gradient_are_checked_over_the_parameters_with_wrt():
    class TwoInputs(FirstLayerDense):
        def forward(self, x, h):
            return super().forward(x) + h

    x, h = np.random.default_rng(1).normal(size=(4, 3)), np.random.default_rng(2).normal(
        size=(4, 2))
    report = check_layer(TwoInputs(), (x, h), wrt=["W"])
    assert report.passed and [r.name for r in report.results] == ["W"], str(report)
    assert any(f.kind == "no-input-gradient" for f in report.findings)
    with pytest.raises(LayerProtocolError, match="without the inputs"):
        check_layer(TwoInputs(), (x, h))


def test_a_backward_returning_no_dx_with_x_a_target_names_wrt_without_x():
    with pytest.raises(LayerProtocolError, match=r"returned None.*wrt=\[\.\.\.\].*without 'x'") \
            as info:
        check_layer(FirstLayerDense(), X)
    assert "FirstLayerDense" in str(info.value) and "'x'" in str(info.value)


def test_buffers_written_in_place_are_listed_as_written_not_warned_about():
    layer = BufferTanhDense()
    layer.forward(X)  # called once before: the buffers hold this call's values
    unchanged = _unchanged(layer, X)
    report = check_layer(layer, X)
    unchanged()
    assert report.passed and [r.name for r in report.results] == ["x", "W"], str(report)
    assert not report.warnings, report.warnings
    reasons = dict(report.not_checked)
    assert reasons["out"].startswith("derived: the forward pass recomputes"), reasons


def test_a_buffer_backward_writes_is_a_gradient_or_cache_an_in_place_step_is_warned_about():
    class Buffers(BufferTanhDense):
        def __init__(self):
            super().__init__()
            self.g = np.zeros((3, 2))

        def backward(self, dout):
            np.multiply(dout, 1 - self.out ** 2, out=self.g)
            return super().backward(dout)

    report = check_layer(Buffers(), X)
    assert dict(report.not_checked)["g"].startswith("written by backward"), report.not_checked
    assert not report.warnings, report.warnings

    class Steps(BufferTanhDense):
        def __init__(self):
            super().__init__()
            self.V = _w_like((3, 2))

        def backward(self, dout):
            self.V -= 0.01 * dout[:, :2]  # an update with no gradient kept: still warned
            return super().backward(dout)

    stepped = check_layer(Steps(), X)
    assert any("V" in w for w in stepped.warnings), stepped.warnings


def _w_like(shape):
    return np.random.default_rng(8).normal(size=shape)


def test_an_input_list_forward_appends_to_is_the_input_not_a_parameter():
    layer = AppendsInput()
    layer.forward(X * 2)  # a user's earlier call: X[0] is that input
    unchanged = _unchanged(layer, X)
    report = check_layer(layer, X)
    unchanged()
    assert report.passed and [r.name for r in report.results] == ["x", "W"], str(report)
    assert not report.warnings, report.warnings
    assert dict(report.not_checked)["X[0]"].startswith("an earlier input"), report.not_checked


def test_a_backward_taking_a_cache_forward_does_not_return_is_still_asked_for():
    class NoCache:
        def forward(self, x):
            return np.tanh(x)

        def backward(self, dout, cache):
            return dout * (1 - np.tanh(cache) ** 2)

    with pytest.raises(GradCheckInputError, match=r"backward_kwargs=\{'cache'"):
        check_layer(NoCache(), X)


# -- a learning rate held as an attribute (Practical_DL); gradient spellings; by shape ---------
from conventions_layers import (LeakyReLUHoldingAlpha, LeakyReLUHoldingAlphaBroken,  # noqa: E402
                                PracticalDLDense, PracticalDLDenseBroken, PracticalDLDenseInPlace,
                                PracticalDLDenseInPlaceBroken, ShapeOnlyDense,
                                FixedProjectionKeepsDx,
                                ShapeOnlyDenseBroken, SpelledDense, SpelledDenseBroken,
                                TwoSquareShapeOnly, TwoSquareShapeOnlyBroken,
                                MaskedDenseTwoNamed, FixedSquareProjection, SquareTanhDense,
                                SquareTanhDenseBroken, TraskLayer, TraskLayerBroken,
                                PrivateLayerNorm, PrivateLayerNormBroken, GenericGradDense,
                                GenericGradDenseBroken, LossAndProbs, LossAndProbsBroken)

PDL_X = np.random.default_rng(4).normal(size=(5, 3))


def _attr_arrays(layer):
    """The layer's attributes, arrays by identity and by value."""
    return {k: (id(v), v.copy()) if isinstance(v, np.ndarray) else (id(v), v)
            for k, v in vars(layer).items()}


def _attrs_unchanged(before, layer):
    after = _attr_arrays(layer)
    assert before.keys() == after.keys()
    for k, (ident, value) in before.items():
        assert after[k][0] == ident, k
        assert np.array_equal(after[k][1], value) if isinstance(value, np.ndarray) \
            else after[k][1] == value, k


@pytest.mark.parametrize("cls", [PracticalDLDense, PracticalDLDenseInPlace])
@pytest.mark.parametrize("sequence", [True, False])
def test_a_learning_rate_attribute_step_is_read_as_the_gradient(cls, sequence):
    """``self.learning_rate`` held, backward steps weights and biases with it: each
    gradient read from the step (rate set to 1, put back), the layer, x and dout as given."""
    layer, x, dout = cls(), PDL_X.copy(), RNG_DOUT.normal(size=(5, 2))
    before, given = _attr_arrays(layer), dout.copy()
    report = check_layer(layer, x, dout=dout, sequence=sequence)
    assert {r.name: r.verdict for r in report.results} == {
        "input": "PASS", "weights": "PASS", "biases": "PASS"}, str(report)
    assert report.passed, str(report)
    note = [f.message for f in report.findings if f.kind == "learning-rate"]
    assert len(note) == 1 and "holds learning_rate=0.1" in note[0], note
    assert "set to 1 around every backward call" in note[0] and "put back to 0.1" in note[0]
    _attrs_unchanged(before, layer)
    assert np.array_equal(x, PDL_X) and np.array_equal(dout, given)
    assert layer.learning_rate == 0.1 and type(layer.learning_rate) is float


@pytest.mark.parametrize("cls", [PracticalDLDenseBroken, PracticalDLDenseInPlaceBroken])
@pytest.mark.parametrize("sequence", [True, False])
def test_a_learning_rate_attribute_broken_twin_fails_on_weights(cls, sequence):
    report = check_layer(cls(), PDL_X, sequence=sequence)
    assert {r.name: r.verdict for r in report.results} == {
        "input": "PASS", "weights": "FAIL", "biases": "PASS"}, str(report)
    assert "backward-twice" not in {f.kind for f in report.findings}, str(report)


@pytest.mark.parametrize("cls, verdict", [(PracticalDLDense, "PASS"),
                                          (PracticalDLDenseBroken, "FAIL")])
def test_a_learning_rate_attribute_of_zero_is_set_for_the_check_and_said(cls, verdict):
    """A rate of 0 steps nothing, so nothing could be read: set to 1 for the check (a
    broken twin PASSed before), put back to 0, and the report says so."""
    layer = cls(learning_rate=0.0)
    report = check_layer(layer, PDL_X)
    assert report.result("weights").verdict == verdict, str(report)
    note = " ".join(f.message for f in report.findings if f.kind == "learning-rate")
    assert "holds learning_rate=0" in note and "it was 0: no step" in note, note
    assert layer.learning_rate == 0.0


def test_a_learning_rate_attribute_that_steps_nothing_is_left_alone():
    """An ELU's or leaky ReLU's ``self.alpha``: backward steps nothing with it, so it is
    never changed, the report says nothing of a rate, the broken twin FAILs."""
    layer = LeakyReLUHoldingAlpha()
    report = check_layer(layer, X)
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    assert "learning-rate" not in {f.kind for f in report.findings}
    assert layer.alpha == 0.2
    assert not check_layer(LeakyReLUHoldingAlphaBroken(), X).passed


def test_a_learning_rate_attribute_stepped_otherwise_fails_naming_it():
    """``self.weights -= self.learning_rate ** 2 * g``: no plain SGD step with the rate."""
    class Squared(PracticalDLDense):
        def backward(self, input, grad_output):
            grad_input = np.dot(grad_output, self.weights.T)
            self.weights -= self.learning_rate ** 2 * np.dot(input.T, grad_output)
            return grad_input

    report = check_layer(Squared(), PDL_X)
    found = [f for f in report.findings if f.kind == "backward-learning-rate"]
    assert found and found[0].failure and not report.passed, str(report)
    assert "self.learning_rate" in found[0].message and "weights" in found[0].message


def test_rate_held_puts_the_attribute_back_when_backward_raises():
    from gradcheck.protocol.update import rate_held

    layer = PracticalDLDense()
    with pytest.raises(ValueError):
        with rate_held(layer, "learning_rate", 1.0):
            assert layer.learning_rate == 1.0
            raise ValueError
    assert layer.learning_rate == 0.1


def test_gate_checks_a_learning_rate_attribute_layer(tmp_path, capsys):
    src = tmp_path / "pdl_layers.py"
    src.write_text(
        "import numpy as np\n"
        "from conventions_layers import PracticalDLDense, PracticalDLDenseBroken\n"
        "def make():\n"
        "    return PracticalDLDense(), np.random.default_rng(0).normal(size=(6, 3))\n"
        "def make_broken():\n"
        "    return PracticalDLDenseBroken(), np.random.default_rng(0).normal(size=(6, 3))\n")
    assert main([f"{src}:make", "-q"]) == 0
    capsys.readouterr()
    assert main([f"{src}:make_broken"]) == 1
    out = capsys.readouterr().out
    assert "weights" in out and "FAIL" in out, out


SPELLINGS = [("W", "W_gradient"), ("weights", "weights_gradient"), ("weight", "weight_gradient"),
             ("W", "gW"), ("W", "delta_W"), ("W", "W_delta"), ("W", "nabla_W"), ("W", "dL_dW"),
             ("W", "dJ_dW"), ("W", "dEdW"), ("W", "Wgrad"), ("W", "W_d")]


@pytest.mark.parametrize("pname, gname", SPELLINGS)
def test_gradient_spellings_are_found_and_a_wrong_one_fails(pname, gname):
    """Each spelling found (by the name rule; ``W_d`` by shape): the right gradient PASSes
    on x and the parameter, a 1.5x one FAILs on the parameter."""
    good = check_layer(SpelledDense(pname, gname), X, sequence=False)
    assert {r.name: r.verdict for r in good.results} == {"x": "PASS", pname: "PASS"}, str(good)
    bad = check_layer(SpelledDenseBroken(pname, gname), X, sequence=False)
    assert {r.name: r.verdict for r in bad.results} == {"x": "PASS", pname: "FAIL"}, str(bad)


def test_the_name_rule_has_the_new_spellings_and_not_the_short_suffixes():
    from gradcheck.protocol.discovery import grad_candidates

    names = grad_candidates("W")
    assert names[:6] == ["dW", "d_W", "W_grad", "grad_W", "dLdW", "gradW"]  # first as before
    for g in ("W_gradient", "gW", "delta_W", "W_delta", "nabla_W", "dL_dW", "dJ_dW", "dEdW",
              "Wgrad"):
        assert g in names
    assert "W_d" not in names and "W_g" not in names  # a decoder's, a gate's weights


def test_gradients_taken_by_shape_are_said_and_a_wrong_one_fails():
    layer = ShapeOnlyDense()
    before = _attr_arrays(layer)
    report = check_layer(layer, X)
    assert {r.name: r.verdict for r in report.results} == {
        "x": "PASS", "W": "PASS", "b": "PASS"}, str(report)
    notes = [f.message for f in report.findings if f.kind == "gradient-by-shape"]
    assert len(notes) == 2 and "so W_d was checked as its gradient" in notes[0], notes
    assert "name it dW, or pass params={'W': 'W_d'}" in notes[0]
    _attrs_unchanged(before, layer)
    bad = check_layer(ShapeOnlyDenseBroken(), X)
    assert {r.name: r.verdict for r in bad.results} == {
        "x": "PASS", "W": "FAIL", "b": "PASS"}, str(bad)


def test_arrays_holding_backward_s_dx_or_dout_are_never_a_gradient_by_shape():
    """A fixed square projection at a square input: the ``dx`` and the ``dout`` backward
    keeps have ``P``'s shape but are the input's gradient and the upstream one, so ``P``
    is not checked (listed, with the usual warning), never FAILed against them."""
    x = np.random.default_rng(1).normal(size=(3, 3))
    report = check_layer(FixedProjectionKeepsDx(), x)
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    assert not [f for f in report.findings if f.kind in ("gradient-by-shape",
                                                         "gradient-ambiguous")]
    assert "P: no gradient" in str(report)


def test_gradients_of_one_shape_are_told_apart_by_the_parameter_s_name_in_theirs():
    """``Wx``, ``Wh`` of one shape, backward writes ``Wx_d``, ``Wh_d``. This was a failing
    ``gradient-ambiguous`` finding while any array of the shape was a candidate; now an
    array is one only with the parameter's name in its own (``Wx_d`` holds the word
    ``Wx``, not ``Wh``), so each pairs with its own: checked, a wrong ``Wh_d`` FAILs on
    ``Wh`` alone."""
    report = check_layer(TwoSquareShapeOnly(), X)
    assert {r.name: r.verdict for r in report.results} == {
        "x": "PASS", "Wx": "PASS", "Wh": "PASS"}, str(report)
    notes = " ".join(" ".join(f.message.split()) for f in report.findings
                     if f.kind == "gradient-by-shape")
    assert "so Wx_d was checked as its gradient" in notes, notes
    assert "so Wh_d was checked as its gradient" in notes, notes
    bad = check_layer(TwoSquareShapeOnlyBroken(), X)
    assert {r.name: r.verdict for r in bad.results} == {
        "x": "PASS", "Wx": "PASS", "Wh": "FAIL"}, str(bad)


def test_several_arrays_named_like_a_parameter_fail_listing_them_and_naming_none():
    """``W_masked`` (a cache) and ``W_d`` (the gradient), both of W's shape and both with
    ``W`` in their names: the gradient is very likely among them, so never a PASS on x
    alone; the advice lists the candidates and names neither as the gradient."""
    report = check_layer(MaskedDenseTwoNamed(), X)
    assert not report.passed and [r.name for r in report.results] == ["x"], str(report)
    found = [f for f in report.findings if f.kind == "gradient-ambiguous"]
    assert len(found) == 1 and found[0].failure and found[0].target == "W", str(report)
    text = " ".join(found[0].message.split())
    assert "backward wrote W_masked, W_d of its shape, named like it" in text, text
    assert "params={'W': '<its gradient: one of W_masked, W_d>', ...}" in text, text
    assert "params={'W': 'W_masked'" not in text and "params={'W': 'W_d'" not in text
    named = check_layer(MaskedDenseTwoNamed(), X, params={"W": "W_d"})
    assert named.passed, str(named)


def test_an_array_of_a_parameter_s_shape_without_its_name_is_never_its_gradient():
    """A fixed square projection ``P`` whose backward keeps a ``dz`` cache of P's shape:
    ``P`` is not checked (listed, a non-failing warning naming ``dz`` as an array of its
    shape no name ties to it, the advice a placeholder), the layer PASSes on x."""
    x = np.random.default_rng(1).normal(size=(3, 3))
    report = check_layer(FixedSquareProjection(), x)
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    assert not [f for f in report.findings if f.kind in ("gradient-by-shape",
                                                         "gradient-ambiguous")]
    text = " ".join(str(report).split())
    assert "P: no gradient" in text, text
    assert ("backward wrote dz of P's shape (no name ties it to P): if it is P's gradient, "
            "name it: params={'P': '<name>'}") in text, text
    assert "params={'P': 'dz'}" not in text


@pytest.mark.parametrize("layer, verdict", [(SquareTanhDense, "PASS"),
                                            (SquareTanhDenseBroken, "FAIL")])
def test_the_array_named_like_a_parameter_is_taken_beside_caches_of_its_shape(layer, verdict):
    """``P_d`` beside the ``y`` and ``dz`` caches, all of P's shape (a square input): only
    ``P_d`` holds ``P``'s name, so it is P's gradient (1.5x wrong: FAIL); the caches are
    neither candidates nor said once P has its gradient."""
    x = np.random.default_rng(1).normal(size=(3, 3))
    report = check_layer(layer(), x)
    assert {r.name: r.verdict for r in report.results} == {"x": "PASS", "P": verdict}, \
        str(report)
    assert "gradient-ambiguous" not in {f.kind for f in report.findings}
    assert "no name ties" not in " ".join(str(report).split())


@pytest.mark.parametrize("batch, inputs", [(4, 4), (10, 4)])
def test_trask_s_layer_passes_whatever_the_batch(batch, inputs):
    """josefK128/synthgradients' ``Layer``: ``weight_output_delta`` (N, out) has the
    weights' shape (in, out) when N == in, and is not their gradient (``update`` makes it
    from it): never taken as it (no word ``weights`` in it: plurals are not folded), the
    weights listed not checked; the broken twin FAILs on x."""
    x = np.random.default_rng(3).normal(size=(batch, inputs))
    report = check_layer(TraskLayer(inputs, 3), x)
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    text = " ".join(str(report).split())
    assert "weights: no gradient" in text, text
    assert ("backward wrote weight_output_delta of weights' shape" in text) == (
        batch == inputs), text
    bad = check_layer(TraskLayerBroken(inputs, 3), x)
    assert {r.name: r.verdict for r in bad.results} == {"x": "FAIL"}, str(bad)


@pytest.mark.parametrize("layer, verdict", [(PrivateLayerNorm, "PASS"),
                                            (PrivateLayerNormBroken, "FAIL")])
def test_gradients_under_a_leading_underscore_pair_by_name(layer, verdict):
    """``_dgamma``, ``_dbeta`` of one shape: private spellings of the name rule, paired by
    name (before: both of the shape of both parameters, a failing ``gradient-ambiguous``
    finding on a correct LayerNorm); a 1.3x ``_dgamma`` FAILs on gamma alone."""
    x = np.random.default_rng(0).normal(size=(2, 3, 6))
    report = check_layer(layer(), x)
    assert {r.name: r.verdict for r in report.results} == {
        "x": "PASS", "gamma": verdict, "beta": "PASS"}, str(report)
    assert not [f for f in report.findings if f.kind.startswith("gradient-")], str(report)


@pytest.mark.parametrize("layer, verdict", [(GenericGradDense, "PASS"),
                                            (GenericGradDenseBroken, "FAIL")])
def test_a_gradient_named_grad_alone_is_the_one_parameter_of_its_shape_s(layer, verdict):
    """``self.grad`` names no parameter but says a gradient: taken for W, the only
    parameter of its shape without one (1.2x wrong: FAIL)."""
    report = check_layer(layer(), X)
    assert {r.name: r.verdict for r in report.results} == {"x": "PASS", "W": verdict}, \
        str(report)


def test_the_name_rule_s_private_spellings_and_the_name_ties():
    from gradcheck.protocol.discovery import grad_candidates, name_tokens, names_parameter

    names = grad_candidates("gamma")
    assert names[:6] == ["dgamma", "d_gamma", "gamma_grad", "grad_gamma", "dLdgamma",
                         "gradGamma"]
    for g in ("_dgamma", "_gamma_grad", "_grad_gamma", "_gradGamma"):
        assert g in names
    assert "_dW" in grad_candidates("_W") and "W_d" not in grad_candidates("W")
    assert name_tokens("Wx_d") == ["wx", "d"] and name_tokens("kernel2_g") == [
        "kernel", "2", "g"]
    assert names_parameter("W_d", "W") and names_parameter("d_W_tmp", "W")
    assert names_parameter("Wx_d", "Wx") and not names_parameter("Wx_d", "W")
    assert not names_parameter("weight_output_delta", "weights")
    assert names_parameter("W1_d", "W1") > names_parameter("W1_d", "W")
    assert names_parameter("dw", "W") > names_parameter("W_d", "W")  # dW ignoring case
    assert not names_parameter("dz", "P") and not names_parameter("Weff", "W")
    assert 0 < names_parameter("grad", "W") < names_parameter("W_d", "W")


def test_gate_exit_codes_for_gradient_spellings(tmp_path, capsys):
    """The ambiguous layer is now one with two arrays named like W (``W_masked``, ``W_d``):
    ``Wx_d``/``Wh_d`` pair by name since arrays without the parameter's name stopped
    being candidates."""
    src = tmp_path / "spelled.py"
    src.write_text(
        "import numpy as np\n"
        "from conventions_layers import (SpelledDense, SpelledDenseBroken,\n"
        "    MaskedDenseTwoNamed, TraskLayer, PrivateLayerNorm, PrivateLayerNormBroken,\n"
        "    FixedSquareProjection, TwoSquareShapeOnly, TwoSquareShapeOnlyBroken)\n"
        "X = np.random.default_rng(1).normal(size=(5, 3))\n"
        "S = np.random.default_rng(1).normal(size=(3, 3))\n"
        "N = np.random.default_rng(0).normal(size=(2, 3, 6))\n"
        "def make():\n    return SpelledDense('W', 'W_gradient'), X\n"
        "def make_broken():\n    return SpelledDenseBroken('W', 'W_gradient'), X\n"
        "def make_ambiguous():\n    return MaskedDenseTwoNamed(), X\n"
        "def make_two():\n    return TwoSquareShapeOnly(), S\n"
        "def make_two_broken():\n    return TwoSquareShapeOnlyBroken(), S\n"
        "def make_trask():\n    return TraskLayer(4, 3), np.ones((4, 4)) * 0.3\n"
        "def make_norm():\n    return PrivateLayerNorm(), N\n"
        "def make_norm_broken():\n    return PrivateLayerNormBroken(), N\n"
        "def make_fixed():\n    return FixedSquareProjection(), S\n")
    codes = {name: main([f"{src}:{name}", "-q"]) for name in (
        "make", "make_broken", "make_ambiguous", "make_two", "make_two_broken", "make_trask",
        "make_norm", "make_norm_broken", "make_fixed")}
    assert codes == {"make": 0, "make_broken": 1, "make_ambiguous": 1, "make_two": 0,
                     "make_two_broken": 1, "make_trask": 0, "make_norm": 0,
                     "make_norm_broken": 1, "make_fixed": 0}, codes
    capsys.readouterr()


class _HoldsConstant:
    """A sub-layer holding a constant of ``ShapeOnlyDense.W``'s shape, no gradient."""

    def __init__(self):
        self.K = np.ones((3, 2))

    def forward(self, x):
        return 2.0 * x

    def backward(self, dout):
        return 2.0 * dout


class _TwoBlocks:
    def __init__(self, first):
        self.blocks = [first, _HoldsConstant()]

    def forward(self, x):
        return self.blocks[1].forward(self.blocks[0].forward(x))

    def backward(self, dout):
        return self.blocks[0].backward(self.blocks[1].backward(dout))


@pytest.mark.parametrize("first, verdict", [(ShapeOnlyDense, "PASS"),
                                            (ShapeOnlyDenseBroken, "FAIL")])
def test_gradients_are_taken_by_shape_within_their_own_layer_only(first, verdict):
    """``blocks.0.W`` pairs with ``blocks.0.W_d``; ``blocks.1.K`` of that shape is no
    rival (another layer's) and gets no gradient of another layer's: a warning only."""
    report = check_layer(_TwoBlocks(first()), X)
    verdicts = {r.name: r.verdict for r in report.results}
    assert verdicts == {"x": "PASS", "blocks.0.W": verdict, "blocks.0.b": "PASS"}, str(report)
    assert "gradient-ambiguous" not in {f.kind for f in report.findings}, str(report)
    warned = [f.target for f in report.findings if f.kind == "no-gradient-found"]
    assert warned == ["blocks.1.K"], str(report)


# -- rates under other names and forms; a number forward reads is no rate; a step without rate --
from conventions_layers import (RATE_FORMS, ArrayRateDense, ConfigRateDense,  # noqa: E402
                                ConfigRateDenseBroken, EpyNNGradientsAndStep,
                                EpyNNGradientsNeedScale, EpyNNNumericalHelper,
                                LeakyReLUCountingSlope, LeakyReLUCountingSlopeBroken,
                                MaskedMulFunction,
                                MaskedMulFunctionBroken, UnknownRateDense,
                                UnknownRateDenseBroken)


@pytest.mark.parametrize("name, normalised", [
    ("learningRate", "learning_rate"), ("lr0", "lr"), ("base_lr", "lr"), ("initLR", "lr"),
    ("initial_learning_rate", "learning_rate"), ("LR", "lr"), ("stepSize", "step_size"),
    ("lr_decay", "lr_decay"), ("alpha", "alpha")])
def test_rate_names_are_normalised_before_they_are_matched(name, normalised):
    from gradcheck.protocol.update import rate_name

    assert rate_name(name) == normalised


@pytest.mark.parametrize("cls", RATE_FORMS)
@pytest.mark.parametrize("sequence", [True, False])
def test_a_rate_under_another_name_or_form_is_read_and_put_back_as_given(cls, sequence):
    """learningRate, lr0, base_lr, a 0-d array, config['learning_rate']: the step read as
    the gradient (the broken twin FAILs on W also with sequence=False), the rate put back
    as the same object."""
    layer = cls()
    held = {k: v for k, v in vars(layer).items()}
    rate = layer.rate()
    report = check_layer(layer, X, sequence=sequence)
    assert report.passed, str(report)
    assert {r.name for r in report.results} == {"x", "W", "b"}
    assert any(f.kind == "learning-rate" for f in report.findings), report.findings
    assert all(vars(layer)[k] is v for k, v in held.items())
    assert layer.rate() is rate or layer.rate() == rate
    broken = check_layer(type(cls.__name__ + "B", (cls,), {"wscale": 1.5})(), X,
                         sequence=sequence)
    assert broken.result("W").verdict == "FAIL", str(broken)


def test_a_0d_array_rate_is_set_as_a_0d_array_and_the_same_object_put_back():
    from gradcheck.protocol.update import rate_held

    layer = ArrayRateDense()
    given = layer.lr
    with rate_held(layer, "lr", 1.0):
        assert isinstance(layer.lr, np.ndarray) and layer.lr.ndim == 0 and layer.lr == 1.0
    assert layer.lr is given and given == 0.1


def test_a_rate_in_a_dict_attribute_is_found_and_put_back():
    from gradcheck.protocol.update import learning_rate_attribute

    layer = ConfigRateDense()
    assert learning_rate_attribute(layer) == "config['learning_rate']"
    config = layer.config
    check_layer(layer, X)
    assert layer.config is config and config == {"learning_rate": 0.1, "momentum": 0.0}
    text = " ".join(str(check_layer(ConfigRateDenseBroken(), X)).split())
    assert "config['learning_rate']" in text, text


def test_a_number_forward_reads_is_no_learning_rate():
    """A leaky ReLU's alpha, which backward also uses to update a statistic: never set to
    the check's rate (x PASSes), put back untouched."""
    layer = LeakyReLUCountingSlope()
    report = check_layer(layer, X)
    assert report.passed and [r.name for r in report.results] == ["x"], str(report)
    assert "learning-rate" not in {f.kind for f in report.findings}
    assert layer.alpha == 0.1 and np.all(layer.stats == 0)
    broken = check_layer(LeakyReLUCountingSlopeBroken(), X)
    assert broken.result("x").verdict == "FAIL", str(broken)


@pytest.mark.parametrize("cls", [UnknownRateDense, UnknownRateDenseBroken])
@pytest.mark.parametrize("sequence", [True, False])
def test_a_step_inside_backward_without_a_known_rate_fails_naming_it(cls, sequence):
    """``self.W = self.W - self.mu * g``: W and b are never reclassified as caches; a
    failing backward-steps finding names them and how to name the rate (no misleading
    backward-twice), the broken twin never PASSes silently."""
    report = check_layer(cls(), X, sequence=sequence)
    assert not report.passed
    kinds = {f.kind for f in report.findings}
    assert "backward-steps" in kinds and "backward-twice" not in kinds, str(report)
    text = " ".join(str(report).split())
    assert "backward steps W, b (an SGD step inside backward?): " in text, text
    assert "name its rate" in text
    from gradcheck.protocol.discovery import STEPPED_REASON
    reasons = dict(report.not_checked)
    assert reasons["W"] == STEPPED_REASON and reasons["b"] == STEPPED_REASON


def test_a_finite_difference_helper_is_never_called_as_the_gradient_method():
    EPYNN_CALLS.clear()
    report = check_layer(EpyNNNumericalHelper(), X)
    assert EPYNN_CALLS == [] and [r.name for r in report.results] == ["x"], str(report)
    assert gradient_methods(EpyNNNumericalHelper()) == []


def test_a_gradient_method_needing_arguments_is_warned_about():
    EPYNN_CALLS.clear()
    report = check_layer(EpyNNGradientsNeedScale(), X)
    assert EPYNN_CALLS == [] and [r.name for r in report.results] == ["x"]
    text = " ".join(" ".join(report.warnings).split())
    assert "compute_gradients(scale)" in text and "needs arguments" in text, text
    assert "cannot pass any" in text and "give them defaults" in text


def test_a_gradient_method_that_also_steps_is_undone_and_named():
    layer = EpyNNGradientsAndStep()
    w = layer.p['W'].copy()
    report = check_layer(layer, X)
    assert report.passed, str(report)
    text = " ".join(str(report).split())
    assert "compute_gradients() also changes p['W']" in text, text
    assert np.array_equal(layer.p['W'], w)


def test_an_autograd_none_gradient_means_not_differentiated():
    x, mask = X.copy(), np.random.default_rng(3).uniform(size=X.shape)
    given = mask.copy()
    for wrt in (None, ["x"]):
        report = check_function(MaskedMulFunction.forward, MaskedMulFunction.backward, x, mask,
                                wrt=wrt)
        assert report.passed and [r.name for r in report.results] == ["x"], str(report)
        assert dict(report.not_checked)["mask"].startswith("not differentiated: backward "
                                                           "returns None")
        bad = check_function(MaskedMulFunctionBroken.forward,
                             MaskedMulFunctionBroken.backward, x, mask, wrt=wrt)
        assert bad.result("x").verdict == "FAIL"
    assert np.array_equal(mask, given)
    with pytest.raises(LayerProtocolError, match=r"returns None for the gradient of 'mask'"):
        check_function(MaskedMulFunction.forward, MaskedMulFunction.backward, x, mask,
                       wrt=["mask"])


def test_a_none_for_a_floating_input_that_is_no_mask_is_an_error_not_a_pass():
    """``backward`` returning ``(dx, dw, None)`` beside a bias ``b`` (a forgotten gradient)
    is never "not differentiated": an error naming ``b`` unless wrt= leaves it out."""
    from gradcheck.errors import LayerProtocolError

    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)

    def forward(x, w, b):
        return x @ w + b, (x, w)

    def backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout, None

    with pytest.raises(LayerProtocolError, match=r"floating input 'b'"):
        check_function(forward, backward, x, w, b)
    report = check_function(forward, backward, x, w, b, wrt=["x", "w"])
    assert report.passed and [r.name for r in report.results] == ["x", "w"], str(report)


def test_gate_gradient_method_option_and_key(tmp_path, capsys, monkeypatch):
    """Several candidate methods, none called: the gate fails; --gradient-method and the
    gradient_method key name one."""
    src = tmp_path / "epy_two.py"
    src.write_text(
        "import numpy as np\n"
        "from conventions_layers import EpyNNDense\n"
        "class Two(EpyNNDense):\n"
        "    def calc_grads(self):\n"
        "        EpyNNDense.compute_gradients(self)\n"
        "        self.g['dW'] = 2 * self.g['dW']\n"
        "def make():\n"
        "    return Two(), np.random.default_rng(0).normal(size=(3, 3))\n")
    assert main([f"{src}:make"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "gradient-method-ambiguous" in out and "--gradient-method" in out, out
    assert main([f"{src}:make", "-q", "--gradient-method", "compute_gradients"]) == 0
    assert main([f"{src}:make", "-q", "--gradient-method", "calc_grads"]) == 1
    capsys.readouterr()
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.gradcheck]\ntargets = ["{src.name}:make"]\n'
        'gradient_method = "compute_gradients"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["-q"]) == 0


def test_a_decaying_rate_schedule_fails_the_sequence_check_with_the_schedule_hint():
    """``lr = self.base_lr / (1 + self.decay * self.t)``: the step-read gradient is scaled on
    the second call, which a counter in the gradient (a history bug) does alike from
    outside: a failure, never a note, whose message names the schedule as one cause; the
    pure check passes (sequence=False); the state is put back."""
    from conventions_layers import ScheduledRateDense, ScheduledRateDenseBroken

    layer = ScheduledRateDense()
    report = check_layer(layer, X)
    assert not report.passed, str(report)
    found = [f for f in report.findings if f.kind == "backward-history"]
    assert found and all(f.failure for f in found), report.findings
    assert "schedule" in " ".join(f.message for f in found)
    assert layer.t == 0 and layer.base_lr == 0.1
    assert check_layer(ScheduledRateDense(), X, sequence=False).passed
    broken = check_layer(ScheduledRateDenseBroken(), X, sequence=False)
    assert broken.result("W").verdict == "FAIL", str(broken)


@pytest.mark.parametrize("layer, verdict", [(LossAndProbs, "PASS"),
                                            (LossAndProbsBroken, "FAIL")])
def test_a_loss_returning_its_probabilities_beside_it_is_checked_on_the_loss(layer, verdict):
    """``forward(logits, labels) -> (loss, probs)``, ``backward(probs, labels)``: the check
    is of the loss (the two outputs were flattened together, ``shape (21,)``, before), and
    backward is given the probabilities forward returned; a missing ``1 / m`` FAILs."""
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(5, 4)), rng.integers(0, 4, size=5)
    report = check_layer(layer(), (logits, labels))
    assert {r.name: r.verdict for r in report.results} == {"logits": verdict}, str(report)
    assert "forward returns a scalar loss and 1 more output(s) ((5, 4))" in " ".join(
        str(report).split())


def test_a_loss_returning_two_arrays_says_what_forward_returned():
    class TwoArrays(LossAndProbs):
        def forward(self, logits, labels):
            return np.ones((5, 3)), logits

    rng = np.random.default_rng(0)
    with pytest.raises(LayerProtocolError, match=(
            r"forward returned a tuple of shapes \(5, 3\), \(5, 4\); .*or a scalar loss "
            r"first and its prediction \(of the input's shape \(5, 4\)\) after it")):
        check_layer(TwoArrays(), (rng.normal(size=(5, 4)), rng.integers(0, 4, size=5)))


@pytest.mark.parametrize("stepped", [False, True])
def test_a_cache_backward_recomputes_beside_its_dz_is_no_parameter(stepped):
    """``self.z = x @ W`` recomputed in backward beside ``self.dz``: created by backward on
    a fresh layer, rebound after a training step; never taken for a parameter (it crashed
    fresh, and FAILed after a step); the broken dW still FAILs."""
    from conventions_layers import RecomputedCache, RecomputedCacheBroken

    x = np.random.default_rng(1).normal(size=(4, 3))
    layers = []
    for cls in (RecomputedCache, RecomputedCacheBroken):
        layer = cls()
        if stepped:
            layer.forward(x)
            layer.backward(np.ones((4, 2)))
        layers.append(layer)
    good, bad = (check_layer(layer, x) for layer in layers)
    assert {r.name: r.verdict for r in good.results} == {"x": "PASS", "W": "PASS"}, str(good)
    assert "z: written by backward" in " ".join(str(good).split())
    assert {r.name: r.verdict for r in bad.results} == {"x": "PASS", "W": "FAIL"}, str(bad)


def test_a_zero_bias_backward_rebinds_is_still_a_parameter():
    """A defensive ``self.b = self.b.copy()`` in backward beside ``db``, ``b`` all zeros:
    checked (a wrong db FAILs), never dropped as a cache forward does not read."""
    from conventions_layers import CopiedZeroBias, CopiedZeroBiasBroken

    x = np.random.default_rng(1).normal(size=(4, 3))
    good, bad = check_layer(CopiedZeroBias(), x), check_layer(CopiedZeroBiasBroken(), x)
    assert {r.name: r.verdict for r in good.results} == {
        "x": "PASS", "W": "PASS", "b": "PASS"}, str(good)
    assert bad.result("b").verdict == "FAIL", str(bad)
