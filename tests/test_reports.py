"""Reports of the gate: JUnit XML (validated against tests/data/junit.xsd), JSON, progress."""

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from gradcheck import check_layer
from gradcheck.engine.strategies import expected_calls
from gradcheck.gate.run import CheckProgress, estimate_forward_calls, run_checks
from gradcheck.gate.targets import Case
from gradcheck.gate.cli import main
from gradcheck.gate.junit import junit_xml
from layers import Affine, BatchNormalization, Sequential, Tanh

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
XSD = Path(__file__).parent / "data" / "junit.xsd"


try:
    import xmlschema
except ImportError:  # a test-only dependency: pip install -e '.[test]'
    xmlschema = None


@pytest.fixture(scope="module")
def junit_schema():
    """Validates a JUnit document (a path or a string); without xmlschema, a no-op.

    ``test_the_schema_rejects_what_jenkins_would_reject`` is skipped then, so a
    missing validation shows in the summary.
    """
    if xmlschema is None:
        return type("NoValidation", (), {"validate": staticmethod(lambda doc: None)})()
    return xmlschema.XMLSchema(str(XSD))


def _cases(doc):
    return doc.findall("./testsuite/testcase")


def test_junit_of_a_failing_target(tmp_path, junit_schema):
    path = tmp_path / "junit.xml"
    assert main([f"{EXAMPLES / 'my_layers.py'}:make_broken_swish", "--train", "--eval", "-q",
                 "--junit-xml", str(path)]) == 1
    junit_schema.validate(str(path))
    doc = ET.parse(path).getroot()
    suite = doc.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "2", "0")
    names = [(c.get("classname"), c.get("name")) for c in _cases(doc)]
    label = f"{EXAMPLES / 'my_layers.py'}:make_broken_swish"
    assert names == [(label, "x (10, 6) train"), (label, "beta (10, 6) train"),
                     (label, "x (10, 6) eval"), (label, "beta (10, 6) eval")]
    failure = _cases(doc)[0].find("failure")
    assert re.match(r"target 'x' at index \(\d+, \d+\): numerical \S+, analytic \S+",
                    failure.get("message"))
    assert "margin" in failure.text and "worst (" in failure.text
    assert _cases(doc)[1].find("failure") is None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"method": "central", "seed": "0", "source": "target"}


def test_junit_of_the_builtin_suite_has_one_testcase_per_target(tmp_path, junit_schema):
    xml_path, json_path = tmp_path / "junit.xml", tmp_path / "report.json"
    assert main(["-q", "--eval", "--junit-xml", str(xml_path), "--json", str(json_path)]) == 0
    junit_schema.validate(str(xml_path))
    report = json.loads(json_path.read_text())
    doc = ET.parse(xml_path).getroot()
    assert len(_cases(doc)) == report["summary"]["targets"] == int(doc.get("tests"))
    assert doc.get("failures") == "0" and not doc.findall(".//failure")


class _Vacuous:
    """A constant output: every gradient is zero, so the check proves nothing."""

    def forward(self, x, train_flg=True):
        return np.ones_like(x)

    def backward(self, dout):
        return np.zeros_like(dout)


_CALLS = [0]


class _Restless:
    """Adds a global call counter: forward differs between identical calls."""

    def forward(self, x, train_flg=True):
        _CALLS[0] += 1
        return x * (1.0 + 1e-3 * _CALLS[0])

    def backward(self, dout):
        return dout


def test_junit_marks_vacuous_targets_skipped_and_loose_findings_as_cases(junit_schema):
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    outcomes = [("vacuous", check_layer(_Vacuous(), x), 0.01),
                ("restless", check_layer(_Restless(), x), 0.02)]
    assert outcomes[0][1].result("x").verdict == "INCONCLUSIVE" and not outcomes[1][1].passed
    text = junit_xml(outcomes)
    junit_schema.validate(text)
    doc = ET.fromstring(text)
    cases = {c.get("classname") + "/" + c.get("name"): c for c in _cases(doc)}
    assert "indistinguishable from zero" in cases["vacuous/x (2, 3) train"].find(
        "system-out").text
    selfcheck = cases["restless/self-checks (2, 3) train"].find("failure")
    assert selfcheck.get("type") == "forward-nondeterministic"
    # an INCONCLUSIVE target is skipped when its check passes, a failure when it fails it
    skipped = sum(r.verdict == "INCONCLUSIVE" and report.passed
                  for _, report, _ in outcomes for r in report.results)
    assert doc.find("testsuite").get("skipped") == str(skipped)
    assert cases["vacuous/x (2, 3) train"].find(
        "skipped" if outcomes[0][1].passed else "failure") is not None


@pytest.mark.skipif(xmlschema is None, reason="xmlschema is not installed: the JUnit reports "
                    "were not validated against tests/data/junit.xsd")
def test_the_schema_rejects_what_jenkins_would_reject(junit_schema):
    assert not junit_schema.is_valid("<testsuites><testsuite name='s' tests='1'>"
                                     "<testcase classname='c'/></testsuite></testsuites>")
    assert not junit_schema.is_valid("<testsuites><testsuite name='s' tests='-1'/>"
                                     "</testsuites>")


def test_json_document_and_its_documentation_agree(tmp_path):
    path = tmp_path / "report.json"
    assert main([f"{EXAMPLES / 'my_layers.py'}:make_broken_swish", "-q", "--json",
                 str(path)]) == 1
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1 and doc["passed"] is False
    assert doc["summary"] == {"checks": 1, "passed": 0, "failed": 1, "inconclusive": 0,
                              "targets": 2}
    assert doc["source"] == {"kind": "target",
                             "targets": [f"{EXAMPLES / 'my_layers.py'}:make_broken_swish"]}
    check = doc["checks"][0]
    assert check["results"][0]["verdict"] == "FAIL" and check["seconds"] > 0
    documented = (ROOT / "docs" / "report-format.md").read_text()
    keys = set(doc) | set(doc["summary"]) | set(check) | set(check["results"][0]) | set(
        doc["source"])
    missing = [k for k in sorted(keys) if f"`{k}`" not in documented]
    assert not missing, f"docs/report-format.md does not describe {missing}"


def _refuse_constant(name):
    raise ValueError(f"non-standard JSON literal {name}")


def test_json_document_is_strict_json_for_a_degenerate_check(tmp_path):
    """A layer whose gradient is zero is INCONCLUSIVE with an infinite
    ``relative_resolution``: it was written as the literal ``Infinity``, which
    ``JSON.parse`` rejects; it is the string ``"Infinity"`` (docs/report-format.md)."""
    (tmp_path / "zero_layer.py").write_text(
        "import numpy as np\n"
        "class Zero:\n"
        "    def forward(self, x): return 0.0 * x\n"
        "    def backward(self, dout): return 0.0 * dout\n"
        "def make_zero():\n"
        "    return Zero(), np.random.default_rng(0).normal(size=(3, 2))\n")
    path = tmp_path / "zero.json"
    assert main([f"{tmp_path / 'zero_layer.py'}:make_zero", "-q", "--json", str(path)]) == 1
    doc = json.loads(path.read_text(), parse_constant=_refuse_constant)
    result = doc["checks"][0]["results"][0]
    assert result["verdict"] == "INCONCLUSIVE"
    assert result["relative_resolution"] == "Infinity"
    assert float(result["relative_resolution"]) == np.inf


def test_strict_json_writes_every_non_finite_float_as_a_string():
    from gradcheck.gate.run import strict_json

    doc = strict_json({"a": [np.inf, -np.inf, np.nan, 1.5], "b": {"c": np.float32("nan")}})
    assert doc == {"a": ["Infinity", "-Infinity", "NaN", 1.5], "b": {"c": "NaN"}}
    json.loads(json.dumps(doc, allow_nan=False), parse_constant=_refuse_constant)


@pytest.mark.parametrize("option", ["--json", "--junit-xml"])
def test_unwritable_report_path_exits_2(tmp_path, capsys, option):
    target = f"{EXAMPLES / 'my_layers.py'}:make_swish"
    assert main([target, "-q", option, str(tmp_path / "no" / "such" / "dir.out")]) == 2
    assert f"{option} " in capsys.readouterr().err


# -- the progress display ----------------------------------------------------------

def _terminal():
    buf = io.StringIO()
    return buf, Console(file=buf, force_terminal=True, width=120)


def test_progress_counts_every_forward_call_and_leaves_the_layer_alone():
    _, console = _terminal()
    rng = np.random.default_rng(0)
    bn = BatchNormalization(np.ones(4), np.zeros(4))
    x = rng.normal(size=(6, 4))
    with CheckProgress(console, 1, enabled=True, delay=0.0) as progress:
        with progress.check("bn", bn, x, "central"):
            report = check_layer(bn, x)
    assert progress.last_calls == report.forward_calls + report.discovery_calls[0]
    assert "forward" not in vars(bn)  # the counting wrapper is gone
    assert report.passed


def test_progress_is_drawn_on_a_terminal(capsys):
    buf, console = _terminal()
    rng = np.random.default_rng(1)
    cases = [Case("affine-progress", lambda: (Affine(rng.normal(size=(4, 3)), np.zeros(3)),
                                              rng.normal(size=(5, 4))), True)]
    run_checks(cases, {"method": "central"}, console=Console(file=io.StringIO()),
               progress_console=console, progress_delay=0.0)
    drawn = buf.getvalue()
    assert "affine-progress" in drawn and "forward calls" in drawn and "checks" in drawn
    assert capsys.readouterr().out == ""  # nothing of it on stdout


@pytest.mark.parametrize("terminal, quiet", [(False, False), (True, True)])
def test_progress_is_off_when_not_a_terminal_or_quiet(terminal, quiet):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal)
    cases = [Case("tanh", lambda: (Tanh(), np.linspace(-1, 1, 8).reshape(2, 4)), True)]
    reports = run_checks(cases, {}, console=Console(file=io.StringIO()),
                         progress_console=console, quiet=quiet, progress_delay=0.0)
    assert buf.getvalue() == "" and reports[0][1].passed


def test_forward_call_estimate_counts_x_and_parameters():
    rng = np.random.default_rng(2)
    affine = Affine(rng.normal(size=(4, 3)), np.zeros(3))
    x = rng.normal(size=(5, 4))
    assert estimate_forward_calls(affine, x, "central") == expected_calls("central",
                                                                          [20, 12, 3])
    assert expected_calls("central", [20]) > 2 * 20
    net = Sequential(Affine(rng.normal(size=(4, 3)), np.zeros(3)), Tanh())
    estimate = estimate_forward_calls(net, x, "central")
    assert estimate >= 2 * (20 + 12 + 3)
    assert abs(check_layer(net, x, sequence=False).forward_calls - estimate) <= 0.2 * estimate


def test_a_small_mismatch_gets_the_hint_of_a_slightly_different_function():
    """The book's loss: ``log(y + 1e-7)`` in forward, ``y - t`` in backward (the gradient
    without the epsilon): a real, tiny mismatch, told apart from a wrong term."""
    from gradcheck import check_layer

    class LogPlusEps:
        def forward(self, x):
            self.x = x
            return np.log(x + 1e-7)

        def backward(self, dout):
            return dout / self.x

    class WrongTerm(LogPlusEps):
        def backward(self, dout):
            return dout / (self.x + self.x ** 2)

    x = np.random.default_rng(0).uniform(0.1, 1.0, size=(4, 3))
    small = " ".join(str(check_layer(LogPlusEps(), x)).split())
    assert "FAIL" in small and "hint: the mismatch is small" in small and "1e-7" in small
    big = " ".join(str(check_layer(WrongTerm(), x)).split())
    assert "hint: the worst index and both values point at the wrong term" in big


class _ScaledDense:
    """A dense layer whose backward is right up to a constant factor in one target."""

    def __init__(self, fault):
        rng = np.random.default_rng(0)
        self.W, self.b, self.fault = rng.normal(size=(5, 3)), rng.normal(size=3), fault

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        n = self.x.shape[0]
        self.dW = self.x.T @ dout / (n if self.fault == "mean" else 1)
        self.db = dout.sum(axis=0) * (2.0 if self.fault == "twice" else 1.0)
        return dout @ self.W.T * (-1.0 if self.fault == "sign" else 1.0)


@pytest.mark.parametrize("fault, target, says", [
    ("mean", "W", "1/N, N = 4 the batch size"), ("twice", "b", "2: counted twice"),
    ("sign", "x", "-1: the sign flipped")])
def test_a_gradient_off_by_a_constant_factor_gets_the_factor_hint(fault, target, says):
    """``analytic = c * numerical`` at every element: the hint names the factor (the batch
    size's inverse for a mean in backward where forward sums) instead of a wrong term."""
    from gradcheck.render import constant_factor

    report = check_layer(_ScaledDense(fault), np.random.default_rng(1).normal(size=(4, 5)))
    text = " ".join(str(report).split())
    assert report.result(target).verdict == "FAIL"
    assert f"hint: {target}'s analytic gradient is a constant" in text and says in text
    assert "point at the wrong term" not in text
    assert [r.name for r in report.results if constant_factor(r) is not None] == [target]


def test_a_factor_beside_another_error_is_no_constant_factor():
    """A ReLU whose backward halves the gradient AND uses a wrong threshold: the live
    units are off by 1/2, the dead ones (numerical 0) get a nonzero gradient: no hint
    that the formula is right up to a factor."""
    from gradcheck.render import constant_factor

    class HalvedShifted:
        def forward(self, x):
            self.x = x
            return np.maximum(x, 0)

        def backward(self, dout):
            return 0.5 * dout * (self.x > -0.5)

    x = np.random.default_rng(3).normal(size=(6, 5))
    x[np.abs(x) < 0.05] = 0.3  # no element near the kink
    report = check_layer(HalvedShifted(), x)
    assert report.result("x").verdict == "FAIL" and constant_factor(report.result("x")) is None
    assert "is a constant" not in " ".join(str(report).split())


def test_a_wrong_term_is_no_constant_factor():
    """A backward wrong by a term that varies over the elements gets no factor hint."""
    from gradcheck.render import constant_factor

    class Wrong(_ScaledDense):
        def backward(self, dout):
            dx = super().backward(dout)
            self.dW = self.dW + 0.1 * self.W ** 2
            return dx

    report = check_layer(Wrong(None), np.random.default_rng(1).normal(size=(4, 5)))
    assert report.result("W").verdict == "FAIL" and constant_factor(report.result("W")) is None
    assert "point at the wrong term" in " ".join(str(report).split())


def test_the_title_names_the_input_dtype_and_the_dtype_checked_in():
    """A float32 input of a layer whose float64 weights make it compute in float64: the
    title says both, not only the dtype checked in."""
    from gradcheck import check_layer
    from gradcheck.render import title

    class Dense:
        def __init__(self):
            self.W = np.random.default_rng(0).normal(size=(4, 3))

        def forward(self, x):
            self.x = x
            return x @ self.W

        def backward(self, dout):
            self.dW = self.x.T @ dout
            return dout @ self.W.T

    x = np.random.default_rng(1).normal(size=(5, 4))
    assert " float32 as float64 " in title(check_layer(Dense(), x.astype(np.float32)))
    assert " float64 train" in title(check_layer(Dense(), x))


class _Scale:
    """``2 x``, no train/eval switch."""

    def forward(self, x):
        return 2.0 * x

    def backward(self, dout):
        return 2.0 * dout


def test_the_title_of_an_integer_input_names_its_dtype():
    from gradcheck.render import title

    assert " int64 as float64 " in title(check_layer(_Scale(), np.arange(12).reshape(4, 3)))


def test_the_title_of_a_layer_checked_in_its_one_mode_does_not_say_eval():
    """``train_flg=False`` asked of a layer with no train/eval switch: the title says
    ``one-mode`` (the warning says why), not ``eval``."""
    from gradcheck.render import title

    x = np.random.default_rng(1).normal(size=(3, 4))
    report = check_layer(_Scale(), x, train_flg=False)
    assert " one-mode: PASS" in title(report) and report.mode == "one-mode"
    assert "mode-switch" in {f.kind for f in report.findings}
    assert title(check_layer(_Scale(), x)).endswith("train: PASS")
