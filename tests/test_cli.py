"""The ``gradcheck`` command: exit status 0/1/2, tables, JSON."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradcheck.gate.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_builtin_suite_passes(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("gradcheck: no gradcheck configuration here or above: the "
                                   "built-in suite")
    assert "BatchNormalization-2d" in out and "BatchNormalization-4d" in out
    assert "train" in out and "eval" in out and "FAIL" not in out
    assert re.search(r"gradcheck: 6\d checks \(\d+ targets\): \d+ passed, 0 failed", out)


def test_builtin_suite_writes_json(tmp_path):
    path = tmp_path / "report.json"
    assert main(["--quiet", "--eval", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 1 and doc["passed"] is True
    assert doc["checks"] and all(c["mode"] == "eval" for c in doc["checks"])
    assert {r["name"] for r in doc["checks"][0]["results"]} == {"x", "gamma", "beta"}


def test_correct_example_exits_0():
    assert main([f"{EXAMPLES / 'my_layers.py'}:make_swish", "-q"]) == 0


def test_broken_example_exits_1_and_names_the_target(capsys):
    assert main([f"{EXAMPLES / 'my_layers.py'}:make_broken_swish"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and " x " in out and "atol" in out


def test_seed_batchnorm_eval_fails_and_train_passes():
    target = f"{EXAMPLES / 'seed_batchnorm.py'}:make"
    assert main([target, "-q"]) == 0
    assert main([target, "--eval", "-q"]) == 1


def test_factory_returning_a_layer_needs_shape(capsys):
    target = f"{EXAMPLES / 'my_layers.py'}:make_scale"
    assert main([target]) == 2
    assert "--shape" in capsys.readouterr().err
    assert main([target, "--shape", "8,4", "--train", "--eval", "-q"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["nosuchmodule_xyz:factory"], "cannot import module"),
    (["no_colon_here"], "no built-in layer 'no_colon_here'; gradcheck --list lists them"),
    (["BatchNormalisation-2d"], "did you mean 'BatchNormalization-2d'"),
    (["examples/my_layers.py"], "MODULE:FACTORY"),
    ([f"{EXAMPLES / 'my_layers.py'}:nope"], "no attribute 'nope'"),
    ([f"{EXAMPLES / 'my_layers.py'}:Swish"], "factory raised"),
    (["missing/file.py:make"], "no such file"),
    (["--shape", "2,2"], "built-in cases"),
    (["--shape", "2,2", "Tanh"], "built-in cases"),
    ([f"{EXAMPLES / 'my_layers.py'}:make_swish", "--shape", "10,6"],
     "--shape applies to a factory that returns a layer alone"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--method", "bogus"], ["--eps", "-1"], ["--rtol", "x"],
                                  ["--shape", "a,b", "x:y"]])
def test_argument_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_layer_that_breaks_the_protocol_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad_layer.py"
    bad.write_text("import numpy as np\n"
                   "class L:\n"
                   "    def forward(self, x):\n        return x\n"
                   "    def backward(self, dout):\n        return None\n"
                   "def make():\n    return L(), np.ones((2, 3))\n")
    assert main([f"{bad}:make"]) == 2
    err = capsys.readouterr().err
    assert "layer L" in err and "returned None" in err and "Traceback" not in err


def test_console_script_runs_as_a_subprocess():
    proc = subprocess.run([sys.executable, "-m", "gradcheck", "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "0 failed" in proc.stdout


@pytest.mark.parametrize("body", [
    "def make():\n    raise SystemExit(0)\n",
    "import sys\nsys.exit(0)\ndef make():\n    pass\n",
    "import numpy as np\nclass L:\n    def forward(self, x):\n        raise SystemExit(0)\n"
    "    def backward(self, d):\n        return d\ndef make():\n    return L(), np.ones((2, 2))\n",
])
def test_sys_exit_in_user_code_never_passes_the_gate(tmp_path, body, capsys):
    f = tmp_path / "exits.py"
    f.write_text(body)
    assert main([f"{f}:make"]) == 2
    assert "SystemExit" in capsys.readouterr().err


@pytest.mark.parametrize("ret, what", [('"hello"', "str"), ("(1, 2, 3)", "a tuple of 3"),
                                       ("None", "NoneType")])
def test_factory_returning_garbage_is_named(tmp_path, ret, what, capsys):
    f = tmp_path / "garbage.py"
    f.write_text(f"def make():\n    return {ret}\n")
    assert main([f"{f}:make", "--shape", "2,3"]) == 2
    assert f"returned {what}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--json", "--junit-xml"])
def test_unwritable_report_path_is_refused_before_checking(tmp_path, flag, capsys):
    assert main(["--quiet", flag, str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert "is a directory" in err.err and "passed" not in err.out
    assert main(["--quiet", flag, str(tmp_path / "missing" / "r.json")]) == 2


def test_strategy_and_precision_options():
    assert main(["--quiet", "--strategy", "projection", "--precision", "native"]) == 0
    with pytest.raises(SystemExit):
        main(["--strategy", "magic"])


def test_sampled_strategy_hints_at_checking_every_element(capsys):
    """The gate's ``--strategy sampled`` on a built-in case: INCONCLUSIVE (exit 1) with the
    sampled remedy as its hint, not another input or dout."""
    assert main(["--strategy", "sampled", "--no-color", "BatchNormalization-4d"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "hint: only a sample of the elements of x, gamma, beta was checked" in out
    assert "samples= at least the target's size" in out
    assert "change the input or dout" not in out


def test_samples_option_lets_a_sampled_gate_check_every_element(capsys):
    """The hint's ``samples=`` on the command line: ``--samples`` at least the targets' size
    checks every element (exit 0); a count below 1 is refused (exit 2)."""
    assert main(["--strategy", "sampled", "--samples", "400", "--quiet",
                 "BatchNormalization-4d"]) == 0
    with pytest.raises(SystemExit) as info:
        main(["--strategy", "sampled", "--samples", "0", "BatchNormalization-4d"])
    assert info.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


KEYERROR_GETATTR = '''
import numpy as np

class Params:
    """Parameters behind __getattr__ (``return self.params[name]``): KeyError, not
    AttributeError, for any other name."""
    def __init__(self):
        self.__dict__["params"] = {"W": np.random.default_rng(0).normal(size=(3, 2))}
    def __getattr__(self, name):
        return self.__dict__["params"][name]
    def forward(self, x, train_flg=True):
        self.__dict__["x"] = x
        return x @ self.W
    def backward(self, dout):
        self.__dict__["grads"] = {"W": self.x.T @ dout}
        return dout @ self.W.T

def make():
    return Params(), np.random.default_rng(1).normal(size=(4, 3))
'''


def test_layer_name_of_a_getattr_that_raises_keyerror(tmp_path):
    from gradcheck.protocol.adapter import layer_name

    class Params:
        def __getattr__(self, name):
            raise KeyError(name)

    assert layer_name(Params()) == "Params"


def test_a_getattr_raising_keyerror_never_exits_1_with_a_traceback(tmp_path, capsys):
    f = tmp_path / "params_layer.py"
    f.write_text(KEYERROR_GETATTR)
    status = main([f"{f}:make", "-q"])
    err = capsys.readouterr().err
    # 2 while gradcheck cannot check such a layer (it stops at another getattr), never 1
    assert status in (0, 2), err
    assert "gradcheck/" not in err.replace(str(tmp_path), "")  # the user's frames only


def test_an_unexpected_exception_while_checking_exits_2_and_the_others_run(tmp_path, capsys,
                                                                           monkeypatch):
    import gradcheck.gate.run as run

    real = run.check_layer

    def check_layer(layer, x, **options):
        if options["train_flg"]:
            raise KeyError("weights")  # as from a layer's __getattr__, or a gradcheck bug
        return real(layer, x, **options)

    monkeypatch.setattr(run, "check_layer", check_layer)
    report = tmp_path / "r.json"
    status = main([f"{EXAMPLES / 'my_layers.py'}:make_swish", "--train", "--eval", "-q",
                   "--json", str(report)])
    err = capsys.readouterr().err
    assert status == 2
    assert "make_swish train: unexpected KeyError while checking: 'weights'" in err
    doc = json.loads(report.read_text())
    assert [c["mode"] for c in doc["checks"]] == ["eval"]
    assert doc["errors"][0]["error"] == "UnexpectedError"


def _interrupting(tmp_path):
    f = tmp_path / "interrupting.py"
    f.write_text("import numpy as np\n"
                 "class L:\n"
                 "    def forward(self, x, train_flg=True):\n"
                 "        if not train_flg:\n"
                 "            raise KeyboardInterrupt\n"
                 "        self.x = x\n"
                 "        return x * x\n"
                 "    def backward(self, dout):\n"
                 "        return 2 * self.x * dout\n"
                 "def make():\n    return L(), np.linspace(0.5, 1.5, 6).reshape(2, 3)\n")
    return f"{f}:make"


def test_ctrl_c_is_one_line_exit_130_and_the_finished_reports(tmp_path, capsys):
    target = _interrupting(tmp_path)
    js, xml = tmp_path / "r.json", tmp_path / "r.xml"
    status = main([target, "--train", "--eval", "--json", str(js), "--junit-xml", str(xml)])
    err = capsys.readouterr().err
    assert status == 130
    assert err.strip() == (f"gradcheck: interrupted after 1 of 2 checks (during {target} eval); "
                           f"the reports of what finished written to {js} and {xml}")
    doc = json.loads(js.read_text())
    assert doc["interrupted"] is True and doc["passed"] is False
    assert [c["mode"] for c in doc["checks"]] == ["train"]
    assert doc["errors"] == [{"case": f"{target} eval", "error": "Interrupted",
                              "message": err.split("gradcheck: ")[1].split(";")[0]}]
    text = xml.read_text()
    assert 'errors="1"' in text and 'type="Interrupted"' in text and 'name="x (2, 3) train"' in text


def test_ctrl_c_without_reports_and_outside_the_checks(tmp_path, capsys, monkeypatch):
    assert main([_interrupting(tmp_path), "--eval"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("gradcheck: interrupted after 0 of 1 check (during ")
    assert "written" not in err and "Traceback" not in err

    import gradcheck.gate.cli as cli

    def plan(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "plan", plan)
    assert main([]) == 130
    assert capsys.readouterr().err == "gradcheck: interrupted\n"


def test_the_json_report_says_a_complete_run_was_not_interrupted(tmp_path):
    path = tmp_path / "r.json"
    assert main([f"{EXAMPLES / 'my_layers.py'}:make_swish", "-q", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert doc["interrupted"] is False and doc["passed"] is True


@pytest.mark.parametrize("second", ["r.out", "./r.out", "sub/../r.out"])
def test_one_path_for_both_reports_is_a_usage_error(tmp_path, monkeypatch, capsys, second):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert main(["Tanh", "-q", "--json", "r.out", "--junit-xml", second]) == 2
    captured = capsys.readouterr()
    assert "--json and --junit-xml name the same file (r.out)" in captured.err
    assert "passed" not in captured.out and not (tmp_path / "r.out").exists()


def test_a_builtin_this_installation_cannot_build_says_what_it_needs(monkeypatch, capsys):
    from gradcheck.gate import suite

    reason = "needs scikit-learn for its images: pip install scikit-learn"
    monkeypatch.setattr(suite, "UNAVAILABLE", [("Fancy-Net", reason)])
    assert main(["Fancy-Net"]) == 2
    err = capsys.readouterr().err
    assert f"built-in layer 'Fancy-Net' is not available here: {reason}" in err
    assert "no built-in layer" not in err
