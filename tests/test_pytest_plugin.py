"""The pytest plugin, run as a user runs it: ``pytester`` builds test files and runs pytest."""

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck import GradCheckInputError, GradientCheckError, assert_gradients
from gradcheck.validate import METHODS

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]


def _entry_point_installed():
    eps = importlib.metadata.entry_points(group="pytest11")
    return any(ep.name == "gradcheck" and ep.value == "gradcheck.testing.pytest_plugin" for ep in eps)


# When gradcheck is installed, pytest loads the plugin through its entry point;
# from a bare checkout, name it (giving both would register it twice).
PLUGIN = [] if _entry_point_installed() else ["-p", "gradcheck.testing.pytest_plugin"]

PASSING = '''
import numpy as np
import pytest
from gradcheck import assert_gradients
from layers import Affine, BatchNormalization

@pytest.mark.gradcheck
def test_batchnorm_train():
    rng = np.random.default_rng(0)
    bn = BatchNormalization(rng.uniform(0.5, 1.5, 4), rng.normal(size=4))
    assert_gradients(bn, rng.normal(size=(6, 4)))

@pytest.mark.gradcheck
def test_batchnorm_eval():
    rng = np.random.default_rng(1)
    bn = BatchNormalization(np.ones(3), np.zeros(3), running_mean=np.zeros(3),
                            running_var=np.ones(3))
    assert_gradients(bn, rng.normal(size=(5, 3)), train_flg=False)

def test_affine_with_the_fixture(assert_gradients):
    rng = np.random.default_rng(2)
    report = assert_gradients(Affine(rng.normal(size=(4, 3)), np.zeros(3)),
                              rng.normal(size=(5, 4)))
    assert [r.name for r in report.results] == ["x", "W", "b"]
'''

FAILING = '''
import numpy as np
import pytest
from gradcheck import assert_gradients

class BrokenSquare:
    """out = x**2 with a backward that forgets the factor 2."""
    def forward(self, x, train_flg=True):
        self.x = x
        return x * x
    def backward(self, dout):
        return dout * self.x

@pytest.mark.gradcheck
def test_broken_square():
    x = np.linspace(0.5, 2.0, 6).reshape(2, 3)
    assert_gradients(BrokenSquare(), x, dout=np.ones_like(x))
'''

OPTIONS = """
import numpy as np
import pytest
from gradcheck import assert_gradients
from layers import Tanh

X = np.random.default_rng(0).normal(size=(3, 4))
CLI = {cli!r}  # the --gradcheck-* options of the run

def test_command_line_wins_over_the_call(gradcheck_options):
    report = assert_gradients(Tanh(), X, method="central", seed=0)
    assert (report.method, report.seed) == (CLI.get("method", "central"), CLI.get("seed", 0))
    assert gradcheck_options == CLI

@pytest.mark.gradcheck(method="central4", atol=1e-6)
def test_marker_gives_defaults(assert_gradients, gradcheck_options):
    report = assert_gradients(Tanh(), X)
    assert report.method == CLI.get("method", "central4")
    assert report.results[0].atol == CLI.get("atol", 1e-6)
    assert gradcheck_options == {{"method": "central4", "atol": 1e-6, **CLI}}
"""


@pytest.fixture
def gate_pytester(pytester, monkeypatch):
    """A pytester whose runs find ``gradcheck`` and ``layers`` (in- and out-of-process)."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    return pytester


def test_passing_file_passes(gate_pytester):
    gate_pytester.makepyfile(test_pass=PASSING)
    result = gate_pytester.runpytest(*PLUGIN, "--strict-markers")
    result.assert_outcomes(passed=3)


def test_failing_file_shows_the_table(gate_pytester):
    gate_pytester.makepyfile(test_fail=FAILING)
    result = gate_pytester.runpytest(*PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*GradientCheckError: gradient check failed: BrokenSquare (2, 3) float64, train mode*",
        "*target 'x' at index (*): numerical *, analytic * (FAIL: error *",
        "*target*shape*margin*verdict*",
        "*x*2x3*FAIL*",
        "*margin = error / tolerance at the worst element*",
        "*method=central*seed=0*",
        "*x: FAIL, worst (*): numerical *, analytic *; error *",
    ])
    # the traceback ends at the user's call, not inside gradcheck
    assert "__tracebackhide__" not in result.stdout.str()
    assert "assertions.py" not in result.stdout.str()


def test_command_line_options_apply_to_every_call(gate_pytester):
    gate_pytester.makepyfile(test_opts=OPTIONS.format(cli={"method": "richardson", "seed": 3}))
    result = gate_pytester.runpytest(*PLUGIN, "--gradcheck-method", "richardson",
                                     "--gradcheck-seed=3")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["gradcheck: method=richardson seed=3 for every "
                                 "assert_gradients call"])


def test_marker_options_are_defaults_without_command_line(gate_pytester):
    gate_pytester.makepyfile(test_opts=OPTIONS.format(cli={}))
    result = gate_pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=2)
    assert "gradcheck:" not in result.stdout.str()


@pytest.mark.parametrize("option, value, message", [
    ("--gradcheck-method", "bogus", f"expected one of {', '.join(METHODS)}; got 'bogus'"),
    ("--gradcheck-seed", "-1", "expected an integer >= 0"),
    ("--gradcheck-seed", "1.5", "expected an integer >= 0"),
    ("--gradcheck-atol", "-1e-3", "expected a finite number >= 0"),
    ("--gradcheck-rtol", "nan", "expected a finite number >= 0"),
    ("--gradcheck-rtol", "tight", "expected a number >= 0"),
])
def test_bad_option_values_are_usage_errors(gate_pytester, option, value, message):
    gate_pytester.makepyfile(test_pass=PASSING)
    result = gate_pytester.runpytest(*PLUGIN, f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*argument {option}: {message}*"])
    assert "passed" not in result.stdout.str()


def test_options_are_one_group_in_help(gate_pytester):
    result = gate_pytester.runpytest(*PLUGIN, "--help")
    text = result.stdout.str()
    group = text[text.index("gradient checks (gradcheck.assert_gradients):"):]
    group = group[:group.index("\n\n")]
    for name in ("method", "seed", "atol", "rtol"):
        assert f"--gradcheck-{name}" in group


@pytest.mark.parametrize("marker, message", [
    ('"richardson"', "@pytest.mark.gradcheck takes keyword arguments only, the defaults of "
     "assert_gradients (method=, strategy=, atol=, rtol=, seed=, eps=, * any keyword of "
     "check_layer); got the positional argument(s) 'richardson'*"),
    # methd= surfaced as a raw TypeError of check_layer when the test called the fixture
    ('methd="richardson"', "@pytest.mark.gradcheck got the unknown keyword 'methd' (did you "
     "mean 'method'?); it takes the keywords of check_layer: train_flg, *"),
])
def test_a_marker_argument_check_layer_does_not_take_errors_at_setup(gate_pytester, marker,
                                                                      message):
    gate_pytester.makepyfile(test_marker=f'''
import numpy as np
import pytest
from layers import Tanh

@pytest.mark.gradcheck({marker})
def test_marked(assert_gradients):
    assert_gradients(Tanh(), np.ones((2, 3)))
''')
    result = gate_pytester.runpytest(*PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"test_marker.py::test_marked: {message}"])
    assert "pytest_plugin.py" not in result.stdout.str()
    assert "unexpected keyword" not in result.stdout.str()


def test_marker_is_registered_and_selects(gate_pytester):
    gate_pytester.makepyfile(test_pass=PASSING)
    result = gate_pytester.runpytest(*PLUGIN, "--strict-markers", "-m", "gradcheck")
    result.assert_outcomes(passed=2, deselected=1)
    result = gate_pytester.runpytest(*PLUGIN, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gradcheck(**options): a gradient test*"])


@pytest.mark.parametrize("profile", ["gradcheck-ci", "gradcheck-dev"])
def test_hypothesis_profiles_are_registered(gate_pytester, profile):
    hypothesis = pytest.importorskip("hypothesis")
    gate_pytester.makepyfile(test_profile='''
from hypothesis import given, settings, strategies as st

def test_profile(request):
    s = settings()
    name = request.config.getoption("hypothesis_profile")
    if name == "gradcheck-ci":
        assert s.derandomize and s.max_examples == 25 and s.deadline is None
    else:
        assert not s.derandomize and s.max_examples == 200 and s.deadline is None
''')
    outer = hypothesis.settings.get_current_profile_name()
    try:
        result = gate_pytester.runpytest(*PLUGIN, "--hypothesis-profile", profile)
    finally:  # loading a profile changes hypothesis's global settings: put ours back
        hypothesis.settings.load_profile(outer)
    result.assert_outcomes(passed=1)


def _verdicts(result):
    return sorted(re.findall(r"^(PASSED|FAILED) (\S+)", result.stdout.str(), re.MULTILINE))


def test_xdist_gives_the_same_verdicts(gate_pytester):
    pytest.importorskip("xdist")
    gate_pytester.makepyfile(test_pass=PASSING, test_fail=FAILING,
                             test_opts=OPTIONS.format(cli={"method": "richardson",
                                                                        "seed": 3}))
    args = [*PLUGIN, "-rA", "--gradcheck-method=richardson", "--gradcheck-seed=3"]
    serial = gate_pytester.runpytest_subprocess(*args, "-p", "no:xdist")
    parallel = gate_pytester.runpytest_subprocess(*args, "-n", "2")
    assert "2 workers" in parallel.stdout.str()
    assert _verdicts(serial) == _verdicts(parallel)
    assert len(_verdicts(serial)) == 6
    parallel.assert_outcomes(passed=5, failed=1)
    parallel.stdout.fnmatch_lines(["*target 'x' at index (*): numerical *, analytic *"])


@pytest.mark.skipif(not _entry_point_installed(), reason="gradcheck is not installed (no "
                    "pytest11 entry point); pip install -e '.[test]'")
def test_entry_point_loads_the_plugin(gate_pytester):
    gate_pytester.makepyfile(test_pass=PASSING)
    result = gate_pytester.runpytest_subprocess("--strict-markers", "--gradcheck-seed=1")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["gradcheck: seed=1 for every assert_gradients call"])


# -- assert_gradients as a plain function ------------------------------------------

class _Square:
    def forward(self, x, train_flg=True):
        self.x = x
        return x * x

    def backward(self, dout):
        return 2.0 * dout * self.x


class _BrokenSquare(_Square):
    def backward(self, dout):
        return dout * self.x


X = np.linspace(0.5, 2.0, 6).reshape(2, 3)


def test_assert_gradients_is_public():
    assert "assert_gradients" in gradcheck.__all__
    assert gradcheck.assert_gradients is assert_gradients


def test_assert_gradients_returns_the_report():
    report = assert_gradients(_Square(), X, method="richardson", seed=4)
    assert report.passed and report.method == "richardson" and report.seed == 4


def test_assert_gradients_raises_an_assertion_error_with_the_table():
    with pytest.raises(GradientCheckError) as info:
        assert_gradients(_BrokenSquare(), X, dout=np.ones_like(X))
    assert isinstance(info.value, AssertionError)
    assert info.value.report.passed is False
    text = str(info.value)
    assert re.search(r"target 'x' at index \(\d, \d\): numerical [\d.]+, analytic [\d.]+", text)
    assert "margin" in text and re.search(r"worst \(\d, \d\)", text) and "FAIL" in text and "hint:" in text


def test_assert_gradients_rejects_bad_options():
    with pytest.raises(GradCheckInputError, match="method must be one of"):
        assert_gradients(_Square(), X, method="bogus")


def test_import_gradcheck_imports_neither_pytest_nor_rich():
    code = ("import sys, gradcheck; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pytest', '_pytest', 'rich', 'hypothesis', 'matplotlib', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
