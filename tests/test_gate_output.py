"""What the gate prints: the table at 80 and 200 columns, the summary, annotations, --list."""

import inspect
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check_layer
from gradcheck.gate.annotations import command, github_annotations
from gradcheck.gate.cli import main
from gradcheck.render import COLUMNS, num, report_text

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

VACUOUS = textwrap.dedent('''
    import numpy as np

    class Constant:
        """Every gradient is identically zero: the check cannot catch anything."""
        def forward(self, x, train_flg=True):
            return np.ones_like(x)
        def backward(self, dout):
            return np.zeros_like(dout)

    def make_constant():
        return Constant(), np.linspace(-1.0, 1.0, 6).reshape(2, 3)
''')

VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project whose configuration lists a passing, a failing and an inconclusive layer."""
    shutil.copy(EXAMPLES / "my_layers.py", tmp_path / "my_layers.py")
    (tmp_path / "constant.py").write_text(VACUOUS)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gradcheck]\ntargets = ["my_layers.py:make_swish", '
        '"my_layers.py:make_broken_swish", "constant.py:make_constant"]\n'
        'modes = ["train", "eval"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the test imports the project's my_layers too
    return tmp_path


def _run(argv, capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    status = main([*argv, "--json", "out.json"])
    return status, capsys.readouterr().out, json.loads(Path("out.json").read_text())


def _table(out):
    """The header line and the rows of the printed table."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    end = next(i for i, line in enumerate(lines) if line.startswith("margin ="))
    return lines[rule - 1], lines[rule + 1:end]


@pytest.mark.parametrize("columns", [80, 200])
def test_every_verdict_and_margin_is_whole(project, capsys, monkeypatch, columns):
    status, out, doc = _run([], capsys, monkeypatch, columns)
    assert status == 1  # a FAIL
    assert all(len(line) <= columns for line in out.splitlines())
    header, rows = _table(out)
    results = [(c["label"] + " " + c["mode"], r) for c in doc["checks"] for r in c["results"]]
    assert len(rows) == len(results) == doc["summary"]["targets"]
    names = header.split()
    assert names[:5] == ["case", "target", "shape", "margin", "verdict"]
    for row, (case, r) in zip(rows, results):
        assert row.startswith(case)
        cells = row[len(case):].split()
        assert cells[0] == r["name"] and cells[3] == r["verdict"] in VERDICTS
        assert cells[2] == num(r["margin"])  # the number, never cut
        assert math.isclose(float(cells[2]), r["margin"], rel_tol=0.05) or r["margin"] == 0
    assert {r["verdict"] for _, r in results} == set(VERDICTS)
    if columns >= 120:  # wider: the error and the tolerance whose ratio is the margin
        assert names[5:9] == ["error", "tolerance", "atol", "rtol"]
    else:
        assert len(names) <= 6


def test_verbose_adds_the_diagnostic_columns_when_they_fit(project, capsys, monkeypatch):
    _, out, _ = _run(["-v"], capsys, monkeypatch, 200)
    header, _ = _table(out)
    for name in ("worst index", "numerical", "analytic", "step", "noise", "resolution"):
        assert name in header
    _, out, _ = _run(["-v"], capsys, monkeypatch, 80)
    header, _ = _table(out)
    assert "resolution" not in header and "worst (" in out  # the details say it instead


def test_summary_counts_passed_failed_and_inconclusive(project, capsys, monkeypatch):
    status, out, doc = _run(["-q"], capsys, monkeypatch, 100)
    assert doc["summary"] == {"checks": 6, "passed": 2, "failed": 2, "inconclusive": 2,
                              "targets": 10}
    assert out.strip() == out.strip().splitlines()[-1]  # --quiet: the summary line only
    assert re.fullmatch(r"gradcheck: 6 checks \(10 targets\): 2 passed, 2 failed, "
                        r"2 inconclusive \(\d+\.\d s\)", out.strip())
    assert status == 1


def test_inconclusive_alone_follows_report_passed(project, capsys, monkeypatch):
    status, out, doc = _run(["constant.py:make_constant"], capsys, monkeypatch, 100)
    assert doc["summary"]["inconclusive"] == 1 and doc["summary"]["passed"] == 0
    assert "1 inconclusive" in out
    assert status == (0 if doc["passed"] else 1)


def test_str_report_has_the_gates_columns_in_the_gates_order():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from my_layers import make_broken_swish
    finally:
        sys.path.remove(str(EXAMPLES))
    report = check_layer(*make_broken_swish())
    for width in (80, 200):
        text = report_text(report, width)
        assert all(len(line) <= width for line in text.splitlines())
        header = next(line for line in text.splitlines() if line.startswith("target"))
        shown = [c.header for c in COLUMNS if c.header in header]
        assert header.split() == " ".join(shown).split()
        assert shown[:4] == ["target", "shape", "margin", "verdict"]


def test_nan_fields_render_as_not_available():
    report = check_layer(type("Twice", (), {"forward": lambda s, x: 2 * x,
                                            "backward": lambda s, d: 2 * d})(),
                         np.linspace(1, 2, 4).reshape(2, 2))
    r = replace(report.results[0], noise=float("nan"), resolution=float("nan"),
                margin=float("nan"))
    text = report_text(replace(report, results=(r,)), 200)
    row = next(line for line in text.splitlines() if line.startswith("x "))
    assert "PASS" in row and row.split().count("n/a") == 3


def test_piped_output_honours_columns_and_no_color():
    env = dict(os.environ, COLUMNS="79", FORCE_COLOR="1")
    argv = [sys.executable, "-m", "gradcheck", "Tanh"]
    colored = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    plain = subprocess.run([*argv, "--no-color"], cwd=ROOT, env=env, capture_output=True,
                           text=True)
    assert colored.returncode == plain.returncode == 0, plain.stderr
    assert re.search(r"\x1b\[[0-9;]*32m", colored.stdout)  # green PASS when forced
    assert not re.search(r"\x1b\[[0-9;]*3\dm", plain.stdout)
    assert _longest(plain.stdout) <= 79
    env.pop("COLUMNS")
    wide = subprocess.run([*argv, "--no-color"], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert 80 < _longest(wide.stdout) <= 120


def _longest(text):
    return max(len(re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in text.splitlines())


# -- GitHub annotations ---------------------------------------------------------------

WORKFLOW_COMMAND = re.compile(r"^::(error|warning|notice) file=([^,:]+),line=(\d+)"
                              r"(?:,title=([^:]*))?::(.+)$")


def test_github_annotations_point_at_the_failing_backward(project, capsys, monkeypatch):
    from my_layers import BrokenSwish  # the project's copy, imported by the gate too

    status, out, _ = _run(["my_layers.py:make_broken_swish", "--format", "github"], capsys,
                          monkeypatch, 100)
    assert status == 1
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert len(annotations) == 1
    level, path, line, title, message = WORKFLOW_COMMAND.match(annotations[0]).groups()
    assert (level, path) == ("error", "my_layers.py")
    assert int(line) == inspect.getsourcelines(BrokenSwish.backward)[1]
    assert "'x'" in title and "FAIL" in message and re.search(r"at index \(\d+, \d+\)", message)
    assert "%0A" not in message and "\n" not in message


def test_inconclusive_and_passing_targets_are_not_errors(project, capsys, monkeypatch):
    _, out, doc = _run(["constant.py:make_constant", "--format", "github"], capsys,
                       monkeypatch, 100)
    (annotation,) = [line for line in out.splitlines() if line.startswith("::")]
    level, path, line, _, message = WORKFLOW_COMMAND.match(annotation).groups()
    assert level == ("warning" if doc["passed"] else "error")
    backward = VACUOUS.splitlines().index("    def backward(self, dout):") + 1
    assert path == "constant.py" and int(line) == backward and "INCONCLUSIVE" in message
    _, out, _ = _run(["my_layers.py:make_swish", "--format", "github"], capsys,
                     monkeypatch, 100)
    assert "::" not in out


def test_workflow_commands_escape_their_data(tmp_path):
    from gradcheck.gate.annotations import SourceLine

    line = command("error", SourceLine(str(tmp_path / "a,b:c.py"), 3), "t: x, y",
                   "50% off\nnext line", root=tmp_path)
    assert line == "::error file=a%2Cb%3Ac.py,line=3,title=t%3A x%2C y::50%25 off%0Anext line"


def test_annotations_of_a_failing_finding_point_at_forward():
    calls = [0]

    class Restless:
        def forward(self, x, train_flg=True):
            calls[0] += 1
            return x * (1.0 + 1e-3 * calls[0])

        def backward(self, dout):
            return dout

    from gradcheck.gate.annotations import source_of
    from gradcheck.gate.run import Outcome

    layer = Restless()
    report = check_layer(layer, np.linspace(1, 2, 4).reshape(2, 2))
    lines = github_annotations([Outcome("restless", report, 0.0, source_of(layer))], root=ROOT)
    found = [WORKFLOW_COMMAND.match(line).groups() for line in lines]
    kinds = {title.split()[-1]: int(line) for _, _, line, title, _ in found}
    assert kinds["forward-nondeterministic"] == inspect.getsourcelines(Restless.forward)[1]
    assert all(path == "tests/test_gate_output.py" for _, path, _, _, _ in found)


# -- the command line ------------------------------------------------------------------

def test_one_builtin_case_by_name(capsys):
    assert main(["BatchNormalization-2d", "--eval", "-q", "--json", os.devnull]) == 0
    out = capsys.readouterr().out
    assert "3 checks (9 targets): 3 passed" in out  # three shapes, eval only


def test_list_names_every_builtin_case(capsys):
    from gradcheck.gate.suite import SPECS

    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:len(SPECS)]] == [s.name for s in SPECS]
    assert all(name in "\n".join(lines) for name in ("train/eval", "4x3x5x5"))


@pytest.mark.parametrize("argv, message", [
    (["--methd", "central", "Tanh"], "unrecognized option --methd (did you mean --method?)"),
    (["--junit_xml", "x.xml"], "did you mean --junit-xml?"),
    (["plot", "Tanh", "--wtr", "x"], "unrecognized option --wtr (did you mean --wrt?)"),
    (["--shape", "2,x", "m.py:f"], "--shape must be positive integers"),
    (["--shape", "2,x,3", "m.py:f"], "--shape must be positive integers"),
    (["--format", "gitlab"], "invalid choice: 'gitlab'"),
])
def test_usage_errors_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "unrecognized arguments" not in err  # never blames TARGET


def test_plot_is_a_subcommand_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--format" in out and "gradcheck plot" in out
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    assert capsys.readouterr().out.startswith("usage: gradcheck plot")


@pytest.mark.parametrize("body, where", [
    ("def helper():\n    raise ValueError('bad size')\n\ndef make():\n    return helper()\n",
     "line 2, in helper"),
    ("def make():\n    return (1,\n", "line 2"),
])
def test_tracebacks_show_the_users_frames_only(tmp_path, capsys, body, where):
    user = tmp_path / "userfile.py"
    user.write_text(body)
    assert main([f"{user}:make"]) == 2
    err = capsys.readouterr().err
    assert str(user) in err and where in err
    assert "importlib" not in err and f"{os.sep}gradcheck{os.sep}" not in err


def test_config_is_found_from_a_subdirectory(project, capsys, monkeypatch):
    deeper = project / "src" / "pkg"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    status, out, doc = _run([], capsys, monkeypatch, 100)
    assert status == 1
    assert out.splitlines()[0] == f"gradcheck: configuration from {Path('../../pyproject.toml')}"
    assert doc["source"]["kind"] == "config" and len(doc["checks"]) == 6


# -- the reference layers under any import name ------------------------------------------

def test_a_users_layers_py_does_not_replace_the_reference_layers(tmp_path):
    (tmp_path / "layers.py").write_text("class MyOwnLayer:\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    gate = subprocess.run([sys.executable, "-m", "gradcheck", "-q", "BatchNormalization-2d"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert gate.returncode == 0, gate.stderr
    code = ("import layers; from gradcheck.layers import BatchNormalization; "
            "print(layers.MyOwnLayer.__name__, BatchNormalization.__name__)")
    both = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert both.stdout.split() == ["MyOwnLayer", "BatchNormalization"], both.stderr


def test_gradcheck_layers_is_layers_when_that_name_is_ours():
    import layers

    import gradcheck.layers

    assert gradcheck.layers is layers
