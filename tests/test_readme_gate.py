"""README's gate sections run as written: the pytest example, the configuration, the CI lines."""

import re
import shlex
import textwrap
from pathlib import Path

import numpy as np

from gradcheck import check_layer
from gradcheck.gate.cli import parse_args
from gradcheck.gate.config import read_config

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title):
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def test_the_pytest_quick_start_passes(pytester, monkeypatch):
    from test_pytest_plugin import PLUGIN

    monkeypatch.syspath_prepend(str(ROOT))
    (code,) = _blocks(_section("Quick start in pytest"), "python")
    pytester.makepyfile(test_quickstart=code)
    result = pytester.runpytest(*PLUGIN, "-p", "no:cacheprovider", "--strict-markers",
                                "-m", "gradcheck")
    result.assert_outcomes(passed=2)


def test_the_configuration_example_is_valid(tmp_path):
    (toml,) = _blocks(_section("Quick start in CI"), "toml")
    path = tmp_path / "pyproject.toml"
    path.write_text(toml)
    config = read_config(path)
    assert config.targets == ("mypkg.layers:make_swish", "tests/gradients.py:make_attention")
    assert config.modes == (True, False) and config.options == {"method": "central"}


def test_the_ci_commands_parse():
    lines = [line.strip().lstrip("- ") for block in _blocks(_section("Quick start in CI"), "yaml")
             for line in block.splitlines() if "gradcheck --" in line]
    assert len(lines) == 2
    for line in lines:
        argv = shlex.split(line.removeprefix("run: "))
        args = parse_args(argv[1:])
        assert args.junit_xml == "gradcheck.xml" and args.json == "gradcheck.json"


def test_the_custom_layer_example_runs():
    (code,) = _blocks(_section("Making a custom layer checkable"), "python")
    rng = np.random.default_rng(0)
    namespace = {"check_layer": check_layer, "w": rng.normal(size=(4, 3)),
                 "x": rng.normal(size=(5, 4))}
    exec(textwrap.dedent(code).replace("check_layer(", "report = check_layer("), namespace)
    report = namespace["report"]
    assert report.passed and [r.name for r in report.results] == ["x", "weight"]


def _broken_swish():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_my_layers",
                                                  ROOT / "examples" / "my_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_broken_swish()


def _shown_as_printed(shown, printed):
    """Each line of the README block is the next printed line; a line ``  T: ... ...``
    ending in ``: ...`` stands for the printed line it starts and every detail line of
    target ``T`` after it (with their continuation lines)."""
    i = 0
    for line in shown:
        assert i < len(printed), f"README shows more than is printed: {line!r}"
        if line.endswith(": ..."):
            assert printed[i].startswith(line[:-3]), (line, printed[i])
            own = line[:line.index(":") + 1]
            i += 1
            while i < len(printed) and printed[i].startswith((own, "      ")):
                i += 1
            continue
        assert printed[i] == line, (line, printed[i])
        i += 1
    assert i == len(printed), f"printed but not shown: {printed[i:]}"


def test_reading_a_failure_shows_what_assert_gradients_prints_today(monkeypatch):
    """The README's failure of ``examples/my_layers.py:make_broken_swish`` (at 80 columns)
    is the message ``assert_gradients`` raises today, line for line (beta's details are
    shortened to ``...``), and the prose quotes its margin."""
    from gradcheck import assert_gradients

    monkeypatch.setenv("COLUMNS", "80")
    try:
        assert_gradients(*_broken_swish())
    except AssertionError as exc:
        printed = str(exc).splitlines()
    else:
        raise AssertionError("make_broken_swish passed")
    section = _section("Reading a failure")
    (block,) = [b for b in _blocks(section, "") if b.startswith("gradient check failed")]
    shown = block.rstrip("\n").splitlines()
    _shown_as_printed(shown, printed)
    margin = re.search(r"^x\s+10x6\s+(\S+)\s+FAIL", block, re.M).group(1)
    assert f"`{margin}` is far beyond the tolerance" in section
    assert f"`{margin}` is a wrong" in _section("The table")
    html = _blocks(_section("In a notebook"), "html")[0]
    assert f'<td class="gc-margin" ...>{margin}</td>' in html
    assert re.search(r"<pre[^>]*>" + re.escape(re.search(r"<pre \.\.\.>(.*) \.\.\.</pre>",
                                                          html).group(1)),
                     check_layer(*_broken_swish())._repr_html_())


def test_the_github_annotation_example_is_what_the_gate_prints_today(monkeypatch, capsys):
    from gradcheck.gate.cli import main

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    assert main(["examples/my_layers.py:make_broken_swish", "--format", "github",
                 "--quiet"]) == 1
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::")]
    shown = [line for line in _section("Quick start in CI").splitlines()
             if line.startswith("::error file=")]
    assert shown == printed
