"""Where a layer's code is, and GitHub Actions workflow annotations that point there.

``gradcheck --format github`` prints one workflow command per failing or
inconclusive target::

    ::error file=examples/my_layers.py,line=35,title=gradcheck: BrokenSwish 'x' FAIL::...

at the line of the layer's ``backward`` (where the gradients are computed),
or of its ``forward`` for a finding about the forward pass, so the failure
shows inline in the pull request's diff. The syntax is GitHub's
"workflow commands" (``::error file={name},line={line},title={title}::{message}``),
with ``%``, CR and LF escaped in the message and ``:`` and ``,`` too in
properties.
"""

import inspect
import os
from pathlib import Path
from typing import NamedTuple

from gradcheck.protocol.discovery import method_name
from gradcheck.render import num, worst_error, worst_tolerance

__all__ = ["SourceLine", "source_of", "relative_path", "github_annotations"]


class SourceLine(NamedTuple):
    """A file and a 1-based line number."""

    path: str
    line: int


def _method_source(layer, name):
    fn = getattr(type(layer), name, None)
    if fn is None or isinstance(fn, property):
        fn = getattr(layer, name, None)  # a function set on the instance
    if fn is None:
        return None
    fn = inspect.unwrap(getattr(fn, "__func__", fn))
    try:
        path = inspect.getsourcefile(fn)
        _, line = inspect.getsourcelines(fn)
    except (TypeError, OSError):  # a builtin, a C extension, code typed at a prompt
        return None
    return SourceLine(str(Path(path).resolve()), int(line)) if path else None


def source_of(layer):
    """``{"forward": SourceLine | None, "backward": SourceLine | None}`` of ``layer``.

    Found with :mod:`inspect` from the layer's class (or, for a function set
    on the instance, from that function); ``None`` where the source is not
    available.
    """
    return {role: _method_source(layer, method_name(layer, role) or role)
            for role in ("forward", "backward")}


def _escape_data(text):
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text):
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def relative_path(path, root=None):
    """``path`` relative to the workspace (``$GITHUB_WORKSPACE`` or the current directory)."""
    root = Path(root or os.environ.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:  # outside the workspace: GitHub cannot place it; keep it absolute
        return Path(path).as_posix()


def command(level, where, title, message, root=None):
    """One workflow command: ``::level file=...,line=...,title=...::message``."""
    props = []
    if where is not None:
        props += [f"file={_escape_property(relative_path(where.path, root))}",
                  f"line={where.line}"]
    props.append(f"title={_escape_property(title)}")
    return f"::{level} {','.join(props)}::{_escape_data(message)}"


def _target_message(label, report, r):
    return (f"{label} ({report.mode}): gradient of {r.name!r}: {r.verdict}, "
            f"margin {num(r.margin, '.3g')} at index {tuple(r.worst_index)}: numerical "
            f"{num(r.worst_numerical, '.10g')}, analytic {num(r.worst_analytic, '.10g')}, "
            f"error {num(worst_error(r), '.3g')} vs tolerance {num(worst_tolerance(r), '.3g')}"
            + (f"; {r.inconclusive}" if r.inconclusive else ""))


def github_annotations(outcomes, root=None):
    """The workflow commands for a gate run, one per target that is not PASS.

    Parameters
    ----------
    outcomes : iterable of Outcome
        :class:`gradcheck.gate.run.Outcome` (label, report, seconds, source).
    root : path, optional
        The directory file names are made relative to (default:
        ``$GITHUB_WORKSPACE`` or the current directory).

    Returns
    -------
    list of str
    """
    lines = []
    for label, report, _, source in outcomes:
        source = source or {}
        for r in report.results:
            if r.verdict == "PASS":
                continue
            level = "error" if r.verdict == "FAIL" or not report.passed else "warning"
            lines.append(command(level, source.get("backward"),
                                 f"gradcheck: {report.layer} {r.name!r} {r.verdict}",
                                 _target_message(label, report, r), root))
        for f in report.findings:
            if f.failure:
                where = source.get("forward" if f.kind.startswith("forward") else "backward")
                lines.append(command("error", where, f"gradcheck: {report.layer} {f.kind}",
                                     f"{label} ({report.mode}): {f.message}", root))
    return lines

