"""Every ``pip install`` line of the README, the docs and the error messages works as written.

gradcheck-np is not on the package index: a line that installs it must install
it from a checkout. Each such line runs here in a fresh virtual environment
(created by ``python3 -m venv`` outside the test's own environment, which is
taken off ``PATH``) against a copy of this checkout, and the resulting
``gradcheck`` runs:

- README's first two commands, as written (the second with ``gradcheck`` and
  an import of the test tools in place of the whole test suite, which CI
  runs anyway);
- the CI snippets' lines, in a small user project with the checkout at the
  path the snippet clones it to, followed by the snippet's ``gradcheck`` line;
- any other line that installs the checkout (``path/to/gradcheck-np`` is the
  copy's path).

Lines that install only third-party packages (``matplotlib``, ``torch==2.13.0``,
...) must name no gradcheck distribution and resolve with ``pip install
--dry-run --no-deps``.

Speed, offline: each fresh environment sees the third-party packages of the
test's own environment through a ``.pth`` file (an overlay of symbolic links
that leaves out gradcheck itself and pip), so pip finds numpy, scipy, rich
and the extras already satisfied and installs only gradcheck -- from the line
under test, with its entry point and both packages. Builds run without build
isolation, with the overlay's setuptools, so nothing is fetched (when that
setuptools is too old to build a wheel alone, pip builds in isolation instead).
"""

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PIP = re.compile(r"pip install ([^`\n#&;|]+)")
PLACEHOLDER = "path/to/gradcheck-np"
TIMEOUT = 600

pytestmark = pytest.mark.slow


def _sources():
    """``(where, text)`` of every place an install line can be: docs and string literals."""
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        yield path.name, path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "gradcheck").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield str(path.relative_to(ROOT)), node.value


def install_lines():
    """``{"pip install ...": where}`` for every install line found."""
    found = {}
    for where, text in _sources():
        for match in PIP.finditer(text):
            found.setdefault("pip install " + match.group(1).strip(), where)
    return found


def _requirements(line):
    return [t for t in shlex.split(line)[2:] if not t.startswith("-")]


def _is_local(token):
    return token.startswith((".", "/", PLACEHOLDER))


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def _snippets():
    """Each CI snippet's commands (``pip install``, ``git clone``, ``gradcheck``), in order."""
    snippets = []
    for block in _blocks("yaml"):
        commands = [re.sub(r"\s+#.*$", "", m).strip() for m in re.findall(
            r"^\s*-\s+(?:run:\s+)?((?:pip install|git clone|gradcheck) .*)$", block, re.M)]
        if commands:
            snippets.append((block, commands))
    return snippets


def _clean_env():
    """The environment without the test's own virtual environment."""
    own = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "COLUMNS")}
    if _builds_without_isolation():
        # builds use the overlay's setuptools instead of fetching one per build (pip reads
        # this variable inverted: 0 turns build isolation off)
        env["PIP_NO_BUILD_ISOLATION"] = "0"
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != Path(own).resolve())
    return env


def _builds_without_isolation():
    """This environment's setuptools can build wheels by itself (>= 70.1, or >= 64 with
    ``wheel``); otherwise pip builds in isolation, fetching setuptools as usual."""
    from importlib import metadata
    from importlib.util import find_spec

    try:
        version = tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1) or (version >= (64, 0) and find_spec("wheel") is not None)


def _copy_checkout(dst):
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis",
        ".pytest_cache"))
    return dst


def _bash(script, cwd, env):
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    return script, proc


_NOT_SHARED = ("gradcheck", "_gradcheck", "__editable__", "layers", "pip")


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """A directory of links to this environment's third-party packages (not gradcheck)."""
    site = Path(sysconfig.get_paths()["purelib"])
    root = tmp_path_factory.mktemp("overlay")
    for entry in site.iterdir():
        if entry.name.startswith(_NOT_SHARED) or entry.suffix == ".pth":
            continue
        (root / entry.name).symlink_to(entry)
    return root


def _venv(venv, cwd, overlay):
    """``python3 -m venv`` with the machine's python3 outside the test's environment,
    then the overlay of third-party packages added to its ``sys.path``."""
    env = _clean_env()
    python3 = shutil.which("python3", path=env["PATH"])
    assert python3, "no python3 on PATH outside the test's environment"
    subprocess.run([python3, "-m", "venv", str(venv)], cwd=cwd, env=env, check=True,
                   timeout=TIMEOUT)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    for bundled in site.glob("setuptools*"):  # Python < 3.12 bundles an old one; ours builds
        shutil.rmtree(bundled) if bundled.is_dir() else bundled.unlink()
    (site / "zz-gradcheck-test-overlay.pth").write_text(f"{overlay}\n")
    return env


def _in_venv(venv, commands, cwd, overlay):
    """A fresh ``venv`` (see :func:`_venv`), then ``commands`` run inside it."""
    env = _venv(venv, cwd, overlay)
    steps = [f". {shlex.quote(str(venv / 'bin' / 'activate'))}", *commands]
    return _bash(" && ".join(steps), cwd, env)


USER_PROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "my-gradients-project"
version = "0.1"

[tool.setuptools]
py-modules = ["my_layers"]

[tool.gradcheck]
targets = ["my_layers:make_swish"]
modes = ["train", "eval"]
'''


def _run_snippet(tmp, i, commands, overlay):
    """A user project with the checkout where the snippet puts it; the snippet's commands."""
    project = tmp / f"project{i}"
    project.mkdir()
    (project / "pyproject.toml").write_text(USER_PROJECT)
    shutil.copy(ROOT / "examples" / "my_layers.py", project / "my_layers.py")
    clones = [c for c in commands if c.startswith("git clone")]
    dest = shlex.split(clones[0])[-1] if clones else "gradcheck-np"  # actions/checkout path:
    _copy_checkout(project / dest)
    runnable = [c for c in commands if not c.startswith("git clone")]  # no network here
    return _in_venv(tmp / f"venv-snippet{i}", runnable, project, overlay)


def test_every_install_line_installs_something_that_exists():
    lines = install_lines()
    assert len(lines) >= 6, lines
    for line, where in lines.items():
        for token in _requirements(line):
            if _is_local(token):
                continue
            name = re.split(r"[\[<>=!~ ;]", token, maxsplit=1)[0].lower().replace("_", "-")
            assert name not in ("gradcheck-np", "gradcheck"), (
                f"{where}: {line!r} installs gradcheck from the package index, where it is "
                "not; install it from a checkout")


def test_third_party_install_lines_resolve():
    third = sorted({t for line in install_lines() for t in _requirements(line)
                    if not _is_local(t)})
    assert "matplotlib" in third and "torch==2.13.0" in third
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                           "-q", *third], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr


def test_install_lines_of_the_checkout_work_in_fresh_environments(tmp_path, overlay):
    lines = install_lines()
    local = {line for line in lines if any(map(_is_local, _requirements(line)))}
    quick_start = [b.strip() for b in _blocks("bash")[:2]]
    assert quick_start[0].endswith("&& gradcheck")
    assert quick_start[1].endswith("&& python -m pytest -n 2")
    covered = set()
    jobs = []  # (description, thunk)

    for i, command in enumerate(quick_start):
        copy = _copy_checkout(tmp_path / f"clone{i}")
        make_venv, rest = command.split(" && ", 1)
        assert make_venv == "python3 -m venv .venv"
        script = rest.removesuffix("&& python -m pytest -n 2") + (
            "&& gradcheck --quiet Tanh && python -c 'import pytest, hypothesis, xdist'"
            if i else "")
        covered |= {m.group(0).strip() for m in PIP.finditer(command)}
        jobs.append((command, lambda s=script, c=copy: _bash(
            s, c, _venv(c / ".venv", c, overlay))))

    snippet_runs = {}
    for block, commands in _snippets():
        snippet_runs.setdefault(tuple(c for c in commands if c.startswith("pip install")),
                                []).append(commands)
    for i, (installs, variants) in enumerate(snippet_runs.items()):
        covered |= set(installs)
        gates = list(dict.fromkeys(c for v in variants for c in v if c.startswith("gradcheck")))
        commands = [c for c in variants[0] if not c.startswith("gradcheck")]
        for k, gate in enumerate(gates):  # keep the JSON of each gradcheck line
            commands += [gate, f"mv gradcheck.json gradcheck-{k}.json"]
        jobs.append((f"CI snippet {installs}", lambda i=i, cmds=commands:
                     _run_snippet(tmp_path, i, cmds, overlay)))

    rest = sorted(local - covered)
    copy = _copy_checkout(tmp_path / "clone-rest")
    for j, line in enumerate(rest):
        command = line.replace(PLACEHOLDER, str(copy))
        jobs.append((line, lambda j=j, cmd=command: _in_venv(
            tmp_path / f"venv-rest{j}", [cmd, "gradcheck --quiet Tanh"], copy, overlay)))
    covered |= set(rest)
    assert covered >= local

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: (job[0], job[1]()), jobs))
    for description, (script, proc) in results:
        assert proc.returncode == 0, (f"{description}\n$ {script}\n{proc.stdout[-3000:]}"
                                      f"\n{proc.stderr[-3000:]}")
        assert "gradcheck: " in proc.stdout and " 0 failed" in proc.stdout, proc.stdout
    for i in range(len(snippet_runs)):
        reports = sorted((tmp_path / f"project{i}").glob("gradcheck-*.json"))
        assert reports and (tmp_path / f"project{i}" / "gradcheck.xml").is_file()
        for report in reports:
            doc = json.loads(report.read_text())
            assert doc["source"]["kind"] == "config" and doc["passed"] is True
            assert [c["label"] for c in doc["checks"]] == ["my_layers:make_swish"] * 2
