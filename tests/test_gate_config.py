"""The configured gate: ``[tool.gradcheck]`` in pyproject.toml, ``[gradcheck]`` in setup.cfg."""

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from gradcheck.gate.cli import main, parse_args, plan
from gradcheck.validate import METHODS
from gradcheck.gate.config import ConfigError, find_config, read_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

LAYERS = textwrap.dedent('''
    import numpy as np

    class Cube:
        def forward(self, x, train_flg=True):
            self.x = x
            return x ** 3
        def backward(self, dout):
            return 3 * dout * self.x ** 2

    class BrokenCube(Cube):
        def backward(self, dout):
            return dout * self.x ** 2

    def make_cube():
        return Cube(), np.linspace(-1.0, 1.5, 6).reshape(2, 3)

    def make_broken_cube():
        return BrokenCube(), np.linspace(-1.0, 1.5, 6).reshape(2, 3)
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty user project (the current directory) with a module of layers."""
    (tmp_path / "mylayers.py").write_text(LAYERS)
    (tmp_path / "tests").mkdir()
    shutil.copy(EXAMPLES / "my_layers.py", tmp_path / "tests" / "zoo.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("mylayers", None)  # each test's project has its own


def _run_json(argv, tmp_path, capsys):
    path = tmp_path / "out.json"
    status = main([*argv, "--json", str(path)])
    captured = capsys.readouterr()
    return status, json.loads(path.read_text()) if path.exists() else None, captured


def test_pyproject_targets_are_checked(project, capsys):
    (project / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]

        [tool.gradcheck]
        targets = ["mylayers:make_cube", "tests/zoo.py:make_swish"]
        modes = ["train", "eval"]
        method = "central4"
        seed = 2
    '''))
    status, doc, out = _run_json([], project, capsys)
    assert status == 0, out.err
    assert "configuration from pyproject.toml" in out.out
    assert doc["source"] == {"kind": "config", "file": "pyproject.toml",
                             "targets": ["mylayers:make_cube", "tests/zoo.py:make_swish"]}
    assert [(c["label"], c["mode"]) for c in doc["checks"]] == [
        ("mylayers:make_cube", "train"), ("mylayers:make_cube", "eval"),
        ("tests/zoo.py:make_swish", "train"), ("tests/zoo.py:make_swish", "eval")]
    assert {(c["method"], c["seed"]) for c in doc["checks"]} == {("central4", 2)}


def test_setup_cfg_targets_and_a_failure(project, capsys):
    (project / "setup.cfg").write_text(textwrap.dedent('''
        [metadata]
        name = myproject

        [gradcheck]
        targets =
            mylayers:make_cube
            mylayers:make_broken_cube, tests/zoo.py:make_swish
        atol = 1e-6
        rtol = 1e-5
    '''))
    status, doc, out = _run_json([], project, capsys)
    assert status == 1
    assert [c["passed"] for c in doc["checks"]] == [True, False, True]
    assert {c["mode"] for c in doc["checks"]} == {"train"}
    assert doc["checks"][1]["results"][0]["atol"] == 1e-6
    assert "mylayers:make_broken_cube" in out.out and "FAIL" in out.out


def test_command_line_overrides_the_configuration(project, capsys):
    (project / "setup.cfg").write_text("[gradcheck]\ntargets = mylayers:make_cube\n"
                                       "modes = train\nmethod = forward\n")
    status, doc, _ = _run_json(["--eval", "--method", "richardson", "--seed", "5"], project,
                               capsys)
    assert status == 0
    assert [(c["mode"], c["method"], c["seed"]) for c in doc["checks"]] == [
        ("eval", "richardson", 5)]


def test_config_elsewhere_resolves_files_against_its_directory(project, tmp_path_factory,
                                                                 capsys, monkeypatch):
    cfg = project / "gate.toml"
    cfg.write_text('[tool.gradcheck]\ntargets = ["tests/zoo.py:make_swish"]\n')
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert main(["--config", str(cfg), "-q"]) == 0
    assert "1 check (2 targets): 1 passed, 0 failed" in capsys.readouterr().out


def _plan(argv):
    return plan(parse_args(argv))[:3]


def test_without_configuration_the_builtin_suite_runs(project):
    cases, options, source = _plan([])
    assert source == {"kind": "builtin", "file": None}
    assert options == {"method": "central", "seed": 0}
    assert {c.label for c in cases} >= {"BatchNormalization-2d", "BatchNormalization-4d"}
    assert {c.train_flg for c in cases} == {True, False}


def test_configuration_without_targets_sets_options_of_the_builtin_suite(project):
    (project / "pyproject.toml").write_text('[tool.gradcheck]\nmodes = "eval"\nrtol = 1e-4\n')
    cases, options, source = _plan([])
    assert source == {"kind": "builtin", "file": "pyproject.toml"}
    assert options == {"method": "central", "seed": 0, "rtol": 1e-4}
    assert {c.train_flg for c in cases} == {False}


def test_a_target_on_the_command_line_ignores_the_configuration(project):
    (project / "pyproject.toml").write_text('[tool.gradcheck]\nbogus = 1\n')
    cases, options, source = _plan(["mylayers:make_cube"])
    assert source["kind"] == "target" and options["method"] == "central"
    with pytest.raises(ConfigError, match="bogus"):
        _plan([])


@pytest.mark.parametrize("filename, text, message", [
    ("pyproject.toml", '[tool.gradcheck]\ntagets = ["mylayers:make_cube"]\n',
     "pyproject.toml: [tool.gradcheck] tagets: unknown key (did you mean 'targets'?)"),
    ("pyproject.toml", '[tool.gradcheck]\natol = -1\n',
     "pyproject.toml: [tool.gradcheck] atol: expected a finite number >= 0, got -1"),
    ("pyproject.toml", '[tool.gradcheck]\nseed = 1.5\n',
     "pyproject.toml: [tool.gradcheck] seed: expected an integer >= 0, got 1.5"),
    ("pyproject.toml", '[tool.gradcheck]\nseed = true\n',
     "pyproject.toml: [tool.gradcheck] seed: expected an integer >= 0, got True"),
    ("pyproject.toml", '[tool.gradcheck]\nmodes = ["train", "test"]\n',
     "pyproject.toml: [tool.gradcheck] modes: expected 'train' and/or 'eval', got 'test'"),
    ("pyproject.toml", '[tool.gradcheck]\nmodes = []\n',
     "pyproject.toml: [tool.gradcheck] modes: must not be empty"),
    ("pyproject.toml", '[tool.gradcheck]\ntargets = [1, 2]\n',
     "pyproject.toml: [tool.gradcheck] targets: expected a list of strings, got [1, 2]"),
    ("pyproject.toml", '[tool.gradcheck]\ntargets = ["mylayers"]\n',
     "pyproject.toml: [tool.gradcheck] targets: 'mylayers' is not MODULE:FACTORY"),
    ("pyproject.toml", '[tool.gradcheck]\ntargets = ["no_such_module_zz:make"]\n',
     "pyproject.toml: [tool.gradcheck] targets: cannot import module 'no_such_module_zz'"),
    ("pyproject.toml", '[tool.gradcheck]\ntargets = ["mylayers:make_nothing"]\n',
     "pyproject.toml: [tool.gradcheck] targets: mylayers has no attribute 'make_nothing'"),
    ("pyproject.toml", '[tool.gradcheck]\ntargets = ["tests/nope.py:make"]\n',
     "pyproject.toml: [tool.gradcheck] targets: "),
    ("pyproject.toml", '[tool]\ngradcheck = 3\n',
     "pyproject.toml: [tool.gradcheck] must be a table, got 3"),
    ("pyproject.toml", '[tool.gradcheck\ntargets = 1\n', "pyproject.toml: not valid TOML"),
    ("setup.cfg", "[gradcheck]\nmethod = bogus\n",
     f"setup.cfg: [gradcheck] method: expected one of {', '.join(METHODS)}; got 'bogus'"),
    ("setup.cfg", "[gradcheck]\nrtol = tight\n",
     "setup.cfg: [gradcheck] rtol: expected a number >= 0, got 'tight'"),
    ("setup.cfg", "[gradcheck]\ntargets =\n    mylayers:make_cube\n    tests/zoo.py:nope\n",
     "setup.cfg: [gradcheck] targets: "),
    ("setup.cfg", "[gradcheck]\nmodes =\n", "setup.cfg: [gradcheck] modes: must not be empty"),
    ("setup.cfg", "[gradcheck\n", "setup.cfg: not a valid setup.cfg"),
])
def test_bad_configuration_exits_2_naming_file_and_key(project, capsys, filename, text,
                                                        message):
    (project / filename).write_text(text)
    assert main(["-q"]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()), err
    assert "Traceback" not in err


def test_missing_file_target_names_the_file(project, capsys):
    (project / "setup.cfg").write_text("[gradcheck]\ntargets = tests/nope.py:make\n")
    assert main([]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "setup.cfg: [gradcheck] targets:" in err and "nope.py: no such file" in err


def test_both_files_configuring_gradcheck_is_an_error(project):
    (project / "setup.cfg").write_text("[gradcheck]\nseed = 1\n")
    (project / "pyproject.toml").write_text("[tool.gradcheck]\nseed = 2\n")
    with pytest.raises(ConfigError, match="keep one"):
        find_config(project)


def test_files_without_a_gradcheck_section_are_no_configuration(project):
    (project / "setup.cfg").write_text("[metadata]\nname = x\n")
    (project / "pyproject.toml").write_text("[build-system]\nrequires = []\n")
    assert find_config(project) is None
    with pytest.raises(ConfigError, match=r"no \[gradcheck\] section"):
        read_config(project / "setup.cfg")


@pytest.mark.parametrize("argv, message", [
    (["--config", "missing.toml"], "missing.toml: no such file"),
    (["--config", "x.toml", "mylayers:make_cube"], "either a TARGET or --config"),
])
def test_config_option_errors(project, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_target_that_breaks_the_protocol_leaves_the_others_checked(project, capsys):
    (project / "boom.py").write_text(textwrap.dedent('''
        import numpy as np

        class Boom:
            def forward(self, x):
                return x

            def backward(self, dout):
                return dout[0]

        def make_boom():
            return Boom(), np.ones((2, 3))
    '''))
    (project / "pyproject.toml").write_text(
        '[tool.gradcheck]\ntargets = ["boom.py:make_boom", "mylayers:make_cube"]\n')
    status, doc, out = _run_json([], project, capsys)
    assert status == 2
    assert [c["label"] for c in doc["checks"]] == ["mylayers:make_cube"]
    assert "1 could not run" in out.out
    assert "error: boom.py:make_boom train: layer Boom" in out.err
    assert doc["passed"] is False and [e["case"] for e in doc["errors"]] == [
        "boom.py:make_boom train"] and doc["errors"][0]["error"] == "LayerProtocolError"
    xml = project / "out.xml"
    assert main(["--junit-xml", str(xml), "-q"]) == 2
    text = xml.read_text()
    assert 'errors="1"' in text and 'name="could not run"' in text and "<error " in text


def test_a_factory_that_raises_leaves_the_others_checked_and_the_reports_written(project,
                                                                                 capsys):
    (project / "bad.py").write_text('def raises():\n    raise RuntimeError("factory boom")\n')
    (project / "pyproject.toml").write_text(
        '[tool.gradcheck]\ntargets = ["mylayers:make_cube", "bad.py:raises"]\n')
    xml = project / "out.xml"
    status, doc, out = _run_json(["--junit-xml", str(xml)], project, capsys)
    assert status == 2  # as a layer that breaks the protocol: the gate could not check it
    assert [c["label"] for c in doc["checks"]] == ["mylayers:make_cube"]
    assert doc["passed"] is False and doc["errors"] == [
        {"case": "bad.py:raises train", "error": "FactoryError",
         "message": "the factory raised RuntimeError: factory boom"}]
    assert "1 could not run" in out.out
    assert "error: bad.py:raises train: the factory raised RuntimeError: factory boom" in out.err
    assert 'raise RuntimeError("factory boom")' in out.err  # the factory's traceback
    text = xml.read_text()
    assert 'errors="1"' in text and 'classname="mylayers:make_cube"' in text
    assert ('<testcase classname="bad.py:raises train" name="could not run"' in text
            and 'type="FactoryError"' in text and 'raise RuntimeError("factory boom")' in text)


def test_a_factory_returning_garbage_is_a_case_error_too(project, capsys):
    (project / "bad.py").write_text("def garbage():\n    return 3\n")
    (project / "pyproject.toml").write_text(
        '[tool.gradcheck]\ntargets = ["bad.py:garbage", "mylayers:make_cube"]\n')
    status, doc, out = _run_json([], project, capsys)
    assert status == 2
    assert [c["label"] for c in doc["checks"]] == ["mylayers:make_cube"]
    assert doc["errors"][0]["message"].startswith("the factory returned int; expected a layer")
