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
